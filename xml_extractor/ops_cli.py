"""Operator commands registered on the main ``cli`` group: status, failures, reprocess,
reconcile, quality, launch. Queries live in ``ops.py``; this module formats (tabulate, or JSON
with --format json for scripts)."""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import click
from tabulate import tabulate

from . import ops
from .cli import ENV, cli, db_options, execute_run, handle_errors, open_db, run_options
from .errors import ConfigError

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      envvar=ENV + "FORMAT")


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _db(kw: dict) -> Any:
    return open_db(kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"), kw.pop("contract_path"))


def _query(kw: dict, fn: Any) -> Any:
    """Open the database from the common options, answer one ops question, close."""
    db = _db(kw)
    try:
        return fn(db)
    finally:
        db.close()


# -- status ---------------------------------------------------------------------------------------

@cli.command("status")
@db_options
@FORMAT
@click.option("--watch", type=float, default=None, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
@click.option("--recent-minutes", type=click.IntRange(min=1), default=5, show_default=True, help="Window for the current rate.")
@handle_errors
def status_cmd(fmt: str, watch: float | None, recent_minutes: int, **kw: Any) -> None:
    """Progress: source rows, success, failed, pending, per instance and session, rate, ETA."""
    db = _db(kw)
    try:
        while True:
            data = ops.status(db, recent_minutes)
            if fmt == "json":
                _json(data)
            else:
                if watch:
                    click.clear()
                _print_status(data)
            if not watch:
                break
            time.sleep(watch)
    except KeyboardInterrupt:
        pass
    finally:
        db.close()


def _print_status(d: dict) -> None:
    eta = "-" if d["eta_minutes"] is None else (f"{d['eta_minutes']:.0f} min" if d["eta_minutes"] < 120 else f"{d['eta_minutes'] / 60:.1f} h")
    click.echo(tabulate([["source rows", d["source_rows"]], ["success", d["success"]], ["failed", d["failed"]],
                         ["pending (never attempted)", d["pending"]], ["done", f"{d['done_pct']}%"],
                         ["rate (recent)", f"{d['rate_per_min_recent']}/min"], ["ETA", eta]], tablefmt="simple"))
    if d["sessions"]:
        click.echo("\nsessions (last 24 h)")
        click.echo(tabulate([[s["session"], s["instance"], s["processed"], s["success"], s["failed"], s["rate_per_min"],
                              s["avg_rate_per_min"], s["last_activity"], s["idle_s"]] for s in d["sessions"]],
                            headers=["session", "instance", "processed", "ok", "failed", "rate/min", "avg/min",
                                     "last activity (UTC)", "idle s"], tablefmt="simple"))
    if d["failures"]:
        click.echo("\nfailures by stage")
        click.echo(tabulate([[f["stage"], f["error_class"], f["count"]] for f in d["failures"]],
                            headers=["stage", "error class", "rows"], tablefmt="simple"))


# -- failures -------------------------------------------------------------------------------------

@cli.command("failures")
@db_options
@FORMAT
@click.option("--stage", type=click.Choice(["read", "parse", "validate", "map", "insert"]), default=None)
@click.option("--app-id", type=int, default=None, help="One application's full history of attempts and events.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write every failed application (app_id, stage, error_class, reason) to this CSV file.")
@handle_errors
def failures_cmd(fmt: str, stage: str | None, app_id: int | None, csv_file: str | None, **kw: Any) -> None:
    """Failures grouped by reason with counts and sample app_ids, or one application's history."""
    db = _db(kw)
    try:
        if app_id is not None:
            h = ops.history(db, app_id)
            if fmt == "json":
                _json(h)
                return
            click.echo(f"application {app_id}: {'in' if h['in_source'] else 'NOT in'} the source table, "
                       f"{len(h['attempts'])} attempt(s)")
            if h["attempts"]:
                click.echo(tabulate([[a["attempt"], a["status"], a["stage"], a["error_class"], (a["reason"] or "")[:90],
                                      a["logged_at"], a["contract"]] for a in h["attempts"]],
                                    headers=["attempt", "status", "stage", "class", "reason", "logged at", "contract"],
                                    tablefmt="simple"))
            if h["events"]:
                click.echo(f"\ndata-quality events ({len(h['events'])})")
                click.echo(tabulate([[e["table"], e["column"], e["event_type"], (e["raw_value"] or "")[:30], e["locator"]]
                                     for e in h["events"]], headers=["table", "column", "event", "raw", "where"],
                                    tablefmt="simple"))
            return
        groups = ops.failures(db, stage)
        if csv_file:
            rows = ops.failed_rows(db, stage)
            with open(csv_file, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["app_id", "attempt", "stage", "error_class", "reason", "logged_at"])
                w.writerows(rows)
        if fmt == "json":
            _json(groups)
            return
        total = sum(g["count"] for g in groups)
        click.echo(f"{total} failed application(s) in {len(groups)} group(s)" + (f"; all written to {csv_file}" if csv_file else ""))
        if groups:
            click.echo(tabulate([[g["count"], g["stage"], g["error_class"], g["reason"][:80],
                                  " ".join(map(str, g["sample_app_ids"]))] for g in groups],
                                headers=["apps", "stage", "class", "reason (first of group)", "sample app_ids"],
                                tablefmt="simple"))
    finally:
        db.close()


# -- reprocess ------------------------------------------------------------------------------------

def _parse_time(v: str) -> _dt.datetime:
    try:
        d = _dt.datetime.fromisoformat(v)
    except ValueError:
        raise ConfigError(f"--since {v!r}: use ISO time, e.g. 2026-11-22T13:00 (UTC)") from None
    if d.tzinfo is not None:
        d = d.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return d


@cli.command("reprocess")
@click.argument("app_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Every application whose last attempt failed.")
@click.option("--since", default=None, help="Every application logged at or after this UTC time (ISO).")
@click.option("--dry-run", is_flag=True, help="List what would be removed and reprocessed; change nothing.")
@FORMAT
@run_options
@handle_errors
def reprocess_cmd(app_ids: tuple[int, ...], failed: bool, since: str | None, dry_run: bool, fmt: str, **kw: Any) -> None:
    """After a contract fix: remove applications' rows, events and log rows in one transaction,
    then process them again."""
    if not app_ids and not failed and not since:
        raise ConfigError("name applications: APP_ID..., --failed or --since TIME")
    db = open_db(kw["db_url"], kw["server"], kw["database"], kw["username"], kw["contract_path"])
    try:
        ids = ops.select_for_reprocess(db, list(app_ids), failed, _parse_time(since) if since else None)
        plan = ops.reprocess_plan(db, ids) if ids else {}
        if dry_run or not ids:
            out = {"applications": len(ids), "app_ids": ids[:1000], "rows_to_remove": plan, "dry_run": dry_run}
            if fmt == "json":
                _json(out)
            else:
                click.echo(f"{'would reprocess' if dry_run else 'nothing to reprocess:'} {len(ids)} application(s): "
                           f"{' '.join(map(str, ids[:30]))}{' ...' if len(ids) > 30 else ''}")
                if plan:
                    click.echo(tabulate(sorted(plan.items()), headers=["table", "rows to remove"], tablefmt="simple"))
            return
        deleted = ops.delete_applications(db, ids)
        click.echo(f"removed {sum(deleted.values())} rows of {len(ids)} application(s); processing them again")
    finally:
        db.close()
    kw["only_ids"] = ids
    summary = execute_run(kw)
    sys.exit(summary.exit_code)


# -- reconcile and quality ------------------------------------------------------------------------

@cli.command("reconcile")
@db_options
@FORMAT
@handle_errors
def reconcile_cmd(fmt: str, **kw: Any) -> None:
    """Source vs processing_log vs target tables; exit 1 on any inconsistency."""
    r = _query(kw, ops.reconcile)
    if fmt == "json":
        _json(r)
    else:
        click.echo(tabulate([[c["check"], c["count"], "yes" if c["inconsistency"] and c["count"] else "",
                              " ".join(map(str, c["sample_app_ids"]))] for c in r["checks"]],
                            headers=["check", "count", "inconsistent", "sample app_ids"], tablefmt="simple"))
        click.echo("consistent" if r["consistent"] else "INCONSISTENT: see the rows marked above")
    sys.exit(0 if r["consistent"] else 1)


@cli.command("quality")
@db_options
@FORMAT
@handle_errors
def quality_cmd(fmt: str, **kw: Any) -> None:
    """Data-quality events by table, column and reason, with examples; defaults and sparse rows."""
    q = _query(kw, ops.quality)
    if fmt == "json":
        _json(q)
        return
    click.echo(tabulate([[e["table"], e["column"], e["event_type"], e["events"], e["applications"], " | ".join(e["examples"])]
                         for e in q["events"]], headers=["table", "column", "event", "events", "apps", "example raw values"],
                        tablefmt="simple"))
    if q["sentinels"]:
        click.echo("\ndeclared defaults in the data")
        click.echo(tabulate([[s["table"], s["column"], s["default"], s["rows"]] for s in q["sentinels"]],
                            headers=["table", "column", "default", "rows"], tablefmt="simple"))
    click.echo("\nsparse rows (at most one data value)")
    click.echo(tabulate([[s["table"], s["rows"], s["rows_with_at_most_one_value"], s["data_columns"]] for s in q["sparse"]],
                        headers=["table", "rows", "sparse", "data columns"], tablefmt="simple"))


# -- launch ---------------------------------------------------------------------------------------

@cli.command("launch", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--instances", type=click.IntRange(min=1), required=True, envvar=ENV + "INSTANCES",
              help="How many partitioned instances to start.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def launch_cmd(instances: int, run_args: tuple[str, ...]) -> None:
    """Start N partitioned `run` instances as subprocesses, prefix their output, sum them up.
    Ctrl-C (or SIGTERM) stops them all cleanly."""
    for bad in ("--instance-id", "--instance-count"):
        if any(a == bad or a.startswith(bad + "=") for a in run_args):
            raise ConfigError(f"launch sets {bad} itself; do not pass it")
    env = dict(os.environ, XML_EXTRACTOR_LAUNCHED="1")
    procs = []
    for i in range(instances):
        cmd = [sys.executable, "-m", "xml_extractor.cli", "run", "--no-progress", *run_args,
               "--instance-id", str(i), "--instance-count", str(instances)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True))
    summaries: dict[int, dict] = {}

    def pump(i: int, p: subprocess.Popen) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("SUMMARY "):
                summaries[i] = json.loads(line[8:])
                continue
            click.echo(f"[{i}/{instances}] {line.rstrip()}")
    threads = [threading.Thread(target=pump, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    stopping = {"n": 0}

    def forward(signum: int, frame: Any) -> None:
        stopping["n"] += 1
        click.echo(f"[launch] {signal.Signals(signum).name}: stopping all instances"
                   + (" now" if stopping["n"] > 1 else " after their in-flight batches"), err=True)
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM if stopping["n"] == 1 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
        for t in threads:
            t.join(timeout=5)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    rows = []
    for i in range(instances):
        s = summaries.get(i, {})
        rows.append([i, codes[i], s.get("selected", "-"), s.get("success", "-"), s.get("failed", "-"), s.get("skipped", "-"),
                     s.get("apps_per_minute", "-"), s.get("elapsed_s", "-")])
    tot = lambda k: sum(int(summaries[i].get(k, 0)) for i in summaries)  # noqa: E731
    wall = max((float(summaries[i].get("elapsed_s", 0)) for i in summaries), default=0.0)
    rows.append(["all", max(codes), tot("selected"), tot("success"), tot("failed"), tot("skipped"),
                 round((tot("success") + tot("failed")) / max(wall, 1e-9) * 60, 1), wall])
    click.echo(tabulate(rows, headers=["instance", "exit", "selected", "success", "failed", "skipped", "apps/min", "elapsed s"],
                        tablefmt="simple"))
    sys.exit(130 if stopping["n"] else (2 if 2 in codes else max(codes)))


# -- bench ----------------------------------------------------------------------------------------

@cli.command("bench")
@click.option("--db", "db_url", envvar=ENV + "BENCH_DB", show_envvar=True, default="sqlite:///.cache/bench.db",
              show_default=True, help="Where the corpus and the runs live (its target tables are emptied between runs).")
@click.option("--contract", "contract_path", envvar=ENV + "CONTRACT", default=None)
@click.option("--count", type=click.IntRange(min=10), default=5000, show_default=True, help="Documents in the corpus.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="End-to-end runs (median, min, max).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=20261122, show_default=True)
@click.option("--metrics-dir", default="metrics", show_default=True)
@FORMAT
@handle_errors
def bench_cmd(db_url: str, contract_path: str | None, count: int, runs: int, workers: int, batch_size: int, seed: int,
              metrics_dir: str, fmt: str) -> None:
    """Full-parse ceiling, map-only rate and end-to-end apps/minute on one corpus, in one run."""
    from dataclasses import asdict

    from .bench import bench
    if db_url.startswith("sqlite:///.cache/"):
        os.makedirs(".cache", exist_ok=True)
    r = bench(db_url, count, runs, workers, batch_size, contract_path, seed, metrics_dir,
              echo=(lambda m: click.echo(m, err=True)))
    if fmt == "json":
        _json(asdict(r))
        return
    click.echo(tabulate([
        ["database", r.database], ["documents (median KB)", f"{r.documents} ({r.median_kb})"],
        ["processes", r.workers], ["full-parse ceiling", f"{r.ceiling_docs_per_s:.0f} docs/s = {r.ceiling_docs_per_s * 60:.0f}/min"],
        ["map only", f"{r.map_only_docs_per_s:.0f} docs/s ({r.ratio_map_to_ceiling:.2f} x ceiling)"],
        ["end to end (median)", f"{r.e2e_median:.0f} apps/min ({r.ratio_e2e_to_ceiling:.2f} x ceiling)"],
        ["end to end (min..max)", f"{r.e2e_min:.0f} .. {r.e2e_max:.0f} apps/min over {r.runs} runs"],
        ["time per app by stage (ms, summed over workers)", ", ".join(f"{k} {v}" for k, v in r.stage_ms_per_app.items())],
        ["peak worker memory", f"{r.peak_worker_rss_mb} MB"],
    ], tablefmt="simple"))
