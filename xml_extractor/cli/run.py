"""Running: run, launch."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from tabulate import tabulate

from .common import handle_errors, resolve_url, run_options

@click.command("run")
@run_options
@handle_errors
def run_cmd(**kw: Any) -> None:
    """Process unprocessed applications (resumable: run the same command again after any stop)."""
    summary = execute_run(kw)
    sys.exit(summary.exit_code)


def execute_run(kw: dict) -> Any:
    from ..processing.processor import ProductionProcessor, RunOptions
    url = resolve_url(kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"))
    progress = not kw.pop("no_progress") and sys.stderr.isatty()
    opts = RunOptions(url=url, progress=progress, log_level=kw.pop("log_level").upper(), **kw)
    bar = None
    if progress:
        total = _pending_count(opts)
        bar = click.progressbar(length=total or 0, label="applications", show_pos=True, show_eta=True, file=sys.stderr)
        bar.__enter__()
    proc = ProductionProcessor(opts, on_progress=(bar.update if bar else None))
    try:
        summary = proc.run()
    finally:
        if bar:
            bar.__exit__(None, None, None)
    print_summary(summary)
    if os.environ.get("XML_EXTRACTOR_LAUNCHED"):
        from ..processing.processor import _public
        click.echo("SUMMARY " + json.dumps(_public(summary), default=str))
    return summary


def _pending_count(opts: Any) -> int | None:
    from ..contract.loader import load_contract
    from ..db.database import Database
    from ..processing.selection import ID_MAX, ID_MIN
    if opts.only_ids is not None:
        return len(opts.only_ids)
    try:
        db = Database(opts.url, load_contract(opts.contract_path))
        modulus, rem = (opts.instance_count, opts.instance_id) if opts.mode == "partition" else (1, 0)
        params = {"id_lo": opts.app_id_start if opts.app_id_start is not None else ID_MIN,
                  "id_hi": opts.app_id_end if opts.app_id_end is not None else ID_MAX, "modulus": modulus, "remainder": rem}
        if opts.retry_failed:
            n = db.scalar(db.sql("count_retry"), {**params, "max_attempts": opts.max_attempts})
        else:
            n = db.scalar(db.sql("count_pending"), params)
        db.close()
        return min(int(n), opts.limit) if opts.limit is not None else int(n)
    except Exception:  # noqa: BLE001 - a progress bar is not worth failing for
        return None


def print_summary(s: Any) -> None:
    rows = [["session", s.session_id], ["instance", f"{s.instance_id}/{s.instance_count} ({s.mode})"],
            ["database", s.database], ["contract", s.contract_version], ["selected", s.selected],
            ["success", s.success], ["failed", s.failed], ["skipped (done elsewhere)", s.skipped],
            ["elapsed s", s.elapsed_s], ["apps/minute", s.apps_per_minute]]
    if s.failures_by_stage:
        rows.append(["failures by stage", ", ".join(f"{k}={v}" for k, v in sorted(s.failures_by_stage.items()))])
    if s.worker_restarts:
        rows.append(["worker restarts", s.worker_restarts])
    if s.interrupted:
        rows.append(["interrupted", "yes: run the same command again to resume"])
    if s.stop_reason:
        rows.append(["stopped", s.stop_reason])
    rows += [["log", s.log_file or "-"], ["metrics", s.metrics_file or "-"]]
    click.echo(tabulate(rows, tablefmt="simple"))
