"""The command line as one package, tested in-process with click's CliRunner wherever no real
process or signal is needed (fast; the process/signal behaviour is tested with real processes in
test_pipeline/test_concurrency/test_crash_safety). One small database is processed once by a
real ``run`` (real worker processes) per engine (module_db_url); the operator commands then read it
in-process."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, cli_in_process, expected_failures, open_db
from conftest import cli as run_cli

import xml_extractor.cli as cli_pkg
from xml_extractor.cli import cli

SAMPLE = ROOT / "tests" / "data" / "app-1001.xml"
COUNT, SEED, FAULTY = 40, 33, 0.2


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_every_command_defined_in_the_package_is_registered() -> None:
    """The group holds every command whatever was imported before (no import-order registration)."""
    defined = set()
    for mod in pkgutil.iter_modules(cli_pkg.__path__):
        m = importlib.import_module(f"xml_extractor.cli.{mod.name}")
        defined |= {
            obj.name
            for obj in vars(m).values()
            if isinstance(obj, click.Command) and not isinstance(obj, click.Group)
        }
    assert defined and defined == set(cli.commands)
    fresh = subprocess.run(
        [sys.executable, "-c", "from xml_extractor.cli import cli; print(sorted(cli.commands))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert fresh.stdout.strip() == str(sorted(cli.commands))


@pytest.mark.slow
def test_module_entry_point() -> None:
    p = run_cli("--version", check=True)
    assert p.stdout.startswith("xml-extractor, version ")
    assert run_cli("no-such-command").returncode == 2


def test_validate_contract_prints_figures_and_names_the_error_place(tmp_path: Path) -> None:
    r = invoke("validate-contract")
    assert r.exit_code == 0 and r.output.startswith("ok: credit_card ")
    assert " tables, " in r.output and " attributes, " in r.output
    raw = json.loads((ROOT / "xml_extractor" / "contracts" / "credit_card.json").read_text())
    raw["tables"][0]["columns"][1]["enum"] = "nope"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(raw))
    r = CliRunner().invoke(cli, ["validate-contract", str(broken)])
    assert r.exit_code == 2
    assert "tables[0].columns[1]" in r.output and "nope" in r.output


@pytest.mark.slow
def test_map_shows_rows_and_fails_a_broken_document(tmp_path: Path) -> None:
    r = invoke("map", str(SAMPLE), "--format", "json")
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert out["status"] == "success" and out["tables"]["app_base"][0]["app_id"] == out["app_id"]
    bad = tmp_path / "bad.xml"
    bad.write_bytes(SAMPLE.read_bytes()[:500])
    r = invoke("map", str(bad), "--format", "json")
    assert r.exit_code == 1 and json.loads(r.output)["stage"] == "parse"
    r = invoke("map", str(SAMPLE), "--app-id", "1")
    assert r.exit_code == 1 and "failed at stage" in r.output


@pytest.mark.parametrize("dialect,quote", [("sqlite", '"'), ("postgresql", '"'), ("mssql", "[")])
def test_init_db_print(dialect: str, quote: str) -> None:
    r = invoke("init-db", "--print", "--dialect", dialect)
    assert r.exit_code == 0 and f"({dialect})" in r.output.splitlines()[0]
    assert f"CREATE TABLE {quote}" in r.output or f"CREATE TABLE IF NOT EXISTS {quote}" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["init-db", "--print", "--dialect", "oracle"], "oracle"),
        (["status", "--db", "mysql://h/db"], "mysql"),
        (["status", "--db", "sqlite:///{tmp}/missing.db"], "init-db"),
        (["run", "--db", "sqlite:///{tmp}/missing.db"], "init-db"),
        (["status", "--server", "h"], "--database"),
        (["validate-contract", "{tmp}/none.json"], "none.json"),
    ],
)
def test_usage_and_configuration_errors_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    r = CliRunner().invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def processed(module_db_url: str) -> str:
    """A small database of each engine: init-db, generate-mock and one run, all in-process (the run
    with real worker processes). The tests only read it, or put back what they change."""
    url = module_db_url
    assert invoke("init-db", "--db", url).exit_code == 0
    assert (
        invoke(
            "generate-mock",
            "--db",
            url,
            "--count",
            str(COUNT),
            "--seed",
            str(SEED),
            "--faulty-share",
            str(FAULTY),
        ).exit_code
        == 0
    )
    p = cli_in_process("run", "--db", url, "--no-progress", "--workers", "1", "--batch-size", "10")
    assert p.returncode == 1, p.stdout + p.stderr  # the faulty documents failed
    return url


@pytest.mark.slow
def test_status_failures_quality_in_process(processed: str) -> None:
    failed = len(expected_failures(SEED, FAULTY, COUNT))
    r = invoke("status", "--db", processed, "--format", "json")
    assert r.exit_code == 0
    st = json.loads(r.output)
    assert (st["source_rows"], st["success"], st["failed"], st["pending"]) == (
        COUNT,
        COUNT - failed,
        failed,
        0,
    )
    r = invoke("failures", "--db", processed, "--format", "json")
    assert r.exit_code == 0
    assert sum(g["count"] for g in json.loads(r.output)) == failed
    r = invoke("quality", "--db", processed, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)


def test_contradicting_run_options_exit_2(processed: str) -> None:
    r = CliRunner().invoke(
        cli, ["run", "--db", processed, "--mode", "queue", "--instance-count", "2", "--no-progress"]
    )
    assert r.exit_code == 2 and "instance-count" in r.output


def test_reprocess_names_ids_missing_from_the_source(processed: str) -> None:
    """Unknown ids are reported on stderr, not dropped silently; none existing is a usage error."""
    r = CliRunner().invoke(cli, ["reprocess", "--db", processed, "123456"])
    assert r.exit_code == 2 and "not in the source table: 123456" in r.stderr, r.output
    r = CliRunner().invoke(cli, ["reprocess", "--db", processed, "12", "5", "99999", "--dry-run"])
    assert r.exit_code == 0 and "not in the source table: 99999" in r.stderr, r.output
    assert "would reprocess 2 application(s): 5 12" in r.stdout
    assert "union" in invoke("reprocess", "--help").output


@pytest.mark.slow
def test_reconcile_in_process_consistent_then_a_gap(processed: str) -> None:
    r = invoke("reconcile", "--db", processed, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)["consistent"] is True
    db = open_db(processed)  # the module's database: the lost log rows are put back afterwards
    try:
        log = db.names["log"]
        app_id = db.scalar(f"SELECT MIN(app_id) FROM {log} WHERE status = 'success'")
        db.begin()
        cur = db.execute(f"SELECT * FROM {log} WHERE app_id = ?", [app_id])
        names = [d[0] for d in cur.description]
        lost = [list(row) for row in cur.fetchall()]
        cur.close()
        keep = [
            i for i, n in enumerate(names) if n.lower() != "log_id"
        ]  # an identity column: numbered again
        db.execute(f"DELETE FROM {log} WHERE app_id = ?", [app_id]).close()
        db.commit()
        try:
            r = invoke("reconcile", "--db", processed, "--format", "json")
        finally:
            cols = ", ".join(db.dialect.quote(names[i]) for i in keep)
            db.begin()
            for row in lost:
                db.execute(
                    f"INSERT INTO {log} ({cols}) VALUES ({', '.join('?' for _ in keep)})",
                    [row[i] for i in keep],
                ).close()
            db.commit()
    finally:
        db.close()
    assert r.exit_code == 1
    rec = json.loads(r.output)
    assert rec["consistent"] is False
    hits = [c for c in rec["checks"] if c["inconsistency"] and c["count"]]
    assert hits and all(app_id in c["sample_app_ids"] for c in hits)
    assert (
        invoke("reconcile", "--db", processed).exit_code == 0
    )  # put back: the next test sees it whole


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["status"], ["run", "--reconnect-seconds", "1", "--no-progress"]]
)
def test_unreachable_server_exits_3_with_one_line(command: list[str]) -> None:
    """A server that refuses the connection is the environment (exit 3), said in one line (no
    driver tuple with \\n\\t); run retries for --reconnect-seconds first."""
    pytest.importorskip("pyodbc")
    p = run_cli(*command, "--db", "postgresql://postgres:s3cret@127.0.0.1:59999/x")
    assert p.returncode == 3, p.stderr
    assert "cannot connect to the database" in p.stderr and "Connection refused" in p.stderr
    assert (
        "\\n" not in p.stderr
        and "s3cret" not in p.stderr
        and len(p.stderr.strip().splitlines()) == 1
    )


@pytest.mark.postgres
def test_server_refusing_the_credentials_is_a_configuration_error() -> None:
    """The server answered (unknown role or database): exit 2, the configuration, not exit 3."""
    from conftest import PG_URL

    from xml_extractor.db.url import parse_url

    if not PG_URL:
        pytest.skip("PostgreSQL not available")
    u = parse_url(PG_URL)
    p = run_cli("status", "--db", f"postgresql://nosuchrole_fa@{u.host}:{u.port}/{u.database}")
    assert p.returncode == 2 and "cannot connect" in p.stderr and "nosuchrole_fa" in p.stderr, (
        p.stderr
    )


STACKS_ON_ABORT = {"PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack


def _interrupt_when(p: subprocess.Popen, ready: Callable[[], bool]) -> tuple[int, str]:
    """SIGINT to the process group (Ctrl-C in a terminal) once ``ready`` holds; exit code, stderr."""
    import os
    import signal
    import time

    deadline = time.monotonic() + 60
    while not ready() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    os.killpg(p.pid, signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # the interrupt was lost: the signal state and stacks say why
        try:
            with open(f"/proc/{p.pid}/status") as f:
                state = " ".join(
                    ln for ln in f.read().splitlines() if ln.startswith(("Sig", "Shd"))
                )
        except OSError:
            state = "(no /proc)"
        os.kill(p.pid, signal.SIGABRT)
        _, err = p.communicate(timeout=60)
        raise AssertionError(f"no exit 60 s after SIGINT; {state}; its stacks:\n{err}") from None
    return p.returncode, err


def _python_c(script: str, folder: Path) -> subprocess.CompletedProcess:
    """``python -c script`` in ``folder``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=folder, timeout=60
    )


def _main_in_a_process(
    args: list[str], folder: Path, interrupted_while_parsing: bool, prelude: str = ""
) -> subprocess.CompletedProcess:
    """cli.main in a new Python process with ``args``, after ``prelude``; interrupted while click
    parses the flags (by the --contract callback, which runs during parsing) if asked."""
    script = (
        "import sys\n" + prelude + "from xml_extractor.contract import merge\n"
        "def interrupted(*a):\n"
        "    raise KeyboardInterrupt\n"
        + ("merge.join_contract_specs = interrupted\n" if interrupted_while_parsing else "")
        + f"sys.argv = ['xml-extractor', *{args!r}]\n"
        "from xml_extractor.cli import main\n"
        "main()\n"
    )
    return _python_c(script, folder)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, code, says",
    [
        (["validate-contract", "--contract", "credit_card"], 130, "error: interrupted"),
        (["validate-contract", "--contract", "credit_card", "--no-such-flag"], 2, "No such option"),
        (["--version"], 0, "xml-extractor"),
    ],
    ids=["interrupted-while-parsing", "bad-flag", "version"],
)
def test_the_entry_point_maps_what_happens_before_a_command_to_its_exit_code(
    args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    """A Ctrl-C (or a stop signal, which interrupt_on_stop_signals turns into one) that arrives
    while click parses the flags, before any command's handle_errors, exits 130 like one inside a
    command, not with click's "Aborted!" and 1. The interrupt is raised by the --contract callback,
    which runs during parsing; a bad flag still exits 2 with click's message, --version 0."""
    p = _main_in_a_process(args, tmp_path, interrupted_while_parsing=code == 130)
    assert p.returncode == code, p.stderr
    assert says in p.stdout + p.stderr and "Aborted" not in p.stderr, p.stderr


@pytest.mark.slow
@pytest.mark.posix
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_stop_while_the_interpreter_exits_changes_neither_the_exit_code_nor_the_output(
    stop: str, tmp_path: Path
) -> None:
    """A stop that comes after the command decided its exit code, while Python shuts down (here
    from an atexit callback; later, once Python has put the default handlers back, it would end
    the process with -15): the process exits with the code the command chose and prints no
    traceback. launch showed a finished instance as -15, or itself died with -15, when its stop
    came at that moment."""
    script = (
        "import atexit, os, signal, sys, time\n"
        "def stop_while_exiting():\n"
        f"    os.kill(os.getpid(), signal.{stop})\n"
        "    time.sleep(0.2)\n"
        "atexit.register(stop_while_exiting)\n"
        "sys.argv = ['xml-extractor', 'validate-contract', '--contract', 'no-such-file.json']\n"
        "from xml_extractor.cli import main\n"
        "main()\n"
    )
    p = _python_c(script, tmp_path)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr, p.stderr


@pytest.mark.slow
@pytest.mark.posix
@pytest.mark.parametrize("decided", [0, 2, 130], ids=["done", "failed", "interrupted"])
def test_stops_that_come_as_the_exit_is_decided_never_end_the_process_by_sigint(
    decided: int, tmp_path: Path
) -> None:
    """Two stops, a SIGTERM and a SIGINT, that reach the command at the very moment its exit code
    is decided (here from inside cli.main's last step, before the stop signals are ignored, and
    for an interrupted command from its 'error: interrupted' message): the code stays the decided
    one. A KeyboardInterrupt raised there escaped cli.main, and Python ends a process whose
    KeyboardInterrupt escapes by killing itself with SIGINT: a launch instance showed -2 (a clean
    clone's run of test_a_sigterm_to_launch_while_it_starts_its_instances_stops_each_one_cleanly)."""
    args = {
        0: ["--version"],
        2: ["validate-contract", "--contract", "no-such-file.json"],
        130: ["validate-contract", "--contract", "x.json"],
    }[decided]
    prelude = (
        "import os, signal\n"
        "import click\n"
        "from xml_extractor import supervision\n"
        "def two_stops():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "ignore = supervision.ignore_stop_signals\n"
        "def stopped_then_ignore():\n"
        "    two_stops()\n"
        "    ignore()\n"
        "supervision.ignore_stop_signals = stopped_then_ignore\n"
        "echo = click.echo\n"
        "def stopped_while_saying(message=None, *a, **kw):\n"
        "    if message == 'error: interrupted':\n"
        "        two_stops()\n"
        "    echo(message, *a, **kw)\n"
        "click.echo = stopped_while_saying\n"
    )
    p = _main_in_a_process(
        args, tmp_path, interrupted_while_parsing=decided == 130, prelude=prelude
    )
    assert p.returncode == decided, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr


@pytest.mark.slow
@pytest.mark.posix
def test_a_stop_while_the_handlers_are_being_set_ends_the_command_with_130(tmp_path: Path) -> None:
    """A SIGINT right after cli.main pointed SIGINT at its handler, before it got to SIGTERM (made
    certain with a tracer): 130 and the short message. It came before cli.main's ``try`` and
    left it as a KeyboardInterrupt traceback, exit -2."""
    prelude = (
        "import os, signal\n"
        "def _line(frame, event, arg):\n"
        "    if event == 'line' and frame.f_locals.get('s') == signal.SIGTERM:\n"
        "        sys.settrace(None)\n"
        "        frame.f_trace = None\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return _line\n"
        "def _call(frame, event, arg):\n"
        "    if event == 'call' and frame.f_code.co_name == 'interrupt_on_stop_signals':\n"
        "        return _line\n"
        "    return None\n"
        "sys.settrace(_call)\n"
    )
    p = _main_in_a_process(
        ["--version"], tmp_path, interrupted_while_parsing=False, prelude=prelude
    )
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert "error: interrupted" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "xml-extractor" not in p.stdout


STOP_IN_GENERATED_CODE = """
# sends the stop named by XE_TEST_STOP while a dataclass's generated methods (exec of a string)
# run, once the command line has its handlers
import os, signal, sys
_stop = os.environ.get("XE_TEST_STOP")
if _stop:
    _sent = []

    def _call(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == "<string>" and not _sent:
            _sent.append(1)
            sys.settrace(None)
            os.kill(os.getpid(), getattr(signal, _stop))
        return None

    def _audit(name, args):
        if name == "exec" and not _sent:
            handler = signal.getsignal(signal.SIGTERM)  # the command line's, not the held one
            caller = sys._getframe(2).f_code.co_filename
            if getattr(handler, "__name__", "") == "_interrupt" and "dataclasses" in caller:
                sys.settrace(_call)

    sys.addaudithook(_audit)
"""


@pytest.mark.slow
@pytest.mark.posix
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_stop_inside_generated_code_still_ends_python_m_with_130(
    stop: str, tmp_path: Path
) -> None:
    """A stop that comes while a dataclass's generated methods run (``exec`` of a string, as a
    command imports a module): CPython notes the KeyboardInterrupt that leaves ``exec`` as
    unhandled although the command caught it, and ``python -m`` (how launch starts its
    instances) then ended the process by SIGINT: -2 instead of 130."""
    import os

    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(STOP_IN_GENERATED_CODE, encoding="utf-8")
    env = {
        **os.environ,
        "XE_TEST_STOP": stop,
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path / "hook"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    p = subprocess.run(
        [sys.executable, "-m", "xml_extractor", "validate-contract", "--contract", "credit_card"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert "error: interrupted" in p.stderr, (p.returncode, p.stderr)  # the stop was sent
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr


def test_the_package_imports_nothing_until_a_name_is_used(tmp_path: Path) -> None:
    """``import xml_extractor`` (which the entry point and every submodule's import begin with)
    loads neither click nor lxml; its public names still list, load on first use and are the
    modules' own; an unknown name is an AttributeError."""
    script = (
        "import sys, xml_extractor as x\n"
        "assert 'lxml' not in sys.modules and 'click' not in sys.modules, sorted(sys.modules)\n"
        "assert set(x.__all__) <= set(dir(x))\n"
        "from xml_extractor import load_contract, Contract\n"
        "from xml_extractor.contract.loader import load_contract as own\n"
        "assert load_contract is own and x.Contract is Contract\n"
        "try:\n"
        "    x.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    p = _python_c(script, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def _caught(pid: int) -> int:
    """The mask of the signals ``pid`` has a handler for (/proc/PID/status, SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def _mapped(pid: int, name: str) -> bool:
    return name in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@pytest.mark.posix
@pytest.mark.parametrize("entry", ["python -m", "console script"])
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_stop_while_the_command_line_imports_ends_it_with_130(
    entry: str, stop: str, tmp_path: Path
) -> None:
    """A stop in the first few hundred milliseconds, while the command line imports click, lxml and
    the rest: held by xml_extractor.starting, taken once the handlers are in place, so the exit
    is 130 with the short message, not -15, -1 or a KeyboardInterrupt traceback. The stop is sent
    as soon as the process has a handler for every stop signal, and counts only when lxml is not
    loaded yet (the import is under way); before the entry point held them, the handlers came
    only after the whole import, so no try hit the window."""
    import os
    import signal
    import time

    argv = {
        "python -m": [sys.executable, "-m", "xml_extractor", "--version"],
        # what the installed xml-extractor script runs
        "console script": [
            sys.executable,
            "-c",
            "import sys\nfrom xml_extractor.__main__ import main\nsys.argv[0] = 'xml-extractor'\n"
            "sys.exit(main())",
            "--version",
        ],
    }[entry]
    wanted = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    hits = []
    for _ in range(10):
        in_window = False
        p = subprocess.Popen(
            argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while _caught(p.pid) & wanted != wanted and time.monotonic() < deadline:
                time.sleep(0.0005)
            in_window = not _mapped(p.pid, "lxml")
            os.kill(p.pid, getattr(signal, stop))
        except OSError:  # it ended before (never caught every stop signal)
            pass
        out, err = p.communicate(timeout=60)
        if in_window:
            hits.append((p.returncode, out, err))
        if len(hits) >= 2:
            break
    assert hits, "the stop signals were never handled before the command line was imported"
    for code, out, err in hits:
        assert code == 130, (code, out, err)
        assert "error: interrupted" in err and "Traceback" not in err, err
        assert "xml-extractor" not in out  # the command did not run


@pytest.mark.slow
@pytest.mark.posix
def test_ctrl_c_exits_130_on_every_command(db_url: str, tmp_path: Path) -> None:
    """Ctrl-C: exit 130 with a short message (not click's 'Aborted!' and 1, not 0 for status --watch,
    whose queries each engine's driver is running when the signal comes)."""
    from conftest import popen

    out = tmp_path / "mock"
    p = popen(
        "generate-mock", "--count", "1000000", "--out", str(out), cwd=tmp_path, env=STACKS_ON_ABORT
    )
    code, err = _interrupt_when(p, lambda: out.is_dir() and any(out.iterdir()))
    assert code == 130 and "interrupted" in err and "Aborted" not in err, err
    run_cli("init-db", "--db", db_url, cwd=tmp_path, check=True)
    p = popen("status", "--db", db_url, "--watch", "0.1", cwd=tmp_path, env=STACKS_ON_ABORT)
    assert p.stdout is not None and p.stdout.readline()  # the first refresh is out
    code, err = _interrupt_when(p, lambda: True)
    assert code == 130 and "interrupted" in err, err


def test_status_watch_must_be_positive() -> None:
    result = CliRunner().invoke(cli, ["status", "--watch", "-1"])
    assert result.exit_code == 2 and "--watch" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_run_start_up_configuration_error_on_stderr(db_url: str, tmp_path: Path) -> None:
    """A data-losing contract change found at run start: 'error: ...' on stderr and exit 2, like
    every other configuration error (not only a 'stopped config:' row of the summary on stdout)."""
    from xml_extractor.contract.loader import default_contract_path

    c = json.loads(Path(default_contract_path()).read_text("utf-8"))
    base = next(t for t in c["tables"] if t["name"] == "app_base")
    next(x for x in base["columns"] if x["name"] == "campaign_num")["length"] = 4
    (tmp_path / "narrow.json").write_text(json.dumps(c), "utf-8")
    run_cli("init-db", "--db", db_url, cwd=tmp_path, check=True)
    p = run_cli(
        "run",
        "--db",
        db_url,
        "--contract",
        "narrow.json",
        "--workers",
        "1",
        "--no-progress",
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert (
        p.stderr.startswith("error: ") and "campaign_num" in p.stderr and "config:" not in p.stderr
    ), p.stderr


def test_command_line_database_option_wins_over_the_environment(tmp_path: Path) -> None:
    """XML_EXTRACTOR_DB / XML_EXTRACTOR_SERVER exported, the other typed: the typed one is used
    (was refused 'give either --db or --server/--database, not both')."""
    missing = tmp_path / "typed.db"
    r = CliRunner().invoke(
        cli,
        ["status", "--db", f"sqlite:///{missing}"],
        env={"XML_EXTRACTOR_SERVER": "envhost", "XML_EXTRACTOR_DATABASE": "envdb"},
    )
    assert r.exit_code == 2 and "no database at" in r.output and "not both" not in r.output, (
        r.output
    )
    r = CliRunner().invoke(
        cli,
        ["status", "--server", "typedhost", "--database", "d"],
        env={"XML_EXTRACTOR_DB": f"sqlite:///{missing}"},
    )
    assert "not both" not in r.output and "no database at" not in r.output, r.output
    r = CliRunner().invoke(
        cli,
        ["status"],
        env={"XML_EXTRACTOR_DB": f"sqlite:///{missing}", "XML_EXTRACTOR_SERVER": "h"},
    )
    assert r.exit_code == 2 and "not both" in r.output  # both from the environment: still ambiguous


def test_missing_odbc_driver_names_the_package() -> None:
    pyodbc = pytest.importorskip("pyodbc")
    r = CliRunner().invoke(
        cli, ["status", "--db", "postgresql://u@127.0.0.1:59999/d?driver=PostgreSQL+Missing"]
    )
    assert (
        r.exit_code == 2 and "ODBC driver not found" in r.output and "odbc-postgresql" in r.output
    ), r.output
    if not any("SQL Server" in d for d in pyodbc.drivers()):
        r = CliRunner().invoke(cli, ["status", "--server", "127.0.0.1,59999", "--database", "d"])
        assert (
            r.exit_code == 2
            and "msodbcsql18" in r.output
            and "msodbcsql17" in r.output
            and "18 or 17" in r.output
        ), r.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["status", "--db", "sqlite:///notdb.db"], "not a SQLite database: notdb.db"),
        (["init-db", "--db", "sqlite:///notdb.db"], "not a SQLite database: notdb.db"),
        (["status", "--db", "sqlite:///adir"], "not a SQLite database: adir is a folder"),
        (
            ["init-db", "--db", "sqlite:///nodir/x.db"],
            "cannot create nodir/x.db: folder nodir does not exist",
        ),
    ],
)
def test_a_path_that_is_not_a_sqlite_database_exits_2_naming_it(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "notdb.db").write_text("hello, not a database\n", "utf-8")
    (tmp_path / "adir").mkdir()
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_validate_contract_takes_contract_option_too() -> None:
    r = invoke("validate-contract", "--contract", "rec_lending")
    assert (
        r.exit_code == 0
        and r.output.startswith("ok: rec_lending ")
        and "credit_card" not in r.output
    ), r.output
    r = invoke("validate-contract", "credit_card", "--contract", "rec_lending")
    assert r.exit_code == 0 and "ok: credit_card+rec_lending " in r.output, r.output


def test_environment_variable_exceptions_are_exactly_the_documented_ones() -> None:
    """Every option reads XML_EXTRACTOR_ + its name, except the ones docs/usage.md names."""
    exceptions = set()
    for name, command in cli.commands.items():
        for p in command.params:
            if isinstance(p, click.Option) and not p.hidden:
                long = max(p.opts, key=len).lstrip("-")
                if p.envvar != "XML_EXTRACTOR_" + long.upper().replace("-", "_"):
                    exceptions.add((name, long, p.envvar))
    assert exceptions == {
        ("bench", "db", "XML_EXTRACTOR_BENCH_DB"),
        ("profile", "sample", "XML_EXTRACTOR_PROFILE_SAMPLE"),
    }
    usage = (ROOT / "docs" / "usage.md").read_text("utf-8")
    assert all(f"`{c} --{o}` reads `{e}`" in usage for c, o, e in exceptions)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metrics-dir", "{file}"], "--metrics-dir {file}: cannot write there"),
        (["--logs-dir", "{file}/logs"], "--logs-dir {file}/logs: cannot write there"),
        (["--reconnect-seconds", "-1"], "--reconnect-seconds must be a number of seconds"),
        (["--reconnect-seconds", "nan"], "--reconnect-seconds must be a number of seconds"),
    ],
)
def test_run_refuses_bad_folders_and_durations_before_any_work(
    db_url: str, tmp_path: Path, extra: list[str], message: str
) -> None:
    """A --metrics-dir that is a file used to be found after the whole run (exit 1, a traceback,
    no summary); --reconnect-seconds -1 or nan were accepted. Exit 2 before anything is processed."""
    url = db_url
    assert invoke("generate-mock", "--db", url, "--count", "5").exit_code == 0
    blocker = tmp_path / "metrics.txt"
    blocker.write_text("a file where a folder should be")
    for command in (["run"], ["reprocess", "1", "2"]):
        args = [
            *command,
            "--db",
            url,
            "--no-progress",
            *(a.replace("{file}", str(blocker)) for a in extra),
        ]
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and message.replace("{file}", str(blocker)) in r.output, (
            args,
            r.output,
        )
        assert "Traceback" not in r.output
    db = open_db(url)
    try:
        assert db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}") == 0
    finally:
        db.close()


def test_failures_csv_that_cannot_be_written_exits_2(processed: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(
        cli, ["failures", "--db", processed, "--csv", str(tmp_path / "afile" / "f.csv")]
    )
    assert (
        r.exit_code == 2 and f"--csv {tmp_path / 'afile' / 'f.csv'}: cannot write it" in r.output
    ), r.output


@pytest.mark.slow
@pytest.mark.posix
@pytest.mark.parametrize(
    "args",
    [
        ["--db", "mssql://someone@127.0.0.1:1/xe"],
        ["--server", "127.0.0.1,1", "--database", "xe", "--username", "someone"],
    ],
    ids=["url", "server-flags"],
)
def test_a_password_prompt_ended_by_ctrl_d_is_a_configuration_error(
    args: list[str], tmp_path: Path
) -> None:
    """Ctrl-D at the password prompt: exit 2 with what is missing, not 130 "interrupted" (click's
    prompt turns an end of input into the same Abort as a Ctrl-C). Nothing is connected to."""
    import os
    import pty  # POSIX only: imported here so that Windows still collects this module
    import time

    from conftest import _child_env

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xml_extractor", "status", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_child_env(None),
        cwd=str(tmp_path),
        start_new_session=True,
    )
    os.close(slave)
    said = b""
    deadline = time.monotonic() + 60
    while b"Password for" not in said and time.monotonic() < deadline:
        said += os.read(master, 4096)
    assert b"Password for" in said, said
    os.write(master, b"\x04")  # Ctrl-D: end of input at the start of a line
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        said += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = said.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, text)
    assert "needs a password: the input ended at the prompt" in text and "interrupted" not in text
