"""Reprocess as a recorded request that the run consumes, never delete-then-hope.

``reprocess`` writes one ``reprocess_request`` row per selected application (after the partition
and ``--limit`` are applied: only what this command will redo is requested), then runs. An
application with an open request counts as pending (the named query ``pending_ids``); the batch
transaction that writes its new attempt first moves its old ``processing_log`` rows to
``processing_log_history``, deletes its old target rows and data-quality events and deletes the
request, so a crash at any point leaves the old result or the new one, never neither. Running the
same command again after a stop finds its open requests and finishes exactly those.

Attempt history: old log rows move to ``processing_log_history`` (with ``replaced_at``), so
``processing_log`` only ever holds the current generation of an application and the one
definition of "final" (the is_final_failed fragment of db/sql/common.sql: a failed row and no success row) stays right; the new
attempt continues the numbering (max + 1).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass

from .db.base import chunks
from .db.database import Database
from .db.store import app_tables, utcnow
from .errors import ConfigError
from .processing.partition import mine

IN_LIST_CHUNK = 500  # ids per IN (...) list: far below every driver's parameter limit


@dataclass
class ReprocessRequest:
    """What one ``reprocess`` invocation will redo on this instance."""

    command: str
    app_ids: list[int]
    resumed: bool  # True: open requests of the same command were found and are finished first


def command_key(
    app_ids: list[int], failed: bool, since: _dt.datetime | None, limit: int | None
) -> str:
    """The selection as text (partition excluded: each instance filters its share). Long id lists
    are summarised by a hash so the key fits its column."""
    parts = ["reprocess"]
    if app_ids:
        parts.append(" ".join(map(str, sorted(set(app_ids)))))
    if failed:
        parts.append("--failed")
    if since is not None:
        parts.append("--since " + since.isoformat(sep="T"))
    if limit is not None:
        parts.append(f"--limit {limit}")
    text = " ".join(parts)
    if len(text) > 380:
        text = text[:300] + " ... sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text


def _q(db: Database, name: str, **params: object) -> list[tuple]:
    return db.with_retry(lambda: db.autocommit_query(db.sql(name), params))


def open_requests(db: Database, command: str | None = None) -> list[int]:
    """Application ids with an open request (of this command, or of any)."""
    if command is None:
        return sorted(int(r[0]) for r in _q(db, "reprocess_all"))
    return sorted(int(r[0]) for r in _q(db, "reprocess_open", command=command))


def close_orphans(db: Database, dry_run: bool = False) -> list[int]:
    """Close (delete) the open requests whose application the source table no longer holds: no
    run can select such an application, so its request could never be consumed and would stay
    open forever. Returns their ids, for the command to name with the reason (``dry_run``: only
    which they are)."""
    if dry_run:
        return sorted(int(r[0]) for r in _q(db, "reprocess_orphans"))

    def tx() -> list[int]:
        with db.transaction():
            gone = sorted(int(r[0]) for r in db.query(db.sql("reprocess_orphans"), {}))
            for part in chunks(gone, IN_LIST_CHUNK):
                db.execute(db.sql("reprocess_consume"), {"ids": part}).close()
        return gone

    return list(db.with_retry(tx))


def request_reprocess(
    db: Database,
    selected: list[int],
    command: str,
    instance_id: int,
    instance_count: int,
    limit: int | None,
    dry_run: bool = False,
) -> ReprocessRequest:
    """Record what this instance will redo: the open requests of the same command if a previous
    invocation stopped (resume), else the selection's share of this instance, limited."""
    resume = mine(open_requests(db, command), instance_id, instance_count)
    if resume:
        return ReprocessRequest(command, resume[:limit] if limit is not None else resume, True)
    todo = mine(selected, instance_id, instance_count)
    if limit is not None:  # the oldest results first: the same command again takes the next ones
        todo = sorted(oldest_first(db, todo)[:limit])
    if dry_run or not todo:
        return ReprocessRequest(command, todo, False)
    now = utcnow()
    insert = db.sql("reprocess_insert")

    def tx() -> None:
        with db.transaction():
            have: set[int] = set()
            for part in chunks(todo, IN_LIST_CHUNK):
                have |= {int(r[0]) for r in db.query(db.sql("reprocess_existing"), {"ids": part})}
            rows = [
                insert.values({"app_id": a, "now": now, "command": command})
                for a in todo
                if a not in have
            ]
            cur = db.conn.cursor()
            for part in chunks(rows, IN_LIST_CHUNK):
                cur.executemany(insert, part)
            cur.close()

    db.with_retry(tx)
    return ReprocessRequest(command, todo, False)


def oldest_first(db: Database, ids: list[int]) -> list[int]:
    """``ids`` ordered by when their current result was logged, never-logged ones first, then by
    id: ``reprocess --failed --limit N`` run again pages through the failures instead of redoing
    the same first N (each redone application's result is then the newest)."""
    last: dict[int, str] = {}
    for part in chunks(ids, IN_LIST_CHUNK):
        last.update((int(a), str(t)) for a, t in _q(db, "last_logged_among", ids=part))
    return sorted(ids, key=lambda a: (a in last, last.get(a, ""), a))


def rows_to_replace(db: Database, ids: list[int]) -> dict[str, int]:
    """What the new attempts will replace, per table (for --dry-run and the report)."""
    counts: dict[str, int] = {}
    for name, qtable, col in app_tables(db):
        n = 0
        for part in chunks(ids, IN_LIST_CHUNK):
            n += int(_q_ident(db, "count_app_rows", qtable, col, part))
        counts[name] = n
    return counts


def _q_ident(db: Database, name: str, qtable: str, col: str, ids: list[int]) -> int:
    sql = db.sql(name, table=qtable, app_col=col)
    return int(db.with_retry(lambda: db.autocommit_query(sql, {"ids": ids}))[0][0])


def check_schema(db: Database) -> None:
    """The contract against the database, before anything changes: db/migrate.py's comparison
    (every table and column the run writes, reprocess's own tables included). A difference is
    SchemaMissing / SchemaRefused (exit 2) and nothing has been touched."""
    from .db.migrate import require_current

    try:
        require_current(db)
    except ConfigError as exc:
        raise type(exc)(f"nothing was changed: {exc}") from None


def require_selection(app_ids: list[int], failed: bool, since: object) -> None:
    if not app_ids and not failed and not since:
        raise ConfigError("name applications: APP_ID..., --failed or --since TIME")
