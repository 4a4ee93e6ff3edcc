"""Planner statistics that stay right as the tables grow from empty.

A database starts empty and ends with millions of rows. PostgreSQL plans from statistics its
autovacuum refreshes late; SQLite has none at all until ``ANALYZE`` runs, and without them it
picked the (status, stage) index for the per-row "has a success row" probes of ``reconcile``,
which made that command quadratic (2,500 applications 8 s, 30,000 not finished in 900 s; after
``ANALYZE`` the same query took 35 ms). So statistics are refreshed (1) by every run after
1k/10k/100k applications (processing/processor.py) and (2) at the start of each operator command
when the planner's idea of the log's size is missing or 10x off (:func:`refresh_if_stale`).
SQL Server keeps its statistics itself (AUTO_UPDATE_STATISTICS): nothing to do there.
"""

from __future__ import annotations

import logging
import time

from .database import Database

log = logging.getLogger(__name__)

STALE_FACTOR = 10  # the planner believes the log holds 10x fewer rows than it does
MIN_ROWS = 1000  # below this any plan is fast


def statistics_tables(db: Database) -> list[str]:
    """The tables that grow with the migration: target tables, log, events (qualified names)."""
    return [db.table(t.name) for t in db.contract.tables] + [
        db.names["log"],
        db.names["events"],
        db.names["src"],
    ]


def refresh_statistics(db: Database, tables: list[str] | None = None) -> float:
    """Refresh the planner's statistics of the growing tables; returns the seconds it took.
    Never raises: statistics are an optimisation, not a reason to stop (a read-only database
    simply keeps its plans)."""
    stmts = db.dialect.refresh_statistics_sql(tables or statistics_tables(db))
    if not stmts:
        return 0.0
    t0 = time.perf_counter()
    try:
        with db.transaction():
            for s in stmts:
                db.execute(s).close()
    except Exception as exc:
        log.warning("could not refresh planner statistics: %s", exc)
    took = time.perf_counter() - t0
    log.info("refreshed planner statistics (%d statements) in %.2fs", len(stmts), took)
    return took


def planner_rows(db: Database) -> float | None:
    """How many log rows the planner believes there are (None: it has no statistics)."""
    if "stats_log_rows" not in db.dialect.queries:
        return None
    c = db.contract
    stmt = db.sql("stats_log_rows")
    known = {"schema": c.target_schema, "table": c.log_table}
    try:
        v = db.autocommit_query(stmt, {k: known[k] for k in stmt.params})
    except Exception:
        db.rollback()
        return None
    return None if not v or v[0][0] is None or float(v[0][0]) < 0 else float(v[0][0])


def is_stale(db: Database) -> bool:
    """True when the log has grown past ``MIN_ROWS`` and the planner's statistics are missing or
    ``STALE_FACTOR`` times too small. Costs two index lookups."""
    if not db.dialect.refresh_statistics_sql(["x"]):
        return False  # the engine keeps its statistics itself
    rows = db.autocommit_query(db.sql("log_max_id"), {})
    actual = int(rows[0][0] or 0) if rows else 0
    if actual < MIN_ROWS:
        return False
    believed = planner_rows(db)
    return believed is None or believed * STALE_FACTOR < actual


def refresh_if_stale(db: Database) -> bool:
    """Called at the start of every operator command: refresh statistics when they are stale."""
    try:
        stale = is_stale(db)
    except Exception as exc:
        db.rollback()
        log.debug("statistics check skipped: %s", exc)
        return False
    if stale:
        refresh_statistics(db)
    return stale
