"""``xml-extractor report`` (issue 21, item 2): its figures are the database's, reprocess does not
erase the past, its queries are valid in every dialect, and the page draws its charts in a real
headless Chromium (Debian's ``chromium``, installed by scripts/test.sh).

The database: 60 mock documents (20% faulty) run as two instances, then a reprocess of a few
applications (their first attempts move to processing_log_history).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import shutil
import string
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli, cli_in_process, open_db

COUNT = 60
SEED = 21
REDO = ("3", "4", "5", "6", "7", "8")
RUN = ("--no-progress", "--workers", "1", "--batch-size", "10")
IN_CI = os.environ.get("CI") == "true"


def _dirs(folder: Path) -> tuple[str, ...]:
    return ("--logs-dir", str(folder / "logs"), "--metrics-dir", str(folder / "metrics"))


def _report(url: str, fmt: str, out: Path | None = None) -> str:
    args = ["report", "--db", url, "--format", fmt] + (
        ["--out", str(out)] if out else ["--out", "-"]
    )
    p = cli_in_process(*args)
    assert p.returncode == 0, p.stdout + p.stderr
    return out.read_text("utf-8") if out else p.stdout


@pytest.fixture(scope="module")
def migrated(module_db_url, tmp_path_factory):
    """Two instances' runs, the report json before a reprocess, then the reprocess."""
    url = module_db_url
    folder = tmp_path_factory.mktemp("report")
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(COUNT),
        "--faulty-share",
        "0.2",
        "--seed",
        str(SEED),
        check=True,
    )
    for inst in ("0", "1"):
        p = cli_in_process(
            "run", "--db", url, *RUN, "--instance-id", inst, "--instance-count", "2", *_dirs(folder)
        )
        assert p.returncode == 1, p.stdout + p.stderr  # the faulty documents fail
    before = json.loads(_report(url, "json"))
    p = cli_in_process("reprocess", *REDO, "--db", url, *RUN, *_dirs(folder))
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return url, before


def _minute(v) -> str:
    """A logged_at as the report's minute key, read independently of the report's SQL."""
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)[:16]


def _direct(url: str) -> dict:
    """The same figures read straight from the tables, grouped in Python."""
    db = open_db(url)
    try:
        rows = []
        for table in (db.names["log"], db.names["log_history"]):
            rows += [
                (table, *r)
                for r in db.autocommit_query(
                    f"SELECT logged_at, instance_id, status, stage, error_class FROM {table}"
                )
            ]
        events = db.autocommit_query(f"SELECT table_name, event_type FROM {db.names['events']}")
        progress = db.autocommit_query(
            f"SELECT SUM(success), SUM(failed) FROM {db.names['progress']}"
        )[0]
        history = db.autocommit_query(f"SELECT COUNT(*) FROM {db.names['log_history']}")[0][0]
    finally:
        db.close()
    per_minute: Counter = Counter()
    replaced: Counter = Counter()
    failures: Counter = Counter()
    for table, at, inst, status, stage, cls in rows:
        per_minute[(_minute(at), int(inst), status)] += 1
        if table == db.names["log_history"]:
            replaced[(_minute(at), int(inst))] += 1
        if status == "failed":
            failures[(_minute(at), stage or "-", cls or "-")] += 1
    return {
        "per_minute": per_minute,
        "replaced": replaced,
        "failures": failures,
        "history": int(history),
        "events": Counter((t, k) for t, k in events),
        "progress": tuple(int(v or 0) for v in progress),
        "results": len(rows),
    }


@pytest.mark.slow
def test_json_figures_are_the_database_and_reprocess_keeps_the_past(migrated):
    url, before = migrated
    data = json.loads(_report(url, "json"))
    d = _direct(url)
    assert d["history"] >= len(REDO), "the reprocess moved the first attempts to the history"

    got = Counter()
    got_replaced = Counter()
    for x in data["results_per_minute"]:
        got[(x["minute"], x["instance"], "success")] += x["success"]
        got[(x["minute"], x["instance"], "failed")] += x["failed"]
        got_replaced[(x["minute"], x["instance"])] += x["replaced"]
        assert x["results"] == x["success"] + x["failed"]
    assert +got == d["per_minute"]
    assert +got_replaced == d["replaced"] and sum(got_replaced.values()) == d["history"]
    assert {x["instance"] for x in data["results_per_minute"]} == {0, 1}

    assert (
        Counter(
            {
                (f["minute"], f["stage"], f["error_class"]): f["count"]
                for f in data["failures_per_minute"]
            }
        )
        == d["failures"]
    )
    assert sum(d["failures"].values()) > 0
    assert (
        Counter({(e["table"], e["event_type"]): e["events"] for e in data["events"]}) == d["events"]
    )
    assert {e["contract"] for e in data["events"]} <= {"credit_card"}
    assert (sum(r["success"] for r in data["runs"]), sum(r["failed"] for r in data["runs"])) == d[
        "progress"
    ]
    assert len(data["runs"]) >= 3  # two instances' runs and the reprocess

    # the curve: every minute from the first result to the last, its total is every result
    tpm = data["total_per_minute"]
    assert tpm[-1]["cumulative"] == d["results"] == data["rate"]["results"]
    assert [x["minute"] for x in tpm] == sorted({x["minute"] for x in tpm})
    assert (
        data["rate"]["rate_label"] == "rate (last 5 min)"
        and data["rate"]["average_label"] == "average since first result"
    )

    # nothing of the past was erased: every count before the reprocess is still there
    after = Counter(
        {(x["minute"], x["instance"]): x["results"] for x in data["results_per_minute"]}
    )
    for x in before["results_per_minute"]:
        assert after[(x["minute"], x["instance"])] >= x["results"], x
    assert data["rate"]["results"] == before["rate"]["results"] + len(REDO)

    # the totals are status' own
    p = cli_in_process("status", "--db", url, "--format", "json")
    st = json.loads(p.stdout)
    for k in ("source_rows", "success", "failed", "pending"):
        assert data["totals"][k] == st[k], k


def test_markdown_gives_the_same_figures(migrated):
    url, _ = migrated
    data = json.loads(_report(url, "json"))
    md = _report(url, "md")
    assert "## Results per minute and instance" in md and "rate (last 5 min)" in md
    for x in data["results_per_minute"]:
        assert re.search(
            rf"\| {re.escape(x['minute'])} +\| +{x['instance']} +\| +{x['results']} +\|", md
        ), x
    for e in data["events"]:
        assert re.search(rf"\| {e['table']} +\| {e['event_type']} +\| +{e['events']:,} +\|", md), e


def test_every_report_query_parses_in_every_dialect():
    """report_*.sql with the contract's identifiers, as report._Queries renders them, through
    tests/test_sql_dialects.py's parser check (sqlglot, the dialect's own tokenizer)."""
    pytest.importorskip("sqlglot")
    from test_sql_dialects import DIALECTS, check_statement, database

    from xml_extractor.report import load_report_queries

    for dialect in DIALECTS:
        queries, fragments = load_report_queries(dialect)
        assert {
            "report_results_per_minute",
            "report_events_by_kind",
            "report_runs",
        } <= queries.keys()
        assert set(fragments) == {"minute"}
        db = database(dialect)
        for name, q in queries.items():
            assert q.description, f"{name}: no description"
            fields = {f for _, f, _, _ in string.Formatter().parse(q.template) if f}
            assert fields <= set(db.names) | set(fragments), (name, fields)
            sql = q.template.format(**db.names, **fragments)
            check_statement(
                dialect, f"report query {name}", re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", "NULL", sql)
            )


@pytest.mark.slow
def test_out_in_a_missing_folder_is_a_one_line_usage_error(sqlite_url, tmp_path):
    cli_in_process("init-db", "--db", sqlite_url, check=True)
    target = tmp_path / "nonexistent" / "dir" / "x.html"
    for fmt in ("json", "md"):
        p = cli("report", "--db", sqlite_url, "--format", fmt, "--out", str(target))
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr.count("\n") == 1 and "does not exist" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and not target.parent.exists()


def _hiding_matplotlib(tmp_path: Path) -> dict[str, str]:
    """An import path whose first entry is a matplotlib that fails to import (the rest kept: the
    package under test may be on it)."""
    rest = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(tmp_path / "stub") + (os.pathsep + rest if rest else "")}


@pytest.mark.slow
def test_html_without_matplotlib_is_a_usage_error_naming_the_extra(sqlite_url, tmp_path):
    cli_in_process("init-db", "--db", sqlite_url, check=True)
    stub = tmp_path / "stub" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    p = cli(  # a real process: its import path hides matplotlib
        "report",
        "--db",
        sqlite_url,
        "--out",
        str(tmp_path / "r.html"),
        env=_hiding_matplotlib(tmp_path),
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert (
        p.stderr.count("\n") == 1
        and "xml-extractor[report]" in p.stderr
        and "--format md|json" in p.stderr
    )
    assert not (tmp_path / "r.html").exists()
    p = cli(  # a real process: its import path hides matplotlib
        "report", "--db", sqlite_url, "--format", "json", env=_hiding_matplotlib(tmp_path)
    )
    assert p.returncode == 0 and json.loads(p.stdout)["results_per_minute"] == []


def _need(what: str, found: bool) -> None:
    if not found:
        if IN_CI:
            pytest.fail(f"CI=true but {what} is missing (scripts/test.sh installs it)")
        pytest.skip(f"{what} is not installed (scripts/test.sh installs it)")


# -- the page in a real browser --------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
FIGURES = ("chart-done", "chart-rate", "chart-failures", "chart-events", "chart-runs")
SLOT = 460  # CSS pixels per chart on the slotted test page


def _chromium() -> str | None:
    """Debian's chromium, or the browser XE_CHROMIUM names (the hosted Windows job: Google Chrome)."""
    named = os.environ.get("XE_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return next(
        (
            found
            for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
            if (found := shutil.which(name))
        ),
        None,
    )


def _browse(page: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    exe = _chromium()
    assert exe
    profile = folder / f"profile-{page.stem}-{args[0].lstrip('-').split('=')[0]}"
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def _console(stderr: str) -> list[str]:
    """Console messages Chromium logged (any level: the page has no script, so any is a fault)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rows.append(bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
    return width, height, rows


def _ink(rows: list[bytes], y0: int, y1: int) -> tuple[int, int]:
    """Pixels in rows y0..y1 that differ from the white background, and those of them in colour
    (not grey: axes and text are grey or black, the data is drawn in colour)."""
    ink = colour = 0
    for row in rows[y0:y1]:
        for x in range(0, len(row), 3):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if min(r, g, b) < 235:
                ink += 1
                if max(r, g, b) - min(r, g, b) > 50:
                    colour += 1
    return ink, colour


@pytest.mark.slow
def test_the_page_draws_every_chart_in_headless_chromium(migrated, tmp_path):
    _need("matplotlib (the report extra)", shutil.which("python") is not None and _has_matplotlib())
    _need("Debian's chromium", _chromium() is not None)
    url, _ = migrated
    page = tmp_path / "report.html"
    text = _report(url, "html", page)
    assert len(text.encode()) < 2_000_000
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), (
        "the page loads nothing from the network"
    )

    # the page itself: parsed, no console message, every chart an inline SVG with drawn paths
    dom = _browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console(dom.stderr), _console(dom.stderr)
    for fid in FIGURES:
        m = re.search(rf'<figure id="{fid}">(.*?)</figure>', dom.stdout, re.S)
        assert m and "<svg" in m.group(1), fid
        paths = re.findall(r'<path[^>]* d="([^"]+)"', m.group(1))
        assert sum(len(re.findall(r"[ML]", p)) for p in paths) > 20, f"{fid}: no data drawn"

    shot = tmp_path / "report.png"
    p = _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1100,2400")
    assert p.returncode == 0 and shot.exists(), p.stderr[-2000:]
    assert not _console(p.stderr), _console(p.stderr)
    if os.environ.get(
        "XE_REPORT_SCREENSHOT"
    ):  # docs/report.png is made this way (docs/operations.md)
        shutil.copy(shot, os.environ["XE_REPORT_SCREENSHOT"])

    # each chart alone in a slot of known place on a white page: ink and colour inside every slot
    slotted = tmp_path / "slots.html"
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    figs = "".join(
        f'<div style="height:{SLOT}px;overflow:hidden">{re.search(rf"<figure id=.{fid}.>.*?</figure>", text, re.S).group(0)}</div>'
        for fid in FIGURES
    )
    slotted.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style.group(1) if style else ''}"
        f"body{{margin:0}}main{{padding:0;width:1000px}}</style></head><body><main>{figs}</main></body></html>"
    )
    shot2 = tmp_path / "slots.png"
    p = _browse(
        slotted, tmp_path, f"--screenshot={shot2}", f"--window-size=1000,{SLOT * len(FIGURES)}"
    )
    assert p.returncode == 0 and shot2.exists(), p.stderr[-2000:]
    assert not _console(p.stderr), _console(p.stderr)
    width, height, rows = read_png(shot2)
    scale = height / (SLOT * len(FIGURES))  # device pixels per CSS pixel
    for i, fid in enumerate(FIGURES):
        ink, colour = _ink(rows, int(i * SLOT * scale), int((i + 1) * SLOT * scale))
        assert ink > 0.02 * width * SLOT * scale, f"{fid}: nearly blank ({ink} inked pixels)"
        assert colour > 1000, f"{fid}: no data drawn in colour ({colour} coloured pixels)"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_console_check_sees_a_script_error(tmp_path):
    """The console check is not vacuous: an uncaught error in a page is seen."""
    _need("Debian's chromium", _chromium() is not None)
    page = tmp_path / "bad.html"
    page.write_text("<html><body><p>x</p><script>throw new Error('boom')</script></body></html>")
    p = _browse(page, tmp_path, "--dump-dom")
    assert any("boom" in ln for ln in _console(p.stderr)), p.stderr[-2000:]


def test_png_reader_reads_what_it_is_given(tmp_path):
    """read_png against a PNG built here with every filter type (the browser test relies on it)."""
    width, height = 5, 5
    pixels = [
        [((x * 40) % 256, (y * 50) % 256, (x * y * 9) % 256) for x in range(width)]
        for y in range(height)
    ]
    raw = b""
    for y, row in enumerate(pixels):
        line = bytes(v for px in row for v in px)
        f = y % 5
        prev = bytes(v for px in pixels[y - 1] for v in px) if y else bytes(len(line))
        out = bytearray()
        for i, v in enumerate(line):
            a = line[i - 3] if i >= 3 else 0
            b, c = prev[i], (prev[i - 3] if i >= 3 else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else b if pb <= pc else c][f]
            out.append((v - pred) & 255)
        raw += bytes([f]) + bytes(out)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "t.png").write_bytes(png)
    w, h, rows = read_png(tmp_path / "t.png")
    assert (w, h) == (width, height)
    assert rows == [bytes(v for px in row for v in px) for row in pixels]


@pytest.mark.slow
def test_events_per_contract_of_a_contract_set(db_url, tmp_path):
    """With two contracts, each event counts under the contract that mapped its application."""
    both = ("--contract", "credit_card", "--contract", "rec_lending")
    cli_in_process("init-db", "--db", db_url, *both, check=True)
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "30",
        "--product",
        "mixed",
        "--rl-share",
        "0.4",
        "--faulty-share",
        "0.1",
        "--seed",
        "3",
        check=True,
    )
    cli_in_process("run", "--db", db_url, *both, *RUN, *_dirs(tmp_path))
    p = cli_in_process("report", "--db", db_url, *both, "--format", "json", "--out", "-")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["contracts"] == ["credit_card", "rec_lending"]
    db = open_db(db_url)
    try:
        owner = dict(
            db.autocommit_query(
                f"SELECT app_id, MAX(contract_name) FROM {db.names['log']} GROUP BY app_id"
            )
        )
        events = db.autocommit_query(
            f"SELECT app_id, table_name, event_type FROM {db.names['events']}"
        )
    finally:
        db.close()
    want = Counter((owner.get(a) or "(not routed)", t, k) for a, t, k in events)
    assert (
        Counter({(e["contract"], e["table"], e["event_type"]): e["events"] for e in data["events"]})
        == want
    )
    assert {c for c, _, _ in want} == {"credit_card", "rec_lending"}


@pytest.mark.slow
def test_a_long_migration_draws_bounded_charts(db_url, tmp_path):
    """30 hours of synthetic results (testing/synthetic.py, as scripts/ops_bench.py builds them): the
    json has every minute, the page draws at most MAX_POINTS buckets per chart and stays small;
    an empty database draws a page too."""
    from xml_extractor.report import MAX_POINTS
    from xml_extractor.testing.synthetic import build

    cli_in_process("init-db", "--db", db_url, check=True)
    _need("matplotlib (the report extra)", _has_matplotlib())
    empty = _report(db_url, "html", tmp_path / "empty.html")
    assert "nothing has been processed yet" in empty and "no failed attempt" in empty
    db = open_db(db_url)
    try:
        build(db, 3000, doc_bytes=10, span=_dt.timedelta(hours=30))
        logged = db.autocommit_query(f"SELECT COUNT(*) FROM {db.names['log']}")[0][0]
    finally:
        db.close()
    data = json.loads(_report(db_url, "json"))
    tpm = data["total_per_minute"]
    assert 1790 <= len(tpm) <= 1801 and tpm[-1]["cumulative"] == logged
    assert {x["instance"] for x in data["results_per_minute"]} == {0, 1, 2}
    assert {r["instance"] for r in data["runs"]} == {0, 1, 2} and len(data["runs"]) >= 30
    page = _report(db_url, "html", tmp_path / "long.html")
    assert len(page.encode()) < 400_000
    rate_svg = re.search(r'<figure id="chart-rate">(.*?)</figure>', page, re.S).group(1)
    points = max(
        len(re.findall(r"[ML] ?-?\d", d)) for d in re.findall(r'<path[^>]* d="([^"]+)"', rate_svg)
    )
    assert points <= 4 * MAX_POINTS + 10, points  # a bucket is a step: a few vertices each


def test_one_rate_definition():
    """progress.py: the labels, the windowed rate over the observed part of the window, the
    average since the first result, the ETA only while running, the curve."""
    from xml_extractor import progress

    now = _dt.datetime(2026, 12, 7, 12, 0)
    m = _dt.timedelta(minutes=1)
    r = progress.measure(1000, now - 10 * m, now, 300, now - 5 * m, now, now)
    assert (r.recent_label, r.recent_per_min, r.average_per_min, r.running) == (
        "rate (last 5 min)",
        60.0,
        100.0,
        True,
    )
    assert r.eta(600) == 10.0
    assert r.describe(600) == (
        "60/min rate (last 5 min), 100/min average since first result, "
        "ETA 10 min at the rate (last 5 min)"
    )
    # one minute old: divided by the minute observed, not the 5-minute window
    assert progress.measure(120, now - m, now, 120, now - m, now, now).recent_per_min == 120.0
    # idle for 10 minutes: no ETA, the average ends at the last result
    idle = progress.measure(1000, now - 20 * m, now - 10 * m, 0, None, None, now)
    assert (idle.running, idle.eta(50), idle.average_per_min, idle.idle_since) == (
        False,
        None,
        100.0,
        now - 10 * m,
    )
    assert progress.format_eta(None, idle, 0) == "ETA - (nothing pending)"
    assert (
        progress.format_eta(None, idle) == "ETA - (idle)"
        and progress.format_eta(150.0) == "ETA 2.5 h at the rate (last 5 min)"
    )
    # under a minute left (450 applications at 3,000/min): status's words, never "0 min"
    fast = progress.measure(3000, now - m, now, 3000, now - m, now, now)
    assert (
        progress.format_eta(fast.eta(450), fast, 450) == "ETA under 1 min at the rate (last 5 min)"
    )
    bar = progress.RunProgress(3450, 0, io.StringIO())
    line = bar.render(3000, 0, 0, fast)
    assert "ETA under 1 min" in line and "0 min" not in line, line
    assert progress.rolling_rates([10, 20, 30, 0, 0, 0, 0, 5], 5) == [
        10.0,
        15.0,
        20.0,
        15.0,
        12.0,
        10.0,
        6.0,
        1.0,
    ]
