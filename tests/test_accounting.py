"""The nine accounting faults of issue 10, each reproduced the way it was found: real processes,
real signals to the process group, real SQLite and PostgreSQL. Every test here failed on the code
of commit e646fb5."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import (
    assert_exactly_once,
    cli,
    cli_in_process,
    engine,
    expected_failures,
    log_rows,
    open_db,
    popen,
    subprocess_dir,
)
from procs import children, db_rows, kill_group, wait_until

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

SEED, SHARE = 7, 0.05


def prepare(url: str, count: int = 120, share: float = SHARE) -> None:
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--faulty-share",
        str(share),
        "--seed",
        str(SEED),
        check=True,
    )


def logged(url: str) -> int:
    return int(db_rows(url, lambda db: f"SELECT COUNT(*) FROM {db.names['log']}")[0][0])


def pending(url: str) -> int:
    """Pending by the one definition (count_pending over everything)."""
    db = open_db(url)
    try:
        return int(
            db.scalar(
                db.sql("count_pending"),
                {"id_lo": -(2**63), "id_hi": 2**63 - 1, "modulus": 1, "remainder": 0},
            )
        )
    finally:
        db.close()


def crashed_rows(url: str) -> list:
    return [r for r in log_rows(url) if r[4] == "WorkerCrashed"]


def summary_row(stdout: str, name: str) -> str:
    for line in stdout.splitlines():
        if line.startswith(name + " "):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} row in:\n{stdout}")


def run_args(url: str, *extra: str) -> list[str]:
    return ["run", "--db", url, "--no-progress", *extra]


SLOW = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.3"}


# -- 1. a SIGTERM to the process group writes no false failures ------------------------------------


@pytest.mark.posix
def test_1_sigterm_to_launch_writes_no_worker_crash_and_the_same_launch_finishes(db_url):
    prepare(db_url)
    launch = ["launch", "--instances", "2", "--db", db_url, "--workers", "1", "--batch-size", "1"]
    p = popen(*launch, env=SLOW)
    wait_until(lambda: logged(db_url) >= 6, what="some progress")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    assert crashed_rows(db_url) == []
    assert "worker restarts" not in out
    assert logged(db_url) < 120
    again = cli(*launch, timeout=300)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    assert assert_exactly_once(db_url)["apps"] == 120
    assert crashed_rows(db_url) == []


@pytest.mark.posix
def test_1_sigterm_to_the_process_group_of_a_run(db_url):
    prepare(db_url)
    p = popen(*run_args(db_url, "--workers", "2", "--batch-size", "2"), env=SLOW)
    wait_until(lambda: logged(db_url) >= 4, what="some progress")
    os.killpg(p.pid, signal.SIGTERM)  # what systemd's default stop does: every process of the group
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    assert "worker restarts" not in out and crashed_rows(db_url) == []
    failed = {r[0] for r in log_rows(db_url) if r[1] == "failed"}
    assert failed <= set(
        expected_failures(SEED, SHARE, 120)
    )  # nothing but the documents' own faults
    cli(*run_args(db_url), check=False, timeout=300)
    assert_exactly_once(db_url)


# -- 2 and 6. queue mode supports everything partition mode does -------------------------------------


def queue_run(url: str, *extra: str, env: dict | None = None) -> str:
    p = cli_in_process(
        *run_args(url, "--workers", "1", "--mode", "queue", "--chunk-size", "50", *extra),
        env=env,
        timeout=300,
    )
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return p.stdout


def test_2_reprocess_failed_and_retry_failed_in_queue_mode(db_url):
    prepare(db_url)
    queue_run(db_url)
    failed = sorted({r[0] for r in log_rows(db_url) if r[1] == "failed"})
    assert failed and pending(db_url) == 0
    out = queue_run(
        db_url, "--retry-failed"
    )  # a retry in queue mode selects them, as partition mode does
    assert int(summary_row(out, "selected")) == len(failed)
    attempts = {r[0]: r[3] for r in log_rows(db_url)}
    assert all(attempts[a] == 2 for a in failed)
    p = cli_in_process(
        "reprocess",
        "--failed",
        "--db",
        db_url,
        "--no-progress",
        "--mode",
        "queue",
        "--chunk-size",
        "50",
        timeout=300,
    )
    assert p.returncode in (0, 1), p.stdout + p.stderr
    assert int(summary_row(p.stdout, "selected")) == len(failed)
    assert pending(db_url) == 0
    assert_exactly_once(db_url)


def test_6_rows_loaded_later_into_a_done_chunk_are_processed(db_url):
    prepare(db_url, count=60)
    queue_run(db_url)
    assert pending(db_url) == 0
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "10",
        "--start-id",
        "61",
        "--seed",
        "3",
        check=True,
    )
    assert pending(db_url) == 10  # inside chunk 50..99, already marked done
    queue_run(db_url)
    assert pending(db_url) == 0
    assert_exactly_once(db_url)


def test_6_a_run_cut_short_by_app_id_end_leaves_nothing_behind(db_url):
    prepare(db_url, count=120)
    queue_run(db_url, "--app-id-end", "30")
    assert pending(db_url) == 90
    done = db_rows(
        db_url, lambda db: f"SELECT chunk_id FROM {db.names['queue']} WHERE done_at IS NOT NULL"
    )
    assert done == []  # chunk 0..49 still holds 31..49: not finished
    queue_run(db_url)
    assert pending(db_url) == 0
    assert_exactly_once(db_url)


def test_6_reprocess_ids_in_queue_mode_also_from_the_environment(db_url):
    prepare(db_url, count=60, share=0.0)
    queue_run(db_url)
    before = {r[0]: r[3] for r in log_rows(db_url)}
    p = cli_in_process(
        "reprocess",
        "41",
        "42",
        "43",
        "--db",
        db_url,
        "--no-progress",
        "--mode",
        "queue",
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert int(summary_row(p.stdout, "selected")) == 3
    p = cli_in_process(
        "reprocess",
        "44",
        "--db",
        db_url,
        "--no-progress",
        env={"XML_EXTRACTOR_MODE": "queue"},
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert int(summary_row(p.stdout, "selected")) == 1
    after = {r[0]: r[3] for r in log_rows(db_url)}
    assert all(after[a] == before[a] + 1 for a in (41, 42, 43, 44))
    assert pending(db_url) == 0
    assert_exactly_once(db_url)


# -- 3. a programming error in the write path stops the run ------------------------------------------


def test_3_a_bug_in_the_write_path_stops_the_run_with_exit_3_and_no_failed_rows(db_url):
    prepare(db_url, count=60, share=0.0)
    env = {"XML_EXTRACTOR_FAULTS": "fail_app=20,fail_after_table=app_base,bug=1"}
    p = cli(*run_args(db_url, "--workers", "1", "--batch-size", "5"), env=env, timeout=300)
    assert p.returncode == 3, p.stdout + p.stderr
    assert [r for r in log_rows(db_url) if r[1] == "failed"] == []
    assert logged(db_url) < 60  # it did not go on through the whole table
    # the reason once, on stderr; the summary's outcome row names the kind of stop
    assert "TypeError" in p.stderr and "TypeError" not in p.stdout, p.stdout + p.stderr
    assert summary_row(p.stdout, "outcome").startswith("stopped (unexpected error), exit code 3")
    log_file = subprocess_dir() / summary_row(p.stdout, "log")
    text = log_file.read_text()
    assert "Traceback" in text and "TypeError: injected bug" in text
    cli(*run_args(db_url), check=True, timeout=300)  # without the bug, everything is processed once
    assert_exactly_once(db_url)


# -- 4 and 5. status counts final failures; no schema = exit 2 ------------------------------------------


def test_4_status_lists_only_final_failures(db_url):
    prepare(db_url, count=20, share=0.0)
    env = {"XML_EXTRACTOR_FAULTS": "fail_app=5,fail_after_table=app_base"}
    assert cli(*run_args(db_url), env=env, timeout=300).returncode == 1
    p = cli("status", "--db", db_url, "--format", "json", check=True)
    assert json.loads(p.stdout)["failed"] == 1 and json.loads(p.stdout)["failures"]
    assert cli(*run_args(db_url, "--retry-failed"), timeout=300).returncode == 0
    s = json.loads(cli("status", "--db", db_url, "--format", "json", check=True).stdout)
    assert s["failed"] == 0 and s["failures"] == []


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["reconcile"],
        ["failures"],
        ["quality"],
        ["run", "--no-progress"],
        ["reprocess", "--failed"],
        ["profile"],
    ],
    ids=lambda c: c[0],
)
def test_5_no_schema_is_a_usage_error_not_an_inconsistency(db_url, command):
    """A database without the schema (an empty one of each engine: the engine's own missing-table
    error): exit 2 naming init-db, no traceback, and nothing created behind the operator's back.
    (A SQLite file that does not exist is test_loading's: no file is created.)"""
    if (
        engine(db_url) == "sqlite"
    ):  # an existing SQLite database, empty like the servers' fresh ones
        import sqlite3

        sqlite3.connect(db_url[len("sqlite:///") :]).execute("VACUUM").connection.close()
    before = cli_in_process("init-db", "--db", db_url, "--dry-run", check=True).stdout
    p = cli_in_process(*command, "--db", db_url)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "init-db" in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert cli_in_process("init-db", "--db", db_url, "--dry-run", check=True).stdout == before


# -- 7. every chunk the process holds is renewed --------------------------------------------------------


def test_7_no_chunk_is_claimed_twice_while_its_owner_lives(db_url):
    # one batch per chunk, ~2 s a batch: the chunks claimed ahead wait inside the process (the
    # selector's read-ahead) longer than the 5 s lease; only renewal keeps them
    if db_url.startswith("sqlite"):
        pytest.skip(
            "SQLite serialises writers: the injected 2 s open write transactions of two instances starve "
            "any other writer (renewals included) for seconds; PostgreSQL renews under row locks"
        )
    prepare(db_url, count=48, share=0.0)
    slow = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=2.0"}
    args = run_args(
        db_url,
        "--workers",
        "1",
        "--batch-size",
        "4",
        "--mode",
        "queue",
        "--chunk-size",
        "4",
        "--lease-seconds",
        "5",
    )
    procs = [popen(*args, env=slow) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert summary_row(out, "skipped (done elsewhere)") == "0"
    claims = db_rows(
        db_url, lambda db: f"SELECT chunk_id, claims FROM {db.names['queue']} ORDER BY chunk_id"
    )
    assert claims and all(c == 1 for _, c in claims), claims
    assert_exactly_once(db_url)


# -- 8. instances die with their launcher ----------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.posix
@pytest.mark.parametrize(
    ("sig", "ignoring"),
    [
        (getattr(signal, "SIGKILL", None), ()),
        (getattr(signal, "SIGHUP", None), ()),
        # launch started with SIGINT and SIGTERM ignored (trap "" INT TERM): its instances still stop
        (getattr(signal, "SIGHUP", None), (signal.SIGINT, getattr(signal, "SIGTERM", None))),
    ],
    ids=["kill", "hangup", "hangup-int-term-ignored"],
)  # importable on Windows
def test_8_killing_or_hanging_up_launch_stops_its_instances(db_url, sig, ignoring):
    prepare(db_url)
    p = popen(
        "launch",
        "--instances",
        "2",
        "--db",
        db_url,
        "--workers",
        "1",
        "--batch-size",
        "2",
        env=SLOW,
        ignoring=ignoring,
    )
    try:
        wait_until(lambda: logged(db_url) >= 4, what="some progress")
        instances = children(p.pid)
        assert len(instances) == 2
        os.kill(p.pid, sig)
        p.communicate(timeout=120)
        if sig == signal.SIGHUP:
            assert p.returncode == 130
        wait_until(
            lambda: not any(alive(i) for i in instances), timeout=120, what="the instances to stop"
        )
        assert logged(db_url) < 120
        assert crashed_rows(db_url) == []
    finally:
        kill_group(p)
    again = cli("launch", "--instances", "2", "--db", db_url, timeout=300)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    assert_exactly_once(db_url)


# -- 9. 'skipped' only with a committed log row; a chunk is finished only with none pending -------------


def test_9_a_chunk_with_pending_applications_is_released_not_finished(db_url):
    import threading

    from xml_extractor.processing.context import RunContext
    from xml_extractor.processing.selection import WorkQueue

    prepare(db_url, count=30, share=0.0)
    db = open_db(db_url)
    try:
        ctx = RunContext(url=db_url, mode="queue", chunk_size=100)
        wq = WorkQueue(db, ctx)
        assert wq.prepare(threading.Event()) == 1
        claim = wq.claim(-(2**63))
        assert claim is not None and claim[1:] == (0, 99)
        assert wq.finish(claim[0]) is False  # 30 pending applications: released, not done
        row = db.autocommit_query(f"SELECT owner, done_at FROM {db.names['queue']}")
        assert row == [(None, None)]
    finally:
        db.close()


def test_9_skipped_is_counted_only_with_a_committed_log_row(db_url):
    from xml_extractor.processing.worker import _committed

    prepare(db_url, count=10, share=0.0)
    cli_in_process(*run_args(db_url, "--limit", "4"), check=True)
    db = open_db(db_url)
    try:
        logged_ids = [
            int(r[0]) for r in db.autocommit_query(f"SELECT app_id FROM {db.names['log']}")
        ]
        assert len(logged_ids) == 4
        others = [i for i in range(1, 11) if i not in logged_ids]
        assert _committed(db, logged_ids[:2] + others[:3]) == 2
    finally:
        db.close()
