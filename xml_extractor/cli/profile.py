"""profile: before the run, find where a contract would lose data (exit 1 on capacity loss)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from tabulate import tabulate

from .common import ENV, FORMAT, db_options, handle_errors, resolve_url

PROGRESS_FROM = 200  # documents: a shorter sample needs no progress bar


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Any]:
    """click's progress bar on a terminal for long samples; a no-op callback otherwise."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _contracts(contract_option: Any) -> list[Any]:
    """The members of --contract (repeatable: a contract set travels as one "a,b" string, see
    contract/merge.py); one contract when a single one (or none: the default) is given."""
    from ..contract.loader import load_contract
    from ..contract.merge import split_contract_spec

    if isinstance(contract_option, (list, tuple)):
        specs = [p for v in contract_option for p in split_contract_spec(v)]
    else:
        specs = split_contract_spec(contract_option)
    return [load_contract(v) for v in specs] or [load_contract(None)]


@click.command("profile")
@click.argument("paths", nargs=-1)
@db_options
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar=ENV + "PROFILE_SAMPLE",
    show_envvar=True,
    help="Documents read from the source table, spread evenly over its id range.",
)
@FORMAT
@handle_errors
def profile_cmd(
    paths: tuple[str, ...],
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    contract_path: Any,
    sample: int,
    fmt: str,
) -> None:
    """Before the run: map a sample of documents (or PATHS: files, folders, globs) with the
    contract's own converters and report, per column, what would be rejected, rounded, truncated or
    defaulted, the longest value against the declared length, digits and decimal places against
    precision and scale, date-times whose time would be lost; the attributes no column reads; the
    codes no enum knows; each document that would fail (its file or app_id). Exit 1 when a valid
    value would not fit a column (capacity loss: the contract must change); invalid values the
    rules reject on purpose and float noise rounded to a column's scale (precision noise) do not
    count."""
    from ..errors import ConfigError
    from ..loading import expand_paths
    from ..profile import ProfileSet, profile_db, profile_files

    ctx = click.get_current_context()
    given = [
        o
        for o in ("db_url", "server")
        if ctx.get_parameter_source(o) == click.core.ParameterSource.COMMANDLINE
    ]
    if paths and given:  # a database from the environment is simply not used with PATHS
        raise ConfigError("give either PATHS or --db/--server, not both")
    contracts = _contracts(contract_path)
    label = "profiling " + " + ".join(c.name for c in contracts)
    if paths:
        files = expand_paths(paths)
        if not files:
            raise ConfigError(f"no files found in {', '.join(paths)}")
        with _progress(len(files), label) as tick:
            prof = profile_files(contracts, files, tick)
    else:
        from ..db.database import Database

        db = Database(resolve_url(db_url, server, database, username), contracts[0])
        try:
            with _progress(sample, label) as tick:
                prof = profile_db(db, sample, tick, contracts)
        finally:
            db.close()
    reports = prof.reports if isinstance(prof, ProfileSet) else [prof.report]
    if fmt == "json":
        if isinstance(
            prof, ProfileSet
        ):  # a contract set: one report per member, and what no member took
            click.echo(
                json.dumps(
                    {
                        "contracts": [r.as_dict() for r in reports],
                        "unrouted": {
                            "documents": prof.report.documents,
                            "failed": dict(prof.report.failed),
                            "examples": prof.report.failure_examples,
                        },
                    },
                    indent=2,
                    default=str,
                )
            )
        else:
            click.echo(json.dumps(reports[0].as_dict(), indent=2, default=str))
    else:
        for r in reports:
            _print_table(r.as_dict())
            click.echo()
        if isinstance(prof, ProfileSet) and prof.report.documents:
            click.echo(
                f"{prof.report.documents} documents went to no contract: "
                + ", ".join(f"{n} failed at {s}" for s, n in prof.report.failed.items())
            )
            _print_failures(prof.report.as_dict())
    if any(r.capacity_columns for r in reports):
        sys.exit(1)


def _fit(c: dict) -> str:
    """The largest value seen against what the column declares."""
    d = c["declared"]
    if d.startswith("string("):
        return f"longest {c['longest']} / {d}"
    if d.startswith("decimal("):
        p, s = (int(x) for x in d[8:-1].split(","))
        return f"{c['max_integer_digits']} digits.{c['max_decimal_places']} places / {p - s}.{s}"
    if c["time_lost"]:
        return f"{c['time_lost']} time(s) lost / {d}"
    if c["max_integer_digits"]:
        return f"{c['max_integer_digits']} digits / {d}"
    return d


def _example(examples: list[dict]) -> str:
    if not examples:
        return ""
    e = examples[0]
    return f"{e['app_id']}: {e['raw'][:40]!r} ({e['reason'][:60]})"


FAILURES_PRINTED = 50  # --format json lists every one


def _print_failures(r: dict) -> None:
    """Each document that would fail: its file (or app_id), stage and reason."""
    for f in r["failed_files"][:FAILURES_PRINTED]:
        who = f["path"] if f.get("path") is not None else f"app_id {f['app_id']}"
        click.echo(f"  would fail: {who}: {f['stage']}: {f['reason'][:200]}")
    more = sum(r["failed"].values()) - min(len(r["failed_files"]), FAILURES_PRINTED)
    if more > 0:
        click.echo(f"  ... and {more} more (--format json lists them)")


def _print_table(r: dict) -> None:
    """The profile as text: the verdict line, failures, then one section per kind of finding."""
    click.echo(
        f"contract {r['contract']} on {r['source']}: {r['documents']} documents, {r['mapped']} mapped"
        + (
            ", would fail: " + ", ".join(f"{n} at {s}" for s, n in r["failed"].items())
            if r["failed"]
            else ""
        )
    )
    _print_failures(r)
    _print_capacity_loss(r["columns"])
    _print_invalid(r["columns"])
    _print_precision_noise(r["columns"])
    _print_coverage(r)
    if r["capacity_loss_columns"]:
        click.echo(
            f"\nCAPACITY LOSS in {len(r['capacity_loss_columns'])} column(s): {', '.join(r['capacity_loss_columns'])}"
        )
    else:
        click.echo("\nno capacity loss: every valid value seen fits its column")


def _echo_rows(rows: list[list], headers: list[str]) -> None:
    """One section's rows as a plain text table."""
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


def _print_capacity_loss(columns: list[dict]) -> None:
    """Columns that could not hold a valid value: the contract must change."""
    cap = [c for c in columns if c["capacity_loss"]]
    click.echo(
        f"\ncapacity loss: a valid value the column cannot hold -- the contract must change ({len(cap)} columns)"
    )
    if cap:
        _echo_rows(
            [
                [
                    f"{c['table']}.{c['column']}",
                    c["values"],
                    c["capacity_loss"],
                    ", ".join(f"{k} {v}" for k, v in c["capacity"].items()),
                    _fit(c),
                    _example(c["capacity_examples"]),
                ]
                for c in cap
            ],
            ["column", "non-null values", "lost", "what", "seen / declared", "example"],
        )


def _print_invalid(columns: list[dict]) -> None:
    """Columns with values the contract's rules reject on purpose: the data is wrong."""
    inv = [c for c in columns if c["invalid"]]
    click.echo(
        f"\ninvalid values: rejected by the contract's rules on purpose -- the data is wrong ({len(inv)} columns)"
    )
    if inv:
        _echo_rows(
            [
                [
                    f"{c['table']}.{c['column']}",
                    c["values"],
                    c["invalid"],
                    ", ".join(f"{k} {v}" for k, v in c["events"].items()),
                    _example(c["invalid_examples"]),
                ]
                for c in inv
            ],
            ["column", "non-null values", "invalid", "events", "example"],
        )


def _print_precision_noise(columns: list[dict]) -> None:
    """Columns whose values carried float noise rounded away at the column's scale."""
    noise = [c for c in columns if c["precision_noise"]]
    click.echo(
        f"\nprecision noise: more digits than a binary float carries, rounded to the column's scale -- "
        f"nothing meaningful lost ({len(noise)} columns)"
    )
    if noise:
        _echo_rows(
            [
                [
                    f"{c['table']}.{c['column']}",
                    c["values"],
                    c["precision_noise"],
                    c["declared"],
                    _example(c["precision_noise_examples"]),
                ]
                for c in noise
            ],
            ["column", "non-null values", "rounded", "declared", "example"],
        )


def _print_coverage(r: dict) -> None:
    """How many columns received values, the attributes no column reads, unknown enum codes."""
    seen = [c for c in r["columns"] if c["values"] and not c["capacity_loss"]]
    click.echo(
        f"\n{len(seen)} columns received values that all fit; {sum(1 for c in r['columns'] if not c['values'])} "
        "received none in this sample (--format json lists every column with its largest value)"
    )
    click.echo(
        f"\nunmapped: attributes inside the document scope that no column reads ({len(r['unmapped'])})"
    )
    if r["unmapped"]:
        _echo_rows(
            [
                [u["element"], u["attribute"], u["documents"], (u["examples"] or [""])[0]]
                for u in r["unmapped"]
            ],
            ["element", "attribute", "documents", "example"],
        )
    if r["enums"]:
        click.echo("\ncodes no enum of the contract knows")
        _echo_rows(
            [
                [
                    e["enum"],
                    ", ".join(e["columns"]),
                    ", ".join(f"{k!r} x{v}" for k, v in list(e["unknown_codes"].items())[:8]),
                ]
                for e in r["enums"]
            ],
            ["enum", "columns", "unknown codes"],
        )
