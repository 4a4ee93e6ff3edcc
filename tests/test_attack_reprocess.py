"""Reprocess paths the attack of issue 24 found unfinished (D24, D29, D30, D32, D33), each
reproduced with the real CLI on a real database (SQLite and PostgreSQL through ``db_url``).

- D24: a reprocess whose new attempt the database refuses (a con_id another application owns)
  gets a failed attempt that replaces the old one, and its request is consumed; never
  "skipped (done elsewhere)" for its own reprocess.
- D29: a request whose source row is gone is closed with a reason; status never shows a negative
  pending count.
- D30: reprocess --mode queue beside a queue run holding other chunks ends with its own ids.
- D32: load-xml --replace of a processed application records a reprocess request, and says so.
- D33: reprocess --failed --limit N pages through the failures; Request IDs are ASCII digits.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from conftest import cli, cli_in_process, expected_failures, open_db, popen

# the same processed database as test_reprocess.py (one definition of it)
from test_reprocess import COUNT, RUN, SEED, _dirs, processed  # noqa: F401


def _rows(url: str, sql: str, params: list | None = None) -> list[tuple]:
    db = open_db(url)
    try:
        return db.autocommit_query(
            sql.format(**db.names, contact=db.table("app_contact_base")), params or []
        )
    finally:
        db.close()


def _one(url: str, sql: str, params: list | None = None) -> int:
    return int(_rows(url, sql, params)[0][0])


def _source_text(url: str, app_id: int) -> str:
    db = open_db(url)
    try:
        ((_, text, _),) = db.fetch_documents([app_id])
        return text if isinstance(text, str) else bytes(text).decode("utf-8")
    finally:
        db.close()


def _set_source_text(url: str, app_id: int, text: str) -> None:
    db = open_db(url)
    try:
        db.begin()
        db.execute(
            f"UPDATE {db.names['src']} SET {db.names['src_xml']} = ? WHERE {db.names['src_id']} = ?",
            [db.source_value(text), app_id],
        ).close()
        db.commit()
    finally:
        db.close()


def _collide(url: str) -> tuple[int, int, str]:
    """Give a successful application's first contact the con_id of another application's contact
    (the business corrected the document): (application changed, owner of the con_id, con_id)."""
    owners = _rows(url, "SELECT app_id, con_id FROM {contact} ORDER BY app_id, con_id")
    first: dict[int, str] = {}
    for a, c in owners:
        first.setdefault(int(a), str(c))
    apps = sorted(first)
    victim, owner = apps[3], apps[4]
    text = _source_text(url, victim)
    mine = f'con_id="{first[victim]}"'
    assert mine in text
    _set_source_text(url, victim, text.replace(mine, f'con_id="{first[owner]}"'))
    return victim, owner, first[owner]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["partition", "queue"])
def test_d24_a_refused_reprocess_becomes_a_failed_attempt_and_consumes_the_request(
    processed, tmp_path, mode
):
    """D24. Before the fix: 'skipped (done elsewhere) 1', exit 0, the request open forever (every
    later run repeated it) and the old success with its old rows stayed."""
    url = processed
    victim, owner, con_id = _collide(url)
    base_rows = _one(url, "SELECT COUNT(*) FROM {contact} WHERE app_id = ?", [victim])
    assert base_rows > 0
    p = cli_in_process(
        "reprocess", str(victim), "--db", url, "--mode", mode, *RUN, *_dirs(tmp_path)
    )
    out = p.stdout + p.stderr
    assert p.returncode == 1, out  # some failed: this one
    assert re.search(r"skipped \(done elsewhere\)\s+0\b", out) and re.search(
        r"\bfailed\s+1\b", out
    ), out
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0, out  # the request is consumed
    log = _rows(
        url,
        "SELECT attempt, status, stage, error_class, reason FROM {log} WHERE app_id = ?",
        [victim],
    )
    assert len(log) == 1, log
    attempt, status, stage, error_class, reason = log[0]
    assert (int(attempt), status, stage, error_class) == (2, "failed", "insert", "KeyCollision"), (
        log
    )
    assert f"already belongs to application {owner}" in reason and con_id in reason
    # the old attempt was replaced as a new one would be: its log row in the history, its rows gone
    hist = _rows(url, "SELECT attempt, status FROM {log_history} WHERE app_id = ?", [victim])
    assert [(int(a), s) for a, s in hist] == [(1, "success")]
    assert _one(url, "SELECT COUNT(*) FROM {contact} WHERE app_id = ?", [victim]) == 0
    assert (
        _one(url, "SELECT COUNT(*) FROM {contact} WHERE app_id = ?", [owner]) > 0
    )  # the owner keeps its rows
    # nothing is left to do: a plain run selects nothing, reconcile is consistent
    again = cli_in_process("run", "--db", url, *RUN, *_dirs(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"\bselected\s+0\b", again.stdout), again.stdout + again.stderr
    rec = cli_in_process("reconcile", "--db", url)
    assert rec.returncode == 0, rec.stdout + rec.stderr


def _delete_source(url: str, ids: list[int]) -> None:
    db = open_db(url)
    try:
        db.begin()
        for i in ids:
            db.execute(f"DELETE FROM {db.names['src']} WHERE {db.names['src_id']} = ?", [i]).close()
        db.commit()
    finally:
        db.close()


def _status_pending_lines(url: str) -> dict[str, int]:
    p = cli_in_process("status", "--db", url)
    assert p.returncode == 0, p.stdout + p.stderr
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(pending \([^)]*\)|being redone)\s+(-?\d+)", p.stdout, re.M)
    }


@pytest.mark.slow
def test_d29_requests_of_deleted_source_rows_are_closed_with_a_reason_and_never_counted(
    processed, tmp_path
):
    """D29. Before the fix: `reprocess --failed` requested the 3 deleted applications, every later
    one "resumed" them for ever (selected 3, success 0, failed 0), and status showed
    'pending (never attempted) -3'."""
    url = processed
    failed = sorted(expected_failures(SEED, 0.2, COUNT))
    gone, stale = failed[:3], failed[3:5]
    # an earlier reprocess left requests open, then the business deleted those source rows too
    db = open_db(url)
    try:
        db.begin()
        for a in stale:
            db.execute(
                f"INSERT INTO {db.names['requests']} (app_id, requested_at, command) VALUES (?, ?, ?)",
                [a, "2026-01-01 00:00:00", "reprocess --failed"],
            ).close()
        db.commit()
    finally:
        db.close()
    _delete_source(url, gone + stale)
    lines = _status_pending_lines(url)
    assert lines and all(v >= 0 for v in lines.values()), lines
    # requests of missing rows are not work left: nothing is being redone
    assert "being redone" not in lines and lines["pending (never attempted)"] == 0, lines

    p = cli_in_process("reprocess", "--failed", "--db", url, *RUN, *_dirs(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 1, out  # the failures fail again
    assert (
        "closed 2 open reprocess request(s) whose application is not in the source table"
        in p.stderr
    ), out
    assert " ".join(map(str, stale)) in p.stderr
    assert (
        "not in the source table (logged, not requested): " + " ".join(map(str, gone)) in p.stderr
    ), out
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0, out
    assert re.search(rf"\bselected\s+{len(failed) - 5}\b", p.stdout), out
    # nothing is left to resume: the same command requests afresh, status never goes negative
    lines = _status_pending_lines(url)
    assert all(v == 0 for v in lines.values()), lines
    again = cli_in_process("reprocess", "--failed", "--db", url, *RUN, *_dirs(tmp_path))
    assert "resuming" not in again.stdout, again.stdout + again.stderr
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0


@pytest.mark.slow
def test_d32_load_xml_replace_of_a_processed_application_marks_it_for_reprocess(
    processed, tmp_path
):
    """D32. Before the fix: 'replaced 1', exit 0, the next run selected 0 and the stored rows kept
    the old names, silently."""
    url = processed
    ok = _rows(url, "SELECT app_id FROM {contact} ORDER BY app_id")
    victim = int(ok[0][0])
    fresh = COUNT + 1  # a document never processed: replacing it needs no reprocess
    text = _source_text(url, victim)
    changed = re.sub(r'first_name="[^"]*"', 'first_name="CHANGED"', text)
    assert changed != text
    files = tmp_path / "files"
    files.mkdir()
    (files / f"app-{victim}.xml").write_text(changed, encoding="utf-8")
    other = re.sub(r'(<Request\b[^>]*\bID=")\d+(")', rf"\g<1>{fresh}\g<2>", text, count=1)
    (files / "new.xml").write_text(other, encoding="utf-8")
    cli_in_process(
        "load-xml", str(files / "new.xml"), "--db", url, check=True
    )  # loaded, never processed
    (files / "new.xml").write_text(
        other.replace('first_name="', 'first_name="X', 1), encoding="utf-8"
    )

    p = cli_in_process("load-xml", str(files), "--replace", "--db", url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"replaced\s+2\b", p.stdout), p.stdout
    assert "marked for reprocess: 1 replaced application(s) had been processed" in p.stderr, (
        p.stderr
    )
    assert p.stderr.rstrip().endswith(f": {victim}"), p.stderr
    requests = _rows(url, "SELECT app_id, command FROM {requests}")
    assert [(int(a), c) for a, c in requests] == [(victim, "load-xml --replace")]
    st = _status_pending_lines(url)
    assert st["being redone"] == 1 and st["pending (never attempted)"] == 1, st

    # the next plain run redoes it (its new attempt replaces the old rows) and the new document
    run = cli_in_process("run", "--db", url, *RUN, *_dirs(tmp_path))
    assert re.search(r"\bselected\s+2\b", run.stdout), run.stdout + run.stderr
    names = {
        str(r[0]) for r in _rows(url, "SELECT first_name FROM {contact} WHERE app_id = ?", [victim])
    }
    assert "CHANGED" in names, names
    hist = _rows(url, "SELECT attempt, status FROM {log_history} WHERE app_id = ?", [victim])
    assert [(int(a), s) for a, s in hist] == [(1, "success")]
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0
    # the same files again: the same text, nothing replaced, nothing marked
    same = cli_in_process("load-xml", str(files), "--replace", "--db", url)
    assert same.returncode == 0 and "marked for reprocess" not in same.stderr, (
        same.stdout + same.stderr
    )
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0


def _wait_until(pred, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting: {what}")


@pytest.mark.slow
def test_d30_reprocess_in_queue_mode_beside_a_queue_run_ends_with_its_own_ids(db_url, tmp_path):
    """D30. Before the fix the reprocess claimed (and released) chunks holding none of its ids and
    waited for every chunk the queue run held, so it ended together with the whole run."""
    url, total = db_url, 600
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process(
        "generate-mock", "--db", url, "--count", str(total), "--seed", str(SEED), check=True
    )
    q = ("--mode", "queue", "--chunk-size", "50", "--batch-size", "10")
    # ids 1..20 done by an earlier run (the reprocess replaces rows of that session, not the queue run's)
    cli_in_process("run", "--db", url, *RUN, "--limit", "20", *_dirs(tmp_path), check=True)
    # 58 batches: the run lasts many times the reprocess, while the file exists (then full speed)
    slowly = tmp_path / "slowly"
    slowly.touch()
    slow = {"XML_EXTRACTOR_FAULTS": f"sleep_before_commit=0.4,sleep_while={slowly}"}
    migration = popen(
        "run",
        "--db",
        url,
        *RUN,
        *q,
        "--lease-seconds",
        "30",
        "--logs-dir",
        str(tmp_path / "mlogs"),
        "--metrics-dir",
        str(tmp_path / "mmetrics"),
        env=slow,
    )
    try:
        _wait_until(
            lambda: (
                _rows(
                    url, "SELECT COUNT(*) FROM {queue} WHERE chunk_id = 0 AND done_at IS NOT NULL"
                )[0][0]
                == 1
            ),
            "the queue run finished chunk 0",
        )
        # three of its finished chunk an earlier run did, one it did itself, one far ahead of it
        ids = [5, 6, 7, 25, total - 10]
        p = cli("reprocess", *map(str, ids), "--db", url, *RUN, *q, *_dirs(tmp_path))
        out = p.stdout + p.stderr
        assert migration.poll() is None, "the reprocess ended only after the whole queue run (D30)"
        assert p.returncode == 0, out
        assert re.search(r"\bsuccess\s+5\b", p.stdout), out
        assert "waiting for" not in p.stderr, out
        hist = _rows(url, "SELECT COUNT(*) FROM {log_history} WHERE app_id IN (5, 6, 7, 25)")
        assert int(hist[0][0]) == 4  # replaced, not just logged
    finally:
        slowly.unlink()
        out, err = migration.communicate(timeout=600)
    # its own result for 25 was replaced by the reprocess: still counted as committed by its end-of-run check
    assert migration.returncode == 0, out + err
    assert _one(url, "SELECT COUNT(*) FROM {requests}") == 0
    assert _one(url, "SELECT COUNT(DISTINCT app_id) FROM {log}") == total
    rec = cli("reconcile", "--db", url)
    assert rec.returncode == 0, rec.stdout + rec.stderr


@pytest.mark.slow
def test_d33_reprocess_failed_with_limit_pages_through_the_failures(processed, tmp_path):
    """D33. Before the fix `reprocess --failed --limit 3` run twice requested and redid the same
    first 3 ids both times. A completed command is remembered: the same command again says so,
    and --again takes the next page."""
    url = processed
    firsts = sorted(expected_failures(SEED, 0.2, COUNT))
    seen: set[int] = set()
    for k in range(3):
        cmd = ("reprocess", "--failed", "--limit", "3", "--db", url, *RUN, *_dirs(tmp_path))
        if k:
            same = cli_in_process(*cmd)
            assert same.returncode == 0 and "complete at" in same.stdout, same.stdout + same.stderr
        p = cli_in_process(*cmd, *(("--again",) if k else ()))
        assert p.returncode == 1, p.stdout + p.stderr  # they fail again (the documents are broken)
        redone = {int(a) for (a,) in _rows(url, "SELECT DISTINCT app_id FROM {log_history}")} - seen
        # the oldest results first (a first run's are equally old: by id), then the next ones
        assert sorted(redone) == firsts[3 * k : 3 * k + 3], (k, sorted(redone))
        seen |= redone
    assert _one(url, "SELECT COUNT(*) FROM {log_history}") == 9  # nobody was redone twice


@pytest.mark.slow
@pytest.mark.parametrize("raw", ["\u0663", "+12", "1\u0662", "\uff11\uff12"])
def test_d33_request_ids_are_ascii_digits(sqlite_url, tmp_path, raw):
    """D33. Before the fix `Request ID="٣"` (Arabic-Indic three) was loaded as application 3: an ID
    is ASCII digits with an optional minus (whitespace around it is trimmed, as ever)."""
    from xml_extractor.mock import MockGenerator

    doc = next(iter(MockGenerator(seed=1).documents(3, 1))).text
    bad = re.sub(
        r'(<Request\b[^>]*\bID=")\d+(")', lambda m: m.group(1) + raw + m.group(2), doc, count=1
    )
    assert bad != doc
    f = tmp_path / "odd.xml"
    f.write_text(bad, encoding="utf-8")
    p = cli_in_process("load-xml", str(f), "--db", sqlite_url)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no usable Request/@ID" in p.stdout + p.stderr and "not an integer" in p.stderr, (
        p.stdout + p.stderr
    )
    assert _one(sqlite_url, "SELECT COUNT(*) FROM {src}") == 0


def test_d33_status_eta_under_a_minute_is_not_zero_minutes(capsys):
    """D33. Before the fix any ETA under a minute printed as 'ETA 0 min'."""
    from xml_extractor.cli.operate import _print_status

    d = {
        "running": True,
        "eta_minutes": 0.4,
        "rate_window_s": 30.0,
        "source_rows": 2000,
        "success": 200,
        "failed": 0,
        "pending": 1800,
        "reprocess_requested": 0,
        "done_pct": 10.0,
        "rate_per_min_recent": 5000.0,
        "sessions": [],
        "failures": [],
    }
    _print_status(d)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ETA"))
    assert "under 1 min" in line and "0 min" not in line, line


@pytest.mark.posix
@pytest.mark.slow
def test_d33_ctrl_c_ends_status_watch_with_its_own_message(sqlite_url, tmp_path):
    """D33. Before the fix Ctrl-C on `status --watch` printed the run's message ('what was
    committed stays; run the command again to go on') for a command that only reads."""
    import signal

    cli("init-db", "--db", sqlite_url, check=True)
    p = popen("status", "--db", sqlite_url, "--watch", "0.2")
    assert p.stdout is not None and p.stdout.readline()  # the first refresh is out
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "stopped watching" in err and "run the command again" not in err, err


@pytest.mark.slow
def test_d33_a_contract_set_is_the_same_whatever_the_order_of_its_flags():
    """D33. Before the fix `--contract rec_lending --contract credit_card` was the set
    'rec_lending+credit_card@...', another version tag than the same two the other way round."""
    from xml_extractor.contract.loader import load_contract

    a = load_contract("credit_card,rec_lending")
    b = load_contract("rec_lending,credit_card")
    assert a.version_tag == b.version_tag and a.name == b.name == "credit_card+rec_lending"
    assert [t.name for t in a.tables] == [t.name for t in b.tables]
