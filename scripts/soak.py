#!/usr/bin/env python3
"""Soak test: N instances over one database, K random kills (SIGKILL of a whole instance,
SIGKILL of one worker, SIGTERM), each victim restarted with the same command; at the end every
instance runs to completion and the invariants are counted:

    apps=4000 kills=20 lost=0 duplicated=0 orphaned=0

With ``--reprocess-kills K`` the processed database then goes through K SIGKILLs of
``reprocess --since ...`` runs: after the same commands again no request may stay open
and no event of a replaced attempt may survive (both counted as orphaned).

lost: a source row with no final log row; duplicated: two success rows for one application or two
rows for one (app_id, attempt); orphaned: target rows of an application without a success row.
Exit 0 only when all three are 0.

``--mode queue --mix-retries`` restarts each victim as a random one of: a plain queue run, a queue
run with ``--retry-failed``, ``reprocess --failed --mode queue`` (so kills land in all three), then
lets plain queue runs finish; lost then also counts applications left pending.

``--terminations ROUNDS`` (PostgreSQL, a server this script may restart: its own cluster) is the
termination-window scenario: each round a fresh database, two queue instances, the server
restarted (``pg_ctl restart -m immediate``) at +3, +7 and +10 s, then every backend of the
database terminated every 0.5 s until both end; instances that stopped are run again with the same
command. Each run's summary (``--summary-json``) is compared with its session's log rows:

    round 3: runs 2, summary = database 2/2, corrected by the end-of-run check 0, lost 0, duplicated 0
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xml_extractor import load_contract  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402
from xml_extractor.testing.queries import sql as testing_sql  # noqa: E402


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xml_extractor", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(ROOT),
        start_new_session=True,
    )


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == p:
                        out.append(int(d.name))
                        todo.append(int(d.name))
                except (OSError, IndexError, ValueError):
                    pass
    return out


def count(db: Database) -> dict:
    src = {r[0] for r in db.autocommit_query(testing_sql(db, "soak_source_ids"), {})}
    logs = db.autocommit_query(testing_sql(db, "soak_log_rows"), {})
    ok = [a for a, s, _ in logs if s == "success"]
    dup = (len(ok) - len(set(ok))) + (len(logs) - len({(a, t) for a, _, t in logs}))
    lost = len(src - {a for a, _, _ in logs})
    orphans: set = set()
    for t in db.contract.tables:
        ids = testing_sql(
            db,
            "soak_table_app_ids",
            table=db.table(t.name),
            app_col=db.dialect.quote(t.app_id_column),
        )
        orphans |= {r[0] for r in db.autocommit_query(ids, {})} - set(ok)
    return {
        "apps": len(src),
        "success": len(set(ok)),
        "lost": lost,
        "duplicated": dup,
        "orphaned": len(orphans),
    }


def reprocess_kills(
    a: argparse.Namespace, url: str, env: dict, logs: str, rnd: random.Random
) -> dict:
    """SIGKILL (whole process group) `reprocess --since 2000-01-01` runs, one per instance share, at
    random moments; each victim, and each command that finished, is started again with the same
    command and ``--again`` (which resumes its open requests, or requests a new round). At the end `run` finishes
    whatever is still requested. Leftovers of a replaced attempt: open requests, and events whose
    session is not the session of the application's current log row."""

    def cmd(i: int) -> list[str]:
        return [
            "reprocess",
            "--db",
            url,
            "--since",
            "2000-01-01T00:00",
            "--again",  # a finished command starts a new round (a stopped one resumes)
            "--no-progress",
            "--workers",
            "1",
            "--batch-size",
            "10",
            "--logs-dir",
            logs,
            "--metrics-dir",
            logs,
            "--instance-id",
            str(i),
            "--instance-count",
            str(a.instances),
        ]

    procs = [cli(*cmd(i), env=env) for i in range(a.instances)]
    kills = finished = 0
    while kills < a.reprocess_kills:
        time.sleep(rnd.uniform(0.4, 1.5))
        i = rnd.randrange(a.instances)
        if procs[i].poll() is not None:
            finished += 1
            procs[i] = cli(*cmd(i), env=env)
            continue
        try:
            os.killpg(procs[i].pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        procs[i].wait(timeout=120)
        kills += 1
        procs[i] = cli(*cmd(i), env=env)  # the same command again
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # a last kill each, mid-work or not
        except ProcessLookupError:
            pass
        p.wait(timeout=120)
    for i in range(a.instances):  # requested applications are pending: a plain run finishes them
        cli(
            "run",
            "--db",
            url,
            "--no-progress",
            "--workers",
            "1",
            "--logs-dir",
            logs,
            "--metrics-dir",
            logs,
            "--instance-id",
            str(i),
            "--instance-count",
            str(a.instances),
        ).wait(timeout=1800)
    db = Database(url, load_contract())
    n = db.names
    try:
        open_requests = int(
            db.autocommit_query(db.sql("ops_count_rows", table=n["requests"]), {})[0][0]
        )
        stale = int(db.autocommit_query(testing_sql(db, "soak_stale_events"), {})[0][0])
        replaced = int(
            db.autocommit_query(db.sql("ops_count_rows", table=n["log_history"]), {})[0][0]
        )
    finally:
        db.close()
    return {
        "kills": kills,
        "finished": finished,
        "replaced": replaced,
        "open_requests": open_requests,
        "stale_events": stale,
    }


def _cluster(url: str) -> tuple[list[str], str]:
    """pg_ctl for the server behind ``url`` (its data directory read from it; ``restart`` reuses its
    start options from postmaster.opts): the command prefix and the data directory."""
    db = Database(url, load_contract())
    data = str(db.autocommit_query("SHOW data_directory")[0][0])
    db.close()
    opts = Path(data, "postmaster.opts").read_text().split()
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return run_as + [str(Path(opts[0].strip('"')).parent / "pg_ctl"), "-D", data], data


def _admin(url: str):
    """A pyodbc connection to the server's maintenance database, autocommit."""
    import pyodbc

    from xml_extractor.db.url import parse_url

    u = parse_url(url)
    u.database = "postgres"
    return pyodbc.connect(u.odbc_connection_string(), autocommit=True)


def _admin_exec(url: str, sql: str) -> None:
    for _ in range(100):  # the server may be restarting
        try:
            conn = _admin(url)
            conn.execute(sql)
            conn.close()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not come back for: {sql}")


def session_counts(db: Database, session_id: str) -> tuple[int, int]:
    rows = {
        str(st): int(n)
        for st, n in db.autocommit_query(db.sql("session_outcomes"), {"session_id": session_id})
    }
    return rows.get("success", 0), rows.get("failed", 0)


def termination_round(
    a: argparse.Namespace, base_url: str, pg_ctl: list[str], n: int, rnd: random.Random
) -> dict:
    """One round of the termination-window scenario (see the module's docstring)."""
    name = f"xe_soak_{os.getpid()}_{n}"
    url = base_url.rsplit("/", 1)[0] + "/" + name
    _admin_exec(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin_exec(base_url, f"CREATE DATABASE {name}")
    for args in (
        ["init-db", "--db", url],
        [
            "generate-mock",
            "--db",
            url,
            "--count",
            str(a.count),
            "--faulty-share",
            "0.05",
            "--seed",
            str(a.seed + n),
        ],
    ):
        if cli(*args).wait() != 0:
            raise RuntimeError(f"setup failed: {args[0]}")
    work = Path(tempfile.mkdtemp(prefix=f"xe-soak-term-{n}-"))
    from xml_extractor.testing.harness import fault_injection_env

    env = dict(
        os.environ, **fault_injection_env(f"sleep_before_commit={a.commit_delay}", str(work))
    )
    summaries: list[Path] = []

    def start(k: int) -> subprocess.Popen:
        out = work / f"summary-{len(summaries)}.json"
        summaries.append(out)
        return cli(
            "run",
            "--db",
            url,
            "--no-progress",
            "--workers",
            "1",
            "--batch-size",
            "20",
            "--mode",
            "queue",
            "--chunk-size",
            "100",
            "--lease-seconds",
            "10",
            "--reconnect-seconds",
            "60",
            "--logs-dir",
            str(work),
            "--metrics-dir",
            str(work),
            "--summary-json",
            str(out),
            env=env,
        )

    t0 = time.monotonic()
    procs = [start(k) for k in range(2)]
    restarts = terminations = 0
    for at in (3, 7, 10):
        time.sleep(max(0.0, t0 + at + rnd.uniform(-0.3, 0.3) - time.monotonic()))
        subprocess.run(
            pg_ctl + ["-m", "immediate", "-w", "-t", "60", "restart"],
            capture_output=True,
            timeout=120,
        )
        restarts += 1
    while any(p.poll() is None for p in procs):
        time.sleep(0.5)
        try:
            conn = _admin(base_url)
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ?", name
            )
            conn.close()
            terminations += 1
        except Exception:
            pass
    codes = [p.wait() for p in procs]
    codes_seen = list(codes)
    again = 0
    while any(
        c not in (0, 1) for c in codes
    ):  # a stopped instance: the same command again, no faults
        env.pop("XML_EXTRACTOR_FAULTS", None)
        again += 1
        procs = [start(k) for k in range(2)]
        codes = [p.wait(timeout=1800) for p in procs]
        codes_seen += codes
        if again > 5:
            break
    db = Database(url, load_contract())
    try:
        equal = corrected = 0
        mismatches: list[str] = []
        notes: list[str] = []
        for path in summaries:
            if not path.exists():
                mismatches.append(f"{path.name}: no summary")
                continue
            s = json.loads(path.read_text())
            have = session_counts(db, s["session_id"])
            if have == (s["success"], s["failed"]):
                equal += 1
            else:
                mismatches.append(
                    f"{path.name}: summary {s['success']}/{s['failed']}, database {have[0]}/{have[1]}"
                )
            if str(s.get("database_check") or "").startswith("differs"):
                corrected += 1
                notes.append(f"exit {s['exit_code']}: {s['database_check'][len('differs: ') :]}")
        c = count(db)
        c["lost"] = max(
            c["lost"],
            int(
                db.scalar(
                    db.sql("count_pending"),
                    {"id_lo": -(2**63), "id_hi": 2**63 - 1, "modulus": 1, "remainder": 0},
                )
            ),
        )
    finally:
        db.close()
    _admin_exec(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {
        "runs": len(summaries),
        "equal": equal,
        "corrected": corrected,
        "mismatches": mismatches,
        "notes": notes,
        "codes": codes_seen,
        "restarts": restarts,
        "terminations": terminations,
        "reruns": again,
        **c,
    }


def terminations_main(a: argparse.Namespace) -> int:
    if not (a.db or "").startswith("postgresql"):
        print(
            "--terminations needs --db postgresql://... (a server this script may restart)",
            file=sys.stderr,
        )
        return 2
    pg_ctl, data = _cluster(a.db)
    pg_ctl += ["-l", str(Path(data) / "server.log")]
    rnd = random.Random(a.seed)
    bad = 0
    totals = collections.Counter()
    for n in range(a.terminations):
        r = termination_round(a, a.db, pg_ctl, n, rnd)
        ok = r["equal"] == r["runs"] and r["lost"] == r["duplicated"] == r["orphaned"] == 0
        bad += not ok
        for k in (
            "runs",
            "equal",
            "corrected",
            "restarts",
            "terminations",
            "reruns",
            "lost",
            "duplicated",
            "orphaned",
        ):
            totals[k] += r[k]
        print(
            f"round {n}: runs {r['runs']}, summary = database {r['equal']}/{r['runs']}, corrected by the end-of-run "
            f"check {r['corrected']}, restarts {r['restarts']}, terminations {r['terminations']}, re-runs {r['reruns']}, "
            f"exit codes {r['codes']}, apps {r['apps']}, lost {r['lost']}, duplicated {r['duplicated']}, "
            f"orphaned {r['orphaned']}"
            + "".join(f"\n  MISMATCH {m}" for m in r["mismatches"])
            + "".join(f"\n  corrected: {m}" for m in r["notes"]),
            flush=True,
        )
    print(
        f"{a.terminations} rounds: runs {totals['runs']}, summary = database {totals['equal']}/{totals['runs']}, "
        f"corrected {totals['corrected']}, restarts {totals['restarts']}, terminations {totals['terminations']}, "
        f"re-runs {totals['reruns']}, lost {totals['lost']}, duplicated {totals['duplicated']}, "
        f"orphaned {totals['orphaned']}; rounds not clean: {bad}"
    )
    return 0 if bad == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", default=None, help="database URL (default: a new SQLite file)")
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20, help="how many kills")
    ap.add_argument("--mode", choices=["partition", "queue"], default="partition")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--reprocess-kills",
        type=int,
        default=0,
        help="after the run, SIGKILL this many `reprocess --since ...` runs (each instance's share, "
        "restarted with the same command) and count replaced-attempt leftovers too",
    )
    ap.add_argument(
        "--mix-retries",
        action="store_true",
        help="queue mode: restart victims (and finished instances) as a random mix of plain queue runs, "
        "`run --retry-failed` and `reprocess --failed`; lost also counts applications left pending "
        "(an open reprocess request included)",
    )
    ap.add_argument(
        "--commit-delay",
        type=float,
        default=0.15,
        help="hold each write transaction open this long (so kills land mid-transaction)",
    )
    ap.add_argument(
        "--terminations",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="the termination-window scenario instead (PostgreSQL only): this many rounds of two queue "
        "instances, server restarts at +3/+7/+10 s, then backend terminations every 0.5 s; each "
        "run's summary is checked against its session's log rows",
    )
    a = ap.parse_args()
    if a.terminations:
        return terminations_main(a)
    rnd = random.Random(a.seed)
    url = a.db or f"sqlite:///{tempfile.mkdtemp(prefix='xe-soak-')}/soak.db"
    for args in (
        ["init-db", "--db", url],
        [
            "generate-mock",
            "--db",
            url,
            "--count",
            str(a.count),
            "--faulty-share",
            "0.03",
            "--seed",
            str(a.seed),
        ],
    ):
        if cli(*args).wait() != 0:
            print(f"setup failed: {args[0]}", file=sys.stderr)
            return 2
    logs = tempfile.mkdtemp(prefix="xe-soak-logs-")
    # the commit delay is test-only fault injection: it needs the harness's gate (xml_extractor/testing/gate.py)
    from xml_extractor.testing.harness import fault_injection_env

    env = dict(os.environ, **fault_injection_env(f"sleep_before_commit={a.commit_delay}", logs))
    common = [
        "run",
        "--db",
        url,
        "--no-progress",
        "--workers",
        "1",
        "--batch-size",
        "10",
        "--logs-dir",
        logs,
        "--metrics-dir",
        logs,
        "--lease-seconds",
        "6",
    ]

    started: collections.Counter[str] = (
        collections.Counter()
    )  # queue mode: commands started, by kind

    def args_for(i: int, mixed: bool = False) -> list[str]:
        if a.mode == "queue":
            queue = ["--mode", "queue", "--chunk-size", "100"]
            kind = (
                rnd.choice(["run", "run", "retry", "reprocess"])
                if mixed and a.mix_retries
                else "run"
            )
            started[kind] += 1
            if kind == "retry":  # failed applications with attempts left, in queue mode
                return common + queue + ["--retry-failed"]
            if kind == "reprocess":  # every final failure again, in queue mode
                return ["reprocess", "--failed", "--again"] + common[1:] + queue
            return common + queue
        return common + ["--instance-id", str(i), "--instance-count", str(a.instances)]

    procs = [cli(*args_for(i), env=env) for i in range(a.instances)]
    kinds = {"instance SIGKILL": 0, "worker SIGKILL": 0, "instance SIGTERM": 0}
    kills = 0
    while kills < a.rounds:
        time.sleep(rnd.uniform(0.4, 1.5))
        i = rnd.randrange(a.instances)
        p = procs[i]
        if p.poll() is not None and a.mix_retries:
            procs[i] = cli(
                *args_for(i, mixed=True), env=env
            )  # a finished command: start another one
            continue
        if p.poll() is not None:
            if all(q.poll() is not None for q in procs):
                print(
                    "every instance finished before all kills were done: use a larger --count",
                    file=sys.stderr,
                )
                break
            continue
        kind = rnd.choice(list(kinds))
        try:
            if kind == "instance SIGKILL":
                os.killpg(p.pid, signal.SIGKILL)
            elif kind == "instance SIGTERM":
                p.send_signal(signal.SIGTERM)
            else:
                leaves = [d for d in descendants(p.pid) if not descendants(d)]
                if not leaves:
                    continue
                os.kill(rnd.choice(leaves), signal.SIGKILL)
        except ProcessLookupError:
            continue
        kinds[kind] += 1
        kills += 1
        if kind != "worker SIGKILL":
            p.wait(timeout=120)
            procs[i] = cli(
                *args_for(i, mixed=True), env=env
            )  # the same command again (or, mixed, another)
    for p in procs:  # let everything finish; restart any instance that is not running
        p.wait(timeout=1800)
    for i in range(a.instances):
        cli(*args_for(i)).wait(timeout=1800)
    rp = reprocess_kills(a, url, env, logs, rnd) if a.reprocess_kills else None
    db = Database(url, load_contract())
    c = count(db)
    if a.mix_retries:  # pending by the one definition: no log row, or an open reprocess request
        c["lost"] = max(
            c["lost"],
            int(
                db.scalar(
                    db.sql("count_pending"),
                    {"id_lo": -(2**63), "id_hi": 2**63 - 1, "modulus": 1, "remainder": 0},
                )
            ),
        )
    db.close()
    if rp is not None:
        print(
            f"reprocess: kills={rp['kills']}, commands finished={rp['finished']}, replaced attempts={rp['replaced']}, "
            f"open requests={rp['open_requests']}, stale events={rp['stale_events']}"
        )
        if rp["open_requests"] or rp["stale_events"]:
            c["orphaned"] += rp["open_requests"] + rp["stale_events"]
    mix = (
        f", commands started: {', '.join(f'{k} {v}' for k, v in sorted(started.items()))}"
        if a.mix_retries
        else ""
    )
    print(
        f"apps={c['apps']}, kills={kills} ({', '.join(f'{k}: {v}' for k, v in kinds.items())}{mix}), "
        f"lost={c['lost']}, duplicated={c['duplicated']}, orphaned={c['orphaned']}"
    )
    return 0 if c["lost"] == c["duplicated"] == c["orphaned"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
