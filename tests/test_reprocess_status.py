"""status during a reprocess: an application being redone counts as done on its current attempt
(with that attempt's contract version) until its new attempt commits; "being redone" says how many
are left; done never drops, whether the reprocess is stopped half-way or still running."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import cli, expected_failures, open_db, popen, processed_copy

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

COUNT = 40
SEED = 21
RUN = ("--no-progress", "--workers", "1")


def _dirs(tmp_path: Path) -> tuple[str, ...]:
    return ("--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics"))


@pytest.fixture
def processed(db_url: str, database_templates) -> str:
    """A processed database of the test's own (a fifth failed): a copy of one processed once."""
    return processed_copy(database_templates, db_url, COUNT, SEED)


def _status(url: str) -> dict:
    p = cli("status", "--db", url, "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    return dict(json.loads(p.stdout))


def _request_all(url: str) -> None:
    """Every application requested, nothing redone yet: a reprocess stopped right after it
    recorded its selection."""
    from xml_extractor import reprocess as rp

    db = open_db(url)
    try:
        ids = list(range(1, COUNT + 1))
        rp.request_reprocess(db, ids, "reprocess --since 2000-01-01T00:00:00", 0, 1, None)
    finally:
        db.close()


def _other_version(tmp_path: Path) -> tuple[Path, str]:
    from xml_extractor.contract.loader import default_contract_path

    c = json.loads(Path(default_contract_path()).read_text(encoding="utf-8"))
    c["version"] = c["version"] + "-fix"
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(c), encoding="utf-8")
    return path, f"{c['name']}@{c['version']}"


def test_a_stopped_reprocess_keeps_its_applications_done_on_their_old_attempt(
    processed: str, tmp_path: Path
) -> None:
    failed = len(expected_failures(SEED, 0.2, COUNT))
    before = _status(processed)
    assert (before["success"], before["failed"]) == (COUNT - failed, failed)
    old_version = before["contract_versions"][0]["contract_version"]

    _request_all(processed)
    s = _status(processed)
    assert (s["success"], s["failed"], s["pending"]) == (COUNT - failed, failed, 0), s
    assert s["being_redone"] == COUNT and s["done_pct"] == 100.0, s
    assert sum(f["count"] for f in s["failures"]) == failed, s["failures"]

    # ten of them redone with a fixed contract (a plain run consumes open requests too)
    fixed, new_version = _other_version(tmp_path)
    p = cli(
        "run",
        "--db",
        processed,
        "--contract",
        str(fixed),
        "--allow-contract-change",
        "--limit",
        "10",
        *RUN,
        *_dirs(tmp_path),
    )
    assert p.returncode in (0, 1), p.stdout + p.stderr
    s = _status(processed)
    assert s["success"] + s["failed"] == COUNT and s["done_pct"] == 100.0, s
    assert s["being_redone"] == COUNT - 10, s
    versions = {v["contract_version"]: v["applications"] for v in s["contract_versions"]}
    assert versions.pop(old_version) == COUNT - 10, versions  # the old attempts still count
    ((version, n),) = versions.items()
    assert version.startswith(new_version + "#") and n == 10, versions

    text = cli("status", "--db", processed).stdout
    assert re.search(r"^being redone\s+30$", text, re.M), text
    assert re.search(r"^pending \(never attempted\)\s+0$", text, re.M), text
    assert re.search(r"^done\s+100\.0%$", text, re.M), text


@pytest.mark.slow  # a real reprocess with a worker process, watched while it runs
def test_done_never_drops_while_a_reprocess_runs(processed: str, tmp_path: Path) -> None:
    from xml_extractor import ops

    env = {"XML_EXTRACTOR_FAULTS": "sleep_before_commit=0.3"}
    p = popen(
        "reprocess",
        "--db",
        processed,
        "--since",
        "2000-01-01T00:00",
        "--batch-size",
        "4",
        *RUN,
        *_dirs(tmp_path),
        env=env,
    )
    seen: list[tuple[int, int, int]] = []
    db = open_db(processed)
    try:
        deadline = time.monotonic() + 180
        while p.poll() is None and time.monotonic() < deadline:
            t = ops.status(db)
            seen.append((t["success"], t["failed"], t.get("being_redone", -1)))
            time.sleep(0.05)
        t = ops.status(db)
        seen.append((t["success"], t["failed"], t.get("being_redone", -1)))
    finally:
        db.close()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 1, out + err  # the faulty documents fail again
    assert all(ok + bad == COUNT for ok, bad, _ in seen), seen
    redone = [r for _, _, r in seen]
    redone = redone[next(i for i, r in enumerate(redone) if r) :]  # from the requests' commit on
    assert redone[0] == COUNT and redone == sorted(redone, reverse=True), redone  # only down
    assert any(0 < r < COUNT for r in redone), redone  # watched half-way through
    assert redone[-1] == 0
