"""One definition of a result and of both rates (progress.py) in every command: launch's closing
table, status and report, read on the same database, print figures that follow from the same
results, the same first result and the moment the command ran (the only thing that differs).

Each printed rate ``f`` over ``n`` results from ``first`` ends at ``first + n * 60 / f``: that moment
must be when the command ran (launch: between its start and its end). A command that counts other
results (the log without its history) or ends a rate elsewhere (at the last result while running)
puts it somewhere else."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import pytest
from conftest import cli, open_db

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

COUNT = 200
SLACK_S = 1.5  # rounding to 0.1/min, a commit's few ms between logged_at and the run seeing it


def _results(url: str, session_prefix: str | None = None) -> tuple[int, _dt.datetime]:
    """Results (log and history rows), optionally of one session, and the first of them (UTC)."""
    db = open_db(url)
    try:
        where = f" WHERE session_id LIKE '{session_prefix}%'" if session_prefix else ""
        rows = [
            db.autocommit_query(f"SELECT COUNT(*), MIN(logged_at) FROM {db.names[t]}{where}")[0]
            for t in ("log", "log_history")
        ]
    finally:
        db.close()
    firsts = [_utc(r[1]) for r in rows if r[1] is not None]
    return sum(int(r[0]) for r in rows), min(firsts)


def _utc(v: object) -> _dt.datetime:
    t = v if isinstance(v, _dt.datetime) else _dt.datetime.fromisoformat(str(v))
    return t.replace(tzinfo=_dt.timezone.utc) if t.tzinfo is None else t


def _ends_within(
    what: str, per_min: float, n: int, first: _dt.datetime, lo: float, hi: float
) -> None:
    """The rate ``per_min`` of ``n`` results since ``first`` ends within [lo, hi] (epoch s)."""
    assert per_min > 0, what
    end = first.timestamp() + n * 60.0 / per_min
    assert lo - SLACK_S <= end <= hi + SLACK_S, (
        f"{what}: {per_min}/min over {n} results ends {end - lo:+.1f} s from the command's start "
        f"(it ran {hi - lo:.1f} s)"
    )


def _launch_all_average(stdout: str) -> float:
    """The "all" row's average of launch's closing table."""
    (row,) = [ln.split() for ln in stdout.splitlines() if ln.split()[:1] == ["all"]]
    return float(row[6])


def test_launch_status_and_report_print_the_same_rates(db_url: str, tmp_path: Path) -> None:
    dirs = ("--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics"))
    cli("init-db", "--db", db_url, check=True)
    cli("generate-mock", "--db", db_url, "--count", str(COUNT), "--faulty-share", "0.2", check=True)
    t0 = time.time()
    p = cli(
        "launch", "--db", db_url, "--instances", "2", "--workers", "1", "--batch-size", "10", *dirs
    )
    t1 = time.time()
    assert p.returncode == 1, p.stdout + p.stderr
    n, first = _results(db_url)
    _ends_within("launch's all row", _launch_all_average(p.stdout), n, first, t0, t1)

    # a reprocess moves the replaced attempts to the history: still results, in every command
    p = cli("reprocess", "--db", db_url, "--failed", "--no-progress", "--workers", "1", *dirs)
    assert p.returncode == 1, p.stdout + p.stderr
    time.sleep(2.5)  # the last result is seconds old: a rate that ends there shows it
    n, first = _results(db_url)

    t0 = time.time()
    p = cli("status", "--db", db_url, "--format", "json")
    t1 = time.time()
    assert p.returncode == 0, p.stdout + p.stderr
    st = json.loads(p.stdout)
    assert st["running"]
    _ends_within(f"status {st['rate_label']}", st["rate_per_min_recent"], n, first, t0, t1)
    for s in st["sessions"]:
        sn, sfirst = _results(db_url, s["session"])
        assert s["processed"] == sn, s
        _ends_within(f"session {s['session']} rate", s["rate_per_min"], sn, sfirst, t0, t1)
        _ends_within(f"session {s['session']} average", s["avg_rate_per_min"], sn, sfirst, t0, t1)

    t0 = time.time()
    p = cli("report", "--db", db_url, "--format", "json")
    t1 = time.time()
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)["rate"]
    assert r["results"] == n
    _ends_within(f"report {r['rate_label']}", r["recent_per_min"], n, first, t0, t1)
    _ends_within(f"report {r['average_label']}", r["average_per_min"], n, first, t0, t1)
