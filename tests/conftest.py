"""Shared fixtures: a real SQLite file and, when scripts/test.sh started one, a real PostgreSQL
reached through pyodbc + psqlODBC. Each test gets its own fresh database.

Isolation from the shell: every test runs with no ``XML_EXTRACTOR_*`` variable except the test
database URLs (``XML_EXTRACTOR_TEST_PG``, ``XML_EXTRACTOR_TEST_MSSQL``) and no libpq ``PG*``
variable, so a stray ``XML_EXTRACTOR_DB`` or ``PGPASSWORD`` in the shell changes nothing. The
subprocesses started by :func:`cli` and :func:`popen` get that scrubbed environment and run in the
test's own temporary folder (relative ``logs``/``metrics``/``*.db`` land there; pytest removes the
folders of passing tests).

Markers: ``postgres`` (added automatically to the PostgreSQL param of ``db_url``), ``mssql``,
``slow`` (real worker processes / signals). ``pytest -m "not slow and not postgres"`` is the fast
subset.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Generator, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data"  # a copy of shared/samples/app-1001.xml: the suite needs nothing outside the repo
PG_URL = os.environ.get("XML_EXTRACTOR_TEST_PG")
KEEP_ENV = frozenset({"XML_EXTRACTOR_TEST_PG", "XML_EXTRACTOR_TEST_MSSQL"})
LIBPQ_ENV = ("PGPASSWORD", "PGPASSFILE", "PGUSER", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE",
             "PGSERVICEFILE", "PGOPTIONS", "PGSSLMODE", "PGAPPNAME", "PGCONNECT_TIMEOUT", "PGTZ", "PGCLIENTENCODING")
_TEST_DIR: Path | None = None  # the running test's own folder: the default cwd of cli()/popen()


def scrubbed_names(environ: "os._Environ[str] | dict[str, str]") -> list[str]:
    """The variables a test must not inherit: the tool's own and libpq's."""
    return [k for k in environ if (k.startswith("XML_EXTRACTOR_") and k not in KEEP_ENV) or k in LIBPQ_ENV]


def _scrub(mp: pytest.MonkeyPatch) -> None:
    for k in scrubbed_names(os.environ):
        mp.delenv(k, raising=False)


_SESSION_SCRUB = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """Scrub before collection (a test module reading a variable at import sees the scrubbed
    environment) and before any session fixture; :func:`pytest_unconfigure` restores the shell's."""
    _scrub(_SESSION_SCRUB)


def pytest_unconfigure(config: pytest.Config) -> None:
    _SESSION_SCRUB.undo()
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_test(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Per test: scrub again (a test that set a variable by hand does not leak it into the next),
    give the test and its subprocesses their own folder as working directory (an in-process run's
    relative ``logs``/``metrics`` land there too; removed when the test passed, kept for a look
    when it failed), put every variable and the working directory back afterwards."""
    global _TEST_DIR
    saved = dict(os.environ)
    mp = pytest.MonkeyPatch()
    _scrub(mp)
    _TEST_DIR = folder = tmp_path_factory.mktemp("run")
    mp.chdir(folder)
    try:
        yield folder
    finally:
        _TEST_DIR = None
        mp.undo()
        os.environ.clear()
        os.environ.update(saved)
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.passed:
            shutil.rmtree(folder, ignore_errors=True)


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember the outcome of each test's call phase (the folder fixture reads it)."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL param of db_url is a postgres test: `-m "not postgres"` deselects it."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


def subprocess_dir() -> Path:
    """The running test's own temporary folder (where cli()/popen() subprocesses run)."""
    if _TEST_DIR is None:
        raise RuntimeError("subprocess_dir() is only available while a test runs")
    return _TEST_DIR


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
    """Run the real command line in a subprocess (real processes, real exit codes), in the scrubbed
    environment plus ``env``, in the test's own folder unless ``cwd`` is given."""
    p = subprocess.run([sys.executable, "-m", "xml_extractor", *args], capture_output=True, text=True,
                       env=_child_env(env), cwd=str(cwd or _default_cwd()), timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def popen(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start the real command line in its own process group (signals go to the group, as systemd
    sends them); same environment and folder rules as :func:`cli`."""
    return subprocess.Popen([sys.executable, "-m", "xml_extractor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_child_env(env), cwd=str(cwd or _default_cwd()),
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _child_env(extra: dict | None) -> dict[str, str]:
    """The scrubbed environment (even when called outside a test) plus the test's own variables.
    A test that asks for ``XML_EXTRACTOR_FAULTS`` gets the gate that lets the child honour it
    (xml_extractor/_testing.py), written into the test's own folder."""
    e = {k: v for k, v in os.environ.items() if k not in scrubbed_names(os.environ)}
    e.update(extra or {})
    spec = (extra or {}).get("XML_EXTRACTOR_FAULTS")
    if spec and "XML_EXTRACTOR_TESTING_GATE" not in (extra or {}):
        from xml_extractor._testing import fault_injection_env
        e.update(fault_injection_env(spec, subprocess_dir()))
    return e


_SESSION_DIR: Path | None = None  # for subprocesses a module/session fixture starts (no test folder yet)


def _default_cwd() -> Path:
    global _SESSION_DIR
    if _TEST_DIR is not None:
        return _TEST_DIR
    if _SESSION_DIR is None:
        _SESSION_DIR = Path(tempfile.mkdtemp(prefix="xe-tests-"))
    return _SESSION_DIR


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
