"""Shared fixtures: a real SQLite file and, when scripts/test.sh started one, a real PostgreSQL
reached through pyodbc + psqlODBC. Each test gets its own fresh database.

Isolation from the shell: every test runs with no ``XML_EXTRACTOR_*`` variable except the test
database URLs (``XML_EXTRACTOR_TEST_PG``, ``XML_EXTRACTOR_TEST_MSSQL``) and no libpq ``PG*``
variable, so a stray ``XML_EXTRACTOR_DB`` or ``PGPASSWORD`` in the shell changes nothing. The
subprocesses started by :func:`cli` and :func:`popen` get that scrubbed environment and run in the
test's own temporary folder (relative ``logs``/``metrics``/``*.db`` land there; pytest removes the
folders of passing tests).

SQL Server: ``XML_EXTRACTOR_TEST_MSSQL=<url>`` (``mssql://user@host:1433/db?...`` with the
password in ``XML_EXTRACTOR_DB_PASSWORD``, or ``odbc:Driver={ODBC Driver 18 for SQL Server};...``)
adds a third param to ``db_url``: each test gets a fresh ``xe_<hex>`` database on that server,
created and dropped through its ``master``. The password is read before the scrub and written
into the per-test URL (the subprocesses get no ``XML_EXTRACTOR_DB_PASSWORD``). With ``CI=true`` a
server that is given but cannot be reached fails the tests instead of skipping them.

Markers: ``postgres`` and ``mssql`` (added automatically to the PostgreSQL and SQL Server params of
``db_url``), ``slow`` (real worker processes / signals). ``pytest -m "not slow and not postgres"``
is the fast subset.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = (
    ROOT / "tests" / "data"
)  # a copy of shared/samples/app-1001.xml: the suite needs nothing outside the repo
PG_URL = os.environ.get("XML_EXTRACTOR_TEST_PG")
MSSQL_URL = os.environ.get("XML_EXTRACTOR_TEST_MSSQL")
# read at import, before pytest_configure scrubs XML_EXTRACTOR_*: the per-test SQL Server URLs carry it
_MSSQL_PASSWORD = os.environ.get("XML_EXTRACTOR_DB_PASSWORD", "") if MSSQL_URL else ""
KEEP_ENV = frozenset({"XML_EXTRACTOR_TEST_PG", "XML_EXTRACTOR_TEST_MSSQL"})
LIBPQ_ENV = (
    "PGPASSWORD",
    "PGPASSFILE",
    "PGUSER",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGTZ",
    "PGCLIENTENCODING",
)
_TEST_DIR: Path | None = None  # the running test's own folder: the default cwd of cli()/popen()


def scrubbed_names(environ: os._Environ[str] | dict[str, str]) -> list[str]:
    """The variables a test must not inherit: the tool's own and libpq's."""
    return [
        k
        for k in environ
        if (k.startswith("XML_EXTRACTOR_") and k not in KEEP_ENV) or k in LIBPQ_ENV
    ]


def _scrub(mp: pytest.MonkeyPatch) -> None:
    for k in scrubbed_names(os.environ):
        mp.delenv(k, raising=False)


_SESSION_SCRUB = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """Scrub before collection (a test module reading a variable at import sees the scrubbed
    environment) and before any session fixture; :func:`pytest_unconfigure` restores the shell's.
    SIGINT is handled whatever the suite was started with: a shell script's background job starts
    with it ignored, and every command a test starts would inherit that (a Ctrl-C test would
    wait for nothing)."""
    _scrub(_SESSION_SCRUB)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    _SESSION_SCRUB.undo()
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_test(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
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
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember the outcome of each test's call phase (the folder fixture reads it)."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


FAST_TEST_SECONDS = 1.0  # a test not marked slow that takes longer is named at the end of the run
_SLOW_UNMARKED: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time each test not marked slow (setup, call and teardown): the fast subset stays fast only
    if a test that starts worker processes or runs seconds is marked."""
    if "slow" not in report.keywords and "postgres" not in report.keywords:
        _SLOW_UNMARKED[report.nodeid] = _SLOW_UNMARKED.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the tests the fast subset runs that took over FAST_TEST_SECONDS: mark them slow (or make
    them fast). Said, not failed: a loaded machine makes anything slow once."""
    over = sorted(
        ((t, n) for n, t in _SLOW_UNMARKED.items() if t > FAST_TEST_SECONDS), reverse=True
    )
    if over:
        terminalreporter.section("tests not marked slow that took over 1 s")
        for t, n in over[:20]:
            terminalreporter.write_line(f"{t:6.2f}s {n}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL param of db_url (or module_db_url) is a postgres test (`-m "not postgres"`
    deselects it), the SQL Server param an mssql test (`-m mssql` selects only those)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        engine = params.get("db_url", params.get("module_db_url"))
        if engine == "postgresql":
            item.add_marker(pytest.mark.postgres)
        elif engine == "mssql":
            item.add_marker(pytest.mark.mssql)


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


def engine(url: str) -> str:
    """sqlite, postgresql or mssql: the engine of a test URL (an ``odbc:`` one by its driver)."""
    from xml_extractor.db.url import parse_url

    return parse_url(url, password="").dialect


def url_password(url: str) -> str:
    """The password a test URL carries (in the URL or in an ``odbc:`` connection string's PWD)."""
    from xml_extractor.db.odbc import connection_attribute
    from xml_extractor.db.url import parse_url

    u = parse_url(url, password="")
    return u.password or (connection_attribute(u.odbc, "PWD") or "" if u.odbc else "")


# -- SQL Server: a fresh database per test on the server of XML_EXTRACTOR_TEST_MSSQL ----------------
_MSSQL_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def mssql_database_url(base: str, database: str, password: str = "") -> str:
    """The URL of ``database`` on the server of ``base`` (an ``mssql://`` or ``odbc:`` SQL Server
    URL) with the same login and options: only the database name differs. ``password`` (the
    shell's XML_EXTRACTOR_DB_PASSWORD) is written in when ``base`` has none, since the tests'
    processes run without that variable."""
    from xml_extractor.db.odbc import connection_string, parse_connection_string
    from xml_extractor.db.url import parse_url

    u = parse_url(base, password=password)
    if u.dialect != "mssql":
        raise ValueError(
            "XML_EXTRACTOR_TEST_MSSQL is not a SQL Server URL (mssql://... or odbc:Driver={...SQL Server};...)"
        )
    if u.odbc:  # the password, if any, is in it already (parse_url adds the given one)
        keep = [
            (k, v)
            for k, v in parse_connection_string(u.odbc)
            if k.lower() not in ("database", "initial catalog")
        ]
        return "odbc:" + connection_string(keep + [("Database", database)])
    parts = urlsplit(base)
    who = ""
    if u.user:
        who = (
            quote(u.user, safe="") + (":" + quote(u.password, safe="") if u.password else "") + "@"
        )
    return urlunsplit(
        (
            parts.scheme,
            who + parts.netloc.rpartition("@")[2],
            "/" + quote(database, safe=""),
            parts.query,
            "",
        )
    )


def mssql_create_database_sql(name: str, collation: str | None = None) -> str:
    """The statement that creates a test database (the server's default collation unless given)."""
    if not _MSSQL_DB_NAME.fullmatch(name) or (
        collation is not None and not re.fullmatch(r"\w+", collation)
    ):
        raise ValueError(f"not a plain SQL Server name: {name!r} {collation!r}")
    return f"CREATE DATABASE [{name}]" + (f" COLLATE {collation}" if collation else "")


def mssql_drop_database_sql(name: str) -> list[str]:
    """The statements that drop a test database even while a test's connections are still open
    (a killed run's workers): every other session is rolled back and put out first."""
    if not _MSSQL_DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain SQL Server name: {name!r}")
    return [
        f"IF DB_ID(N'{name}') IS NOT NULL ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
        f"IF DB_ID(N'{name}') IS NOT NULL DROP DATABASE [{name}]",
    ]


def mssql_sessions_sql(name: str) -> str:
    """The user sessions whose current database is ``name`` (the tool's connections to a test
    database), but the caller's own."""
    if not _MSSQL_DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain SQL Server name: {name!r}")
    return (
        "SELECT session_id FROM sys.dm_exec_sessions WHERE is_user_process = 1 "
        f"AND database_id = DB_ID(N'{name}') AND session_id <> @@SPID"
    )


def _mssql_admin(statements: list[str]) -> list[Any]:
    """Run statements on the ``master`` database of XML_EXTRACTOR_TEST_MSSQL in autocommit (CREATE
    and DROP DATABASE refuse a transaction); the rows of the last one that returns any."""
    import pyodbc

    from xml_extractor.db.url import parse_url

    assert MSSQL_URL
    master = parse_url(mssql_database_url(MSSQL_URL, "master", _MSSQL_PASSWORD))
    conn = pyodbc.connect(master.odbc_connection_string(), autocommit=True, timeout=15)
    rows: list[Any] = []
    try:
        for sql in statements:
            cur = conn.execute(sql)
            if cur.description:
                rows = cur.fetchall()
    finally:
        conn.close()
    return rows


def kill_sessions(url: str, session: Any = None) -> None:
    """Cut the server connections to the test database ``url`` as a DBA would (all of them, or
    only ``session`` from :func:`server_session`): pg_terminate_backend on PostgreSQL, KILL on
    SQL Server. The caller's admin connection is its own, to the server's maintenance database."""
    from xml_extractor.db.url import parse_url

    e, name = engine(url), parse_url(url, password="").database
    if e == "postgresql":
        target = f"pid = {int(session)}" if session is not None else f"datname = '{name}'"
        _pg_admin_exec(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {target} AND pid <> pg_backend_pid()"
        )
    elif e == "mssql":
        if not name:  # an odbc: URL: the database is in the connection string
            from xml_extractor.db.odbc import connection_attribute

            name = connection_attribute(parse_url(url, password="").odbc, "Database") or ""
        spids = (
            [int(session[0])]
            if session is not None
            else [int(r[0]) for r in _mssql_admin([mssql_sessions_sql(name)])]
        )
        for spid in spids:
            try:
                _mssql_admin([f"KILL {spid}"])
            except Exception:
                pass
    else:
        raise ValueError("SQLite has no server connection to cut")


def server_session(db: Any) -> Any:
    """What identifies ``db``'s current server connection (not reused by the next one):
    PostgreSQL's backend pid; SQL Server's (session id, connection id): session ids are reused."""
    if db.dialect.name == "mssql":
        return tuple(
            db.autocommit_query(
                "SELECT @@SPID, CONVERT(NVARCHAR(36), connection_id) "
                "FROM sys.dm_exec_connections WHERE session_id = @@SPID"
            )[0]
        )
    return db.autocommit_query("SELECT pg_backend_pid()")[0][0]


_MSSQL_UNREACHABLE: list[
    str
] = []  # the first failure to reach the server: later tests do not wait for it again


def _mssql_database(collation: str | None = None) -> Iterator[str]:
    """A fresh database on XML_EXTRACTOR_TEST_MSSQL's server for one test, dropped afterwards."""
    if not MSSQL_URL:
        pytest.skip("SQL Server not given (set XML_EXTRACTOR_TEST_MSSQL)")
    name = "xe_" + uuid.uuid4().hex[:12]
    if not _MSSQL_UNREACHABLE:
        try:
            _mssql_admin([mssql_create_database_sql(name, collation)])
        except Exception as exc:
            from xml_extractor.db.odbc import redact

            _MSSQL_UNREACHABLE.append(redact(f"{type(exc).__name__}: {exc}")[:500])
    if _MSSQL_UNREACHABLE:
        msg = (
            f"the SQL Server in XML_EXTRACTOR_TEST_MSSQL cannot be reached: {_MSSQL_UNREACHABLE[0]}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {msg}")
        pytest.skip(msg)
    yield mssql_database_url(MSSQL_URL, name, _MSSQL_PASSWORD)
    try:
        _mssql_admin(mssql_drop_database_sql(name))
    except Exception:
        pass


ENGINES = ["sqlite", "postgresql"] + (["mssql"] if MSSQL_URL else [])


def _fresh_database(engine_name: str, folder: Path) -> Iterator[str]:
    """A fresh empty database of ``engine_name`` (a file in ``folder`` for SQLite), dropped after."""
    if engine_name == "sqlite":
        yield f"sqlite:///{folder / 'test.db'}"
        return
    if engine_name == "mssql":
        yield from _mssql_database()
        return
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but XML_EXTRACTOR_TEST_PG is not set: PostgreSQL tests must run in CI"
            )
        pytest.skip("PostgreSQL not available (run the suite with scripts/test.sh to start one)")
    name = "xe_" + uuid.uuid4().hex[:12]
    _pg_admin_exec(f"CREATE DATABASE {name}")
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    try:
        _pg_admin_exec(f"DROP DATABASE {name} WITH (FORCE)")
    except Exception:
        pass


@pytest.fixture(params=ENGINES)
def db_url(request, tmp_path):
    """A fresh empty database URL of each engine (SQL Server when XML_EXTRACTOR_TEST_MSSQL is set)."""
    yield from _fresh_database(request.param, tmp_path)


@pytest.fixture(scope="module", params=ENGINES)
def module_db_url(request, tmp_path_factory):
    """db_url for a module-scoped fixture: one fresh database per engine per module, for tests that
    only read what the fixture built (one processed database instead of one per test)."""
    yield from _fresh_database(request.param, tmp_path_factory.mktemp(f"module-{request.param}"))


class DatabaseTemplates:
    """Databases built once per session and copied per test: a test that changes a processed
    database gets its own copy of one built once (SQLite: a file copy; PostgreSQL: ``CREATE
    DATABASE ... TEMPLATE``) instead of rebuilding it with init-db, generate-mock and a run. SQL
    Server has no template databases: there the builder runs on the test's own database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.built: dict[tuple[str, str], str] = {}  # (name, engine) -> the template's URL
        self.pg_templates: list[str] = []

    def fill(self, url: str, name: str, build: Callable[[str], None]) -> str:
        """Make the fresh empty database ``url`` (from db_url) a copy of the template ``name`` of
        its engine, built by ``build(template_url)`` the first time; returns ``url``. ``build``
        must not depend on the test (its folder, its parameters): every copy is the same."""
        from xml_extractor.db.url import parse_url

        kind = engine(url)
        if kind == "mssql":
            build(url)
            return url
        template = self.built.get((name, kind))
        if template is None:
            template = self._build(name, kind, build)
        if kind == "sqlite":
            shutil.copyfile(parse_url(template, password="").path, parse_url(url, password="").path)
        else:
            target = parse_url(url, password="").database
            _pg_admin_exec(f"DROP DATABASE {target} WITH (FORCE)")
            _pg_admin_exec(f"CREATE DATABASE {target} TEMPLATE {_pg_name(template)}")
        return url

    def _build(self, name: str, kind: str, build: Callable[[str], None]) -> str:
        """The template of ``name`` on ``kind``, built now (a file in the session's folder, or a
        PostgreSQL database dropped at the session's end), checked to be reusable as one."""
        key = re.sub(r"\W", "_", name)
        if kind == "sqlite":
            url = f"sqlite:///{self.folder / (key + '.db')}"
        else:
            assert PG_URL
            db = f"xe_tpl_{uuid.uuid4().hex[:12]}"
            _pg_admin_exec(f"CREATE DATABASE {db}")
            self.pg_templates.append(db)
            url = f"{PG_URL.rsplit('/', 1)[0]}/{db}"
        build(url)
        if kind == "sqlite":  # one file: whatever a WAL held is in the database itself
            import sqlite3

            from xml_extractor.db.url import parse_url

            conn = sqlite3.connect(parse_url(url, password="").path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        else:  # a template takes no other connection while it is copied
            _pg_admin_exec(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{_pg_name(url)}' AND pid <> pg_backend_pid()"
            )
        self.built[(name, kind)] = url
        return url

    def drop(self) -> None:
        for db in self.pg_templates:
            try:
                _pg_admin_exec(f"DROP DATABASE {db} WITH (FORCE)")
            except Exception:
                pass


def process_mock(url: str, count: int, seed: int, workers: int = 1) -> str:
    """init-db, ``count`` mock documents of ``seed`` (a fifth faulty), one run in batches of 10:
    the processed database with failures that the reprocess and operator tests start from."""
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--faulty-share",
        "0.2",
        "--seed",
        str(seed),
        check=True,
    )
    p = cli_in_process(
        "run", "--db", url, "--no-progress", "--workers", str(workers), "--batch-size", "10"
    )
    assert p.returncode == 1, p.stdout + p.stderr  # the faulty fifth failed
    return url


def processed_copy(
    templates: DatabaseTemplates, url: str, count: int, seed: int, workers: int = 1
) -> str:
    """The fresh database ``url`` made a copy of :func:`process_mock`'s, processed once per session."""
    return templates.fill(
        url, f"mock-{count}-{seed}-{workers}", lambda u: process_mock(u, count, seed, workers)
    )


def _pg_name(url: str) -> str:
    from xml_extractor.db.url import parse_url

    name = parse_url(url, password="").database
    if not re.fullmatch(r"xe_\w+", name or ""):
        raise ValueError(f"not a test database: {name!r}")
    return name


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTemplates]:
    """The session's :class:`DatabaseTemplates` (db_url fixtures copy processed databases)."""
    templates = DatabaseTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


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


def cli(
    *args: str,
    env: dict | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (real processes, real exit codes), in the scrubbed
    environment plus ``env``, in the test's own folder unless ``cwd`` is given."""
    p = subprocess.run(
        [sys.executable, "-m", "xml_extractor", *args],
        capture_output=True,
        text=True,
        env=_child_env(env),
        cwd=str(cwd or _default_cwd()),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


_IN_PROCESS_REFUSED = ("XML_EXTRACTOR_FAULTS", "XML_EXTRACTOR_TESTING_GATE")
_WORKER_SERVER_STARTED: list[bool] = []  # the forkserver of in-process runs: started once


def cli_in_process(
    *args: str,
    env: dict | None = None,
    cwd: Path | None = None,
    check: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """The command line in this process (click's CliRunner), answering as :func:`cli` does: the
    exit code (``sys.exit``, a usage error 2, an uncaught exception 1 with its traceback on
    stderr), stdout and stderr apart, the package's warnings on stderr when nothing else takes them
    (Python's last-resort handler in a real process), in the scrubbed environment plus ``env``, in
    the test's own folder unless ``cwd`` is given. For tests where the process is not the point: a
    run still starts real worker processes (forked by one forkserver that lives as long as the
    session, so the workers see the session's environment, not ``env``: fault injection, which the
    workers read, needs :func:`cli`). ``timeout`` is accepted for :func:`cli`'s signature: a command in this
    process cannot be cut short."""
    from click.testing import CliRunner

    from xml_extractor.cli import cli as command_line

    refused = [k for k in (env or {}) if k in _IN_PROCESS_REFUSED]
    if refused:
        raise ValueError(f"{refused}: the workers read it; use cli() (a real process)")
    _start_worker_server()
    package = logging.getLogger("xml_extractor")
    level, stderr_handler = package.level, _LastResort()
    package.addHandler(stderr_handler)
    previous, argv = Path.cwd(), sys.argv
    os.chdir(cwd or _default_cwd())
    sys.argv = [str(ROOT / "xml_extractor" / "__main__.py"), *args]  # what messages quote
    try:
        r = CliRunner().invoke(
            command_line, list(args), env=env, prog_name="xml-extractor", catch_exceptions=True
        )
    finally:
        sys.argv = argv
        os.chdir(previous)
        package.removeHandler(stderr_handler)
        package.setLevel(level)
    stderr = r.stderr
    if r.exc_info is not None and not isinstance(r.exc_info[1], SystemExit):
        stderr += "".join(traceback.format_exception(*r.exc_info))
    p = subprocess.CompletedProcess(["xml-extractor", *args], r.exit_code, r.stdout, stderr)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class _LastResort(logging.Handler):
    """What Python's last-resort handler does in a real process: a package record of WARNING or
    above goes to stderr, message only, when no handler of the package takes it (a run's log file
    does); written to the stderr of the moment (CliRunner's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        others = [h for h in logging.getLogger("xml_extractor").handlers if h is not self]
        if not others:
            sys.stderr.write(self.format(record) + "\n")


def _start_worker_server() -> None:
    """Start the forkserver of in-process runs from the session's folder with the session's
    environment, before any test's folder or variables: every worker forked later inherits them,
    and a test's folder is removed when it passes."""
    if _WORKER_SERVER_STARTED:
        return
    from xml_extractor import supervision
    from xml_extractor.processing.processor import WORKER_PRELOAD

    previous, saved = Path.cwd(), dict(os.environ)
    os.chdir(_session_dir())
    try:
        for k in scrubbed_names(os.environ):
            del os.environ[k]
        supervision.start_helpers(supervision.worker_context(WORKER_PRELOAD))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(previous)
    _WORKER_SERVER_STARTED.append(True)


def popen(
    *args: str, env: dict | None = None, cwd: Path | None = None, ignoring: tuple[int, ...] = ()
) -> subprocess.Popen:
    """Start the real command line in its own process group (signals go to the group, as systemd
    sends them); same environment and folder rules as :func:`cli`. ``ignoring``: signals the
    command starts with ignored (as a shell script's ``trap "" INT TERM`` leaves them)."""

    def ignore() -> None:
        for s in ignoring:
            signal.signal(s, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-m", "xml_extractor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(env),
        cwd=str(cwd or _default_cwd()),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=ignore if ignoring else None,
    )


def popen_held(point: str, folder: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The real command (:func:`popen`) held at the test hook ``point`` (``hold`` in
    xml_extractor/testing: it waits there until :func:`release`), returned once it is there. A
    command that exits first fails the test with its output; one not there in 120 s is killed."""
    folder.mkdir(parents=True, exist_ok=True)
    faults = {"XML_EXTRACTOR_FAULTS": f"hold={point},hold_dir={folder}"}
    p = popen(*args, env={**(env or {}), **faults})
    deadline = time.monotonic() + 120
    while not (folder / f"held-{point}").exists():
        if p.poll() is not None:
            out, err = p.communicate()
            raise AssertionError(f"exit {p.returncode} before reaching {point}\n{out}\n{err}")
        if time.monotonic() > deadline:
            if hasattr(os, "killpg"):
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
            p.communicate()
            raise AssertionError(f"never reached {point} in 120 s")
        time.sleep(0.05)
    return p


def release(folder: Path, point: str) -> None:
    """Let a command :func:`popen_held` at ``point`` go on."""
    (folder / f"release-{point}").touch()


def _child_env(extra: dict | None) -> dict[str, str]:
    """The scrubbed environment (even when called outside a test) plus the test's own variables.
    A test that asks for ``XML_EXTRACTOR_FAULTS`` gets the gate that lets the child honour it
    (xml_extractor/testing/gate.py), written into the test's own folder."""
    e = {k: v for k, v in os.environ.items() if k not in scrubbed_names(os.environ)}
    e.update(extra or {})
    spec = (extra or {}).get("XML_EXTRACTOR_FAULTS")
    if spec and "XML_EXTRACTOR_TESTING_GATE" not in (extra or {}):
        from xml_extractor.testing.harness import fault_injection_env

        e.update(fault_injection_env(spec, subprocess_dir()))
    return e


_SESSION_DIR: Path | None = (
    None  # for subprocesses a module/session fixture starts (no test folder yet)
)


def _default_cwd() -> Path:
    return _TEST_DIR if _TEST_DIR is not None else _session_dir()


def _session_dir() -> Path:
    """A folder that lives as long as the session (removed by :func:`pytest_unconfigure`)."""
    global _SESSION_DIR
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
        return db.autocommit_query(
            f"SELECT app_id, status, stage, attempt, error_class, reason FROM {db.names['log']} ORDER BY app_id, attempt"
        )
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
        assert src == logged, (
            f"unprocessed: {sorted(src - logged)[:10]}, unknown: {sorted(logged - src)[:10]}"
        )
        ok = set(succ)
        orphans = {}
        for t in db.contract.tables:
            apps = {
                r[0]
                for r in db.autocommit_query(
                    f"SELECT DISTINCT {db.dialect.quote(t.app_id_column)} FROM {db.table(t.name)}"
                )
            }
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

    faults = {
        d.app_id: d.fault
        for d in MockGenerator(seed=seed, faulty_share=share).documents(start, count)
        if d.fault
    }
    return {a: k for a, k in faults.items() if k != "con_id_collision" or (a - 1) not in faults}
