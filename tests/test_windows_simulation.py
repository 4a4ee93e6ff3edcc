"""Every command the Windows users type, run by interpreters that look like Windows.

tests/winsim/sitecustomize.py (its docstring says exactly what it removes and what it cannot
simulate) is put on ``PYTHONPATH`` with ``XE_WINSIM=1`` for each command started here, so the
command and every process it starts (spawned workers, launched instances) lack ``signal.SIGHUP``,
``SIGKILL``, ``pthread_sigmask``, ``os.killpg``, ``os.fork``, ``os.setsid`` ..., have only the spawn
start method, and have ``signal.SIGBREAK``. Each command runs in its own session, which plays the
console window: "pressing Ctrl-Break" sends the simulated SIGBREAK to every process of it, as
Windows delivers CTRL_BREAK_EVENT to every process attached to the console; "pressing Ctrl-C"
sends SIGINT to all but those in a process group of their own (CREATE_NEW_PROCESS_GROUP disables
Ctrl-C); "End task" terminates the one process.

The module is ``posix``: the simulation runs on Linux (it reads /proc); the Windows job runs the
real thing instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_exactly_once, expected_failures, log_rows, popen

if not sys.platform.startswith("linux") or not hasattr(
    os, "killpg"
):  # Windows, or pytest itself simulated
    pytest.skip(
        "the simulation runs on Linux (it reads /proc); on Windows the suite runs the real thing",
        allow_module_level=True,
    )

from procs import wait_until

pytestmark = pytest.mark.posix

WINSIM = Path(__file__).resolve().parent / "winsim"
SIGBREAK = signal.SIGUSR2  # the number the simulation gives signal.SIGBREAK
SEED, SHARE, COUNT = 11, 0.1, 60
SLOW = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.3"}


def sim_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The variables that make a child interpreter (and its children) simulate Windows."""
    path = os.environ.get("PYTHONPATH")
    return {
        "XE_WINSIM": "1",
        "PYTHONPATH": str(WINSIM) + (os.pathsep + path if path else ""),
        **(extra or {}),
    }


def session(sid: int, group: int | None = None) -> list[int]:
    """The processes of a session (the simulated console of a command), or of one process group of it."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and (group is None or int(fields[2]) == group):
            out.append(int(entry.name))
    return out


def press_ctrl_break(p: subprocess.Popen) -> None:
    """Ctrl-Break in the command's console: CTRL_BREAK_EVENT reaches every process attached to it,
    also those started with CREATE_NEW_PROCESS_GROUP."""
    for pid in session(p.pid):
        try:
            os.kill(pid, SIGBREAK)
        except ProcessLookupError:
            pass


def press_ctrl_c(p: subprocess.Popen) -> None:
    """Ctrl-C in the command's console: CTRL_C_EVENT reaches the processes attached to it but those
    in a group started with CREATE_NEW_PROCESS_GROUP (Ctrl-C is disabled there)."""
    for pid in session(p.pid, group=p.pid):
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass


def instance_logs() -> str:
    from conftest import subprocess_dir

    return "\n".join(
        f.read_text(encoding="utf-8") for f in sorted((subprocess_dir() / "logs").glob("*.log"))
    )


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """The commands a test starts; whatever is left of their sessions is killed at the end."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        for pid in session(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            p.wait(timeout=30)


def start(
    started: list[subprocess.Popen], *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a command simulated as on Windows, in its own session (its console)."""
    p = popen(*args, env=sim_env(env))
    started.append(p)
    return p


def sim(
    started: list[subprocess.Popen],
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run a command simulated as on Windows to its end; no traceback on stderr, ever."""
    p = start(started, *args, env=env)
    out, err = p.communicate(timeout=timeout)
    assert "Traceback" not in err, f"exit {p.returncode}\n{out}\n{err}"
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def expect(p: subprocess.CompletedProcess, *codes: int) -> subprocess.CompletedProcess:
    assert p.returncode in codes, f"exit {p.returncode}, expected {codes}\n{p.stdout}\n{p.stderr}"
    return p


def prepare(
    started: list[subprocess.Popen], url: str, count: int = COUNT, share: float = SHARE
) -> None:
    expect(sim(started, "init-db", "--db", url), 0)
    expect(
        sim(
            started,
            "generate-mock",
            "--db",
            url,
            "--count",
            str(count),
            "--faulty-share",
            str(share),
            "--seed",
            str(SEED),
        ),
        0,
    )


def check_outcome(url: str, count: int = COUNT, share: float = SHARE) -> None:
    """Every application done exactly once, and the faulty documents failed: exactly those, but
    for a con_id collision, where whichever of the two applications commits second fails (with
    concurrent workers and instances, either)."""
    done = assert_exactly_once(url)
    failed = {r[0] for r in log_rows(url) if r[1] == "failed"}
    expected = expected_failures(SEED, share, count)
    either = {b for a, kind in expected.items() if kind == "con_id_collision" for b in (a - 1, a)}
    assert (
        done["apps"] == count and len(failed) == len(expected) and failed ^ set(expected) <= either
    ), (done, failed)


def commands(sid: int) -> dict[int, str]:
    """The processes of a session and their command lines."""
    out = {}
    for pid in session(sid):
        try:
            out[pid] = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            pass
    return out


def alive(pids: dict[int, str]) -> list[str]:
    """Which of ``pids`` (pid -> command line seen earlier) are still alive (zombies are dead: this
    machine's pid 1 is slow to reap orphans)."""
    out = []
    for pid, cmd in pids.items():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(f"{pid} {state} {cmd}")
    return out


def assert_all_gone(before: dict[int, str], what: str) -> None:
    """Every process of the command has ended: at once, or within seconds on its own (a process
    can be still tearing down when its parent's exit is seen; none may keep running)."""
    try:
        wait_until(lambda: not alive(before), timeout=15, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: {alive(before)}") from None


# -- the harness itself ---------------------------------------------------------------------------

PROBE = """
import multiprocessing, os, signal, subprocess, sys
gone = [n for n in ("SIGHUP", "SIGKILL", "SIGSTOP", "SIGCONT", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM",
                    "SIGCHLD", "pthread_sigmask", "pthread_kill", "sigwait") if hasattr(signal, n)]
gone += [n for n in ("killpg", "fork", "forkpty", "setsid", "setpgrp", "getpgid", "getpgrp", "wait3", "wait4")
         if hasattr(os, n)]
for method in ("fork", "forkserver"):
    try:
        multiprocessing.get_context(method)
        gone.append(method)
    except ValueError:
        pass
try:
    signal.signal(1, signal.SIG_IGN)
    gone.append("signal 1")
except ValueError:
    pass
child = subprocess.run([sys.executable, "-c", "import signal; signal.SIGHUP"], capture_output=True, text=True)
print(repr(gone), multiprocessing.get_all_start_methods(), int(signal.SIGBREAK), int(signal.CTRL_C_EVENT),
      int(signal.CTRL_BREAK_EVENT), "AttributeError" in child.stderr)
"""


def test_the_harness_removes_the_posix_names_in_the_command_and_its_children(
    tmp_path: Path,
) -> None:
    """Inside the simulation the POSIX-only names are gone (also in a process it starts), only spawn
    exists, SIGBREAK and the console events exist; without XE_WINSIM the same path changes nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XE_WINSIM")}
    p = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**env, **sim_env()},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        start_new_session=True,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[]", "['spawn']", str(int(SIGBREAK)), "0", "1", "True"], p.stdout
    bare = subprocess.run(
        [sys.executable, "-c", "import signal; signal.SIGHUP"],
        capture_output=True,
        text=True,
        env={**env, **sim_env()},
        cwd=tmp_path,
        timeout=120,
        start_new_session=True,
    )
    assert "AttributeError: module 'signal' has no attribute 'SIGHUP'" in bare.stderr
    off = {**env, **sim_env()}
    off.pop("XE_WINSIM")
    normal = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, multiprocessing as m; signal.SIGHUP; os.killpg;"
            " print(m.get_all_start_methods())",
        ],
        capture_output=True,
        text=True,
        env=off,
        cwd=tmp_path,
        timeout=120,
    )
    assert normal.returncode == 0 and "forkserver" in normal.stdout, normal.stderr
    assert hasattr(signal, "SIGHUP") and hasattr(os, "killpg")  # this process is never simulated


# -- the commands ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_help_init_db_generate_mock_and_status(
    started: list[subprocess.Popen], tmp_path: Path
) -> None:
    """The commands that start no worker: --help (the first thing a user types), init-db,
    generate-mock, and status and reconcile on the unprocessed database."""
    assert "run" in expect(sim(started, "--help"), 0).stdout
    assert "--workers" in expect(sim(started, "run", "--help"), 0).stdout
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    status = json.loads(expect(sim(started, "status", "--db", url, "--format", "json"), 0).stdout)
    assert status["source_rows"] == COUNT and status["pending"] == COUNT
    assert (
        "pending" in expect(sim(started, "reconcile", "--db", url), 1).stdout
    )  # exit 1: all pending


@pytest.mark.slow
def test_run_status_reconcile_reprocess(started: list[subprocess.Popen], tmp_path: Path) -> None:
    """run --workers 2 (spawned workers), status, reconcile, reprocess --failed and by app ids:
    each works and every application is done exactly once."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    faulty = expected_failures(SEED, SHARE, COUNT)
    assert faulty
    expect(
        sim(started, "run", "--db", url, "--workers", "2", "--batch-size", "5", "--no-progress"), 1
    )
    check_outcome(url)
    status = json.loads(expect(sim(started, "status", "--db", url, "--format", "json"), 0).stdout)
    assert (status["success"], status["failed"], status["pending"]) == (
        COUNT - len(faulty),
        len(faulty),
        0,
    )
    expect(sim(started, "reconcile", "--db", url), 0)
    expect(sim(started, "reprocess", "--db", url, "--failed", "--workers", "2", "--no-progress"), 1)
    check_outcome(url)
    again = [a for a in range(1, 6) if a not in faulty][:2]
    expect(
        sim(started, "reprocess", "--db", url, *map(str, again), "--workers", "2", "--no-progress"),
        0,
    )
    check_outcome(url)
    attempts = {a: max(r[3] for r in log_rows(url) if r[0] == a) for a in [*again, *faulty]}
    assert all(n == 2 for n in attempts.values()), attempts
    expect(sim(started, "reconcile", "--db", url), 0)


@pytest.mark.slow
def test_launch_two_instances(started: list[subprocess.Popen], tmp_path: Path) -> None:
    """launch --instances 2: two instances, each with its spawned workers, every application once."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    expect(
        sim(
            started,
            "launch",
            "--instances",
            "2",
            "--db",
            url,
            "--workers",
            "2",
            "--batch-size",
            "5",
            "--no-progress",
        ),
        1,
    )
    check_outcome(url)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "reprocess"])
def test_a_worker_that_dies_as_it_starts_never_hangs_the_run(
    started: list[subprocess.Popen], tmp_path: Path, command: str
) -> None:
    """A spawned worker that dies before it read its start data, as one a Ctrl-C or Ctrl-Break
    reached while it started: the run notices and goes on with a new worker; every application
    is done exactly once. Spawn writes the start data to the new process's pipe in one blocking
    write that never returns when the data does not fit and nobody reads it: the run hung there
    for good, deaf to further stops, while the contract (~90 KB) and the run's context (a
    reprocess lists its ids) were in it."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    dies = {"XE_WINSIM_FIRST_WORKER_DIES": str(tmp_path)}
    args = ["--db", url, "--workers", "2", "--batch-size", "5", "--no-progress"]
    if command == "reprocess":
        expect(sim(started, "run", *args), 1)
        ids = [str(a) for a in range(1, 21)]
        p = start(started, "reprocess", *args, *ids, env=dies)
    else:
        p = start(started, "run", *args, env=dies)
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("the run hung on a worker that died as it started") from None
    assert (tmp_path / "died").exists()  # the first worker did die
    assert p.returncode in (0, 1), f"exit {p.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    check_outcome(url)


def logged(url: str) -> int:
    return len({r[0] for r in log_rows(url)})


def some_progress(p: subprocess.Popen, url: str) -> None:
    """Wait until the command has committed a few applications (or ended early: then say how)."""
    wait_until(lambda: logged(url) >= 4 or p.poll() is not None, what="some progress")
    if p.poll() is not None:
        out, err = p.communicate()
        raise AssertionError(f"ended early with exit {p.returncode}\n{out}\n{err}")


@pytest.mark.slow
def test_ctrl_break_stops_a_run_cleanly_and_the_rerun_completes_exactly_once(
    started: list[subprocess.Popen], tmp_path: Path
) -> None:
    """Ctrl-Break in the run's console (SIGBREAK to the run and its workers): in-flight batches
    commit, exit 130, no traceback, nothing left running; the same command again finishes the rest."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    args = ("run", "--db", url, "--workers", "2", "--batch-size", "2", "--no-progress")
    p = start(started, *args, env=SLOW)
    some_progress(p, url)
    running = commands(p.pid)
    press_ctrl_break(p)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, f"exit {p.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    assert_all_gone(running, "processes of the run outlived it")
    assert 4 <= logged(url) < COUNT
    expect(sim(started, *args), 1)
    check_outcome(url)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-break"])
def test_a_key_stops_launch_cleanly_and_the_relaunch_completes_exactly_once(
    started: list[subprocess.Popen], tmp_path: Path, key: str
) -> None:
    """Ctrl-C (reaches only launch: its instances are in groups of their own, where Ctrl-C is
    disabled; launch forwards CTRL_BREAK_EVENT to each) or Ctrl-Break (reaches launch, its
    instances and their workers): exit 130, no traceback, nothing left running, each instance
    stopped once (after its in-flight batches); the same launch again finishes the rest."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    args = (
        "launch",
        "--instances",
        "2",
        "--db",
        url,
        "--workers",
        "1",
        "--batch-size",
        "2",
        "--no-progress",
    )
    p = start(started, *args, env=SLOW)
    some_progress(p, url)
    running = commands(p.pid)
    (press_ctrl_c if key == "ctrl-c" else press_ctrl_break)(p)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, f"exit {p.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    assert_all_gone(running, "instances or workers outlived launch")
    assert 4 <= logged(url) < COUNT
    logs = instance_logs()
    assert logs.count("finishing in-flight batches, then stopping") == 2, logs
    expect(sim(started, *args), 1)
    check_outcome(url)
    # Ctrl-Break reaches each instance from the console and again forwarded by launch: one stop
    # (supervision.repeats), never "stop now" with its in-flight batches rolled back
    assert "stopping now" not in logs, logs


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "launch"])
def test_ending_the_command_in_task_manager_ends_its_workers_and_the_rerun_completes(
    started: list[subprocess.Popen], tmp_path: Path, command: str
) -> None:
    """ "End task" on the run (or on launch): Windows terminates that one process, not a group. Its
    workers (launch: its instances and their workers) notice through their lifelines and end by
    themselves, with no traceback or logging error on the console; the same command again finishes
    the rest, exactly once."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    prepare(started, url)
    args = (
        ("run", "--workers", "2")
        if command == "run"
        else ("launch", "--instances", "2", "--workers", "1")
    )
    args += ("--db", url, "--batch-size", "2", "--no-progress")
    p = start(started, *args, env=SLOW)
    some_progress(p, url)
    running = commands(p.pid)
    assert len(running) >= 3, running  # the command and its workers (launch: instances and workers)
    os.kill(p.pid, signal.SIGKILL)  # TerminateProcess of the one process
    out, err = p.communicate(
        timeout=120
    )  # returns when every process holding the console's pipes has ended
    assert "Traceback" not in err and "Logging error" not in err, err
    assert_all_gone(running, f"processes of {command} outlived it")
    assert logged(url) < COUNT
    expect(sim(started, *args), 1)
    check_outcome(url)
