"""The forkserver (the parent of the workers) killed mid-run: the sentinels of all workers fire at
once (exit code 255, the processes still running). The run ends them, starts a new forkserver and
new workers (or stops cleanly, exit 3), never a traceback: a result seen in the same look as the
deaths is not sent to a slot reaped next. A second run finishes; every application exactly once."""

import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import _default_cwd, assert_exactly_once, cli, popen
from procs import children, kill_group, python_workers
from test_crash_safety import SLOW, logged, prepare, run_args, wait_logged

pytestmark = [pytest.mark.slow, pytest.mark.posix]  # real processes and SIGKILL


def forkserver_of(run_pid: int, timeout: float = 30) -> int:
    """The run's forkserver: its child whose command line is multiprocessing's forkserver."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in children(run_pid):
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes()
            except OSError:
                continue
            if b"forkserver" in cmd:
                return c
        time.sleep(0.1)
    raise AssertionError(f"no forkserver under {run_pid}")


def test_sigkill_forkserver_mid_run(db_url):
    prepare(db_url)
    proc = popen(*run_args(db_url), env=SLOW)
    try:
        wait_logged(db_url, 10)
        python_workers(proc.pid, 2)
        server = forkserver_of(proc.pid)
        # the run paused while a worker commits: its result waits in the pipe when the forkserver
        # dies, so the run sees a result and the deaths of both workers in one look
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            wait_logged(db_url, logged(db_url) + 1)
            os.kill(server, signal.SIGKILL)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=240)
    finally:
        kill_group(proc)
    text = out + err
    log_file = re.search(r"^log +(\S+)", out, re.M)
    assert log_file, text
    log_text = (_default_cwd() / log_file.group(1)).read_text()
    for where in (text, log_text):
        assert "Traceback" not in where and "KeyError" not in where, where
    assert proc.returncode in (0, 1, 3), text
    assert re.search(rf"outcome .*exit code {proc.returncode}", out), text
    last = log_text.strip().splitlines()[-1]
    assert re.search(rf"ended: .*exit code {proc.returncode}", last), last
    assert re.search(r"worker \d+ died", log_text), log_text
    again = cli(*run_args(db_url), timeout=300)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    stats = assert_exactly_once(db_url)
    assert stats["apps"] == 160
    rec = cli("reconcile", "--db", db_url)
    assert rec.returncode == 0, rec.stdout + rec.stderr
