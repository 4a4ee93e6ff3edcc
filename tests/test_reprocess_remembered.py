"""A finished reprocess is remembered: each command's selection is recorded (reprocess_command);
the same command again after it completed says "complete at T: N applications redone; --again to
redo them" and exits 0, ``--again`` redoes; an interrupted one still resumes. A database made by
the previous schema gets the table through init-db."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from conftest import cli, expected_failures, open_db, popen_held, processed_copy

COUNT = 30
SEED = 5
RUN = ("--no-progress", "--workers", "1", "--batch-size", "10")
COMPLETE = re.compile(
    r"complete at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC: (\d+) applications redone; "
    r"--again to redo them"
)


def _dirs(tmp_path: Path) -> tuple[str, ...]:
    return ("--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics"))


@pytest.fixture
def processed(db_url: str, database_templates) -> str:
    """A processed database of the test's own (a fifth failed): a copy of one processed once."""
    return processed_copy(database_templates, db_url, COUNT, SEED)


def _scalar(url: str, sql: str) -> int:
    db = open_db(url)
    try:
        return int(db.autocommit_query(sql.format(**db.names))[0][0])
    finally:
        db.close()


def _replaced(url: str) -> int:
    return _scalar(url, "SELECT COUNT(*) FROM {log_history}")


@pytest.mark.slow
def test_the_same_command_after_it_completed_says_so_and_again_redoes(
    processed: str, tmp_path: Path
) -> None:
    failed = len(expected_failures(SEED, 0.2, COUNT))
    cmd = ("reprocess", "--db", processed, "--failed", *RUN, *_dirs(tmp_path))
    first = cli(*cmd)
    assert first.returncode == 1, first.stdout + first.stderr  # the broken documents fail again
    assert _replaced(processed) == failed

    same = cli(*cmd)
    assert same.returncode == 0, same.stdout + same.stderr
    m = COMPLETE.search(same.stdout)
    assert m and int(m.group(2)) == failed, same.stdout
    assert "'reprocess --failed'" in same.stdout
    assert _replaced(processed) == failed  # nothing redone
    assert _scalar(processed, "SELECT COUNT(*) FROM {requests}") == 0

    dry = cli("reprocess", "--db", processed, "--failed", "--dry-run")
    assert dry.returncode == 0 and COMPLETE.search(dry.stdout), dry.stdout + dry.stderr

    again = cli(*cmd, "--again")
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"requested 'reprocess --failed': {failed} application(s)" in again.stdout
    assert _replaced(processed) == 2 * failed  # each one redone once more

    later = cli(*cmd)
    assert later.returncode == 0, later.stdout + later.stderr
    m2 = COMPLETE.search(later.stdout)
    assert m2 and m2.group(1) >= m.group(1) and int(m2.group(2)) == failed, later.stdout
    assert _replaced(processed) == 2 * failed

    # another selection is another command: not remembered as complete
    other = cli("reprocess", "--db", processed, "1", "2", *RUN, *_dirs(tmp_path))
    assert other.returncode in (0, 1) and "requested 'reprocess 1 2'" in other.stdout, other.stdout


def _killed_after_requesting(cmd: tuple[str, ...], folder: Path) -> None:
    """Start ``cmd`` held right after it recorded its requests, then SIGKILL its process group
    there: a reprocess stopped before its run began."""
    p = popen_held("reprocess_requested", folder, *cmd)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)


@pytest.mark.posix
@pytest.mark.slow  # real processes killed with SIGKILL
def test_an_interrupted_command_resumes_then_is_remembered(processed: str, tmp_path: Path) -> None:
    cmd = ("reprocess", "--db", processed, "--since", "2000-01-01T00:00", *RUN, *_dirs(tmp_path))
    _killed_after_requesting(cmd, tmp_path / "hold")
    assert _scalar(processed, "SELECT COUNT(*) FROM {requests}") == COUNT
    assert _replaced(processed) == 0

    resumed = cli(*cmd)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "resuming the open requests of 'reprocess --since 2000-01-01T00:00:00'" in (
        resumed.stdout
    )
    assert _replaced(processed) == COUNT

    same = cli(*cmd)
    assert same.returncode == 0, same.stdout + same.stderr
    m = COMPLETE.search(same.stdout)
    assert m and int(m.group(2)) == COUNT, same.stdout
    assert _replaced(processed) == COUNT


@pytest.mark.posix
@pytest.mark.slow  # real processes killed with SIGKILL
def test_a_killed_command_whose_requests_a_plain_run_finished_is_complete(
    processed: str, tmp_path: Path
) -> None:
    cmd = ("reprocess", "--db", processed, "--failed", *RUN, *_dirs(tmp_path))
    failed = len(expected_failures(SEED, 0.2, COUNT))
    _killed_after_requesting(cmd, tmp_path / "hold")
    run = cli("run", "--db", processed, *RUN, *_dirs(tmp_path))  # takes the open requests
    assert run.returncode == 1, run.stdout + run.stderr
    assert _replaced(processed) == failed
    same = cli(*cmd)
    assert same.returncode == 0, same.stdout + same.stderr
    m = COMPLETE.search(same.stdout)
    assert m and int(m.group(2)) == failed, same.stdout
    assert _replaced(processed) == failed


@pytest.mark.slow
def test_a_database_of_the_previous_schema_gets_the_table_through_init_db(
    processed: str, tmp_path: Path
) -> None:
    """The previous schema had no reprocess_command; an open request it left (a stopped reprocess)
    is resumed after init-db added the table, then remembered."""
    failed = sorted(expected_failures(SEED, 0.2, COUNT))
    db = open_db(processed)
    try:
        db.execute(f"DROP TABLE {db.names['commands']}")
        for a in failed:
            db.execute(
                f"INSERT INTO {db.names['requests']} (app_id, requested_at, command) "
                "VALUES (?, '2026-01-01 00:00:00', 'reprocess --failed')",
                [a],
            ).close()
        db.commit()
    finally:
        db.close()
    cmd = ("reprocess", "--db", processed, "--failed", *RUN, *_dirs(tmp_path))
    refused = cli(*cmd)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "init-db" in refused.stderr and "reprocess_command" in refused.stderr, refused.stderr
    plan = cli("init-db", "--db", processed, "--dry-run")
    assert plan.returncode == 0 and "reprocess_command" in plan.stdout, plan.stdout + plan.stderr
    cli("init-db", "--db", processed, check=True)
    assert cli("init-db", "--db", processed, "--dry-run").stdout.count("reprocess_command") == 0

    resumed = cli(*cmd)
    assert resumed.returncode == 1 and "resuming" in resumed.stdout, resumed.stdout
    assert _replaced(processed) == len(failed)
    same = cli(*cmd)
    assert same.returncode == 0 and COMPLETE.search(same.stdout), same.stdout + same.stderr
    assert _replaced(processed) == len(failed)


def test_the_command_table_and_its_queries_on_every_dialect(contract) -> None:
    """reprocess_command is created by each dialect's DDL (SQL Server: the key column compares
    exactly, as on the other engines) and the migration plan checks it like the other tool tables."""
    from xml_extractor.db.database import Database
    from xml_extractor.db.migrate import tool_tables

    assert "reprocess_command" in tool_tables(contract)
    for url in ("sqlite:///x.db", "postgresql://h/db", "mssql://h/db"):
        db = Database(url, contract, connect=False)
        ddl = [s for s in db.dialect.ddl(contract) if db.names["commands"] in s.splitlines()[0]]
        assert len(ddl) == 1, ddl
        if db.dialect.name == "mssql":
            assert "[command] NVARCHAR(400) COLLATE Latin1_General_100_BIN2 NOT NULL" in ddl[0]
        for name in (
            "reprocess_command_get",
            "reprocess_command_forget",
            "reprocess_command_record",
            "reprocess_command_complete",
            "reprocess_command_extend",
        ):
            assert db.names["commands"] in str(db.sql(name)), name


def _failed_now(url: str) -> set[int]:
    db = open_db(url)
    try:
        sql = db.sql("reconcile_final_failed")
        return {int(r[0]) for r in db.autocommit_query(sql, {})}
    finally:
        db.close()


@pytest.mark.slow
def test_new_failures_after_a_completed_failed_command_are_redone_by_it(
    db_url: str, tmp_path: Path
) -> None:
    """run --limit, reprocess --failed, run the rest (new failures), reprocess --failed again: the
    command is not complete while its selection picks failures it has not redone; it redoes
    exactly those (--dry-run lists them), then it is complete with all it redid."""
    cli("init-db", "--db", db_url, check=True)
    gen = ("--count", str(COUNT), "--faulty-share", "0.2", "--seed", str(SEED))
    cli("generate-mock", "--db", db_url, *gen, check=True)
    first = cli("run", "--db", db_url, *RUN, "--limit", "15", *_dirs(tmp_path))
    assert first.returncode == 1, first.stdout + first.stderr
    old = _failed_now(db_url)
    cmd = ("reprocess", "--db", db_url, "--failed", *RUN, *_dirs(tmp_path))
    assert cli(*cmd).returncode == 1
    assert _replaced(db_url) == len(old)
    rest = cli("run", "--db", db_url, *RUN, *_dirs(tmp_path))
    assert rest.returncode == 1, rest.stdout + rest.stderr
    new = _failed_now(db_url) - old
    assert new and _failed_now(db_url) == old | new == set(expected_failures(SEED, 0.2, COUNT))

    dry = cli("reprocess", "--db", db_url, "--failed", "--dry-run")
    assert dry.returncode == 0 and not COMPLETE.search(dry.stdout), dry.stdout + dry.stderr
    assert f"would reprocess {len(new)} application(s)" in dry.stdout, dry.stdout
    assert f"the {len(old)} it redid are not redone" in dry.stdout, dry.stdout
    assert "): " + " ".join(map(str, sorted(new))) + "\n" in dry.stdout, dry.stdout

    again = cli(*cmd)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"requested 'reprocess --failed': {len(new)} application(s)" in again.stdout
    db = open_db(db_url)
    try:
        hist = db.autocommit_query("SELECT app_id FROM {log_history}".format(**db.names))
    finally:
        db.close()
    assert sorted(int(a) for (a,) in hist) == sorted(old | new)  # each redone once

    done = cli(*cmd)
    assert done.returncode == 0, done.stdout + done.stderr
    m = COMPLETE.search(done.stdout)
    assert m and int(m.group(2)) == len(old | new), done.stdout
    assert _replaced(db_url) == len(old | new)


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_reprocess_limit_must_be_positive(processed: str, tmp_path: Path, limit: str) -> None:
    p = cli("reprocess", "--db", processed, "--failed", "--limit", limit, *RUN, *_dirs(tmp_path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--limit" in p.stderr and "positive" in p.stderr, p.stderr
    assert _replaced(processed) == 0
