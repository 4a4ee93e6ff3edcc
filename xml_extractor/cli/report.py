"""``xml-extractor report``: the migration on one page (HTML with charts), or the same figures as
Markdown or JSON. The gathering and the layout live in ``xml_extractor/report.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import report
from ..errors import ConfigError
from .common import _query, db_options, handle_errors

DEFAULT_HTML = "xml-extractor-report.html"


@click.command("report")
@db_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json"]),
    default="html",
    show_default=True,
    help="html: one self-contained page with charts (needs the report extra: matplotlib); md and json: the same "
    "figures for scripts.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help=f"Write to this file ('-': standard output). Default: {DEFAULT_HTML} for html, standard output for md "
    "and json.",
)
@handle_errors
def report_cmd(fmt: str, out: str | None, **kw: Any) -> None:
    """The migration's story: applications done over time per instance, the rate and its ETA,
    failures by stage and class over time, data-quality events by kind per contract, runs."""
    if fmt == "html":
        report.require_charts()  # before the queries: a missing extra is a usage error (exit 2)
    target = out if out is not None else (DEFAULT_HTML if fmt == "html" else "-")
    if target != "-" and not Path(target).absolute().parent.is_dir():  # before the queries too
        raise ConfigError(f"--out {target}: the folder {Path(target).parent} does not exist")
    data = _query(kw, report.report_data)
    text = report.render(data, fmt)
    if target == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {target}: cannot write it: {exc.strerror or exc}") from None
    click.echo(f"wrote {target} ({len(text.encode('utf-8')) / 1024:,.0f} KiB, {fmt})", err=True)
