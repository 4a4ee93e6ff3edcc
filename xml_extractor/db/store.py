"""Schema creation and the one place rows are written.

:class:`BatchWriter` commits many applications per transaction: their rows in multi-row
statements per table (FK order), their data-quality events and their processing_log rows, all in
the same transaction. If the database refuses the batch, it is rolled back and split in halves
until the offending application stands alone; that one gets a ``failed`` row with the reason
(after the rollback), the others commit. Nothing of an application commits without its log row.

Only :class:`RowsRefused` (the database refused *these rows*: constraint, type, value) takes the
bisect-and-isolate path. A timeout, lock wait, full disk, read-only database or lost connection
(:class:`TransientDatabaseError`, retried by ``Database.with_retry``) and any unknown error
propagate: the run stops (exit 3) with those applications still pending, never logged failed.

An application with an open reprocess request (xml_extractor/reprocess.py) is *replaced*: the
same transaction that writes its new attempt moves its old log rows to the history table,
deletes its old target rows and events, and deletes the request.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RowsRefused
from ..hooks import fault_plan
from .base import chunks
from .database import Database

if TYPE_CHECKING:
    from ..contract.compiler import MappingPlan
    from ..mapping import MappedApplication

log = logging.getLogger(__name__)

IN_LIST_CHUNK = 500  # ids/keys per IN (...) list: far below every driver's safe parameter count

LOG_COLUMNS = (
    "app_id",
    "status",
    "stage",
    "error_class",
    "reason",
    "attempt",
    "instance_id",
    "instance_count",
    "session_id",
    "contract_version",
    "parse_ms",
    "map_ms",
    "insert_ms",
    "worker_pid",
    "logged_at",
    "contract_name",
)
EVENT_COLUMNS = (
    "app_id",
    "table_name",
    "column_name",
    "event_type",
    "raw_value",
    "reason",
    "locator",
    "session_id",
    "logged_at",
)


def init_db(db: Database, with_source: bool = True) -> dict:
    """Create everything the contract needs (idempotent) and seed app_enums with missing ids.
    One transaction, serialized against any other init-db/load-xml/generate-mock doing the same
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock; SQL Server: a Transaction-owned
    applock, the lock batch opening the transaction itself and raising unless it holds the lock):
    two at once on a fresh database both succeed instead of racing on CREATE TABLE IF NOT EXISTS
    or on the enum seed."""
    stmts = db.dialect.ddl(db.contract, with_source)
    with db.transaction():
        if "init_lock" in db.dialect.queries:
            try:  # held until commit/rollback, or raised (SQL Server: a negative sp_getapplock code raises)
                db.run_batch(db.sql("init_lock"), {})
            except Exception as exc:
                err = db.dialect.wrap(exc)
                if err is exc:
                    raise
                raise err from exc
        for s in stmts:
            try:
                db.execute(s).close()
            except Exception as exc:
                raise ConfigError(f"init-db failed on:\n{s}\n{exc}") from None
        sql, rows = db.dialect.enum_seed_sql(db.contract)
        have = {r[0] for r in db.query(db.sql("enum_ids"), {})}
        missing = [r for r in rows if r[0] not in have]
        if missing:
            cur = db.conn.cursor()
            cur.executemany(sql, missing)
            cur.close()
    return {"statements": len(stmts), "enums_seeded": len(missing), "enums_total": len(rows)}


def app_tables(db: Database) -> list[tuple[str, str, str]]:
    """(name, qualified table, quoted app_id column) of every table holding an application's
    rows: target tables children first (reverse FK order), then events, then the log."""
    c = db.contract
    out = [
        (t.name, db.table(t.name), db.dialect.quote(t.app_id_column)) for t in reversed(c.tables)
    ]
    out.append((c.event_table, db.names["events"], db.dialect.quote("app_id")))
    out.append((c.log_table, db.names["log"], db.dialect.quote("app_id")))
    return out


def utcnow() -> _dt.datetime:
    d = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    return d.replace(microsecond=d.microsecond // 1000 * 1000)


class RequestTaken(Exception):
    """Another writer consumed these applications' reprocess requests first (its result stands)."""

    def __init__(self, app_ids: set[int]) -> None:
        super().__init__(f"reprocess requests taken by another writer: {sorted(app_ids)[:10]}")
        self.app_ids = app_ids


@dataclass
class Outcome:
    """One application's result before it is written: mapped rows, or a failure."""

    app_id: int
    attempt: int
    mapped: MappedApplication | None = None
    stage: str | None = None
    error_class: str | None = None
    reason: str | None = None
    parse_ms: float | None = None
    map_ms: float | None = None
    extra_events: list[tuple] = field(default_factory=list)
    contract: tuple[str, str] | None = (
        None  # a failure's contract-set member, once routed (version tag, name)
    )

    @property
    def ok(self) -> bool:
        return self.mapped is not None


@dataclass
class RunIdentity:
    session_id: str
    instance_id: int
    instance_count: int
    contract_version: str
    worker_pid: int = field(default_factory=os.getpid)


class BatchWriter:
    """Writes outcomes; returns ``{app_id: (status, stage, error_class)}`` with status
    success / failed / skipped (another instance logged it first)."""

    def __init__(self, db: Database, plan: MappingPlan, ident: RunIdentity) -> None:
        self.db = db
        self.plan = plan
        self.ident = ident
        c = db.contract
        # a single contract's name; a contract set logs each application's own (None on a failure before routing)
        self.contract_name: str | None = None if c.extra.get("members") else c.name
        self.tables = [
            (t.name, db.table(t.name), c.table(t.name).stored_columns) for t in plan.tables
        ]
        self.table_cols = {name: tuple(col.name for col in cols) for name, _, cols in self.tables}
        self.faults = fault_plan()  # test-only, None outside the gate (xml_extractor.hooks)
        self.before_commit: Any = None  # called right before each commit; raising rolls it back (a worker: is its run alive)
        self._unsure: frozenset[tuple[int, int]] | None = (
            None  # (app_id, attempt) of a commit that raised
        )
        self.replace_tables = app_tables(db)  # what a replaced attempt leaves behind
        # tables whose key can collide across applications (the key does not contain app_id)
        self.cross_app_keys = [
            (t.name, t.primary_key[0])
            for t in c.tables
            if t.app_id_column not in t.primary_key and len(t.primary_key) == 1
        ]

    # -- public ---------------------------------------------------------------------------------
    def write(self, outcomes: list[Outcome]) -> dict[int, tuple[str, str | None, str | None]]:
        results: dict[int, tuple[str, str | None, str | None]] = {}
        if outcomes:
            self._write_or_split(outcomes, results)
        return results

    # -- internals ------------------------------------------------------------------------------
    def _write_or_split(self, items: list[Outcome], results: dict) -> None:
        try:
            self.db.with_retry(lambda: self._transaction(items))
        except RequestTaken as taken:
            # another writer replaced some of these first: theirs stands, ours is not written
            gone = [it for it in items if it.app_id in taken.app_ids]
            for it in gone:
                results[it.app_id] = ("skipped", None, None)
            rest = [it for it in items if it.app_id not in taken.app_ids]
            if rest:
                self._write_or_split(rest, results)
            return
        except RowsRefused as exc:
            if len(items) > 1:
                mid = len(items) // 2
                self._write_or_split(items[:mid], results)
                self._write_or_split(items[mid:], results)
                return
            self._resolve_single(items[0], exc, results)
            return
        for it in items:
            results[it.app_id] = (
                ("success", None, None) if it.ok else ("failed", it.stage, it.error_class)
            )

    def _replace_requested(self, cur: Any, items: list[Outcome], now: _dt.datetime) -> None:
        """Inside the batch transaction: for the applications with an open reprocess request,
        consume the request and clear the replaced attempt (log rows to history, rows, events).
        A request that another writer consumed meanwhile raises RequestTaken (rolled back)."""
        db = self.db
        ids = [it.app_id for it in items]
        requested: list[int] = []
        for part in chunks(ids, IN_LIST_CHUNK):
            requested += [int(r[0]) for r in db.query(db.sql("reprocess_existing"), {"ids": part})]
        if not requested:
            return
        consumed = 0
        for part in chunks(requested, IN_LIST_CHUNK):
            cur.execute(*db.sql("reprocess_consume").bind({"ids": part}))
            consumed += max(0, cur.rowcount or 0)
        if consumed != len(requested):
            still = set()
            for part in chunks(requested, IN_LIST_CHUNK):
                still |= {int(r[0]) for r in db.query(db.sql("reprocess_existing"), {"ids": part})}
            raise RequestTaken(set(requested) - still)
        move = db.sql(
            "log_to_history", cols=", ".join(db.dialect.quote(c) for c in ("log_id",) + LOG_COLUMNS)
        )
        for part in chunks(requested, IN_LIST_CHUNK):
            cur.execute(*move.bind({"now": now, "ids": part}))
            for _, qtable, col in self.replace_tables:
                cur.execute(
                    *db.sql("delete_app_rows", table=qtable, app_col=col).bind({"ids": part})
                )

    def _transaction(self, items: list[Outcome]) -> None:
        db = self.db
        keys = frozenset((it.app_id, it.attempt) for it in items)
        if self._unsure is not None and self._unsure == keys:
            # the same items again after a commit that raised: it may have landed with its answer lost
            self._unsure = None
            if self._landed(items):
                return
        t0 = time.perf_counter()
        tx = db.transaction()
        try:
            with tx:
                cur = db.conn.cursor()
                now = utcnow()
                self._replace_requested(cur, items, now)
                ok = [it for it in items if it.ok]
                for name, qtable, _ in self.tables:
                    rows = [r for it in ok for r in it.mapped.rows.get(name, ())]  # type: ignore[union-attr]
                    if rows:
                        db.dialect.insert_rows(cur, qtable, self.table_cols[name], rows)
                    if self.faults is not None:
                        self.faults.after_table(name, (it.app_id for it in ok))
                ev_rows = []
                sid = self.ident.session_id
                for it in items:
                    evs = list(it.mapped.events) if it.ok else []  # type: ignore[union-attr]
                    evs += it.extra_events
                    for e in evs:
                        ev_rows.append(
                            (
                                it.app_id,
                                e[0],
                                e[1],
                                e[2],
                                e[3],
                                e[4],
                                e[5] if len(e) > 5 else None,
                                sid,
                                now,
                            )
                        )
                if ev_rows:
                    db.dialect.insert_rows(cur, db.names["events"], EVENT_COLUMNS, ev_rows)
                per_app_ms = (time.perf_counter() - t0) * 1000 / max(1, len(items))
                db.dialect.insert_rows(
                    cur,
                    db.names["log"],
                    LOG_COLUMNS,
                    [self._log_row(it, now, per_app_ms) for it in items],
                )
                self._count_progress(cur, items, now)
                cur.close()
                if self.faults is not None:
                    self.faults.before_commit()
                if self.before_commit is not None:
                    self.before_commit()
        except BaseException:
            if (
                tx.committing
            ):  # the commit (or its proof) raised: whether it landed is read on the retry
                self._unsure = keys
            raise

    def _landed(self, items: list[Outcome]) -> bool:
        """Whether this writer's transaction of these items committed although its answer was lost
        (the connection died in or right after the commit): each has its log row of this session
        and attempt. Then the batch is this run's own result, not "done elsewhere"; a transaction
        is all-or-nothing, so it is every item or none."""
        db, want = self.db, {(it.app_id, it.attempt) for it in items}
        have: set[tuple[int, int]] = set()
        for part in chunks(sorted({it.app_id for it in items}), IN_LIST_CHUNK):
            rows = db.autocommit_query(
                db.sql("logged_in_session"), {"session_id": self.ident.session_id, "ids": part}
            )
            have |= {(int(a), int(n)) for a, n in rows}
        if want <= have:
            log.warning(
                "a commit whose answer was lost had landed: %d application(s) written by this run",
                len(items),
            )
            return True
        return False

    def _count_progress(self, cur: Any, items: list[Outcome], now: _dt.datetime) -> None:
        i = self.ident
        ok = sum(1 for it in items if it.ok)
        counts = {
            "success": ok,
            "failed": len(items) - ok,
            "now": now,
            "session_id": i.session_id,
            "worker_pid": i.worker_pid,
        }
        update = self.db.sql("progress_update")
        cur.execute(update, update.values(counts))
        if cur.rowcount == 0:
            insert = self.db.sql("progress_insert")
            cur.execute(
                insert,
                insert.values(
                    {**counts, "instance_id": i.instance_id, "instance_count": i.instance_count}
                ),
            )

    def _log_row(self, it: Outcome, now: _dt.datetime, insert_ms: float | None) -> tuple:
        i = self.ident
        # a contract set's run logs the member contract that mapped the application (mapping.map_routed)
        routed = it.mapped.extra.get("contract") if it.mapped is not None else it.contract
        version, name = routed if routed else (i.contract_version, self.contract_name)
        return (
            it.app_id,
            "success" if it.ok else "failed",
            None if it.ok else it.stage,
            None if it.ok else it.error_class,
            None if it.ok else it.reason,
            it.attempt,
            i.instance_id,
            i.instance_count,
            i.session_id,
            version,
            _r(it.parse_ms),
            _r(it.map_ms),
            _r(insert_ms) if it.ok else None,
            i.worker_pid,
            now,
            name,
        )

    def _already_logged(self, it: Outcome) -> bool:
        """Whether another writer logged this application since it was selected (its result
        stands, ours is not written). An application with an open reprocess request is being
        replaced: its logged rows are the attempt the new one replaces, never "done elsewhere";
        only the transaction that writes a new attempt consumes the request, so while it is
        open nobody else has written one. Read with retries: a lost connection is reconnected."""
        db = self.db

        def ask() -> bool:
            if db.autocommit_query(db.sql("reprocess_existing"), {"ids": [it.app_id]}):
                return False
            rows = db.autocommit_query(db.sql("logged_status"), {"app_id": it.app_id})
            return any(st == "success" or att >= it.attempt for _, st, att in rows)

        return bool(db.with_retry(ask))

    def _resolve_single(self, it: Outcome, exc: RowsRefused, results: dict) -> None:
        if self._already_logged(it):
            results[it.app_id] = ("skipped", None, None)
            return
        if it.ok:
            reason, error_class, extra = self._explain(it, exc)
            failed = Outcome(
                it.app_id,
                it.attempt,
                None,
                "insert",
                error_class,
                reason,
                it.parse_ms,
                it.map_ms,
                extra_events=extra,
                contract=it.mapped.extra.get("contract") if it.mapped else None,
            )
        else:
            failed = it  # a failure row that could not be written: retried once below, alone
        try:
            self.db.with_retry(lambda: self._transaction([failed]))
            results[it.app_id] = ("failed", failed.stage, failed.error_class)
        except (RowsRefused, RequestTaken):
            if self._already_logged(it):
                results[it.app_id] = ("skipped", None, None)
                return
            raise

    def _explain(self, it: Outcome, exc: RowsRefused) -> tuple[str, str, list[tuple]]:
        """Name the other application that owns a colliding key, if that is what happened. The
        keys go in chunks: one IN list per IN_LIST_CHUNK keys (psqlODBC loses its protocol
        synchronisation beyond ~7,000 bound parameters in one statement)."""
        assert it.mapped is not None
        if exc.kind == "duplicate":
            for table, key in self.cross_app_keys:
                cols = self.table_cols[table]
                ki = cols.index(key)
                keys = [r[ki] for r in it.mapped.rows.get(table, ())]
                if not keys:
                    continue
                sql = self.db.sql(
                    "contact_owners",
                    key_col=self.db.dialect.quote(key),
                    contact_table=self.db.table(table),
                )
                owners: list[tuple] = []
                for part in chunks(keys, IN_LIST_CHUNK):
                    owners += self.db.with_retry(
                        lambda: self.db.autocommit_query(sql, {"keys": part, "app_id": it.app_id})
                    )
                if owners:
                    desc = "; ".join(
                        f"{key} {k} already belongs to application {a}" for k, a in owners[:20]
                    )
                    more = f" and {len(owners) - 20} more" if len(owners) > 20 else ""
                    reason = (
                        f"{desc}{more} ({table}); nothing of application {it.app_id} was written"
                    )
                    events = [
                        (
                            table,
                            key,
                            "con_id_collision" if key == "con_id" else "key_collision",
                            str(k),
                            f"{key} {k} already belongs to application {a}",
                            None,
                        )
                        for k, a in owners
                    ]
                    return reason, "KeyCollision", events
            return f"the database refused the rows as duplicates: {_short(exc)}", "DuplicateKey", []
        if exc.kind == "foreign_key":
            return f"foreign key violation: {_short(exc)}", "ForeignKeyViolation", []
        original = exc.original if exc.original is not None else exc
        return f"the database refused the rows: {_short(exc)}", type(original).__name__, []


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _short(exc: Exception) -> str:
    from .odbc import redact

    return redact(" ".join(str(a) for a in getattr(exc, "args", ()) or [str(exc)]))[:2000]
