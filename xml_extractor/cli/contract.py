"""Contract commands: validate-contract, map."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from .common import CONTRACT_OPTION, handle_errors


@click.command("validate-contract")
@click.argument("paths", nargs=-1)
@CONTRACT_OPTION  # --contract NAME, repeatable, as on every other command (and XML_EXTRACTOR_CONTRACT)
@handle_errors
def validate_contract(paths: tuple[str, ...], contract_path: str | None) -> None:
    """Check a contract (a packaged name or a file, given as an argument or with --contract;
    default: credit_card) and summarise it. Several are checked as a contract set: one database
    for all (shared tables must agree)."""
    from ..contract.loader import load_contract
    from ..contract.merge import join_contract_specs

    c = load_contract(join_contract_specs(paths + ((contract_path,) if contract_path else ())))
    for m in c.extra.get("members", ()):
        f = contract_figures(m)
        click.echo(
            f"ok: {m.name} {m.version_tag}: {f['tables']} tables, {f['columns']} columns, "
            f"{f['attributes']} attributes, {f['enum_values']} enum values in {f['enums']} enums"
        )
    f = contract_figures(c)
    click.echo(
        f"ok: {c.name} {c.version_tag}: {f['tables']} tables, {f['columns']} columns, "
        f"{f['attributes']} attributes, {f['enum_values']} enum values in {f['enums']} enums"
    )


def contract_figures(c: Any) -> dict[str, int]:
    """The figures validate-contract prints (and the docs quote; tests/test_docs.py compares them).

    columns: stored target columns; attributes: distinct XML attribute names the contract reads
    (``attribute`` sources, the ``/@x`` of paths, unpivoted names, row filters)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "attribute" and isinstance(value, str):
                    names.add(value.lower())
                elif key == "path" and isinstance(value, str) and "/@" in "/" + value:
                    names.add(value.rsplit("@", 1)[1].lower())
                elif key == "unpivot" and isinstance(value, dict):
                    names.update(n.lower() for n in value.get("names", ()) if isinstance(n, str))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk([t.spec for t in c.tables])
    return {
        "tables": len(c.tables),
        "columns": sum(len(t.stored_columns) for t in c.tables),
        "attributes": len(names),
        "enum_values": sum(len(v) for v in c.enums.values()),
        "enums": len(c.enums),
    }


@click.command("map")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@CONTRACT_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: rows per table and the events; json: the same as data.",
)
@click.option(
    "--app-id", type=int, default=None, help="Expect this app_id (as a source row would)."
)
@handle_errors
def map_cmd(file: str, contract_path: str | None, fmt: str, app_id: int | None) -> None:
    """Show the rows and data-quality events one document produces."""
    from .. import compile_contract, load_contract
    from ..errors import DocumentFailure
    from ..mapping import map_document

    loaded = load_contract(contract_path)
    plan = compile_contract(loaded)
    try:  # the contract's min_length, as run and profile check it
        mapped = map_document(
            plan,
            Path(file).read_bytes(),
            expected_app_id=app_id,
            min_length=loaded.source_min_length,
        )
    except DocumentFailure as f:
        _print_failure(f, fmt)
        sys.exit(1)
    tables = mapped.as_dicts(plan)
    events = [
        dict(zip(("table", "column", "event_type", "raw_value", "reason", "locator"), e))
        for e in mapped.events
    ]
    if fmt == "json":
        routed = mapped.extra.get("contract")  # a contract set: the member that mapped it
        contract = routed[1] if routed else plan.contract_version.split("@", 1)[0]
        click.echo(
            json.dumps(
                {
                    "status": "success",
                    "app_id": mapped.app_id,
                    "contract": contract,
                    "tables": tables,
                    "events": events,
                },
                indent=2,
                default=str,
            )
        )
        return
    _print_tables(tables)
    _print_events(events)


def _print_failure(f: Any, fmt: str) -> None:
    """A document that failed: its stage, error class and reason, as JSON or one line."""
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "status": "failed",
                    "stage": f.stage,
                    "error_class": f.error_class,
                    "reason": f.reason,
                },
                indent=2,
            )
        )
    else:
        click.echo(f"failed at stage {f.stage} ({f.error_class}): {f.reason}")


def _print_tables(tables: dict[str, list[dict]]) -> None:
    """Each table's rows without their NULLs; a wide table (a 1:1 one) as name/value pairs."""
    for name, rows in tables.items():
        click.echo(f"\n{name} ({len(rows)} row{'s' if len(rows) != 1 else ''})")
        shown = [{k: v for k, v in r.items() if v is not None} for r in rows]
        keys = list(dict.fromkeys(k for r in shown for k in r))
        if len(keys) > 12:  # wide 1:1 tables read better as name/value
            for r in shown:
                click.echo(
                    tabulate(list(r.items()), headers=["column", "value"], tablefmt="simple")
                )
        else:
            click.echo(
                tabulate([[r.get(k) for k in keys] for r in shown], headers=keys, tablefmt="simple")
            )


def _print_events(events: list[dict]) -> None:
    """The data-quality events, raw value and reason cut to fit a line."""
    click.echo(f"\ndata-quality events ({len(events)})")
    if events:
        click.echo(
            tabulate(
                [
                    [
                        e["table"],
                        e["column"],
                        e["event_type"],
                        (e["raw_value"] or "")[:40],
                        e["reason"][:70],
                    ]
                    for e in events
                ],
                headers=["table", "column", "event", "raw", "reason"],
                tablefmt="simple",
            )
        )
