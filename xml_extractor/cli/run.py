"""Running: run, launch."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from ..errors import DatabaseError
from .common import handle_errors, resolve_url, run_options, with_user_flags


@click.command("run")
@run_options
@click.option(
    "--summary-json",
    default=None,
    hidden=True,
    help="Write the summary as JSON to this file (how `launch` collects its instances' summaries).",
)
@handle_errors
def run_cmd(summary_json: str | None, **kw: Any) -> None:
    """Process unprocessed applications (resumable: run the same command again after any stop)."""
    summary = execute_run(kw, summary_json)
    if summary.stop_reason is not None:  # like every other command: the reason on stderr, once
        click.echo(f"error: {with_user_flags(summary.stop_reason.text)}", err=True)
    sys.exit(summary.exit_code)


def execute_run(kw: dict, summary_json: str | None = None) -> Any:
    """Run one instance with the command line's logging and progress bar, print its summary.
    Whatever ends the run, its log's last line is the outcome and exit code: an exception before
    the run has a summary is logged (processor.log_stopped_early) and raised on for the exit code
    (a bug: exit 3, not Python's 1)."""
    from ..processing.processor import ProductionProcessor, RunOptions, log_stopped_early

    # the processor refuses a missing SQLite file itself, after the flags and the contract are checked
    url = resolve_url(
        kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"), create=True
    )
    progress = not kw.pop("no_progress") and sys.stderr.isatty()
    opts = RunOptions(url=url, progress=progress, log_level=kw.pop("log_level").upper(), **kw)
    bar = _progress_bar(opts) if progress else None
    opts.prepare_folders()  # a folder that takes no file: exit 2 now, not a traceback after the run
    handler, log_file = _configure_logging(opts)
    try:
        if bar is not None:
            bar.starting("reading the contract")
        summary = ProductionProcessor(opts, log_file=log_file, listener=bar).run()
    except BaseException as exc:
        code = log_stopped_early(opts.session_id, exc)
        if code == 3 and not isinstance(exc, DatabaseError):  # a bug: said once, exit 3
            click.echo(f"error: {type(exc).__name__}: {exc} (see the log)", err=True)
            raise SystemExit(3) from exc
        raise
    finally:
        if bar is not None:
            bar.close()
        if handler is not None:
            logging.getLogger("xml_extractor").removeHandler(handler)
            handler.close()
    print_summary(summary)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary.public(), default=str), encoding="utf-8")
    return summary


def _progress_bar(opts: Any) -> Any:
    """The terminal's progress line, with this share's total and what earlier runs did of it."""
    from ..progress import RunProgress

    total, pending = _share_counts(opts)
    done = total - pending if total is not None and pending is not None else 0
    return RunProgress(total, max(0, done), sys.stderr)


def _configure_logging(opts: Any) -> tuple[logging.Handler | None, str | None]:
    """The command line, not the library, decides where records go: the run's own log file under
    --logs-dir (workers' records arrive through the coordinator) at --log-level."""
    package = logging.getLogger("xml_extractor")
    package.setLevel(opts.log_level)
    if not opts.logs_dir:
        return None, None
    Path(opts.logs_dir).mkdir(parents=True, exist_ok=True)
    path = str(
        Path(opts.logs_dir)
        / (
            f"run-{time.strftime('%Y%m%d-%H%M%S')}-i{opts.instance_id}of{opts.instance_count}"
            f"-{opts.session_id[:8]}.log"
        )
    )
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(processName)s-%(process)d %(levelname)s %(name)s: %(message)s"
        )
    )
    package.addHandler(handler)
    return handler, path


def _share_counts(opts: Any) -> tuple[int | None, int | None]:
    """(total, pending) of this instance's share: every application in its range and partition,
    and those this run would select (failed with attempts left under --retry-failed). (None, None)
    when they cannot be counted (the run itself then says why)."""
    from ..contract.loader import load_contract
    from ..db.database import Database
    from ..db.migrate import require_exists

    if opts.only_ids is not None:
        return len(opts.only_ids), len(opts.only_ids)
    try:
        require_exists(opts.url)  # never create the file for a progress bar
        db = Database(opts.url, load_contract(opts.contract_path))
        params = {
            "id_lo": opts.id_lo,
            "id_hi": opts.id_hi,
            "modulus": opts.modulus,
            "remainder": opts.remainder,
        }
        try:
            total = int(db.scalar(db.sql("count_share"), params))
            if opts.retry_failed:
                q, params = "count_retry", {**params, "max_attempts": opts.max_attempts}
            else:
                q = "count_pending"
            pending = int(db.scalar(db.sql(q), params))
        finally:
            db.close()
    except Exception:
        return None, None
    if opts.limit is not None and pending > opts.limit:  # --limit: this run's slice is the share
        return opts.limit, opts.limit
    return total, pending


def print_summary(s: Any) -> None:
    rows = [
        ["session", s.session_id],
        ["instance", f"{s.instance_id}/{s.instance_count} ({s.mode})"],
        ["database", s.database],
        ["contract", s.contract_version],
        ["selected", s.selected],
        ["success", s.success],
        ["failed", s.failed],
        ["skipped (done elsewhere)", s.skipped],
        ["elapsed s", s.elapsed_s],
        [f"{s.rate_label}/min", f"{s.rate_per_min:,}"],
        [f"{s.average_label}/min", f"{s.average_per_min:,}"],
    ]
    if s.failures_by_stage:
        rows.append(
            [
                "failures by stage",
                ", ".join(f"{k}={v}" for k, v in sorted(s.failures_by_stage.items())),
            ]
        )
    if s.worker_restarts:
        rows.append(["worker restarts", s.worker_restarts])
    if s.interrupted:
        rows.append(["interrupted", "yes: run the same command again to resume"])
    # the reason itself is printed once, on stderr (run_cmd): here only what ended the run
    why = ": reason on stderr (in full below)" if s.stop_reason is not None else ""
    rows.append(["outcome", f"{s.outcome}, exit code {s.exit_code}{why}"])
    rows += [["log", s.log_file or "-"], ["metrics", s.metrics_file or "-"]]
    click.echo(tabulate(rows, tablefmt="simple"))
