"""Operator commands: status, failures, reprocess, reconcile, quality. Queries live in ``ops.py``;
this module formats them (tabulate, or JSON with --format json for scripts)."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
from tabulate import tabulate

from .. import ops
from ..contract.merge import split_contract_spec
from ..errors import ConfigError
from ..hooks import hold
from ..progress import AVERAGE_LABEL, eta_words, rate_label
from .common import ENV, FORMAT, _db, _json, _query, db_options, handle_errors, open_db, run_options
from .run import execute_run


def _contract_set(kw: dict) -> bool:
    """Whether the command was given a contract set: its tables then show a contract column."""
    return len(split_contract_spec(kw.get("contract_path"))) > 1


# -- status ---------------------------------------------------------------------------------------


@click.command("status")
@db_options
@FORMAT
@click.option(
    "--watch",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Refresh every SECONDS until Ctrl-C (which exits 130).",
)
@click.option(
    "--recent-minutes",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Window for the current rate.",
)
@handle_errors
def status_cmd(fmt: str, watch: float | None, recent_minutes: int, **kw: Any) -> None:
    """Progress: source rows, success, failed, pending, per instance and session, rate, ETA."""
    db = _db(kw)
    try:
        while True:
            data = ops.status(db, recent_minutes)
            if fmt == "json":
                _json(data)
            else:
                if watch:
                    click.clear()
                _print_status(data)
            if not watch:
                break
            time.sleep(watch)
    except (KeyboardInterrupt, click.Abort):
        if not watch:
            raise  # common.handle_errors: exit 130
        # Ctrl-C is how --watch ends: exit 130 with a message for a command that only reads
        click.echo("interrupted: stopped watching (status only reads the database)", err=True)
        sys.exit(130)
    finally:
        db.close()


def _print_status(d: dict) -> None:
    """status as text: the totals, then the tables that have rows."""
    _print_status_totals(d)
    if d.get("by_contract"):  # a contract set: its members side by side
        _table(
            "per contract",
            [[c["contract"], c["success"], c["failed"]] for c in d["by_contract"]],
            ["contract", "ok", "failed"],
        )
    if len(d.get("contract_versions", [])) > 1:  # more than one version made the current results
        _table(
            "applications per contract version",
            [[v["contract_version"], v["applications"]] for v in d["contract_versions"]],
            ["contract version", "applications"],
        )
    if d["sessions"]:
        _table(
            "sessions (last 24 h)", [_session_row(s) for s in d["sessions"]], _session_headers(d)
        )
    if d["failures"]:
        _table(
            "failures by stage",
            [[f["stage"], f["error_class"], f["count"]] for f in d["failures"]],
            ["stage", "error class", "rows"],
        )


def _rate_label(d: dict) -> str:
    """status's windowed rate under progress.py's name (the default window without one)."""
    return str(d.get("rate_label") or rate_label())


def _session_headers(d: dict) -> list[str]:
    """The sessions table's columns, its rates under progress.py's labels."""
    rates = [f"{_rate_label(d)}/min", f"{d.get('average_label', AVERAGE_LABEL)}/min"]
    return [
        "session",
        "instance",
        "processed",
        "ok",
        "failed",
        *rates,
        "last activity (UTC)",
        "idle s",
    ]


def _session_row(s: dict) -> list[Any]:
    return [
        s["session"],
        s["instance"],
        s["processed"],
        s["success"],
        s["failed"],
        s["rate_per_min"],
        s["avg_rate_per_min"],
        s["last_activity"],
        s["idle_s"],
    ]


def _table(title: str, rows: Sequence[Sequence[Any]], headers: list[str]) -> None:
    """One titled table of the operator commands, after a blank line."""
    click.echo(f"\n{title}")
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


def _status_eta(d: dict) -> str:
    if not d.get("running", True):
        return (
            f"- (idle since {d['idle_since']:%Y-%m-%d %H:%M:%S} UTC)"
            if d.get("idle_since")
            else "- (nothing has run)"
        )
    if d["eta_minutes"] is None:
        return "-"
    return eta_words(float(d["eta_minutes"]))


def _print_status_totals(d: dict) -> None:
    """The totals: an application being redone is in success or failed (its current attempt)
    and in "being redone" until its new attempt replaces it."""
    window = f" over the last {d['rate_window_s']:.0f} s" if d.get("rate_window_s") else ""
    rows = [
        ["source rows", d["source_rows"]],
        ["success", d["success"]],
        ["failed", d["failed"]],
        ["pending (never attempted)", d["pending"]],
    ]
    if d.get("being_redone"):
        rows.append(["being redone", d["being_redone"]])
    rows += [
        ["done", f"{d['done_pct']}%"],
        [_rate_label(d), f"{d['rate_per_min_recent']}/min{window}"],
        [f"ETA at the {_rate_label(d)}", _status_eta(d)],
    ]
    click.echo(tabulate(rows, tablefmt="simple"))


# -- failures -------------------------------------------------------------------------------------


# failures --csv: one row per failed attempt of the failed applications
_FAILURES_CSV_HEADER = [
    "app_id",
    "attempt",
    "stage",
    "error_class",
    "reason",
    "logged_at",
    "contract",
]


@click.command("failures")
@db_options
@FORMAT
@click.option(
    "--stage",
    type=click.Choice(["read", "parse", "validate", "map", "insert"]),
    default=None,
    help="Only failures at this stage.",
)
@click.option(
    "--app-id",
    type=int,
    default=None,
    help="One application's full history of attempts and events.",
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write every failed attempt of the failed applications to this CSV file (columns: app_id, attempt, "
    "stage, error_class, reason, logged_at, contract).",
)
@click.option(
    "--contract-name",
    default=None,
    metavar="NAME",
    help=f"Only failures of this contract of a contract set ('{ops.NOT_ROUTED}': failed before routing).",
)
@click.option(
    "--disputes",
    is_flag=True,
    help="Only the disputed con_ids: each application refused for a con_id another application "
    "committed first, and the application that keeps it.",
)
@handle_errors
def failures_cmd(
    fmt: str,
    stage: str | None,
    app_id: int | None,
    csv_file: str | None,
    contract_name: str | None,
    disputes: bool,
    **kw: Any,
) -> None:
    """Failures grouped by contract and reason with counts and sample app_ids, or one application's history."""
    per_contract = _contract_set(kw)
    db = _db(kw)
    try:
        if app_id is not None:
            _print_history(ops.history(db, app_id), fmt)
            return
        if disputes:
            _print_disputes(db, True)
            return
        groups = ops.failures(db, stage, contract=contract_name)
        if csv_file:
            _write_failures_csv(csv_file, ops.failed_rows(db, stage, contract_name))
        if fmt == "json":
            _json(groups)
            return
        _print_failure_groups(groups, per_contract, csv_file)
        _print_disputes(db, disputes)
    finally:
        db.close()


def _print_history(h: dict, fmt: str) -> None:
    """failures --app-id: the application's attempts (replaced ones marked) and its events."""
    if fmt == "json":
        _json(h)
        return
    click.echo(
        f"application {h['app_id']}: {'in' if h['in_source'] else 'NOT in'} the source table, "
        f"{len(h['attempts'])} attempt(s)"
    )
    if h["attempts"]:
        rows = [
            [
                a["attempt"],
                a["status"] + (" (replaced)" if a.get("replaced_at") else ""),
                a["stage"],
                a["error_class"],
                (a["reason"] or "")[:90],
                a["logged_at"],
                a["contract"],
            ]
            for a in h["attempts"]
        ]
        headers = ["attempt", "status", "stage", "class", "reason", "logged at", "contract"]
        click.echo(tabulate(rows, headers=headers, tablefmt="simple"))
    if h["events"]:
        _table(
            f"data-quality events ({len(h['events'])})",
            [
                [
                    e["table"],
                    e["column"],
                    e["event_type"],
                    (e["raw_value"] or "")[:30],
                    e["locator"],
                ]
                for e in h["events"]
            ],
            ["table", "column", "event", "raw", "where"],
        )


def _write_failures_csv(csv_file: str, rows: list[tuple]) -> None:
    try:
        with open(csv_file, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(_FAILURES_CSV_HEADER)
            w.writerows(rows)
    except OSError as exc:
        raise ConfigError(f"--csv {csv_file}: cannot write it ({exc.strerror or exc})") from None


def shorten_middle(reason: str, width: int = 100) -> str:
    """A reason as wide as ``width`` at most, its middle left out: the end is what to do ("run it
    with --contract rec_lending") and is kept whole (from its last ": " when that fits)."""
    reason = " ".join(reason.split())
    if len(reason) <= width:
        return reason
    cut = reason.rfind(": ")
    tail = reason[cut + 2 :] if cut >= 0 and len(reason) - cut - 2 <= width // 2 else ""
    tail = tail or reason[-(width // 2) :]
    return reason[: width - len(tail) - 5].rstrip() + " ... " + tail


def _print_failure_groups(groups: list[dict], per_contract: bool, csv_file: str | None) -> None:
    """The failure groups as a table (a contract column for a contract set), then per contract."""
    total = sum(g["count"] for g in groups)
    click.echo(
        f"{total} failed application(s) in {len(groups)} group(s)"
        + (f"; all written to {csv_file}" if csv_file else "")
    )
    if not groups:
        return
    lead = ["contract"] if per_contract else []
    rows = [
        [g["contract"]] * len(lead)
        + [
            g["count"],
            g["stage"],
            g["error_class"],
            shorten_middle(g["reason"]),
            " ".join(map(str, g["sample_app_ids"])),
        ]
        for g in groups
    ]
    headers = lead + ["apps", "stage", "class", "reason (first of group)", "sample app_ids"]
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))
    if per_contract:
        per: dict[str, int] = {}
        for g in groups:
            per[g["contract"]] = per.get(g["contract"], 0) + g["count"]
        _table("failed applications per contract", sorted(per.items()), ["contract", "apps"])


def _print_disputes(db: Any, only: bool) -> None:
    """Every disputed con_id and who kept it (the first application to commit it): after the
    failure groups, or alone (``--disputes``, JSON with --format json)."""
    from ..disputes import disputed

    pairs = disputed(db)
    if only and click.get_current_context().params.get("fmt") == "json":
        _json(pairs)
        return
    if not pairs and not only:
        return
    click.echo(f"\n{len(pairs)} disputed con_id claim(s): the first application to commit keeps it")
    rows = [[p["con_id"], p["kept_by"], p["refused_app_id"], p["first_refused_at"]] for p in pairs]
    headers = ["con_id", "kept by", "refused for", "refused at"]
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


# -- reprocess ------------------------------------------------------------------------------------


@click.command("reprocess")
@click.argument("app_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Every application whose last attempt failed.")
@click.option(
    "--since", default=None, help="Every application logged at or after this UTC time (ISO)."
)
@click.option(
    "--dry-run", is_flag=True, help="List what would be replaced and reprocessed; change nothing."
)
@click.option(
    "--again",
    is_flag=True,
    help="Redo the selection even though the same command completed before (without it, the "
    "same command again after it completed says so and exits 0).",
)
@FORMAT
@run_options
@handle_errors
def reprocess_cmd(
    app_ids: tuple[int, ...],
    failed: bool,
    since: str | None,
    dry_run: bool,
    again: bool,
    fmt: str,
    **kw: Any,
) -> None:
    """After a contract fix: redo applications. Each one's new attempt replaces its old rows, events
    and log rows in one transaction (old log rows are kept in processing_log_history); a stop at
    any point leaves the old or the new result, and the same command again resumes. Once it has
    completed, the same command again redoes only what its selection picks now that it has not
    redone (e.g. new failures), or says it is complete and exits 0 (--again redoes its selection). With
    --instance-id/--instance-count and --limit only this instance's share, limited, is requested.

    The selectors combine as a union: APP_IDS, --failed and --since together select every
    application any one of them selects. Named ids the source table lacks are reported on stderr
    ("not in the source table: ..."); when none of them exists (and no other selector is given)
    the command exits 2."""
    from .. import reprocess as rp

    sel = rp.Selection(
        tuple(app_ids),
        failed,
        rp.parse_since(since) if since else None,
        kw["limit"],
        kw["instance_id"],
        kw["instance_count"],
    )
    rp.check_selection(sel)
    db = open_db(kw["db_url"], kw["server"], kw["database"], kw["username"], kw["contract_path"])
    try:
        plan = rp.plan(db, sel, dry_run, again)
    finally:
        db.close()
    if _print_reprocess_plan(plan, fmt):
        return
    hold(
        "reprocess_requested"
    )  # test hook (gated): the requests are committed, the run not started
    kw["only_ids"] = plan.app_ids
    kw["limit"] = None  # already applied to what was requested
    kw["allow_contract_change"] = True  # redoing with a changed contract is what reprocess is for
    summary = execute_run(kw)
    done = _finish_reprocess(db, sel)
    if done is not None and summary.exit_code == 130:
        click.echo(
            f"note: every application {plan.command!r} requested was processed before the stop; "
            "it is complete (the same command again says so; --again redoes it)",
            err=True,
        )
    sys.exit(summary.exit_code)


def _print_reprocess_plan(plan: Any, fmt: str) -> bool:
    """Say what the plan holds; True when there is nothing to run (complete, dry run, none)."""
    if plan.completed is not None:
        if fmt == "json":
            _json(
                {
                    "command": plan.command,
                    "complete": True,
                    "completed_at": plan.completed.completed_at,
                    "applications": plan.completed.applications,
                }
            )
        else:
            click.echo(plan.completed.message())
        return True
    _print_selection_notes(plan)
    todo = plan.app_ids
    if plan.dry_run or not todo:
        _print_dry_run(plan, fmt)
        return True
    click.echo(
        f"{'resuming the open requests of' if plan.resumed else 'requested'} {plan.command!r}: "
        f"{len(todo)} application(s){_not_redone_note(plan)}, "
        f"{sum(plan.rows_to_replace.values())} rows to replace; processing them again"
    )
    return False


def _not_redone_note(plan: Any) -> str:
    """For a recorded command whose selection now picks applications it has not redone: which
    these are (and that the ones it redid are not redone again)."""
    if plan.redone_since is None:
        return ""
    return (
        f" its selection picks now that it has not redone since its request at "
        f"{plan.redone_since:%Y-%m-%d %H:%M:%S} UTC (the {plan.redone} it redid are not "
        "redone; --again redoes all)"
    )


def _print_selection_notes(plan: Any) -> None:
    """On stderr: named ids the source lacks, closed requests, selected ids whose source is gone."""
    from ..reprocess import ids_text

    if plan.missing:  # named but not in the source table: said rather than dropped silently
        click.echo(f"not in the source table: {ids_text(plan.missing)}", err=True)
    if plan.closed:  # requests no run can consume: closed, with the reason
        click.echo(
            f"{'would close' if plan.dry_run else 'closed'} {len(plan.closed)} open reprocess "
            "request(s) whose application is not in the source table any more (nothing can be "
            f"processed for it): {ids_text(plan.closed)}",
            err=True,
        )
    if plan.gone:  # logged, selected by --failed/--since, but their source rows are gone
        click.echo(
            f"not in the source table (logged, not requested): {ids_text(plan.gone)}", err=True
        )


def _print_dry_run(plan: Any, fmt: str) -> None:
    todo = plan.app_ids
    if fmt == "json":
        _json(
            {
                "applications": len(todo),
                "app_ids": todo[:1000],
                "rows_to_remove": plan.rows_to_replace,
                "dry_run": plan.dry_run,
                "command": plan.command,
                "redone_since": plan.redone_since,
                "redone": plan.redone,
            }
        )
        return
    click.echo(
        f"{'would reprocess' if plan.dry_run else 'nothing to reprocess:'} {len(todo)} "
        f"application(s){_not_redone_note(plan)}: "
        f"{' '.join(map(str, todo[:30]))}{' ...' if len(todo) > 30 else ''}"
    )
    if plan.rows_to_replace:
        click.echo(
            tabulate(
                sorted(plan.rows_to_replace.items()),
                headers=["table", "rows to replace"],
                tablefmt="simple",
            )
        )


def _finish_reprocess(closed: Any, sel: Any) -> Any:
    """Mark the command complete when none of its requests is left (a new connection on the
    resolved URL: no second password prompt); None when some are open or the database is gone."""
    from .. import reprocess as rp
    from ..db.database import Database

    try:
        db = Database(closed.url, closed.contract)
        try:
            return rp.finish(db, sel.command, sel.instance_id, sel.instance_count)
        finally:
            db.close()
    except Exception:
        return None


# -- reconcile and quality ------------------------------------------------------------------------


@click.command("reconcile")
@db_options
@FORMAT
@handle_errors
def reconcile_cmd(fmt: str, **kw: Any) -> None:
    """Source vs processing_log vs target tables; exit 1 on any gap: pending (never attempted, or an
    open reprocess request), orphan or missing rows, duplicates, unknown applications."""
    _set = _contract_set(kw)
    r = _query(kw, ops.reconcile)
    if fmt == "json":
        _json(r)
    else:
        click.echo(
            tabulate(
                [
                    [
                        c["check"],
                        c["count"],
                        c["gap"] if c["inconsistency"] and c["count"] else "",
                        " ".join(map(str, c["sample_app_ids"])),
                    ]
                    for c in r["checks"]
                ],
                headers=["check", "count", "gap", "sample app_ids"],
                tablefmt="simple",
            )
        )
        if r.get("by_contract") and _set:
            click.echo("\napplications per contract")
            click.echo(
                tabulate(
                    [
                        [c["contract"], c["success"], c["failed"], c["pending"]]
                        for c in r["by_contract"]
                    ]
                    + [
                        [
                            "total",
                            *(
                                sum(c[k] for c in r["by_contract"])
                                for k in ("success", "failed", "pending")
                            ),
                        ]
                    ],
                    headers=["contract", "success", "failed", "pending"],
                    tablefmt="simple",
                )
            )
        if r["contract_versions"]:
            click.echo("\napplications per contract version")
            click.echo(
                tabulate(
                    [[v["contract_version"], v["applications"]] for v in r["contract_versions"]],
                    headers=["contract version", "applications"],
                    tablefmt="simple",
                )
            )
        if r["consistent"]:
            click.echo(
                "consistent: every application is done (success or final failure), nothing orphaned or doubled"
            )
        else:
            click.echo(
                "NOT CONSISTENT: "
                + ", ".join(f"{k} {v}" for k, v in sorted(r["gaps"].items()))
                + " (see the rows marked above)"
            )
    sys.exit(0 if r["consistent"] else 1)


@click.command("quality")
@db_options
@FORMAT
@click.option(
    "--sample-rows",
    type=click.IntRange(min=0),
    default=ops.QUALITY_SAMPLE_ROWS,
    show_default=True,
    envvar=ENV + "SAMPLE_ROWS",
    show_envvar=True,
    help="Count declared defaults and sparse rows in the first N rows of each table (0: every row, "
    "a full scan of every table). Events are always counted in full.",
)
@handle_errors
def quality_cmd(fmt: str, sample_rows: int, **kw: Any) -> None:
    """Data-quality events by (contract,) table, column and reason, with examples; defaults and sparse rows."""
    per_contract = _contract_set(kw)
    q = _query(kw, lambda db: ops.quality(db, sample_rows=sample_rows or None))
    if fmt == "json":
        _json(q)
        return
    lead = ["contract"] if per_contract else []
    click.echo(
        tabulate(
            [
                [e["contract"]] * len(lead)
                + [
                    e["table"],
                    e["column"],
                    e["event_type"],
                    e["events"],
                    e["applications"],
                    " | ".join(e["examples"]),
                ]
                for e in q["events"]
            ],
            headers=lead + ["table", "column", "event", "events", "apps", "example raw values"],
            tablefmt="simple",
        )
    )
    if per_contract and q["events"]:
        per: dict[str, list[int]] = {}
        for e in q["events"]:
            per.setdefault(e["contract"], [0, 0])[0] += e["events"]
        click.echo("\nevents per contract")
        click.echo(
            tabulate(
                [[k, v[0]] for k, v in sorted(per.items())],
                headers=["contract", "events"],
                tablefmt="simple",
            )
        )
    scope = (
        f" (first {q['sample_rows']:,} rows of each table; --sample-rows 0 for all)"
        if q["sample_rows"]
        else ""
    )
    if q["sentinels"]:
        click.echo("\ndeclared defaults in the data" + scope)
        click.echo(
            tabulate(
                [[s["table"], s["column"], s["default"], s["rows"]] for s in q["sentinels"]],
                headers=["table", "column", "default", "rows"],
                tablefmt="simple",
            )
        )
    click.echo("\nsparse rows (at most one data value)" + scope)
    click.echo(
        tabulate(
            [
                [s["table"], s["rows"], s["rows_with_at_most_one_value"], s["data_columns"]]
                for s in q["sparse"]
            ],
            headers=["table", "rows", "sparse", "data columns"],
            tablefmt="simple",
        )
    )
