"""Several instances against one database at once: partitioned, queue mode, uncoordinated.
Real processes on SQLite and PostgreSQL; every application exactly once, zero overlap."""

import json
import signal
import time

import pytest
from conftest import assert_exactly_once, cli, expected_failures, open_db, popen, subprocess_dir
from procs import db_rows, kill_group, wait_until

pytestmark = pytest.mark.slow  # real instances and worker processes, seconds each

N_APPS = 240


def prepare(url):
    cli("init-db", "--db", url, check=True)
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(N_APPS),
        "--faulty-share",
        "0.05",
        "--seed",
        "5",
        check=True,
    )


def base(url):
    return ["run", "--db", url, "--no-progress", "--workers", "1", "--batch-size", "8"]


def start_all(arg_lists, env=None):
    """Start each run with its summary going to its own file (the option launch uses)."""
    procs = []
    for i, a in enumerate(arg_lists):
        path = subprocess_dir() / f"summary-{time.monotonic_ns()}-{i}.json"
        p = popen(*a, "--summary-json", str(path), env=env)
        p.summary_path = path
        procs.append(p)
    return procs


def summaries(procs, timeout=300):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode in (0, 1), stdout + stderr
        out.append(json.loads(p.summary_path.read_text()))
    return out


def sessions_by_app(url):
    return db_rows(
        url,
        lambda db: f"SELECT app_id, instance_id, instance_count, session_id FROM {db.names['log']}",
    )


def test_three_partitioned_instances(db_url):
    prepare(db_url)
    procs = start_all(
        [base(db_url) + ["--instance-id", str(i), "--instance-count", "3"] for i in range(3)]
    )
    sums = summaries(procs)
    assert all(s["skipped"] == 0 for s in sums)
    assert sum(s["success"] + s["failed"] for s in sums) == N_APPS
    for app_id, inst, count, _ in sessions_by_app(db_url):
        assert count == 3 and app_id % 3 == inst
    assert_exactly_once(db_url)


def test_three_queue_mode_instances(db_url):
    prepare(db_url)
    slow = {
        "XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.1"
    }  # long enough for all three to take part
    procs = start_all(
        [base(db_url) + ["--mode", "queue", "--chunk-size", "20"] for _ in range(3)], env=slow
    )
    sums = summaries(procs)
    assert sum(s["success"] + s["failed"] for s in sums) == N_APPS
    assert all(s["skipped"] == 0 for s in sums), [s["skipped"] for s in sums]  # zero overlap
    assert sum(1 for s in sums if s["success"] > 0) >= 2  # the work really was shared
    assert_exactly_once(db_url)
    db = open_db(db_url)
    assert db.scalar(f"SELECT COUNT(*) FROM {db.names['queue']} WHERE done_at IS NULL") == 0
    db.close()


def queue_rows(url):
    return db_rows(
        url,
        lambda db: (
            f"SELECT chunk_id, owner, claims, done_at FROM {db.names['queue']} ORDER BY chunk_id"
        ),
    )


@pytest.mark.posix
def test_queue_mode_takes_over_a_dead_instance(db_url):
    prepare(db_url)
    slow = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.5"}
    victim = popen(
        *(base(db_url) + ["--mode", "queue", "--chunk-size", "20", "--lease-seconds", "5"]),
        env=slow,
    )
    # wait until it holds a chunk it has started but not finished (a live lease, some rows logged)
    wait_until(
        lambda: (
            any(o is not None and d is None for _, o, _, d in queue_rows(db_url))
            and logged_count(db_url) >= 3
        )
    )
    held = {c for c, o, _, d in queue_rows(db_url) if o is not None and d is None}
    kill_group(victim, signal.SIGKILL)  # dies holding a claimed chunk with a live lease
    victim.wait(timeout=30)
    (s,) = summaries(
        start_all(
            [base(db_url) + ["--mode", "queue", "--chunk-size", "20", "--lease-seconds", "5"]]
        )
    )
    assert_exactly_once(db_url)
    rows = {c: (o, n) for c, o, n, _ in queue_rows(db_url)}
    taken = [c for c in held if rows[c][1] >= 2 and s["session_id"][:8] in rows[c][0]]
    assert taken, rows  # a second owner claimed the dead instance's chunk and finished it


def logged_count(url):
    return db_rows(url, lambda db: f"SELECT COUNT(*) FROM {db.names['log']}")[0][0]


def test_three_uncoordinated_instances(db_url):
    prepare(db_url)
    procs = start_all([base(db_url) for _ in range(3)])
    sums = summaries(procs)
    stats = assert_exactly_once(db_url)
    faulty = len(expected_failures(5, 0.05, N_APPS))
    assert stats["failed"] == faulty  # no false failures from collisions
    assert sum(s["failed"] for s in sums) == faulty
    assert sum(s["success"] for s in sums) == N_APPS - faulty


def test_queue_mode_limit_leaves_the_rest_of_a_chunk_claimable(db_url):
    prepare(db_url)
    (s,) = summaries(
        start_all([base(db_url) + ["--mode", "queue", "--chunk-size", "100", "--limit", "30"]])
    )
    assert s["success"] + s["failed"] == 30
    (s2,) = summaries(start_all([base(db_url) + ["--mode", "queue", "--chunk-size", "100"]]))
    assert s2["success"] + s2["failed"] == N_APPS - 30
    assert_exactly_once(db_url)


def test_launch_in_queue_mode_starts_plain_queue_instances(db_url):
    """launch --mode queue passes no --instance-id/--instance-count (run refuses them with a queue):
    the instances share the work queue and do every application once."""
    url = db_url
    cli("generate-mock", "--db", url, "--count", "120", check=True)
    p = cli(
        "launch",
        "--instances",
        "2",
        "--db",
        url,
        "--mode",
        "queue",
        "--workers",
        "1",
        "--chunk-size",
        "30",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "do not combine" not in p.stdout + p.stderr
    last = p.stdout.strip().splitlines()[-1].split()
    assert last[:4] == ["all", "0", "120", "120"], p.stdout
