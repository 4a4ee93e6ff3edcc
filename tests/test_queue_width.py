"""Queue mode with different --chunk-size values in successive and concurrent runs (red-team report,
4 of 4): the work queue keeps the width of the run that first filled it and every later or
concurrent run adopts it, so no pending application is left behind and none is processed twice.

On the code before this fix a run with another width looked its chunks up by id at its own width
(chunk ids are app_id // width): `run --chunk-size 50` then `run` (1000) selected 0 of 100 new
rows and exited 0; `reprocess --since ... --chunk-size 100` after a 50-wide run redid 199 of 300.
Real processes, real SQLite and PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import datetime

import pytest
from conftest import assert_exactly_once, cli, log_rows, open_db, popen, popen_held, release
from procs import Streams, db_rows, kill_group, wait_until
from test_accounting import logged, pending, summary_row

from xml_extractor.processing.selection import chunk_width

WIDTH_NOTE = "ids wide (fixed by the run that first filled it)"


def widths(url: str) -> set[int]:
    """The grid widths of the chunks in the work queue (one, when the queue is consistent)."""
    rows = db_rows(url, lambda db: f"SELECT chunk_id, lo, hi FROM {db.names['queue']}")
    return {chunk_width(int(k), int(lo), int(hi)) for k, lo, hi in rows}


def open_requests(url: str) -> int:
    return int(db_rows(url, lambda db: f"SELECT COUNT(*) FROM {db.names['requests']}")[0][0])


def mock(url: str, count: int, start: int = 1) -> None:
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--start-id",
        str(start),
        "--faulty-share",
        "0",
        check=True,
    )


def finished(p) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            kill_group(p)
            p.wait()
    return p.returncode, out, err


@pytest.mark.slow
def test_a_later_run_with_another_chunk_size_processes_the_new_rows(db_url):
    # the report's repro, command for command
    mock(db_url, 300)
    first = cli("run", "--db", db_url, "--mode", "queue", "--chunk-size", "50", "--no-progress")
    assert first.returncode == 0 and summary_row(first.stdout, "selected") == "300", (
        first.stdout + first.stderr
    )
    mock(db_url, 100, start=301)
    second = cli(
        "run", "--db", db_url, "--mode", "queue", "--no-progress"
    )  # default --chunk-size 1000
    assert second.returncode == 0, second.stdout + second.stderr
    assert summary_row(second.stdout, "selected") == "100", second.stdout
    assert second.stderr.count(WIDTH_NOTE) == 1 and "50 ids wide" in second.stderr, second.stderr
    rec = cli("reconcile", "--db", db_url)
    assert rec.returncode == 0 and rec.stdout.strip().splitlines()[-1].startswith("consistent"), (
        rec.stdout
    )
    assert assert_exactly_once(db_url) == {"apps": 400, "success": 400, "failed": 0}
    assert widths(db_url) == {50}


@pytest.mark.slow
def test_reprocess_in_queue_mode_with_another_chunk_size_redoes_everything_requested(db_url):
    mock(db_url, 300)
    cli("run", "--db", db_url, "--mode", "queue", "--chunk-size", "50", "--no-progress", check=True)
    p = cli(
        "reprocess",
        "--since",
        "2000-01-01T00:00",
        "--db",
        db_url,
        "--mode",
        "queue",
        "--chunk-size",
        "100",
        "--no-progress",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary_row(p.stdout, "selected") == "300", p.stdout
    assert open_requests(db_url) == 0
    assert {(a, s, t) for a, s, _, t, _, _ in log_rows(db_url)} == {
        (a, "success", 2) for a in range(1, 301)
    }
    again = cli(
        "reprocess",
        "--since",
        "2000-01-01T00:00",
        "--db",
        db_url,
        "--mode",
        "queue",
        "--chunk-size",
        "100",
        "--no-progress",
        "--dry-run",
    )
    assert "resuming" not in again.stdout + again.stderr
    assert widths(db_url) == {50}


@pytest.mark.slow
def test_a_run_with_another_width_joining_a_running_one_takes_the_rows_loaded_since(db_url):
    # A (50 wide, slowed) has filled the queue and is working when 100 rows arrive and B (1000 wide)
    # starts: B must queue those rows in A's grid (before the fix its chunk 0 was taken to be A's
    # [0, 49] and rows 301..400 stayed pending while both exited 0).
    mock(db_url, 300)
    slow = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.2"}
    a = popen(
        "run",
        "--db",
        db_url,
        "--mode",
        "queue",
        "--chunk-size",
        "50",
        "--workers",
        "1",
        "--batch-size",
        "10",
        "--no-progress",
        env=slow,
    )
    try:
        wait_until(
            lambda: a.poll() is not None or logged(db_url) >= 10, what="the first run working"
        )
        assert a.poll() is None, (
            "the first run ended before the second started: nothing concurrent tested"
        )
        mock(db_url, 100, start=301)
        b = popen(
            "run",
            "--db",
            db_url,
            "--mode",
            "queue",
            "--chunk-size",
            "1000",
            "--workers",
            "1",
            "--batch-size",
            "10",
            "--no-progress",
        )
        code_b, out_b, err_b = finished(b)
    finally:
        code_a, out_a, err_a = finished(a)
    assert code_a == 0 and code_b == 0, out_a + err_a + out_b + err_b
    assert pending(db_url) == 0
    assert WIDTH_NOTE in err_b and "50 ids wide" in err_b, err_b
    assert assert_exactly_once(db_url) == {"apps": 400, "success": 400, "failed": 0}
    assert {t for _, _, _, t, _, _ in log_rows(db_url)} == {1}
    assert (
        summary_row(out_a, "skipped (done elsewhere)")
        == summary_row(out_b, "skipped (done elsewhere)")
        == "0"
    )
    assert widths(db_url) == {50}


def _lock_waiters(url: str) -> int:
    """Sessions of the test database waiting for a lock (the second run at the queue lock):
    PostgreSQL's ungranted pg_locks; SQL Server's requests in a lock wait (sp_getapplock: LCK_M_X)."""
    db = open_db(url)
    try:
        if db.dialect.name == "mssql":
            return int(
                db.autocommit_query(
                    "SELECT COUNT(*) FROM sys.dm_exec_requests "
                    "WHERE database_id = DB_ID() AND wait_type LIKE N'LCK[_]M[_]%'"
                )[0][0]
            )
        return int(
            db.autocommit_query(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"
            )[0][0]
        )
    finally:
        db.close()


@pytest.mark.slow
def test_two_runs_started_at_once_with_different_widths_share_one_grid(db_url, tmp_path):
    # A holds the queue lock with its width seeded but not committed; B (another width) starts and,
    # on PostgreSQL, is seen waiting for a lock before A goes on. Without the lock B would find the
    # queue empty and seed its own grid: chunk ids meaning other ranges, work left or doubled.
    mock(db_url, 400)
    folder = tmp_path / "hold"
    point = "queue_width_locked"
    common = ("--mode", "queue", "--workers", "1", "--batch-size", "10", "--no-progress")
    a = popen_held(point, folder, "run", "--db", db_url, "--chunk-size", "7", *common)
    b = None
    try:
        b = popen("run", "--db", db_url, "--chunk-size", "50", *common)
        if not db_url.startswith("sqlite"):
            wait_until(
                lambda: b.poll() is not None or _lock_waiters(db_url) > 0,
                what="the second run waiting",
            )
        release(folder, point)
        code_b, out_b, err_b = finished(b)
    finally:
        release(folder, point)
        code_a, out_a, err_a = finished(a)
        if b is not None and b.poll() is None:
            finished(b)
    assert code_a == 0 and code_b == 0, out_a + err_a + out_b + err_b
    assert widths(db_url) == {7}
    assert pending(db_url) == 0
    assert "7 ids wide" in err_b and WIDTH_NOTE not in err_a, err_a + err_b
    assert assert_exactly_once(db_url) == {"apps": 400, "success": 400, "failed": 0}
    assert {t for _, _, _, t, _, _ in log_rows(db_url)} == {1}
    assert (
        summary_row(out_a, "skipped (done elsewhere)")
        == summary_row(out_b, "skipped (done elsewhere)")
        == "0"
    )


def test_chunk_width_inverts_chunk_bounds_up_to_the_edges_of_the_64_bit_range():
    from xml_extractor.processing.selection import chunk_bounds

    lo_end, hi_end = -(2**63) + 1, 2**63 - 1  # the ids selection covers (processing/partition.py)
    for w in (1, 7, 50, 1000, 3**20, 2**62 + 1, 2**63 - 1, 2**63, 2**64, 10**30):
        for app_id in {
            max(lo_end, min(hi_end, a))
            for a in (lo_end, lo_end + 1, -w - 1, -1, 0, 1, w, hi_end - 1, hi_end)
        }:
            k, lo, hi = chunk_bounds(app_id, w)
            # the width read back cuts the space into the same chunks
            assert chunk_bounds(app_id, chunk_width(k, lo, hi)) == (k, lo, hi), (w, app_id)
            assert chunk_bounds(lo, chunk_width(k, lo, hi)) == (k, lo, hi), (w, app_id)


@pytest.mark.slow
def test_chunks_of_other_widths_left_by_an_earlier_version_are_replaced_unless_held(db_url):
    # the queue an earlier version could leave: a 1000-wide chunk 0 (done), 50-wide chunks done and
    # free, a 50-wide chunk at the top end, and a 50-wide chunk another instance holds right now
    import threading

    from xml_extractor.processing.context import RunContext
    from xml_extractor.processing.selection import WorkQueue, chunk_bounds

    mock(db_url, 300)
    db = open_db(db_url)
    try:
        q = db.names["queue"]
        seed = db.sql("queue_seed")
        top = chunk_bounds(2**63 - 1, 50)
        for k, lo, hi in [(0, 0, 999), (6, 300, 349), (7, 350, 399), top, (9, 450, 499)]:
            db.begin()
            db.execute(seed, {"chunk_id": k, "lo": lo, "hi": hi}).close()
            db.commit()
        other = WorkQueue(
            db, RunContext(url=db_url, mode="queue", chunk_size=50, lease_seconds=600)
        )
        assert other.claim(8) is not None  # chunk 9, under a live lease
        db.begin()
        db.execute(
            f"UPDATE {q} SET done_at = {db.dialect.now_sql} WHERE chunk_id IN (0, 6, 7)"
        ).close()
        db.commit()
        wq = WorkQueue(db, RunContext(url=db_url, mode="queue", chunk_size=50))
        assert wq.prepare(threading.Event()) == 1
        assert wq.width == 1000  # the lowest chunk's width
        rows = db.autocommit_query(f"SELECT chunk_id, lo, hi, done_at FROM {q} ORDER BY chunk_id")
        assert [tuple(int(v) for v in r[:3]) for r in rows] == [(0, 0, 999), (9, 450, 499)]
        assert rows[0][3] is None  # reopened: it holds the 300 pending applications
    finally:
        db.close()


@pytest.mark.posix
@pytest.mark.slow
def test_a_run_after_a_killed_queue_instance_says_it_waits_for_the_lease_and_then_finishes(db_url):
    """SIGKILL leaves the instance's chunks under a live lease: the next run waited it out in
    silence (up to --lease-seconds). It says what it waits for, takes the chunks over, finishes.
    The lease (30 s) outlives the next run's start even on a loaded machine, where starting a
    Python process takes seconds: the test waits for the lease, not for a race. Once the run has
    said it waits, the test ends the lease in the database (what 30 s would do: the takeover of an
    expired lease by the clock is test_concurrency's queue takeover, with a 5 s lease)."""
    mock(db_url, 200)
    args = [
        "run",
        "--db",
        db_url,
        "--mode",
        "queue",
        "--chunk-size",
        "50",
        "--lease-seconds",
        "30",
        "--workers",
        "1",
        "--batch-size",
        "5",
        "--no-progress",
    ]
    victim = popen(*args, env={"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.2"})
    try:
        wait_until(lambda: logged(db_url) >= 10, what="the first instance's first commits")
    finally:
        kill_group(victim)
        victim.wait()
    assert logged(db_url) < 200
    held_sql = "FROM {queue} WHERE owner IS NOT NULL AND done_at IS NULL"
    held = db_rows(
        db_url, lambda db: "SELECT COUNT(*) " + held_sql.format(queue=db.names["queue"])
    )[0][0]
    assert held >= 1  # the chunk it was working on, and the next one if it had read ahead
    again = Streams(popen(*args))
    try:
        again.wait_for(f"work queue: waiting for {held} chunk(s) other instances hold")
        assert (
            logged(db_url) < 200
        )  # it waits: nothing of the held chunks was taken before the lease ended
        db = open_db(db_url)
        try:  # the lease ends (the dead instance's last renewal + 30 s, brought forward)
            with db.transaction():
                db.execute(
                    f"UPDATE {db.names['queue']} SET lease_until = ? WHERE owner IS NOT NULL AND done_at IS NULL",
                    [datetime.datetime(2000, 1, 1)],
                )
        finally:
            db.close()
        rc, out, err = again.finish()
    finally:
        kill_group(again.proc)
    assert rc == 0, out + err
    assert "--lease-seconds 30" in err
    assert assert_exactly_once(db_url) == {"apps": 200, "success": 200, "failed": 0}
