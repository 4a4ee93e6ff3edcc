"""Operator questions answered from the database: how far along, what failed and why, is every
application accounted for, what did we lose. Pure queries returning plain data; cli/operate.py formats.
Every query is indexed where it runs on the log (processing_log has (app_id, attempt),
(status, stage), (session_id, logged_at) and (logged_at) indexes)."""

from __future__ import annotations

import datetime as _dt
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from .db.checks import count_and_sample, default_rows, sparse_rows
from .db.database import Database, Params
from .db.migrate import has_index
from .db.store import utcnow
from .progress import AVERAGE_LABEL, eta_minutes, observe, rate_label, rate_per_minute


def _q(db: Database, sql: str, params: Params = ()) -> list[tuple]:
    return db.with_retry(
        lambda: db.autocommit_query(sql, params if isinstance(params, Mapping) else list(params))
    )


NOT_ROUTED = "(not routed)"  # a failure before a contract set routed the document: no contract_name
NOT_ROUTED_YET = "(not routed yet)"  # pending applications: no contract has seen them yet


def contract_label(name: str | None) -> str:
    """processing_log.contract_name as the operator commands show it (NULL: not routed)."""
    return NOT_ROUTED if name is None else str(name)


def failed_rows(db: Database, stage: str | None = None, contract: str | None = None) -> list[tuple]:
    """(app_id, attempt, stage, error_class, reason, logged_at, contract) of every such failed
    attempt, optionally of one contract (its name, or NOT_ROUTED)."""
    rows = [
        (*r[:6], contract_label(r[6])) for r in _q(db, db.sql("ops_failed_rows"), {"stage": stage})
    ]
    return rows if contract is None else [r for r in rows if r[6] == contract]


def status(db: Database, recent_minutes: int = 5, session_hours: float = 24.0) -> dict:
    """Totals, sessions, failures by stage, and the rate over the results actually observed in
    the last ``recent_minutes`` (see progress.py: one definition shared with run and launch).

    An application being redone (an open reprocess request) counts as done on its current attempt,
    with that attempt's contract version, until the new attempt replaces it in one transaction: done
    never drops during a reprocess, and ``being_redone`` says how many are still to be redone."""
    totals = status_totals(db)
    versions = contract_versions(db, totals["success"] + totals["failed"])
    now = utcnow()
    sess, window = _sessions(db, now, session_hours, recent_minutes)
    rate = _recent_rate(sess, window, now)
    eta = eta_minutes(
        totals["pending"] + totals["being_redone"], rate["rate_per_min_recent"], rate["running"]
    )
    by_stage = _q(db, db.sql("ops_failures_by_stage"), {})
    return {
        "by_contract": by_contract(db, versions),
        **totals,
        "contract_versions": versions,
        **rate,
        "rate_label": rate_label(recent_minutes),  # progress.py's names for the two rates
        "average_label": AVERAGE_LABEL,
        "eta_minutes": None if eta is None else round(eta, 1),
        "sessions": sess,
        "failures": [{"stage": s, "error_class": e, "count": int(c)} for s, e, c in by_stage],
    }


def status_totals(db: Database) -> dict[str, Any]:
    """Source rows, success, final failures (their current attempts, the ones being redone
    included), pending (never attempted), being redone (an open reprocess request and a current
    result) and every open request (``reprocess_requested``: requests of never-attempted
    applications too). Success, failed and being redone come from one statement: one snapshot."""
    source = int(_q(db, db.sql("ops_count_source"), {})[0][0])
    success, failed, redone, requested = (
        int(v or 0) for v in _q(db, db.sql("ops_status_totals"), {})[0]
    )
    return {
        "source_rows": source,
        "success": success,
        "failed": failed,
        "pending": max(0, source - success - failed),
        "being_redone": redone,
        "reprocess_requested": requested,
        "done_pct": round(100.0 * (success + failed) / max(1, source), 2),
    }


def _sessions(
    db: Database, now: _dt.datetime, session_hours: float, recent_minutes: int
) -> tuple[list[dict], dict[str, tuple[int, Any, Any]]]:
    """Per instance/session: the run_progress rows the workers keep (a handful of rows), plus the
    log rows of the last few minutes (a short range of the logged_at index) for the current rate."""
    since = now - _dt.timedelta(hours=session_hours)
    recent = now - _dt.timedelta(minutes=recent_minutes)
    sessions = _q(db, db.sql("ops_sessions"), {"since": since})
    window = _results_since(db, recent)
    sess = []
    for sid, inst, cnt, total, ok, bad, first, last in sessions:
        first, last = _ts(first), _ts(last)
        rec, lo, hi = window.get(sid, (0, None, None))
        seen = observe(rec, lo, hi, now, last)
        end = now if seen.running else last  # both rates end at the same moment (observe's)
        sess.append(
            {
                "session": sid[:12],
                "instance": f"{inst}/{cnt}",
                "processed": int(total),
                "success": int(ok),
                "failed": int(bad),
                "rate_per_min": seen.rate_per_min,
                "avg_rate_per_min": round(rate_per_minute(int(total), first, end), 1),
                "first": first,
                "last_activity": last,
                "running": seen.running,
                "idle_s": round((now - last).total_seconds()) if last else None,
            }
        )
    return sess, window


def _results_since(db: Database, since: _dt.datetime) -> dict[str, tuple[int, Any, Any]]:
    """Per session: the results logged since ``since`` (log and history rows: one definition of a
    result with report), the first and the last of them."""
    window: dict[str, tuple[int, Any, Any]] = {}
    for sid, c, lo, hi in _q(db, db.sql("ops_results_since"), {"since": since}):
        n, a, b = window.get(sid, (0, None, None))
        lo, hi = _ts(lo), _ts(hi)
        window[sid] = (
            n + int(c),
            min((t for t in (a, lo) if t is not None), default=None),
            max((t for t in (b, hi) if t is not None), default=None),
        )
    return window


def _recent_rate(
    sess: list[dict], window: dict[str, tuple[int, Any, Any]], now: _dt.datetime
) -> dict[str, Any]:
    """The rate over every session's results in the window, whether anything is running, and the
    part of the window the rate was observed over."""
    total_recent = sum(c for c, _, _ in window.values())
    first_seen = min((lo for _, lo, _ in window.values() if lo), default=None)
    last_seen = max((hi for _, _, hi in window.values() if hi), default=None)
    last_activity = max((s["last_activity"] for s in sess if s["last_activity"]), default=None)
    seen = observe(total_recent, first_seen, last_seen, now, last_activity)
    return {
        "rate_per_min_recent": seen.rate_per_min,
        "rate_window_s": round(
            ((now if seen.running else last_seen) - first_seen).total_seconds(), 1
        )
        if first_seen and last_seen
        else 0.0,
        "running": seen.running,
        "idle_since": seen.idle_since,
    }


def _ts(v: Any) -> _dt.datetime | None:
    if v is None or isinstance(v, _dt.datetime):
        return v
    return _dt.datetime.fromisoformat(str(v))


_NUM = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'")


def reason_class(reason: str | None) -> str:
    """Group 'con_id 981 already belongs to application 98' with its siblings."""
    r = _QUOTED.sub("'…'", reason or "")
    return _NUM.sub("N", r)[:160]


def failures(
    db: Database,
    stage: str | None = None,
    sample: int = 5,
    limit_rows: int = 200_000,
    contract: str | None = None,
) -> list[dict]:
    """Final failures grouped by contract (the one the last attempt reached), stage, class and
    reason with its numbers masked; optionally of one stage and one contract."""
    latest: dict[int, tuple] = {}
    for app_id, _attempt, st, ec, reason, _, name in failed_rows(db, stage, contract)[:limit_rows]:
        latest[app_id] = (name, st, ec, reason)  # rows come in attempt order: the last one stays
    groups: dict[tuple, list] = defaultdict(list)
    for app_id, (name, st, ec, reason) in latest.items():
        groups[(name, st, ec, reason_class(reason))].append((app_id, reason))
    out = []
    for (name, st, ec, rc), items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out.append(
            {
                "contract": name,
                "stage": st,
                "error_class": ec,
                "reason": items[0][1],
                "reason_class": rc,
                "count": len(items),
                "sample_app_ids": [a for a, _ in sorted(items)[:sample]],
            }
        )
    return out


def history(db: Database, app_id: int) -> dict:
    attempts = _q(db, db.sql("ops_history_attempts"), {"app_id": app_id})
    events = _q(db, db.sql("ops_history_events"), {"app_id": app_id})
    in_source = _q(db, db.sql("ops_in_source"), {"app_id": app_id})[0][0]
    cols = (
        "attempt",
        "status",
        "stage",
        "error_class",
        "reason",
        "session",
        "instance",
        "contract",
        "logged_at",
        "replaced_at",
    )
    return {
        "app_id": app_id,
        "in_source": bool(in_source),
        "attempts": [dict(zip(cols, a)) for a in attempts],
        "events": [
            dict(zip(("table", "column", "event_type", "raw_value", "reason", "locator"), e))
            for e in events
        ],
    }


def source_existing(db: Database, app_ids: list[int] | None) -> set[int]:
    """Which of these application ids the source table holds (reprocess names the others)."""
    ids: set[int] = set()
    for part in _parts(sorted(set(app_ids or []))):
        ids |= {
            int(r[0])
            for r in db.with_retry(
                lambda: db.autocommit_query(db.sql("source_existing"), {"ids": part})
            )
        }
    return ids


def select_for_reprocess(
    db: Database,
    app_ids: list[int] | None,
    failed: bool,
    since: _dt.datetime | None,
    gone: set[int] | None = None,
) -> list[int]:
    """The union of the selectors: the named ids the source table holds, --failed, --since. Only
    applications the source table holds (no run could select the others, so their requests could
    never be consumed); the logged ones it lacks are added to ``gone`` for the command to name."""
    ids = source_existing(db, app_ids)  # only applications the source table holds
    logged: set[int] = set()
    if failed:
        # the finally failed applications, "failed" as status/failures/reconcile count them
        logged |= {int(r[0]) for r in _q(db, db.sql("reconcile_final_failed"), {})}
    if since is not None:
        logged |= {int(r[0]) for r in _q(db, db.sql("reprocess_logged_since"), {"since": since})}
    held = source_existing(db, sorted(logged - ids))
    if gone is not None:
        gone |= logged - ids - held
    return sorted(ids | held)


def _parts(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def by_contract(db: Database, versions: list[dict] | None = None) -> list[dict]:
    """Per contract of a contract set: applications done by each member, final failures
    by the member they reached; empty for a single contract's database (one version, no extra scan)."""
    if not db.contract.extra.get("members") and versions is not None and len(versions) <= 1:
        return []
    out: dict[str, dict] = {}
    for name, st, n in _q(db, db.sql("ops_by_contract"), {}):
        out.setdefault(str(name), {"contract": str(name), "success": 0, "failed": 0})[str(st)] = (
            int(n)
        )
    return list(out.values())


def contract_versions(db: Database, attempted: int | None = None) -> list[dict]:
    """Applications per contract version that produced their current log rows. The versions come
    from a loose index scan; with a single version (the usual case) and ``attempted`` (how many
    applications the log holds) known, no count over the whole log is needed."""
    names = db.logged_contract_versions()
    if len(names) == 1 and attempted is not None:
        return [{"contract_version": names[0], "applications": int(attempted)}]
    if not names:
        return []
    return [
        {"contract_version": str(v), "applications": int(a)}
        for v, a in _q(db, db.sql("contract_versions"))
    ]


def reconcile(db: Database) -> dict:
    """Is every application accounted for. Each check is linear in the tables it reads and counted
    in SQL with a sample of ten ids (db/checks.py). Three are derived instead of scanned when the
    scanned ones allow it (each costs a join of a million rows; the sample query still runs when
    the derived count is not zero):

    - a table whose app_id is a foreign key to the base table cannot hold an application the base
      table lacks: no base-table orphan, no orphan there;
    - with no base orphan (base applications ⊆ success applications) and no application with two
      success rows, "success without a base row" = success rows − base rows;
    - log applications are success + final failed; those in the source are source − never
      attempted; so "log rows not in the source" = success + failed − (source − never attempted).
    """
    chk = _Checks(db)
    base_orphans = _orphan_checks(chk)
    multiple = chk.run(
        "multiple",
        "applications with more than one success row",
        "reconcile_multiple_success",
        gap="duplicate",
    )
    unique = has_index(db, db.contract.log_table, f"ux_{db.contract.log_table}_app_attempt")
    chk.run(
        "attempt",
        "more than one final row for one attempt",
        "reconcile_duplicate_attempt",
        gap="duplicate",
        derived=0 if unique else None,
        note=f"none: the unique index ux_{db.contract.log_table}_app_attempt forbids it",
    )
    failed = chk.run(
        "failed",
        "failed applications (final, no success)",
        "reconcile_final_failed",
        inconsistency=False,
    )
    never = chk.run(
        "never", "pending (never attempted)", "reconcile_never_attempted", gap="pending"
    )
    success_rows = _derived_checks(
        chk, exact=not base_orphans and not multiple, failed=failed, never=never, multiple=multiple
    )
    chk.run("requested", "pending (open reprocess request)", "reconcile_requested", gap="pending")
    return _reconcile_result(db, chk.found, success_rows + failed if not multiple else None)


class _Checks:
    """reconcile's checks as they are run: each counted with a sample, or derived (0) when the
    others allow it, by key."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.found: dict[str, dict] = {}

    def run(
        self,
        key: str,
        label: str,
        name: str,
        inconsistency: bool = True,
        gap: str = "",
        derived: int | None = None,
        note: str = "",
        **identifiers: str,
    ) -> int:
        """Count the named query's applications (with a sample), unless ``derived`` is 0."""
        row: dict[str, Any] = {
            "check": label,
            "count": 0,
            "sample_app_ids": [],
            "inconsistency": inconsistency,
            "gap": gap if inconsistency else "",
        }
        if derived == 0:
            row["note"] = note
        else:
            row["count"], row["sample_app_ids"] = count_and_sample(self.db, name, identifiers)
        self.found[key] = row
        return int(row["count"])


def _orphan_checks(chk: _Checks) -> int:
    """Rows of each target table without a success row; the base table's count (the others are
    derived from it when their app_id is a foreign key to the base table)."""
    db = chk.db
    c, q = db.contract, db.dialect.quote
    base = c.tables[0]
    base_orphans = chk.run(
        f"orphans:{base.name}",
        f"{base.name} rows without a success row",
        "reconcile_rows_without_success",
        gap="orphan rows",
        table=db.table(base.name),
        app_col=q(base.app_id_column),
    )
    for t in c.tables[1:]:
        by_fk = any(
            fk.references == base.name and tuple(fk.columns) == (t.app_id_column,)
            for fk in t.foreign_keys
        )
        chk.run(
            f"orphans:{t.name}",
            f"{t.name} rows without a success row",
            "reconcile_rows_without_success",
            gap="orphan rows",
            derived=0 if by_fk and not base_orphans else None,
            note=f"none: its {t.app_id_column} is a foreign key to {base.name}",
            table=db.table(t.name),
            app_col=q(t.app_id_column),
        )
    return base_orphans


def _derived_checks(chk: _Checks, exact: bool, failed: int, never: int, multiple: int) -> int:
    """ "success without a base row" and "log rows not in the source", derived from counts when
    the other checks allow it (see reconcile); the number of success rows."""
    db = chk.db
    base = db.contract.tables[0]
    success_rows = int(_q(db, db.sql("ops_count_success"), {})[0][0])
    source = int(_q(db, db.sql("ops_count_source"), {})[0][0])
    base_rows = int(_q(db, db.sql("ops_count_rows", table=db.table(base.name)), {})[0][0])
    chk.run(
        "no_base",
        f"success without {'an' if base.name[:1].lower() in 'aeiou' else 'a'} {base.name} row",
        "reconcile_success_without_base",
        gap="missing rows",
        derived=success_rows - base_rows if exact else None,
        note=f"none: as many success rows as {base.name} rows, each with its success row",
        base=db.table(base.name),
        base_key=db.dialect.quote(base.app_id_column),
    )
    chk.run(
        "unknown",
        "log rows for applications not in the source table",
        "reconcile_log_not_in_source",
        gap="unknown application",
        derived=success_rows + failed - (source - never) if not multiple else None,
        note="none: every logged application is in the source table",
    )
    return success_rows


def _reconcile_result(db: Database, found: dict[str, dict], attempted: int | None) -> dict:
    """The checks in their reading order, the gaps by kind, versions and per contract."""
    order = (
        ["no_base"]
        + [f"orphans:{t.name}" for t in db.contract.tables]
        + ["multiple", "attempt", "unknown", "failed", "never", "requested"]
    )
    checks = [found[k] for k in order]
    gaps: dict[str, int] = {}
    for ch in checks:
        if ch["inconsistency"] and ch["count"]:
            gaps[ch["gap"]] = gaps.get(ch["gap"], 0) + ch["count"]
    pending = found["never"]["count"] + found["requested"]["count"]
    return {
        "consistent": not gaps,
        "gaps": gaps,
        "checks": checks,
        "contract_versions": contract_versions(db, attempted),
        "by_contract": reconcile_by_contract(db, pending),
    }


def reconcile_by_contract(db: Database, pending: int) -> list[dict]:
    """Applications per contract: success, final failed (NOT_ROUTED: failed before routing) and
    pending (never attempted or requested again: NOT_ROUTED_YET, no contract has seen them)."""
    out: dict[str, dict] = {}
    for name, st, n in _q(db, db.sql("reconcile_by_contract"), {}):
        row = out.setdefault(
            contract_label(name),
            {"contract": contract_label(name), "success": 0, "failed": 0, "pending": 0},
        )
        row[str(st)] += int(n)
    if pending:
        out[NOT_ROUTED_YET] = {
            "contract": NOT_ROUTED_YET,
            "success": 0,
            "failed": 0,
            "pending": pending,
        }
    return sorted(out.values(), key=lambda r: (r["contract"].startswith("("), r["contract"]))


QUALITY_SAMPLE_ROWS = 100_000


def quality(db: Database, examples: int = 3, sample_rows: int | None = QUALITY_SAMPLE_ROWS) -> dict:
    """Events by kind with examples (every event counted); declared defaults and sparse rows over
    the first ``sample_rows`` rows of each table (None: every row: a full scan of every table,
    minutes at tens of millions of rows)."""
    return {
        "events": quality_events(db, examples),
        "sentinels": _sentinel_counts(db, sample_rows),
        "sparse": _sparse_counts(db, sample_rows),
        "sample_rows": sample_rows,
    }


def quality_events(db: Database, examples: int = 3) -> list[dict]:
    """Data-quality events grouped by (contract,) table, column and kind, with example values.
    A contract set: by the contract that mapped the application; one contract on a database
    other contracts also wrote to (one source, two product lines): that contract's only."""
    per_contract = bool(db.contract.extra.get("members"))
    shared = not per_contract and bool(
        {v.split("@", 1)[0] for v in db.logged_contract_versions()} - {db.contract.name}
    )
    if per_contract:
        groups = list(_q(db, db.sql("quality_event_groups_by_contract"), {}))
    elif shared:
        groups = [
            g
            for g in _q(db, db.sql("quality_event_groups_by_contract"), {})
            if g[0] == db.contract.name
        ]
    else:
        groups = [(db.contract.name, *r) for r in _q(db, db.sql("quality_event_groups"), {})]
    out = []
    for name, t, col, kind, cnt, apps, first_id in groups:
        samples = _event_samples(
            db, name if per_contract or shared else None, t, col, kind, first_id
        )
        vals = list(dict.fromkeys((r[0] if r[0] is not None else "(none)") for r in samples))
        out.append(
            {
                "contract": contract_label(name) if per_contract else name,
                "table": t,
                "column": col,
                "event_type": kind,
                "events": int(cnt),
                "applications": int(apps),
                "examples": [v[:60] for v in vals[:examples]],
                "reason": (samples[0][1] or "")[:100] if samples else "",
            }
        )
    return out


def _event_samples(
    db: Database, contract: str | None, table: str, column: str | None, kind: str, first_id: Any
) -> list[tuple]:
    """(raw_value, reason) of up to 50 events of one group, of ``contract``'s applications when
    it is given."""
    params: dict[str, Any] = {
        "table_name": table,
        "event_type": kind,
        "first_id": first_id,
        "limit": 50,
    }
    if contract is not None:
        params["contract_name"] = contract
        if column is not None:
            return _q(db, db.sql("quality_examples_of_contract"), {**params, "column_name": column})
        return _q(db, db.sql("quality_examples_no_column_of_contract"), params)
    if column is not None:
        return _q(db, db.sql("quality_examples"), {**params, "column_name": column})
    return _q(db, db.sql("quality_examples_no_column"), params)


def _sentinel_counts(db: Database, sample_rows: int | None) -> list[dict]:
    """Rows holding each column's declared default, in the first ``sample_rows`` rows."""
    out = []
    for t in db.contract.tables:
        for cdef in t.stored_columns:
            if "default" in cdef.spec and cdef.spec["default"] is not None:
                v = cdef.spec["default"]
                read, hits = db.with_retry(
                    lambda: default_rows(
                        db, t.name, cdef.name, _sentinel_param(cdef.type, v), sample_rows
                    )
                )
                out.append(
                    {
                        "table": t.name,
                        "column": cdef.name,
                        "default": v,
                        "rows": hits,
                        "rows_read": read,
                    }
                )
    return out


def _sparse_counts(db: Database, sample_rows: int | None) -> list[dict]:
    """Rows with at most one data value, per table with four data columns or more."""
    out = []
    for t in db.contract.tables:
        data = [
            c.name
            for c in t.stored_columns
            if c.name not in t.primary_key
            and c.name != t.app_id_column
            and "parent" not in c.spec
            and "context" not in c.spec
        ]
        if len(data) < 4:
            continue
        total, few = db.with_retry(lambda: sparse_rows(db, t.name, data, sample_rows))
        out.append(
            {
                "table": t.name,
                "rows": total,
                "rows_with_at_most_one_value": few,
                "data_columns": len(data),
            }
        )
    return out


def _sentinel_param(type_: str, v: Any) -> Any:
    if type_ == "datetime":
        return _dt.datetime.fromisoformat(str(v))
    if type_ == "date":
        return _dt.date.fromisoformat(str(v))
    return v
