"""Operator commands at scale, without timing anything: the status rate over the time actually
observed (log rows with known timestamps), and query plans that probe an index per row (EXPLAIN on a
synthetic database of a few hundred thousand rows, with and without planner statistics)."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from conftest import cli

from xml_extractor import load_contract, ops
from xml_extractor.db import checks, statistics
from xml_extractor.db.database import Database
from xml_extractor.db.store import init_db, utcnow
from xml_extractor.testing import synthetic


def _db(url: str) -> Database:
    db = Database(url, load_contract())
    init_db(db)
    return db


def test_status_rate_in_the_first_minute_is_the_observed_rate(db_url):
    """A run 12 s old at 18,000 results/min: the rate is that (within 20%), not 12 s of results
    divided by a 5-minute window; an ETA is given because it is running."""
    db = _db(db_url)
    try:
        synthetic.build(db, 3600, doc_bytes=10, end=utcnow(), span=_dt.timedelta(seconds=12))
        true_rate = (3600 + 36) / 12 * 60  # attempt-1 rows plus the 36 retries, over 12 s
        s = ops.status(db)
        assert s["running"] and s["idle_since"] is None
        assert 0.8 * true_rate <= s["rate_per_min_recent"] <= 1.2 * true_rate, s[
            "rate_per_min_recent"
        ]
        assert s["eta_minutes"] is not None and s["pending"] == 72
    finally:
        db.close()


@pytest.mark.slow
def test_status_after_the_run_stopped_is_idle_without_eta(db_url):
    db = _db(db_url)
    end = utcnow() - _dt.timedelta(minutes=10)
    try:
        synthetic.build(db, 3600, doc_bytes=10, end=end, span=_dt.timedelta(seconds=60))
        s = ops.status(db)
        assert not s["running"] and s["eta_minutes"] is None
        assert abs((s["idle_since"] - end).total_seconds()) < 2
    finally:
        db.close()
    out = cli("status", "--db", db_url).stdout
    assert "idle since" in out
    assert (
        json.loads(cli("status", "--db", db_url, "--format", "json").stdout)["eta_minutes"] is None
    )


def _reconcile_queries(db: Database) -> list[tuple[str, dict[str, str]]]:
    c, q = db.contract, db.dialect.quote
    base = c.tables[0]
    out = [
        (
            "reconcile_success_without_base",
            {"base": db.table(base.name), "base_key": q(base.app_id_column)},
        )
    ]
    out += [
        (
            "reconcile_rows_without_success",
            {"table": db.table(t.name), "app_col": q(t.app_id_column)},
        )
        for t in c.tables
        if t.name in ("app_base", "scores", "app_contact_address")
    ]
    out += [
        (n, {})
        for n in (
            "reconcile_multiple_success",
            "reconcile_log_not_in_source",
            "reconcile_final_failed",
            "reconcile_never_attempted",
            "ops_count_final_failed",
            "ops_failures_by_stage",
            "ops_failed_rows",
            "ops_count_success",
            "quality_event_groups",
            "reconcile_by_contract",
            "quality_event_groups_by_contract",
        )
    ]
    return out


def _sqlite_per_row_scans(lines: list[str]) -> list[str]:
    """Lines that scan a whole table inside a correlated subquery (once per outer row: quadratic)."""
    bad, inside = [], False
    for ln in lines:
        if ln.startswith("CORRELATED"):
            inside = True
        elif inside and ln.startswith("SCAN"):
            bad.append(ln)
    return bad


def _pg_per_row_scans(node: dict, inner: bool = False) -> list[str]:
    """Seq scans run once per outer row: the inner side of a nested loop, or a correlated SubPlan."""
    bad = []
    if node["Node Type"] == "Seq Scan" and (inner or node.get("Parent Relationship") == "SubPlan"):
        bad.append(f"Seq Scan on {node.get('Relation Name')}")
    kids = node.get("Plans", [])
    for i, k in enumerate(kids):
        per_row = (node["Node Type"] == "Nested Loop" and i == 1) or (
            inner and node["Node Type"] not in ("Hash",)
        )
        bad += _pg_per_row_scans(k, per_row)
    return bad


@pytest.fixture(scope="module")
def big_sqlite(tmp_path_factory):
    """200,000 applications (plus 4,000 never attempted) on SQLite, built without documents."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ops-scale') / 'big.db'}"
    db = _db(url)
    synthetic.build(db, 200_000, doc_bytes=10)
    db.close()
    return url


@pytest.mark.slow  # a large input: its fixture builds thousands of rows
def test_sqlite_plans_probe_an_index_per_row_even_without_statistics(big_sqlite):
    db = Database(big_sqlite, load_contract())
    try:
        assert statistics.planner_rows(db) is None  # built without ANALYZE: the planner guesses
        for name, idents in _reconcile_queries(db):
            lines = checks.explain(db, name, {"since": utcnow(), "stage": None}, idents)
            assert not _sqlite_per_row_scans(lines), (name, lines)
        # the status counts use indexes, not the table holding the documents
        assert any("COVERING INDEX" in ln for ln in checks.explain(db, "ops_count_source"))
        since = checks.explain(db, "ops_results_since", {"since": utcnow()})
        assert any("ix_processing_log_logged_at" in ln for ln in since), since
        assert any("ix_processing_log_history_logged_at" in ln for ln in since), since
        # an operator command notices the missing statistics and refreshes them once
        assert statistics.refresh_if_stale(db) is True
        assert statistics.planner_rows(db) >= 200_000
        assert statistics.refresh_if_stale(db) is False
        for name, idents in _reconcile_queries(db):
            assert not _sqlite_per_row_scans(
                checks.explain(db, name, {"since": utcnow(), "stage": None}, idents)
            ), name
        r = ops.reconcile(db)
        assert r["gaps"] == {"pending": 4000}
        assert next(c for c in r["checks"] if c["check"].startswith("failed"))["count"] == 2000
    finally:
        db.close()


@pytest.mark.postgres
def test_postgresql_plans_have_no_per_row_scans(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL plans")
    db = _db(db_url)
    try:
        synthetic.build(db, 200_000, doc_bytes=10)
        for analyzed in (False, True):
            for name, idents in _reconcile_queries(db):
                plan = checks.explain(db, name, {"since": utcnow(), "stage": None}, idents)
                assert not _pg_per_row_scans(plan), (name, analyzed, json.dumps(plan)[:2000])
            statistics.refresh_statistics(db)
        r = ops.reconcile(db)
        assert r["gaps"] == {"pending": 4000}
    finally:
        db.close()


def _launch(url: str, tty: bool) -> tuple[int, str, str]:
    """launch --instances 2 with stderr on a pseudo-terminal (or a pipe); (exit, stdout, stderr)."""
    import os
    import pty
    import select
    import subprocess
    import sys

    from conftest import ROOT, _child_env

    master, slave = pty.openpty() if tty else os.pipe()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xml_extractor",
            "launch",
            "--instances",
            "2",
            "--db",
            url,
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=str(ROOT),
        env=_child_env(None),
    )
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if p.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty closes when the launcher exits
            break
        if not chunk:
            break
        err += chunk
    out = p.stdout.read().decode()  # type: ignore[union-attr]
    os.close(master)
    return p.wait(timeout=120), out, err.decode(errors="replace")


@pytest.mark.slow
def test_launch_shows_a_live_line_on_a_terminal_only(db_url):
    cli("generate-mock", "--db", db_url, "--count", "600", "--seed", "9", check=True)
    code, out, err = _launch(db_url, tty=True)
    assert code == 0, out + err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert (
        "600 of 600 done" in last
        and "/min" in last
        and "[0]" in last
        and "[1]" in last
        and "exit 0" in last
    ), err
    assert "all " in out  # the combined summary still goes to stdout
    cli(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "200",
        "--seed",
        "9",
        "--start-id",
        "1001",
        check=True,
    )
    code, out, err = _launch(db_url, tty=False)
    assert code == 0 and " done |" not in err, err
