"""Disputed con_ids on SQLite and PostgreSQL: first to commit keeps a con_id, and `failures`
lists every disputed claim with the application that kept it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import cli

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

SAMPLE = Path(__file__).parent / "data" / "app-1001.xml"


def test_failures_lists_every_disputed_con_id_and_who_kept_it(db_url: str, tmp_path: Path) -> None:
    """Two documents with the same two con_ids: one keeps both, the other fails; `failures`
    names each con_id with both applications, in table and JSON form."""
    text = SAMPLE.read_text("utf-8-sig")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.xml").write_text(text, "utf-8")
    (folder / "b.xml").write_text(text.replace('ID="1001"', 'ID="1002"', 1), "utf-8")
    cli("load-xml", str(folder), "--db", db_url, check=True)
    p = cli("run", "--db", db_url, "--no-progress", "--workers", "2", "--batch-size", "1")
    assert p.returncode == 1, p.stdout + p.stderr
    status = json.loads(cli("status", "--db", db_url, "--format", "json", check=True).stdout)
    assert (status["success"], status["failed"]) == (1, 1), status
    out = json.loads(
        cli("failures", "--db", db_url, "--disputes", "--format", "json", check=True).stdout
    )
    assert len(out) == 2, out
    kept = {d["kept_by"] for d in out}
    refused = {d["refused_app_id"] for d in out}
    assert len(kept) == 1 and kept | refused == {1001, 1002} and kept != refused, out
    assert sorted(d["con_id"] for d in out) == ["900001", "900002"], out
    table = cli("failures", "--db", db_url, check=True).stdout
    assert "2 disputed con_id claim(s): the first application to commit keeps it" in table, table
    (owner,) = kept
    (loser,) = refused
    assert any(
        line.split()[:3] == ["900001", str(owner), str(loser)] for line in table.splitlines()
    ), table
    report = json.loads(cli("report", "--db", db_url, "--format", "json", check=True).stdout)
    assert [(d["con_id"], d["kept_by"], d["refused_app_id"]) for d in report["disputes"]] == [
        (d["con_id"], d["kept_by"], d["refused_app_id"]) for d in out
    ], report["disputes"]
    md = cli("report", "--db", db_url, "--format", "md", check=True).stdout
    assert "## Disputed con_ids" in md, md
    assert re.search(rf"\|\s*900001\s*\|\s*{owner}\s*\|\s*{loser}\s*\|", md), md
