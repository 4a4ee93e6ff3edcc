"""Shared fixtures: a real SQLite file and, when scripts/test.sh started one, a real PostgreSQL
reached through pyodbc + psqlODBC. Each test gets its own fresh database."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data"  # a copy of shared/samples/app-1001.xml: the suite needs nothing outside the repo
PG_URL = os.environ.get("XML_EXTRACTOR_TEST_PG")


def _pg_admin_exec(sql: str) -> None:
    import pyodbc
    from xml_extractor.db.url import parse_url
    u = parse_url(PG_URL)
    u.database = "postgres"
    conn = pyodbc.connect(u.odbc_connection_string(), autocommit=True)
    conn.execute(sql)
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh empty database URL of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but XML_EXTRACTOR_TEST_PG is not set: PostgreSQL tests must run in CI")
        pytest.skip("PostgreSQL not available (run the suite with scripts/test.sh to start one)")
    name = "xe_" + uuid.uuid4().hex[:12]
    _pg_admin_exec(f"CREATE DATABASE {name}")
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    try:
        _pg_admin_exec(f"DROP DATABASE {name} WITH (FORCE)")
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="session")
def plan():
    from xml_extractor import compile_contract, load_contract
    return compile_contract(load_contract())


@pytest.fixture(scope="session")
def contract():
    from xml_extractor import load_contract
    return load_contract()


def cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (real processes, real exit codes)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "xml_extractor", *args], capture_output=True, text=True,
                       env=e, cwd=str(cwd or ROOT), timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def popen(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "xml_extractor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=str(cwd or ROOT), stdin=subprocess.DEVNULL,
                            start_new_session=True)


def open_db(url: str):
    from xml_extractor import load_contract
    from xml_extractor.db.database import Database
    return Database(url, load_contract())


def target_tables(contract) -> list[str]:
    return [t.name for t in contract.tables]


def log_rows(url: str) -> list[tuple]:
    db = open_db(url)
    try:
        return db.autocommit_query(f"SELECT app_id, status, stage, attempt, error_class, reason FROM {db.names['log']} ORDER BY app_id, attempt")
    finally:
        db.close()


def assert_exactly_once(url: str) -> dict:
    """The invariants of the tool: every source row has exactly one final log row per attempt, a
    success at most once, and no target row of an application without a success row."""
    db = open_db(url)
    try:
        n = db.names
        src = {r[0] for r in db.autocommit_query(f"SELECT {n['src_id']} FROM {n['src']}")}
        logs = db.autocommit_query(f"SELECT app_id, status, attempt FROM {n['log']}")
        succ = [a for a, s, _ in logs if s == "success"]
        assert len(succ) == len(set(succ)), "an application has two success rows"
        pairs = [(a, t) for a, _, t in logs]
        assert len(pairs) == len(set(pairs)), "two final rows for one (app_id, attempt)"
        logged = {a for a, _, _ in logs}
        assert src == logged, f"unprocessed: {sorted(src - logged)[:10]}, unknown: {sorted(logged - src)[:10]}"
        ok = set(succ)
        orphans = {}
        for t in db.contract.tables:
            apps = {r[0] for r in db.autocommit_query(f"SELECT DISTINCT {db.dialect.quote(t.app_id_column)} FROM {db.table(t.name)}")}
            bad = apps - ok
            if bad:
                orphans[t.name] = sorted(bad)[:10]
        assert not orphans, f"target rows without a success row: {orphans}"
        base = {r[0] for r in db.autocommit_query(f"SELECT app_id FROM {db.table('app_base')}")}
        assert base == ok, "success without app_base row, or the reverse"
        return {"apps": len(src), "success": len(ok), "failed": len(src - ok)}
    finally:
        db.close()


def expected_failures(seed: int, share: float, count: int, start: int = 1) -> dict[int, str]:
    """app_id -> fault kind of the mock documents that must fail. A con_id collision fails only
    when the application whose con_id it borrows (the one before it) wrote that con_id."""
    from xml_extractor.mock import MockGenerator
    faults = {d.app_id: d.fault for d in MockGenerator(seed=seed, faulty_share=share).documents(start, count) if d.fault}
    return {a: k for a, k in faults.items() if k != "con_id_collision" or (a - 1) not in faults}
