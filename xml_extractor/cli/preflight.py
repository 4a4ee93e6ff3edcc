"""``xml-extractor preflight``: the checks of xml_extractor/preflight.py as a table or JSON."""

from __future__ import annotations

from typing import Any

import click
from tabulate import tabulate

from ..errors import ConfigError
from .common import FORMAT, _json, db_options, handle_errors, resolve_url, with_user_flags


def _connect(kw: dict) -> Any:
    """The database, connected once (no retries: a server that does not answer is exit 2 at once,
    one line naming it)."""
    from ..contract.loader import load_contract
    from ..db.database import Database

    contract = load_contract(kw.pop("contract_path"))
    url = resolve_url(kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"))
    db = Database(url, contract, connect=False)
    try:
        db.connect()
    except ConfigError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        msg = lines[0][:400] if lines else type(exc).__name__
        msg = msg.removeprefix("cannot connect to the database: ")
        hint = ""
        if "certificate" in msg.lower():
            hint = " (the server's certificate is not trusted: install a trusted one, or --trust-server-certificate)"
        raise ConfigError(f"cannot connect to {url.display()}: {msg}{hint}") from None
    return db


@click.command("preflight")
@db_options
@FORMAT
@click.option(
    "--sample",
    type=click.IntRange(min=1, max=100_000),
    default=200,
    show_default=True,
    help="Documents to read, spread over the source's id range (encodings, what the run's fetch returns, "
    "documents that would not parse or map).",
)
@handle_errors
def preflight_cmd(fmt: str, sample: int, **kw: Any) -> None:
    """Before a migration: check the database for what would hurt (connection, driver, permissions,
    locks, collation, isolation, the source table and a sample of its rows, size limits, schema).
    Exit 0 all ok, 1 any warning or failure, 2 cannot connect or misconfigured."""
    from ..preflight import Preflight, exit_code, run_checks

    db = _connect(kw)
    try:
        checks = run_checks(Preflight(db, sample=sample))
    finally:
        db.close()
    for c in checks:  # a command to type carries the flags typed here
        c.detail, c.fix = with_user_flags(c.detail), with_user_flags(c.fix)
    if fmt == "json":
        _json([c.as_dict() for c in checks])
    else:
        rows = [
            [
                c.name,
                c.status.upper() if c.status in ("warn", "fail") else c.status,
                c.detail + (f"\n-> {c.fix}" if c.fix and c.status in ("warn", "fail") else ""),
            ]
            for c in checks
        ]
        click.echo(
            tabulate(
                rows,
                headers=["check", "status", "detail"],
                tablefmt="simple",
                maxcolwidths=[None, None, 100],
            )
        )
        bad = [c for c in checks if c.status in ("warn", "fail")]
        click.echo(
            "\n"
            + (
                f"{sum(c.status == 'fail' for c in bad)} failed, {sum(c.status == 'warn' for c in bad)} "
                "warning(s)"
                if bad
                else "all checks passed"
            )
        )
    raise SystemExit(exit_code(checks))
