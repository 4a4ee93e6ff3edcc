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
    if summary.stop_reason and summary.exit_code in (
        2,
        3,
    ):  # like every other command: the reason on stderr
        kind, _, text = summary.stop_reason.partition(
            ": "
        )  # "config: ..." / "error: ...": said once
        said = text if kind in ("config", "error") and text else summary.stop_reason
        click.echo(f"error: {with_user_flags(said)}", err=True)
    sys.exit(summary.exit_code)


def execute_run(kw: dict, summary_json: str | None = None) -> Any:
    from ..processing.processor import ProductionProcessor, RunOptions

    # the processor refuses a missing SQLite file itself, after the flags and the contract are checked
    url = resolve_url(
        kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"), create=True
    )
    progress = not kw.pop("no_progress") and sys.stderr.isatty()
    opts = RunOptions(url=url, progress=progress, log_level=kw.pop("log_level").upper(), **kw)
    bar = None
    if progress:
        total = _pending_count(opts)
        bar = click.progressbar(
            length=total or 0, label="applications", show_pos=True, show_eta=True, file=sys.stderr
        )
        bar.__enter__()
    opts.prepare_folders()  # a folder that takes no file: exit 2 now, not a traceback after the run
    handler, log_file = _configure_logging(opts)
    try:
        summary = ProductionProcessor(
            opts, on_progress=(bar.update if bar else None), log_file=log_file
        ).run()
    finally:
        if bar:
            bar.__exit__(None, None, None)
        if handler is not None:
            logging.getLogger("xml_extractor").removeHandler(handler)
            handler.close()
    print_summary(summary)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary.public(), default=str), encoding="utf-8")
    return summary


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


def _pending_count(opts: Any) -> int | None:
    from ..contract.loader import load_contract
    from ..db.database import Database
    from ..db.migrate import require_exists

    if opts.only_ids is not None:
        return len(opts.only_ids)
    try:
        require_exists(opts.url)  # never create the file for a progress bar
        db = Database(opts.url, load_contract(opts.contract_path))
        params = {
            "id_lo": opts.id_lo,
            "id_hi": opts.id_hi,
            "modulus": opts.modulus,
            "remainder": opts.remainder,
        }
        if opts.retry_failed:
            n = db.scalar(db.sql("count_retry"), {**params, "max_attempts": opts.max_attempts})
        else:
            n = db.scalar(db.sql("count_pending"), params)
        db.close()
        return min(int(n), opts.limit) if opts.limit is not None else int(n)
    except Exception:
        return None


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
        ["apps/minute", s.apps_per_minute],
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
    if s.stop_reason:  # a many-line reason (exit 2, 3) is said in full once: on stderr
        first, _, more = s.stop_reason.partition("\n")
        in_full = more and s.exit_code in (2, 3)
        rows.append(["stopped", f"{first} (in full below)" if in_full else s.stop_reason])
    rows += [["log", s.log_file or "-"], ["metrics", s.metrics_file or "-"]]
    click.echo(tabulate(rows, tablefmt="simple"))
