"""What a run reports as done is in the database (issue 24: D23, D25, D26, D27, D31).

Real processes and real server terminations: the backend of the writer's own connection is
terminated (pg_terminate_backend) at the exact point a finding names, by wrapping the writer's
method that runs there; the server itself is stopped and started while a run starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    _pg_admin_exec,
    assert_exactly_once,
    cli,
    open_db,
    popen_held,
    release,
    server_session,
)
from pg_throwaway import Cluster, throwaway_cluster

RUN = ("--no-progress", "--workers", "1", "--batch-size", "5")


def _dirs(tmp_path: Path) -> tuple[str, ...]:
    return ("--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics"))


def _prepare(url: str, count: int) -> None:
    cli("init-db", "--db", url, check=True)
    cli("generate-mock", "--db", url, "--count", str(count), "--faulty-share", "0", check=True)


def _scalar(url: str, sql: str) -> int:
    db = open_db(url)
    try:
        return int(db.autocommit_query(sql.format(**db.names))[0][0])
    finally:
        db.close()


def _terminate(pid: int) -> None:
    _pg_admin_exec(f"SELECT pg_terminate_backend({int(pid)})")
    time.sleep(0.2)  # the backend is gone before the driver's next call


def _writer(url: str):
    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.db.store import BatchWriter, RunIdentity

    db = open_db(url)
    plan = compile_contract(db.contract, db.dialect.name)
    writer = BatchWriter(db, plan, RunIdentity("attack-session", 0, 1, db.contract.version_tag))
    return db, plan, writer


def _pg_only(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip(
            "a backend terminated under psqlODBC is PostgreSQL's (SQLite has no server connection)"
        )


# -- D23: psqlODBC reports a commit that never happened ------------------------------------------------


def test_d23_commit_on_a_terminated_backend_raises(db_url):
    """The driver-level reproduction: the backend dies after the transaction's last statement and
    before cursor.close(); psqlODBC's close() and commit() both return. Database.commit must not."""
    _pg_only(db_url)
    db = open_db(db_url)
    try:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").close()
        db.commit()
        pid = server_session(db)
        cur = db.conn.cursor()
        cur.execute(
            "INSERT INTO t SELECT * FROM json_populate_recordset(NULL::t, ?)", '[{"id": 1}]'
        )  # as insert_rows does
        _terminate(pid)
        cur.close()  # psqlODBC: no error
        with pytest.raises(Exception) as raised:
            db.commit()
        assert db.dialect.wrap(raised.value).__class__.__name__ == "ConnectionLost", raised.value
    finally:
        db.close()
    assert _scalar(db_url, "SELECT COUNT(*) FROM t") == 0


def test_d23_a_batch_whose_commit_did_not_happen_is_written_again_not_reported(db_url):
    """The tool-level reproduction: the backend dies right after the batch's last statement
    (_count_progress). Every application the writer reports is in the database, exactly once."""
    _pg_only(db_url)
    _prepare(db_url, 5)
    from xml_extractor.processing.worker import process_batch

    db, plan, writer = _writer(db_url)
    real = writer._count_progress
    pid = server_session(db)
    fired: list[int] = []

    def count_then_die(cur, items, now):
        real(cur, items, now)  # the transaction's last statement
        if not fired:
            fired.append(1)
            _terminate(pid)

    writer._count_progress = count_then_die
    try:
        res = process_batch(db, plan, writer, [3, 4, 5], retry=False)
    finally:
        db.close()
    assert fired
    assert (res.success, res.failed, res.skipped) == (3, 0, 0)
    assert (
        _scalar(
            db_url, "SELECT COUNT(*) FROM {log} WHERE app_id IN (3, 4, 5) AND status = 'success'"
        )
        == 3
    )
    assert _scalar(db_url, "SELECT SUM(success) FROM {progress}") == 3


def test_d31_a_commit_whose_answer_was_lost_counts_as_this_runs_own(db_url):
    """The commit lands but its answer is lost (the backend dies right after it): the retried
    batch finds its own rows and reports success, not "skipped (done elsewhere)"."""
    _pg_only(db_url)
    _prepare(db_url, 5)
    from xml_extractor.processing.worker import process_batch

    db, plan, writer = _writer(db_url)
    pid = server_session(db)
    real_commit = db.commit
    fired: list[int] = []

    def commit_then_lose_answer():
        if fired:
            return real_commit()
        fired.append(1)
        db.conn.commit()  # the COMMIT reaches the server ...
        _terminate(pid)
        db.conn.cursor().execute("SELECT 1")  # ... and its answer is lost: the driver's own error

    db.commit = commit_then_lose_answer
    try:
        res = process_batch(db, plan, writer, [1, 2], retry=False)
    finally:
        db.close()
    assert fired
    assert (res.success, res.failed, res.skipped) == (2, 0, 0)
    assert _scalar(db_url, "SELECT COUNT(*) FROM {log} WHERE app_id IN (1, 2)") == 2


def test_d31_a_failed_row_whose_commit_answer_was_lost_is_counted_failed_not_skipped(db_url):
    """The same for the failed row of an application isolated after a refusal (application 2
    carries application 1's con_id): its commit lands, the answer is lost, the retry finds the row."""
    _pg_only(db_url)
    _prepare(db_url, 3)
    _collide(db_url)
    from xml_extractor.processing.worker import process_batch

    db, plan, writer = _writer(db_url)
    assert process_batch(db, plan, writer, [1], retry=False).success == 1
    pid = server_session(db)
    real_commit = db.commit
    fired: list[int] = []

    def commit_then_lose_answer():
        if fired:
            return real_commit()
        fired.append(1)
        db.conn.commit()
        _terminate(pid)
        db.conn.cursor().execute("SELECT 1")

    db.commit = commit_then_lose_answer
    try:
        res = process_batch(db, plan, writer, [2, 3], retry=False)
    finally:
        db.close()
    assert fired
    assert (res.success, res.failed, res.skipped) == (1, 1, 0) and res.failures == [
        (2, "insert", "KeyCollision")
    ]


def _collide(url: str) -> None:
    """Application 2's document carries application 1's con_id (11)."""
    db = open_db(url)
    n = db.names
    xml = db.autocommit_query(f"SELECT {n['src_xml']} FROM {n['src']} WHERE {n['src_id']} = 2")[0][
        0
    ]
    db.execute(
        f"UPDATE {n['src']} SET {n['src_xml']} = ? WHERE {n['src_id']} = 2",
        [re.sub(r'con_id="\d+"', 'con_id="11"', xml, count=1)],
    ).close()
    db.commit()
    db.close()


# -- D27: a connection lost during the duplicate-key check -------------------------------------------------


def test_d27_connection_lost_in_the_duplicate_key_check_is_retried(db_url):
    """Application 2's document carries application 1's con_id: the batch is refused, the writer
    isolates 2 and checks whether it was logged elsewhere; the backend dies right there. The check
    is retried: 2 is failed with KeyCollision, the batch is not a crash."""
    _pg_only(db_url)
    _prepare(db_url, 3)
    _collide(db_url)
    from xml_extractor.processing.worker import process_batch

    db, plan, writer = _writer(db_url)
    assert process_batch(db, plan, writer, [1], retry=False).success == 1
    real = writer._already_logged
    fired: list[int] = []

    def die_then_check(it):
        if not fired:
            fired.append(1)
            _terminate(server_session(db))
        return real(it)

    writer._already_logged = die_then_check
    try:
        res = process_batch(db, plan, writer, [2, 3], retry=False)
    finally:
        db.close()
    assert fired
    assert (res.success, res.failed) == (1, 1) and res.failures == [(2, "insert", "KeyCollision")]


# -- item 2 and D31: the end-of-run check of the run's counts against its session's log rows ------------


@pytest.mark.slow
@pytest.mark.parametrize("change", ["lost", "uncounted"])
def test_the_summary_is_what_the_database_holds(db_url, tmp_path, change):
    """Held after the run's last look at its workers: one of its log rows is taken away (a commit
    that did not happen) or one more is added under its session (a batch committed as it stopped at
    once). The summary gives the database's figures; a lost one is said on stderr, exit 3."""
    _prepare(db_url, 10)
    folder = tmp_path / "hold"
    p = popen_held("loop_done", folder, "run", "--db", db_url, *RUN, *_dirs(tmp_path))
    try:
        db = open_db(db_url)
        log = db.names["log"]
        if change == "lost":
            from xml_extractor.db.store import app_tables

            for _, qtable, col in app_tables(db):
                db.execute(f"DELETE FROM {qtable} WHERE {col} = 7").close()
        else:
            sid, ver = db.autocommit_query(
                f"SELECT session_id, contract_version FROM {log} WHERE app_id = 1"
            )[0]
            db.execute(
                f"INSERT INTO {log} (app_id, status, attempt, instance_id, instance_count, session_id, "
                f"contract_version, logged_at) VALUES (11, 'success', 1, 0, 1, ?, ?, {db.dialect.now_sql})",
                [sid, ver],
            ).close()
        db.commit()
        db.close()
        (folder / "release-loop_done").touch()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    summary = json.loads(next((tmp_path / "metrics").glob("run-*.json")).read_text())
    if change == "lost":
        assert p.returncode == 3, out + err
        assert "not in the database" in err and "they stay pending" in err, err
        assert summary["success"] == 9 and summary["database_check"].startswith("differs")
    else:
        assert p.returncode == 0, out + err
        assert summary["success"] == 11 and summary["database_check"].startswith("differs")


@pytest.mark.slow
def test_a_clean_run_says_its_counts_match(db_url, tmp_path):
    _prepare(db_url, 6)
    p = cli("run", "--db", db_url, *RUN, *_dirs(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads(next((tmp_path / "metrics").glob("run-*.json")).read_text())
    assert summary["database_check"] == "match" and summary["success"] == 6


# -- D26: two versions of one contract started together both stop ------------------------------------


@pytest.mark.slow
def test_d26_an_instance_that_finished_before_the_other_version_wrote_still_stops(db_url, tmp_path):
    """A (held right after its start check) and B (the other version) pass the start check; B
    writes its whole share before A writes anything and is held after its last look; A's first
    results show B's version (A stops); B's last re-read shows A's: B stops too, exit 2."""
    from xml_extractor.contract.loader import default_contract_path

    _prepare(db_url, 40)
    c = json.loads(open(default_contract_path(), encoding="utf-8").read())
    c["version"] = c["version"] + "-other"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(c), encoding="utf-8")
    fa, fb = tmp_path / "a", tmp_path / "b"
    share = ("--instance-count", "2", *_dirs(tmp_path))
    a = popen_held(
        "identity_checked", fa, "run", "--db", db_url, *RUN, "--instance-id", "0", *share
    )
    b = None
    try:
        b = popen_held(
            "loop_done",
            fb,
            "run",
            "--db",
            db_url,
            "--contract",
            str(other),
            *RUN,
            "--instance-id",
            "1",
            *share,
        )
        release(fa, "identity_checked")
        out_a, err_a = a.communicate(timeout=180)
        release(fb, "loop_done")
        out_b, err_b = b.communicate(timeout=180)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert a.returncode == 2, out_a + err_a
    assert b.returncode == 2, out_b + err_b
    assert "another instance is writing results of credit_card@" in err_b


# -- D25: a database restart while the run starts its selector and workers ---------------------------


@pytest.mark.slow
def test_d25_a_database_restart_at_start_up_is_waited_for(db_url, tmp_path):
    """Held right after the start check, the server stops; the run goes on to start its selector
    and worker, which find it refusing, then starting up: they wait (--reconnect-seconds), and the
    run finishes its work, exit 0. On a cluster of the test's own: a stop of the suite's shared one
    would cut every other test's connections."""
    _pg_only(db_url)
    with throwaway_cluster(password=False) as cluster:
        cluster.admin().execute("CREATE DATABASE xe_restart")
        _d25_restart_while_starting(cluster, cluster.url("xe_restart"), tmp_path)


def _d25_restart_while_starting(cluster: Cluster, db_url: str, tmp_path: Path) -> None:
    _prepare(db_url, 20)
    folder = tmp_path / "hold"
    args = ("run", "--db", db_url, *RUN, "--reconnect-seconds", "60", *_dirs(tmp_path))
    p = popen_held("identity_checked", folder, *args)
    stopped = False
    try:
        cluster.stop()
        stopped = True
        release(folder, "identity_checked")
        time.sleep(3)  # the selector and the worker meet a refusing server
        cluster.start()
        stopped = False
        out, err = p.communicate(timeout=180)
    finally:
        if stopped:
            cluster.start()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, out + err
    assert _scalar(db_url, "SELECT COUNT(*) FROM {log} WHERE status = 'success'") == 20
    assert_exactly_once(db_url)
