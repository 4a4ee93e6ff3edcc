"""Setup commands: init-db, load-xml, generate-mock."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click
from tabulate import tabulate

from .common import ENV, db_options, handle_errors, open_db


@click.command("init-db")
@db_options
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the whole schema's SQL instead of running it (no database needed).",
)
@click.option(
    "--dialect",
    type=click.Choice(["sqlite", "postgresql", "mssql"]),
    default=None,
    help="With --print: the dialect to emit (default: the --db URL's).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compare the database with the contract and print the plan (new tables, ALTER TABLE ... ADD; "
    "T-SQL batches for SQL Server) without changing anything. Exit 2 if a change could lose data.",
)
@click.option(
    "--allow-enum-change",
    is_flag=True,
    help="When the contract gives an enum code another id than the database holds: rewrite app_enums and "
    "every stored id of that enum in one transaction (stop every run first). Without it such a "
    "change is refused (exit 2).",
)
@handle_errors
def init_db_cmd(
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    contract_path: str | None,
    print_only: bool,
    dialect: str | None,
    dry_run: bool,
    allow_enum_change: bool,
) -> None:
    """Create source, target, log and event tables and seed app_enums (idempotent). On an existing
    database: add the tables and nullable columns a newer contract declares; refuse (exit 2, with
    the exact difference) a change that could lose data, and an enum id the contract changes unless
    --allow-enum-change."""
    from ..contract.loader import load_contract
    from ..db import migrate

    if print_only:
        from ..db.database import make_dialect
        from ..db.url import parse_url

        contract = load_contract(contract_path)
        d = make_dialect(dialect or (parse_url(db_url).dialect if db_url else "sqlite"))
        click.echo(d.schema_script(contract))
        return
    db = open_db(db_url, server, database, username, contract_path, create=not dry_run)
    try:
        if dry_run:
            plan = migrate.dry_run(db, allow_enum_change)
            click.echo(plan.render(), nl=False)
            migrate.require_no_refusal(plan)
            return
        done = migrate.initialise(db, allow_enum_change)
        click.echo(f"initialised {db.url.display()}: {done.describe()}")
    except (
        Exception
    ) as exc:  # a driver error (catalogue read, DDL): typed, one line, never a raw traceback
        typed = db.dialect.wrap(exc)
        if typed is exc:
            raise
        db.rollback()
        raise typed from exc
    finally:
        db.close()


def _say_created(where: str, contracts: str | None = None) -> None:
    """load-xml and generate-mock create a missing schema themselves: they say so, naming the
    contracts when they are not the default one."""
    flags = "".join(f" --contract {c}" for c in contracts.split(",")) if contracts else ""
    click.echo(f"created the schema in {where} (as init-db{flags} does)")


def _add_documents_schema(db: Any, reopen: Callable[[str], Any]) -> tuple[Any, list[str]]:
    """generate-mock into a database initialised for other contracts than its documents': add
    the documents' contracts' schema (what init-db with all of them does, refused when it could
    lose data) and return the database opened with all of them and their names; ``(db, [])`` when
    the database holds the documents' schema already or none yet (ensure_schema creates it)."""
    from ..db.migrate import initialise, initialised_contracts

    held = initialised_contracts(db)
    wanted = sorted({m.name for m in db.contract.extra.get("members", [])} or {db.contract.name})
    if not held or set(wanted) <= set(held):
        return db, []
    union = sorted(set(held) | set(wanted))
    if union != wanted:
        db.close()
        db = reopen(",".join(union))
    initialise(db)
    return db, union


# The contracts whose documents generate-mock --product writes: the schema it creates is theirs,
# so the documented `run --contract rec_lending` after `generate-mock --product rl` finds its tables.
PRODUCT_CONTRACTS = {"cc": None, "rl": "rec_lending", "mixed": "credit_card,rec_lending"}


@click.command("load-xml")
@click.argument("paths", nargs=-1, required=True)
@db_options
@click.option(
    "--replace",
    is_flag=True,
    envvar=ENV + "REPLACE",
    show_envvar=True,
    help="Overwrite documents whose app_id is already in the source table (default: skip them, with a reason).",
)
@click.option(
    "--prefer",
    "prefer",
    multiple=True,
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="When several files carry one Request/@ID, load this one (repeatable). Without it none of them "
    "is loaded and the conflict is reported with every path.",
)
@handle_errors
def load_xml_cmd(
    paths: tuple[str, ...],
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    contract_path: str | None,
    replace: bool,
    prefer: tuple[str, ...],
) -> None:
    """Load XML files (files, folders, globs) into the source table; app_id from Request/@ID.

    Every file that cannot be loaded is skipped with a reason (unreadable, not XML, no usable ID,
    an ID out of range for the source column, an ID two files carry, an ID already loaded); exit 1
    if any was skipped, 2 if an argument matches no file. Creates the database and its schema if
    there is none (as init-db would) and says so."""
    from ..loading import load_files

    db = open_db(db_url, server, database, username, contract_path, create=True)
    try:
        report = load_files(db, paths, replace=replace, prefer=prefer)
    finally:
        db.close()
    if report.created_schema:
        _say_created(db.url.display())
    click.echo(
        tabulate(sorted(report.counts.items()), headers=["outcome", "files"], tablefmt="simple")
    )
    marked = report.marked_for_reprocess
    if marked:  # their stored rows come from the old documents: said loudly, and pending again
        shown = " ".join(map(str, marked[:30])) + (
            f" ... ({len(marked)} in all)" if len(marked) > 30 else ""
        )
        click.echo(
            f"marked for reprocess: {len(marked)} replaced application(s) had been processed; their stored "
            f"rows are from the old document until the next run (or reprocess) redoes them: {shown}",
            err=True,
        )
    for path, why in report.problems[:50]:
        click.echo(f"  skipped {path}: {why}", err=True)
    if len(report.problems) > 50:
        click.echo(f"  ... and {len(report.problems) - 50} more", err=True)
    sys.exit(1 if report.problems else 0)


@click.command("generate-mock")
@db_options
@click.option(
    "--count",
    type=click.IntRange(min=1),
    required=True,
    envvar=ENV + "COUNT",
    help="How many documents.",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    envvar=ENV + "SEED",
    help="The same seed gives the same documents.",
)
@click.option(
    "--faulty-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar=ENV + "FAULTY_SHARE",
    help="Share of documents broken in one of the real ways (malformed, truncated, wrong product line, ...).",
)
@click.option(
    "--start-id",
    type=int,
    default=1,
    show_default=True,
    envvar=ENV + "START_ID",
    help="app_id of the first document (the others follow).",
)
@click.option(
    "--product",
    type=click.Choice(["cc", "rl", "mixed"]),
    default="cc",
    show_default=True,
    envvar=ENV + "PRODUCT",
    help="Credit-card documents, rec-lending documents, or both in one source table.",
)
@click.option(
    "--rl-share",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    envvar=ENV + "RL_SHARE",
    help="With --product mixed: the share of rec-lending documents.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write .xml files into this folder instead of the database.",
)
@handle_errors
def generate_mock_cmd(
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    contract_path: str | None,
    count: int,
    seed: int,
    faulty_share: float,
    start_id: int,
    product: str,
    rl_share: float,
    out_dir: str | None,
) -> None:
    """Generate realistic documents (sizes, formats, edge cases), deterministically for a seed.
    Into a database: its schema is that of the contracts the documents are for (--product rl:
    rec_lending, mixed: both) unless --contract names others."""
    from ..loading import generate_into_db, generate_into_folder
    from ..mock_rl import generator_for

    gen = generator_for(product, seed, faulty_share, rl_share)
    contract_path = contract_path or PRODUCT_CONTRACTS[product]
    if out_dir:
        stats = generate_into_folder(out_dir, count, seed, faulty_share, start_id, generator=gen)
        where = out_dir
    else:
        db = open_db(db_url, server, database, username, contract_path, create=True)
        db, union = _add_documents_schema(
            db, lambda names: open_db(db_url, server, database, username, names, create=True)
        )
        stats = generate_into_db(db, count, seed, faulty_share, start_id, generator=gen)
        where = db.url.display()
        db.close()
        if union:
            flags = " ".join(f"--contract {n}" for n in union)
            at = f" --db {shlex.quote(where)}" if db_url else ""
            click.echo(
                f"added the schema of the documents' contracts to {where} (as init-db {flags} "
                f"does): process them with `xml-extractor run{at} {flags}`"
            )
        elif stats["created_schema"]:
            _say_created(where, contract_path)
    click.echo(
        f"generated {stats['written']} documents into {where} in {stats['seconds']:.1f}s "
        f"({stats['written'] / max(stats['seconds'], 1e-9):.0f}/s), median {stats['median_kb']:.0f} KB; "
        f"faulty: {stats['faulty']} {json.dumps(stats['faults'])}; skipped (already present): {stats['skipped']}"
    )
