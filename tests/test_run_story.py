"""What a run tells its operator: the log's last line (outcome and exit code, whatever stopped it),
a configuration error said once (by ``run`` and under ``launch``), metrics with named fields, one
definition of rate under the same labels everywhere, a typed stop reason, and the progress bar on a
real terminal (a pseudo-terminal). Real SQLite and PostgreSQL, real processes."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import _child_env, cli, engine, popen
from procs import db_rows, kill_group, wait_until

from xml_extractor.errors import ConfigError, ConnectionLost, DatabaseError
from xml_extractor.processing.context import RunContext, RunSummary, StopKind, StopReason
from xml_extractor.progress import RunProgress, measure

ENDED = re.compile(r"run \w+ ended: (?P<outcome>[^,]+(?:\([^)]*\))?), exit code (?P<code>\d+)")


def prepare(url: str, count: int = 60, share: float = 0.1) -> None:
    cli("init-db", "--db", url, check=True)
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--faulty-share",
        str(share),
        "--seed",
        "3",
        check=True,
    )


def logged(url: str) -> int:
    return int(db_rows(url, lambda db: f"SELECT COUNT(*) FROM {db.names['log']}")[0][0])


def last_line(folder: Path) -> str:
    """The last line of the only log file in ``folder``."""
    logs = list(folder.glob("run-*.log"))
    assert len(logs) == 1, logs
    lines = logs[0].read_text(encoding="utf-8").strip().splitlines()
    assert lines, f"{logs[0]} is empty"
    return lines[-1]


def narrow_contract(folder: Path) -> Path:
    """The packaged contract with a column narrower than the schema's: refused at run start."""
    from xml_extractor.contract.loader import default_contract_path

    c = json.loads(Path(default_contract_path()).read_text("utf-8"))
    base = next(t for t in c["tables"] if t["name"] == "app_base")
    next(x for x in base["columns"] if x["name"] == "campaign_num")["length"] = 4
    path = folder / "narrow.json"
    path.write_text(json.dumps(c), "utf-8")
    return path


def unreachable(url: str) -> str:
    """The same PostgreSQL URL on a port nothing listens on."""
    return re.sub(r":(\d+)/", ":9/", url, count=1)


@pytest.mark.slow
def test_every_stop_ends_the_log_with_its_outcome_and_exit_code(
    db_url: str, tmp_path: Path
) -> None:
    """A configuration error, a missing contract file, a crash of a worker, an unreachable server
    and a clean run: each log's last line says how the run ended and the exit code it exited with
    (a missing contract file left a 0-byte log, an unreachable server a log without a reason)."""
    prepare(db_url)
    narrow = narrow_contract(tmp_path)
    bug = {"XML_EXTRACTOR_FAULTS": "fail_app=20,fail_after_table=app_base,bug=1"}
    cases = [
        ("narrow", ["--contract", str(narrow)], {}, 2, "stopped (configuration error)"),
        (
            "nofile",
            ["--contract", str(tmp_path / "missing.json")],
            {},
            2,
            "stopped (configuration error)",
        ),
        ("crash", ["--workers", "1", "--batch-size", "5"], bug, 3, "stopped (unexpected error)"),
        ("clean", [], {}, 1, "finished with failures"),
    ]
    if engine(db_url) == "postgresql":
        cases.append(
            ("down", ["--reconnect-seconds", "0"], {}, 3, "stopped (database unavailable)")
        )
    for name, extra, env, code, outcome in cases:
        url = unreachable(db_url) if name == "down" else db_url
        folder = tmp_path / name
        p = cli("run", "--db", url, "--no-progress", "--logs-dir", str(folder), *extra, env=env)
        assert p.returncode == code, (name, p.stdout, p.stderr)
        m = ENDED.search(last_line(folder))
        assert m, (name, last_line(folder))
        assert (m["outcome"], int(m["code"])) == (outcome, code), (name, last_line(folder))


@pytest.mark.slow
@pytest.mark.posix
def test_a_stop_signal_ends_the_log_with_interrupted_and_130(db_url: str, tmp_path: Path) -> None:
    """SIGTERM to the run's group once it has results: in-flight batches commit, and the log's
    last line is the outcome ``interrupted, exit code 130``."""
    prepare(db_url, count=600, share=0.0)
    folder = tmp_path / "logs"
    args = ["--workers", "1", "--batch-size", "5", "--logs-dir", str(folder)]
    p = popen("run", "--db", db_url, "--no-progress", *args)
    try:
        wait_until(lambda: logged(db_url) > 0, what="the run's first commit")
        kill_group(p, signal.SIGTERM)
        p.communicate(timeout=120)
    finally:
        kill_group(p)
    assert p.returncode == 130 and logged(db_url) < 600
    m = ENDED.search(last_line(folder))
    assert m and (m["outcome"], m["code"]) == ("interrupted", "130"), last_line(folder)


@pytest.mark.slow
def test_a_configuration_error_is_said_once_by_run_and_by_launch(
    db_url: str, tmp_path: Path
) -> None:
    """The refusal at run start is printed once: on stderr, not also as a summary row; under
    ``launch`` once for all instances (the others name the instance that said it)."""
    prepare(db_url, count=10)
    narrow = narrow_contract(tmp_path)
    p = cli("run", "--db", db_url, "--no-progress", "--contract", str(narrow))
    assert p.returncode == 2, p.stdout + p.stderr
    said = "app_base.campaign_num: length 10 in the database"
    assert said in p.stderr and (p.stdout + p.stderr).count(said) == 1, p.stdout + p.stderr
    assert "stopped (configuration error), exit code 2" in p.stdout
    p = cli("launch", "--instances", "3", "--db", db_url, "--contract", str(narrow))
    assert p.returncode == 2, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert out.count(said) == 1, out
    assert out.count("error: the same as instance ") == 2, out


@pytest.mark.slow
def test_metrics_and_summaries_name_their_fields_and_rates(db_url: str, tmp_path: Path) -> None:
    """The metrics file: a timeline of named points, the rates under progress.py's labels, the
    outcome, exit code and stop kind; the run summary and launch's table use the same labels."""
    prepare(db_url)
    p = cli(
        "run",
        "--db",
        db_url,
        "--no-progress",
        "--batch-size",
        "10",
        "--metrics-dir",
        str(tmp_path / "m"),
    )
    assert p.returncode == 1, p.stdout + p.stderr  # the faulty share fails
    assert "rate (last 5 min)/min" in p.stdout and "average since first result/min" in p.stdout
    assert "apps/minute" not in p.stdout
    (metrics,) = (tmp_path / "m").glob("run-*.json")
    m = json.loads(metrics.read_text())
    assert (
        m["rate_label"] == "rate (last 5 min)"
        and m["average_label"] == "average since first result"
    )
    assert m["average_per_min"] > 0 and m["rate_per_min"] > 0
    assert (m["outcome"], m["exit_code"], m["stop_kind"], m["status"]) == (
        "finished with failures",
        1,
        None,
        "finished",
    )
    point = m["timeline"][-1]
    assert set(point) == {"elapsed_s", "done", "success", "failed", "max_worker_rss_mb"}, point
    assert point["success"] + point["failed"] == m["success"] + m["failed"] == 60
    cli(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "30",
        "--start-id",
        "1001",
        "--faulty-share",
        "0",
        check=True,
    )
    p = cli("launch", "--instances", "2", "--db", db_url)
    assert p.returncode == 0, p.stdout + p.stderr
    header = next(line for line in p.stdout.splitlines() if line.startswith("instance"))
    assert "average since first result/min" in header and "apps/min" not in header, p.stdout


@pytest.mark.slow
def test_the_progress_bar_on_a_terminal(db_url: str, tmp_path: Path) -> None:
    """On a terminal the bar says what the run does while it starts, then done of the share's
    total counting what an earlier run did ("resuming: 20 of 60 already done"), this run's ok and
    failed counts, the rate under its label and a labelled ETA."""
    prepare(db_url)
    cli("run", "--db", db_url, "--no-progress", "--limit", "20", "--batch-size", "10")
    text = run_on_terminal(
        ["run", "--db", db_url, "--workers", "1", "--batch-size", "10"], tmp_path
    )
    assert "starting: " in text and "resuming: 20 of 60 already done" in text, text
    assert "60 of 60 done (100%)" in text, text
    final = [line for line in re.split(r"[\r\n]", text) if "60 of 60 done" in line][-1]
    assert re.search(r"this run: ok \d+, failed \d+", final), final
    assert "/min rate (last 5 min)" in final and "ETA " in final, final
    ok, failed = (int(x) for x in re.search(r"ok (\d+), failed (\d+)", final).groups())  # type: ignore[union-attr]
    assert ok + failed == 40, final


def run_on_terminal(args: list[str], cwd: Path) -> str:
    """The command with its stderr on a pseudo-terminal (stdout a pipe): what the terminal got."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xml_extractor", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=_child_env(None),
        cwd=str(cwd),
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode in (0, 1), out
    return b"".join(chunks).decode("utf-8", "replace")


# -- no database: the types and the bar's text ------------------------------------------------------


@pytest.mark.parametrize(
    "exc, kind, code",
    [
        (ConfigError("bad flag"), StopKind.CONFIG, 2),
        (ConnectionLost("gone"), StopKind.CONNECTION, 3),
        (DatabaseError("odd"), StopKind.ERROR, 3),
        (TypeError("bug"), StopKind.CRASH, 3),
    ],
)
def test_a_stop_reason_is_typed_from_the_exception_to_the_exit_code(
    exc: BaseException, kind: StopKind, code: int
) -> None:
    """The exit code follows from the kind, never from the message's text (a configuration
    message that does not start with 'config' is still exit 2)."""
    summary = RunSummary.start(RunContext(url="sqlite:///x.db"), "x", "v", "")
    summary.stop_reason = StopReason.of(exc)
    assert summary.stop_reason.kind is kind and summary.exit_code == code
    assert summary.public()["stop_kind"] == kind.value


def test_the_bar_text_names_its_rate_and_eta() -> None:
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    now = t0 + dt.timedelta(minutes=2)
    rates = measure(64, t0, now, 64, t0, now, now)
    stream = io.StringIO()
    bar = RunProgress(1064, 1000, stream)
    bar.starting("connecting to the database")
    assert (
        "starting: connecting to the database | resuming: 1,000 of 1,064 already done"
        in stream.getvalue()
    )
    line = bar.render(60, 4, 0, rates)
    assert line == (
        "1,064 of 1,064 done (100%) | this run: ok 60, failed 4 | 32/min rate (last 5 min) | "
        "ETA - (nothing pending)"
    )
    assert "ETA 31 min at the rate (last 5 min)" in RunProgress(2064, 1000, stream).render(
        60, 4, 0, rates
    )
