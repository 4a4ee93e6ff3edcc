"""Behaving as a library (issue 11, reproductions 3, 5 and 6): importing the package or running it
in-process leaves the host process as it was (sqlite3 adapters and converters, logging), the
fault-injection switch cannot be tripped by the environment alone, and the test suite itself is
isolated from the shell's environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import KEEP_ENV, ROOT, cli, subprocess_dir

# What a process holds: sqlite3's adapters/converters (by key and function name: the objects
# differ between processes) and the logging configuration.
SNAPSHOT = textwrap.dedent("""
    import json, logging, sqlite3
    def snapshot():
        name = lambda f: getattr(f, "__module__", "?") + "." + getattr(f, "__qualname__", repr(f))
        pkg = logging.getLogger("xml_extractor")
        return {
            "adapters": sorted([f"{t.__module__}.{t.__qualname__}|{p.__name__}", name(f)]
                               for (t, p), f in sqlite3.adapters.items()),
            "converters": sorted([k, name(f)] for k, f in sqlite3.converters.items()),
            "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
            "root_level": logging.getLogger().level,
            "package_handlers": [type(h).__name__ for h in pkg.handlers],
            "package_level": pkg.level,
            "package_propagate": pkg.propagate,
            "last_resort": type(logging.lastResort).__name__,
            "disabled": logging.root.manager.disable,
        }
""")


def _in_subprocess(body: str, cwd: Path) -> dict:
    code = SNAPSHOT + textwrap.dedent(body)
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("XML_EXTRACTOR_")},
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_importing_the_sqlite_dialect_registers_no_sqlite3_adapter(tmp_path):
    """Reproduction 3: importing the SQLite dialect registered process-wide adapters."""
    bare = _in_subprocess("print(json.dumps(snapshot()))", tmp_path)
    after = _in_subprocess(
        """
        import xml_extractor.db.sqlite
        print(json.dumps(snapshot()))
    """,
        tmp_path,
    )
    assert after["adapters"] == bare["adapters"] and after["converters"] == bare["converters"]


@pytest.mark.slow
def test_importing_every_module_leaves_sqlite3_and_logging_as_they_were(tmp_path):
    bare = _in_subprocess("print(json.dumps(snapshot()))", tmp_path)
    after = _in_subprocess(
        """
        import importlib, pkgutil, xml_extractor
        for m in pkgutil.walk_packages(xml_extractor.__path__, "xml_extractor."):
            if m.name != "xml_extractor.__main__":  # the entry point runs the CLI
                importlib.import_module(m.name)
        print(json.dumps(snapshot()))
    """,
        tmp_path,
    )
    assert after == bare


@pytest.mark.slow
def test_a_whole_sqlite_run_in_process_leaves_sqlite3_adapters_as_they_were(tmp_path):
    """The library used in-process (the CLI's commands called as functions: init, generate, run with
    its worker processes, status, reconcile) changes no sqlite3 adapter or converter of the host."""
    url = f"sqlite:///{tmp_path / 'lib.db'}"
    bare = _in_subprocess("print(json.dumps(snapshot()))", tmp_path)
    after = _in_subprocess(
        f"""
        from xml_extractor.cli import cli
        def call(*args):
            try:
                cli.main(list(args), prog_name="xml-extractor", standalone_mode=False)
            except SystemExit as e:
                assert e.code in (0, 1, None), e.code
        call("init-db", "--db", {url!r})
        call("generate-mock", "--db", {url!r}, "--count", "30", "--faulty-share", "0.1")
        call("run", "--db", {url!r}, "--no-progress", "--workers", "1", "--logs-dir", "logs", "--metrics-dir", "metrics")
        call("status", "--db", {url!r})
        call("reconcile", "--db", {url!r})
        # and a foreign sqlite3 connection of the host still binds a Decimal as sqlite3 does by default
        import sqlite3, decimal
        try:
            sqlite3.connect(":memory:").execute("select ?", [decimal.Decimal("1.5")])
            decimal_binds = True
        except sqlite3.Error:
            decimal_binds = False
        s = snapshot()
        s["decimal_binds"] = decimal_binds
        print(json.dumps(s))
    """,
        tmp_path,
    )
    assert after.pop("decimal_binds") is False  # sqlite3's own behaviour: no adapter for Decimal
    assert after["adapters"] == bare["adapters"] and after["converters"] == bare["converters"]
    from conftest import open_db

    db = open_db(url)
    try:
        assert db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}") == 30
    finally:
        db.close()


def test_the_dialect_still_stores_decimal_date_and_datetime_as_before(tmp_path):
    """The per-connection conversion stores exactly what the process-wide adapters stored."""
    import datetime as dt
    from decimal import Decimal

    from xml_extractor.db.sqlite import SQLiteDialect
    from xml_extractor.db.url import parse_url

    conn = SQLiteDialect().connect(parse_url(f"sqlite:///{tmp_path / 'b.db'}"))
    conn.execute("CREATE TABLE t (a, b, c, d)")
    values = [Decimal("12.50"), dt.date(2025, 1, 2), dt.datetime(2025, 1, 2, 3, 4, 5, 678901), 7]
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", values)
    cur = conn.cursor()
    cur.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [values, [None, None, None, None]])
    cur.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", iter([values]))
    cur.execute("INSERT INTO t VALUES (:a, :b, :c, :d)", dict(zip("abcd", values)))
    rows = conn.execute(
        "SELECT typeof(a), a, typeof(b), b, typeof(c), c, d FROM t WHERE a IS NOT NULL"
    ).fetchall()
    assert (
        rows == [("text", "12.50", "text", "2025-01-02", "text", "2025-01-02 03:04:05.678", 7)] * 4
    )
    import sqlite3

    with pytest.raises(sqlite3.Error):  # a plain connection of the same process is untouched
        sqlite3.connect(":memory:").execute("select ?", [Decimal("1")])


# -- the test suite's own isolation (reproduction 6) --------------------------------------------------

INNER = """
import os
from pathlib import Path

from conftest import cli, subprocess_dir


def test_stray_variables_are_gone_and_subprocesses_do_not_see_them():
    assert not [k for k in os.environ if k.startswith("XML_EXTRACTOR_") and k not in {keep!r}]
    assert "PGPASSWORD" not in os.environ
    assert os.environ["XML_EXTRACTOR_TEST_PG"] == "postgresql://kept@127.0.0.1:1/kept"
    p = cli("init-db")  # no --db: XML_EXTRACTOR_DB from the shell would point at /nonexistent
    assert p.returncode == 0, p.stdout + p.stderr
    assert (subprocess_dir() / "xml_extractor.db").exists()  # the default file, in the test's own folder
    Path(os.environ["MARK_FILE"]).write_text(str(subprocess_dir()))


def test_a_variable_set_by_one_test():
    os.environ["XML_EXTRACTOR_WORKERS"] = "7"


def test_does_not_reach_the_next():
    assert "XML_EXTRACTOR_WORKERS" not in os.environ
"""


@pytest.mark.slow
def test_the_suite_runs_in_a_scrubbed_environment_and_cleans_its_folders(tmp_path):
    """A pytest session started with stray XML_EXTRACTOR_* / PG* variables: its tests and their
    subprocesses see none of them (except the test database URL), a variable one test sets does
    not reach the next, and the folders of passing tests are removed."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER.replace("{keep!r}", repr(set(KEEP_ENV))))
    mark = tmp_path / "mark"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XML_EXTRACTOR_")}
    env.update(
        XML_EXTRACTOR_DB="sqlite:////nonexistent/dir/x.db",
        XML_EXTRACTOR_FAULTS="fail_app=1,fail_after_table=app_base",
        XML_EXTRACTOR_WORKERS="99",
        XML_EXTRACTOR_CONTRACT="/nonexistent.json",
        PGPASSWORD="stray",
        XML_EXTRACTOR_TEST_PG="postgresql://kept@127.0.0.1:1/kept",
        MARK_FILE=str(mark),
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "conftest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(inner),
            str(inner / "test_inner.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(inner),
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 passed" in p.stdout, p.stdout + p.stderr
    folder = Path(mark.read_text())
    assert not folder.exists(), (
        f"the passing test's folder was not removed: {sorted(folder.iterdir())}"
    )


@pytest.mark.slow
def test_this_session_is_scrubbed_too():
    assert not [k for k in os.environ if k.startswith("XML_EXTRACTOR_") and k not in KEEP_ENV]
    assert subprocess_dir().is_dir()
    p = cli("--version")
    assert p.returncode == 0


# -- fault injection behind the harness's gate (reproduction 5, first half) -------------------------


def test_fault_injection_is_honoured_only_behind_the_gate(monkeypatch, tmp_path):
    from xml_extractor import hooks
    from xml_extractor.testing.faults import FaultPlan
    from xml_extractor.testing.harness import fault_injection_env

    spec = "fail_app=5,fail_after_table=app_base"
    monkeypatch.setenv(hooks.FAULTS_ENV, spec)
    assert hooks.fault_plan() is None  # the variable alone trips nothing
    gate = fault_injection_env(spec, tmp_path)[hooks.GATE_ENV]
    monkeypatch.setenv(hooks.GATE_ENV, gate)
    assert hooks.fault_plan() == FaultPlan(fail_app=5, fail_after_table="app_base")
    monkeypatch.setenv(
        hooks.FAULTS_ENV, "sleep_before_commit=30"
    )  # a gate admits its own faults only
    assert hooks.fault_plan() is None
    monkeypatch.setenv(hooks.FAULTS_ENV, spec)
    os.chmod(gate, 0o666)  # a gate anyone could have written
    assert hooks.fault_plan() is None
    os.chmod(gate, 0o600)
    link = tmp_path / "link"
    link.symlink_to(gate)
    monkeypatch.setenv(hooks.GATE_ENV, str(link))
    assert hooks.fault_plan() is None
    monkeypatch.setenv(hooks.GATE_ENV, str(tmp_path / "missing"))
    assert hooks.fault_plan() is None


PRODUCT_WITHOUT_GATE = """
import sys
from xml_extractor.cli import cli
from xml_extractor.db import store
from xml_extractor.hooks import fault_plan, hold
from xml_extractor.processing import processor, selection
assert fault_plan() is None
hold("queue_width_locked")
print(sorted(m for m in sys.modules if m.startswith("xml_extractor.testing")))
"""


@pytest.mark.slow
def test_the_product_loads_no_test_machinery_outside_the_gate(tmp_path):
    """Every command's modules import, and their hooks run, without loading xml_extractor.testing
    (nor with XML_EXTRACTOR_FAULTS set alone); only xml_extractor/hooks.py imports it."""
    import ast

    from conftest import _child_env

    for extra in ({}, {"XML_EXTRACTOR_FAULTS": "hold=queue_width_locked,hold_dir=."}):
        env = {**_child_env(None), **extra}
        p = subprocess.run(
            [sys.executable, "-c", PRODUCT_WITHOUT_GATE],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(tmp_path),
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "[]", p.stdout
    root = Path(__file__).resolve().parent.parent / "xml_extractor"
    importers = set()
    for f in root.rglob("*.py"):
        if "testing" in f.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any("testing" in n.split(".") for n in names):
                importers.add(f.relative_to(root).as_posix())
    assert importers == {"hooks.py"}


@pytest.mark.slow  # a real run with a worker process
def test_a_run_with_a_stray_faults_variable_is_not_affected(db_url, tmp_path):
    """XML_EXTRACTOR_FAULTS in a production shell (no gate): the run is the normal run, and says so."""
    from conftest import _child_env, assert_exactly_once

    url = db_url
    cli("init-db", "--db", url, check=True)
    cli("generate-mock", "--db", url, "--count", "20", "--faulty-share", "0", check=True)
    env = _child_env(None)
    env["XML_EXTRACTOR_FAULTS"] = "fail_app=5,fail_after_table=app_base"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "xml_extractor",
            "run",
            "--db",
            url,
            "--no-progress",
            "--workers",
            "1",
            "--logs-dir",
            str(tmp_path / "logs"),
            "--metrics-dir",
            str(tmp_path / "metrics"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert assert_exactly_once(url)["success"] == 20
    said = p.stdout + p.stderr + "".join(f.read_text() for f in (tmp_path / "logs").iterdir())
    assert "XML_EXTRACTOR_FAULTS is set but ignored" in said


# -- the contract is compiled once per process (reproduction 8) ------------------------------------

COUNT_COMPILES = """
import json, sys
from xml_extractor.contract import compiler
calls = []
real = compiler._compile
compiler._compile = lambda c, *unit: calls.append(c.digest) or real(c, *unit)
"""


@pytest.mark.slow
def test_validating_then_running_compiles_the_contract_once(tmp_path):
    """Loading validates by compiling; the plan is kept (not thrown away) and reused, also when the
    same contract is loaded again."""
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            COUNT_COMPILES
            + textwrap.dedent("""
        from xml_extractor import compile_contract, load_contract
        first = load_contract()
        plan = compile_contract(first)
        again = compile_contract(load_contract())
        print(json.dumps({"calls": len(calls), "same": plan is again}))
    """),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"calls": 1, "same": True}


@pytest.mark.slow
def test_load_xml_compiles_once_not_per_file(db_url, tmp_path):
    folder = tmp_path / "docs"
    assert cli("generate-mock", "--count", "25", "--out", str(folder)).returncode == 0
    url = db_url
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            COUNT_COMPILES
            + textwrap.dedent(f"""
        from xml_extractor.cli import cli
        try:
            cli.main(["load-xml", {str(folder)!r}, "--db", {url!r}], prog_name="xml-extractor", standalone_mode=False)
        except SystemExit as e:
            assert e.code in (0, None), e.code
        print(json.dumps({{"calls": len(calls)}}))
    """),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"calls": 1}
    assert re.search(r"loaded\s+25\b", p.stdout), p.stdout


@pytest.mark.slow
def test_markers_select_the_fast_subset():
    """`-m "not slow and not postgres"` leaves out the PostgreSQL half of db_url (and module_db_url)
    tests and the process/signal tests; the markers are registered (--strict-markers)."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "--strict-markers",
            "-m",
            "not slow and not postgres",
            "tests/test_pipeline.py",
            "tests/test_crash_safety.py",
            "tests/test_cli.py",
            "tests/test_named_queries_live.py",
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
        env=dict(os.environ, XML_EXTRACTOR_TEST_PG="postgresql://postgres@127.0.0.1:1/unused"),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    kept = [ln for ln in p.stdout.splitlines() if "::" in ln]
    assert any("[sqlite]" in t for t in kept)
    assert not [t for t in kept if "[postgresql]" in t or "test_crash_safety" in t]
    assert any(
        "test_rolled_back[sqlite]" in t for t in kept
    )  # module_db_url's SQLite param (through the live fixture)
    assert not [t for t in kept if "test_status_failures_quality_in_process" in t]  # marked slow
    assert re.search(r"\b\d+ deselected", p.stdout)


@pytest.mark.slow
def test_a_given_sql_server_adds_the_mssql_param_to_db_url_and_module_db_url():
    """XML_EXTRACTOR_TEST_MSSQL (any URL: collection connects to nothing) makes SQL Server a third
    engine of db_url and module_db_url, marked mssql (`-m mssql` selects only those)."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "--strict-markers",
            "-m",
            "mssql",
            "tests/test_cli.py",
            "tests/test_crash_safety.py",
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
        env=dict(os.environ, XML_EXTRACTOR_TEST_MSSQL="mssql://sa@127.0.0.1:1/unused"),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    kept = [ln for ln in p.stdout.splitlines() if "::" in ln]
    assert kept and all("[mssql" in t or "-mssql" in t for t in kept), kept
    assert any("test_status_failures_quality_in_process[mssql]" in t for t in kept)  # module_db_url
    assert any("test_sigkill_worker_mid_transaction[mssql]" in t for t in kept)  # db_url
