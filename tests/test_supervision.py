"""Workers and launched instances die with their parent (xml_extractor/supervision.py).

A ``kill -9`` of a run (or of launch) must leave no process of it behind, commit nothing after the
kill, print nothing after the kill into the operator's terminal, and leave the run's log and
metrics file; the same command then finishes every application exactly once. Real processes, real
SIGKILL (POSIX by nature: the ``posix`` marker), SQLite (the run also on PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import _child_env, assert_exactly_once, cli, open_db, subprocess_dir
from procs import children, descendants, python_workers, wait_until

from xml_extractor import supervision

# every batch transaction stays open 2 s: a run is still going when a test stops or kills it
SLOW = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=2"}
COUNT = 600


# -- the module's answers (no processes) --------------------------------------------------------------


def test_stop_signals_are_the_platforms():
    sigs = supervision.stop_signals()
    assert sigs[0] == signal.SIGINT
    if hasattr(signal, "SIGHUP"):
        assert {signal.SIGTERM, signal.SIGHUP} <= set(sigs)
    assert [supervision.signal_name(s) for s in sigs][0] == "SIGINT"


def test_a_ctrl_break_forwarded_within_a_second_is_the_same_stop(monkeypatch):
    last: dict = {}
    assert not supervision.repeats(signal.SIGTERM, last, 0.0)
    assert not supervision.repeats(
        signal.SIGTERM, last, 0.1
    )  # POSIX: a second signal is "stop now"
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    assert not supervision.repeats(21, last, 5.0)
    assert supervision.repeats(21, last, 5.4)  # the console's event and launch's forward of it
    assert not supervision.repeats(21, last, 7.0)  # pressed again: the second stop


def test_memory_figures_of_this_process():
    peak, cur = supervision.memory_kb()
    assert peak >= cur > 0


def test_parent_watch_sees_the_parent_end_closed():
    import multiprocessing as mp

    child_end, parent_end = supervision.lifeline(mp.get_context("spawn"))
    watch = supervision.ParentWatch(child_end, grace_s=60)
    try:
        assert not watch.gone()
        watch.check()
        parent_end.close()
        wait_until(watch.gone, timeout=10, what="the watch to see the closed end")
        with pytest.raises(supervision.ParentGone):
            watch.check()
    finally:
        watch.finished()


# -- kill -9 with real processes ------------------------------------------------------------------------


def prepare(url: str) -> None:
    cli("init-db", "--db", url, check=True)
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(COUNT),
        "--faulty-share",
        "0",
        "--seed",
        "5",
        check=True,
    )


def committed(url: str, db=None) -> int:
    own = db is None
    db = db or open_db(url)
    try:
        return int(db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}"))
    finally:
        if own:
            db.close()


def finishes_the_rest(url: str, *args: str) -> None:
    """The same command again (the user's resume): exit 0, every application exactly once."""
    again = cli(*args, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert assert_exactly_once(url)["apps"] == COUNT


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(
    args: list[str],
    folder: Path,
    preexec_fn: Callable[[], None] | None = None,
    faults: str = SLOW["XML_EXTRACTOR_FAULTS"],
) -> tuple[subprocess.Popen, Path, Path]:
    """The command in its own session, its two output streams to files (read after the kill);
    ``preexec_fn`` runs in the child before the command (a signal mask it starts with)."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen(
            [sys.executable, "-m", "xml_extractor", *args],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            env=_child_env({"XML_EXTRACTOR_FAULTS": faults}),
            cwd=str(subprocess_dir()),
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    return p, out, err


def held(folder: Path) -> str:
    """The fault plan of a run whose commits a test can hold (:func:`kill_and_check`)."""
    folder.mkdir()
    return f"{SLOW['XML_EXTRACTOR_FAULTS']},hold_commits={folder}"


def kill_and_check(
    p: subprocess.Popen,
    url: str,
    family: list[int],
    out: Path,
    err: Path,
    hold: Path,
    parked: int,
    parents: list[int],
) -> None:
    """Hold every commit (``hold``: the folder of the run's ``hold_commits``) until ``parked``
    workers wait right before theirs: then no commit is under way, and the count is exact. SIGKILL
    ``p`` (only it); let the workers go once ``parents`` (the processes that started them) are gone.
    Then: every process of ``family`` gone within 1.5 s of the kill, no commit after it, nothing
    printed after it. A worker that committed although its run was gone fails the count."""
    assert family and all(alive(pid) for pid in family)
    (hold / "hold").write_text("", encoding="utf-8")
    wait_until(
        lambda: len(list(hold.glob("parked-*"))) >= parked,
        timeout=60,
        what=f"{parked} worker(s) waiting right before a commit",
    )
    before = committed(url)  # nothing can change it now: every commit waits
    printed = (out.stat().st_size, err.stat().st_size)
    os.kill(p.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    p.wait(timeout=30)
    try:
        wait_until(
            lambda: not any(alive(pid) for pid in parents),
            timeout=1.5 - (time.monotonic() - killed_at),
            what="the processes that started the workers to end",
        )
        (hold / "hold").unlink()  # a worker still there goes on to its commit: it must not commit
        wait_until(
            lambda: not any(alive(pid) for pid in family),
            timeout=1.5 - (time.monotonic() - killed_at),
            what="every worker (and helper) of the killed process to end",
        )
    finally:
        for pid in family:  # never leave a process behind, even when the check failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert committed(url) == before, "a worker committed after its parent was killed"
    assert (out.stat().st_size, err.stat().st_size) == printed, (out.read_text() + err.read_text())[
        -3000:
    ]


@pytest.mark.slow
@pytest.mark.posix
def test_kill_9_of_a_run_leaves_no_worker_commits_nothing_more_and_leaves_its_record(
    db_url, tmp_path
):
    sqlite_url = db_url  # SQLite and PostgreSQL: the rollback of the batch whose run is gone is the database's
    prepare(sqlite_url)
    folder = subprocess_dir()
    hold = tmp_path / "hold"
    p, out, err = start(
        ["run", "--db", sqlite_url, "--no-progress", "--workers", "2", "--batch-size", "10"],
        tmp_path,
        faults=held(hold),
    )
    try:
        wait_until(lambda: committed(sqlite_url) >= 20, timeout=120, what="some batches committed")
        workers = python_workers(p.pid, 2)
        family = descendants(p.pid)  # the workers, the forkserver, the resource tracker
        assert set(workers) <= set(family)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    # SQLite: a worker waiting before its commit holds the one write lock, the other cannot be
    # under way; PostgreSQL: both must wait
    parked = 1 if sqlite_url.startswith("sqlite") else 2
    kill_and_check(p, sqlite_url, family, out, err, hold, parked, parents=[p.pid])
    # the killed run's record: its log, and its metrics file (rewritten while the run went)
    (metrics,) = list((folder / "metrics").glob("run-*.json"))
    m = json.loads(metrics.read_text(encoding="utf-8"))
    assert m["status"] == "running" and m["success"] <= committed(sqlite_url)
    assert m["outcome"] is None and m["exit_code"] is None, m  # a killed run claims no end
    assert m["timeline"] and m["success"] > 0, m  # the first results are written at once
    (log,) = list((folder / "logs").glob("run-*.log"))
    assert "workers ready" in log.read_text(encoding="utf-8")
    finishes_the_rest(sqlite_url, "run", "--db", sqlite_url, "--no-progress", "--workers", "2")


@pytest.mark.slow
@pytest.mark.posix
def test_kill_9_of_launch_leaves_no_instance_or_worker_and_commits_nothing_more(
    sqlite_url, tmp_path
):
    prepare(sqlite_url)
    launch = [
        "launch",
        "--instances",
        "2",
        "--db",
        sqlite_url,
        "--workers",
        "1",
        "--batch-size",
        "10",
    ]
    hold = tmp_path / "hold"
    p, out, err = start(launch, tmp_path, faults=held(hold))
    try:
        wait_until(lambda: committed(sqlite_url) >= 20, timeout=120, what="some batches committed")
        wait_until(
            lambda: len([c for c in descendants(p.pid) if alive(c)]) >= 2 + 2,
            timeout=30,
            what="two instances and their workers",
        )
        family = descendants(p.pid)  # instances, their forkservers, trackers and workers
        instances = children(p.pid)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    # one SQLite file: one worker waiting before its commit holds the write lock; the workers are
    # let go only once the instances that started them are gone
    kill_and_check(p, sqlite_url, family, out, err, hold, 1, parents=instances)
    assert committed(sqlite_url) < COUNT
    finishes_the_rest(sqlite_url, *launch)


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_a_stop_line_on_the_lifeline_stops_a_run_like_ctrl_c_and_the_run_resumes(
    sqlite_url, tmp_path, sigint
):
    """How launch stops an instance where neither a process-group signal nor CTRL_BREAK_EVENT
    exists: a ``stop`` line on the instance's standard input (its lifeline). Also when the
    instance was started with SIGINT ignored (a background job of a script: ``launch ... &``),
    where a simulated Ctrl-C would do nothing."""
    prepare(sqlite_url)
    env = _child_env({**SLOW, supervision.LIFELINE_ENV: "stdin"})
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xml_extractor",
            "run",
            "--db",
            sqlite_url,
            "--no-progress",
            "--workers",
            "2",
            "--batch-size",
            "10",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(subprocess_dir()),
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        if sigint == "ignored"
        else None,
    )
    try:
        wait_until(lambda: committed(sqlite_url) >= 20, timeout=120, what="some batches committed")
        assert p.stdin is not None
        p.stdin.write("stop\n")
        p.stdin.flush()
        p.wait(timeout=120)  # the lifeline stays open (its end would mean: the launcher is gone)
        assert p.stdout is not None and p.stderr is not None
        out, err = p.stdout.read(), p.stderr.read()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, out + err
    assert "interrupted" in out and "worker restarts" not in out
    assert committed(sqlite_url) < COUNT
    finishes_the_rest(sqlite_url, "run", "--db", sqlite_url, "--no-progress", "--workers", "2")


def stopped(p: subprocess.Popen, out: Path, err: Path, stop: Callable[[], None]) -> str:
    """What the command started by :func:`start` said after ``stop()`` and its exit (killed with
    its group if it has not exited within two minutes)."""
    try:
        stop()
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return out.read_text() + err.read_text()


def _blocked_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, set(supervision.stop_signals()))


@pytest.mark.slow
@pytest.mark.posix
def test_a_stop_held_while_a_command_starts_is_taken_once_its_handlers_are_in_place(
    sqlite_url, tmp_path
):
    """launch starts an instance with the stop signals blocked. A SIGTERM sent while the command
    is still importing is held, then taken as a stop once cli.main has its handlers: exit 130, what
    was committed stays, the same command finishes the rest; not the signal's default (-15), and
    not a traceback from a signal delivered before main's try. (A run would also unblock them when
    multiprocessing starts its resource tracker, later: what launch relies on is cli.main.)"""
    prepare(sqlite_url)
    args = ["run", "--db", sqlite_url, "--no-progress", "--workers", "2", "--batch-size", "10"]
    p, out, err = start(args, tmp_path, preexec_fn=_blocked_stop_signals)
    # at once: the command is still importing
    said = stopped(p, out, err, lambda: os.killpg(p.pid, signal.SIGTERM))
    assert p.returncode == 130 and "interrupted" in said, (p.returncode, said)
    assert committed(sqlite_url) < COUNT
    finishes_the_rest(sqlite_url, *args)


@pytest.mark.slow
@pytest.mark.posix
def test_a_sigterm_to_launch_while_it_starts_its_instances_stops_each_one_cleanly(
    sqlite_url, tmp_path
):
    """A SIGTERM that reaches launch as its first instance is being started: launch forwards it
    (its handler is in place before any instance starts), the instance takes it once its own
    handlers are (its stop signals were blocked from its start), launch starts no further one and
    prints its table: every instance started exited 130; the same launch finishes the work."""
    prepare(sqlite_url)
    launch = ["launch", "--instances", "2", "--db", sqlite_url, "--workers", "1"]
    p, out, err = start(launch, tmp_path)

    def as_the_first_instance_starts() -> None:
        wait_until(lambda: descendants(p.pid), timeout=60, interval=0.005, what="a first instance")
        os.kill(p.pid, signal.SIGTERM)

    said = stopped(p, out, err, as_the_first_instance_starts)
    assert p.returncode == 130, said
    rows = [ln.split() for ln in said.splitlines() if ln.split()[:1] in (["0"], ["1"])]
    assert rows and all(r[1] == "130" for r in rows), said
    finishes_the_rest(sqlite_url, *launch)


@pytest.mark.slow
def test_launch_piped_into_a_reader_that_stops_early_still_finishes_the_work(sqlite_url):
    """``launch ... | head -1``: once nobody reads launch's output, the instances' output is still
    drained (an instance never blocks on a full pipe) and no pump thread dies with a traceback; the
    work is done, exactly once."""
    from conftest import popen

    prepare(sqlite_url)
    launch = ["launch", "--instances", "2", "--db", sqlite_url, "--workers", "1", "--no-progress"]
    p = popen(*launch)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()  # the reader is gone
    err = p.stderr.read()
    p.wait(timeout=300)
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert assert_exactly_once(sqlite_url)["apps"] == COUNT
