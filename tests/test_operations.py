"""Operator commands against a database produced by a run with faulty documents (SQLite, PostgreSQL)."""

import json

import pytest
from conftest import (
    assert_exactly_once,
    cli,
    cli_in_process,
    expected_failures,
    open_db,
    process_mock,
    processed_copy,
)

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

COUNT = 80


@pytest.fixture
def processed(db_url, database_templates):
    """A processed database of its own, for a test that changes it: a copy of one processed once
    per session."""
    return processed_copy(database_templates, db_url, COUNT, 21, workers=2)


@pytest.fixture(scope="module")
def processed_once(module_db_url):
    """One processed database per engine for the tests that only read it."""
    return process_mock(module_db_url, COUNT, 21, workers=2)


def faulty():
    return expected_failures(21, 0.2, COUNT)


def test_status(processed_once):
    d = json.loads(
        cli_in_process("status", "--db", processed_once, "--format", "json", check=True).stdout
    )
    f = len(faulty())
    assert (
        d["source_rows"] == COUNT
        and d["failed"] == f
        and d["success"] == COUNT - f
        and d["pending"] == 0
    )
    assert d["sessions"][0]["processed"] == COUNT and sum(x["count"] for x in d["failures"]) == f
    out = cli_in_process("status", "--db", processed_once, check=True).stdout
    assert "pending (never attempted)" in out and "failures by stage" in out


def test_failures_groups_history_and_csv(processed_once, tmp_path):
    groups = json.loads(
        cli_in_process("failures", "--db", processed_once, "--format", "json", check=True).stdout
    )
    assert sum(g["count"] for g in groups) == len(faulty())
    assert {g["stage"] for g in groups} <= {"read", "parse", "validate", "insert"}
    parse_only = json.loads(
        cli_in_process(
            "failures", "--db", processed_once, "--stage", "parse", "--format", "json", check=True
        ).stdout
    )
    assert parse_only and all(g["stage"] == "parse" for g in parse_only)
    app_id = next(iter(faulty()))
    h = json.loads(
        cli_in_process(
            "failures",
            "--db",
            processed_once,
            "--app-id",
            str(app_id),
            "--format",
            "json",
            check=True,
        ).stdout
    )
    assert h["in_source"] and h["attempts"][0]["status"] == "failed"
    csv_file = tmp_path / "f.csv"
    cli_in_process("failures", "--db", processed_once, "--csv", str(csv_file), check=True)
    assert len(csv_file.read_text().strip().splitlines()) == len(faulty()) + 1


def test_reconcile_clean_then_detects_damage(processed):
    assert cli_in_process("reconcile", "--db", processed).returncode == 0
    db = open_db(processed)
    ok = db.scalar(f"SELECT MIN(app_id) FROM {db.names['log']} WHERE status = 'success'")
    db.begin()
    db.execute(
        f"DELETE FROM {db.names['log']} WHERE app_id = ?", [ok]
    ).close()  # a success row lost behind our back
    db.commit()
    db.close()
    p = cli_in_process("reconcile", "--db", processed, "--format", "json")
    assert p.returncode == 1
    r = json.loads(p.stdout)
    bad = {c["check"]: c for c in r["checks"] if c["inconsistency"] and c["count"]}
    assert ok in bad["app_base rows without a success row"]["sample_app_ids"]


def test_quality_reports_events_defaults_and_sparse_rows(processed_once):
    q = json.loads(
        cli_in_process("quality", "--db", processed_once, "--format", "json", check=True).stdout
    )
    kinds = {(e["table"], e["column"], e["event_type"]) for e in q["events"]}
    assert ("app_contact_base", "ssn", "value_rejected") in kinds
    assert any(s["column"] == "receive_date" for s in q["sentinels"])
    assert any(s["table"] == "app_base" for s in q["sparse"])
    out = cli_in_process("quality", "--db", processed_once, check=True).stdout
    assert "example raw values" in out


@pytest.mark.slow  # several real runs with worker processes
def test_reprocess_dry_run_then_real(processed):
    ids = sorted(faulty())[:2]
    p = cli_in_process(
        "reprocess", "--db", processed, "--dry-run", "--format", "json", *map(str, ids)
    )
    plan = json.loads(p.stdout)
    assert plan["applications"] == 2 and plan["rows_to_remove"]["processing_log"] == 2
    db = open_db(processed)
    before = db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}")
    db.close()
    assert before == COUNT  # the dry run changed nothing
    p = cli_in_process("reprocess", "--db", processed, "--failed", "--no-progress")
    assert (
        p.returncode == 1 and "processing them again" in p.stdout
    )  # they fail again: the documents are still broken
    assert_exactly_once(processed)
    ok_id = next(i for i in range(1, COUNT + 1) if i not in faulty())
    p = cli_in_process("reprocess", "--db", processed, str(ok_id), "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_exactly_once(processed)
    assert cli_in_process("reprocess", "--db", processed).returncode == 2


def test_launch_runs_partitioned_instances(db_url):
    cli("init-db", "--db", db_url, check=True)
    cli("generate-mock", "--db", db_url, "--count", "60", "--faulty-share", "0", check=True)
    p = cli("launch", "--instances", "3", "--db", db_url, "--workers", "1", "--batch-size", "5")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[0/3]" in p.stdout and "[2/3]" in p.stdout
    last = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("all")][0]
    assert last[2] == "60" and last[3] == "60"
    assert assert_exactly_once(db_url)["success"] == 60
    assert cli("launch", "--instances", "2", "--instance-id", "1").returncode == 2


@pytest.mark.posix
def test_launch_sigterm_stops_every_instance_and_resume_finishes(db_url):
    import signal
    import time

    from conftest import popen
    from procs import descendants

    cli("init-db", "--db", db_url, check=True)
    cli("generate-mock", "--db", db_url, "--count", "150", "--faulty-share", "0", check=True)
    p = popen(
        "launch",
        "--instances",
        "2",
        "--db",
        db_url,
        "--workers",
        "1",
        "--batch-size",
        "5",
        env={"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.3"},
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(descendants(p.pid)) < 4:
        time.sleep(0.2)

    def logged() -> int:
        db = open_db(db_url)
        try:
            return int(db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}"))
        finally:
            db.close()

    while (
        time.time() < deadline and logged() == 0
    ):  # mid-run: some committed, not all (a slow machine starts late)
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    assert "stopping all instances" in err
    assert not descendants(p.pid)
    assert 0 < logged() < 150
    p2 = cli("launch", "--instances", "2", "--db", db_url, "--workers", "1")
    assert p2.returncode == 0, p2.stdout
    assert assert_exactly_once(db_url)["success"] == 150
