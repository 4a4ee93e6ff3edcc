"""Kill anything at any moment, run the same command again: every application exactly once.
Real processes, real signals, on SQLite and PostgreSQL."""

import os
import signal
import time

import pytest
from conftest import assert_exactly_once, cli, kill_sessions, open_db, popen
from procs import kill_group, python_workers

pytestmark = pytest.mark.slow  # real processes and signals, seconds each

SLOW = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.6"}


def prepare(url, count=160):
    cli("init-db", "--db", url, check=True)
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--faulty-share",
        "0.05",
        "--seed",
        "11",
        check=True,
    )


def run_args(url):
    return [
        "run",
        "--db",
        url,
        "--no-progress",
        "--workers",
        "2",
        "--batch-size",
        "10",
        "--reconnect-seconds",
        "30",
    ]


def logged(url):
    db = open_db(url)
    try:
        return db.scalar(f"SELECT COUNT(*) FROM {db.names['log']}")
    finally:
        db.close()


def wait_logged(url, at_least, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if logged(url) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} log rows after {timeout}s")


def finish(url):
    p = cli(*run_args(url), timeout=300)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return assert_exactly_once(url)


@pytest.mark.posix
def test_sigkill_worker_mid_transaction(db_url):
    prepare(db_url)
    proc = popen(*run_args(db_url), env=SLOW)
    try:
        wait_logged(db_url, 10)
        victim = python_workers(proc.pid, 2)[0]
        time.sleep(0.3)  # the worker is inside its 0.6 s open transaction most of the time
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        kill_group(proc)
    assert proc.returncode in (0, 1), out + err
    assert "worker restarts" in out
    stats = finish(db_url)
    assert stats["apps"] == 160


@pytest.mark.posix
def test_sigkill_whole_instance_mid_batch(db_url):
    prepare(db_url)
    proc = popen(*run_args(db_url), env=SLOW)
    wait_logged(db_url, 20)
    time.sleep(0.3)
    kill_group(proc, signal.SIGKILL)  # coordinator and workers at once
    proc.wait(timeout=30)
    assert logged(db_url) < 160
    finish(db_url)


@pytest.mark.posix
def test_sigterm_stops_cleanly_and_resumes(db_url):
    prepare(db_url)
    proc = popen(*run_args(db_url), env=SLOW)
    wait_logged(db_url, 10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in out
    partial = logged(db_url)
    assert 10 <= partial < 160
    finish(db_url)


def test_connection_killed_from_the_server(db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no server connection to kill")
    prepare(db_url)
    proc = popen(*run_args(db_url), env=SLOW)
    try:
        wait_logged(db_url, 10)
        for _ in range(
            3
        ):  # kill every connection to this database, a few times (pg_terminate_backend / KILL)
            kill_sessions(db_url)
            time.sleep(0.7)
        out, err = proc.communicate(timeout=240)
    finally:
        kill_group(proc)
    assert proc.returncode in (0, 1), out + err
    finish(db_url)
