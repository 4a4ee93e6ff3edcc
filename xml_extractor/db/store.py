"""Schema creation and the one place rows are written.

:class:`BatchWriter` commits many applications per transaction: their rows in multi-row
statements per table (FK order), their data-quality events and their processing_log rows, all in
the same transaction. If the database refuses the batch, it is rolled back and split in halves
until the offending application stands alone; that one gets a ``failed`` row with the reason
(after the rollback), the others commit. Nothing of an application commits without its log row.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import ErrorKind
from .database import ConnectionLost, Database

if TYPE_CHECKING:
    from ..contract.compiler import MappingPlan
    from ..mapping import MappedApplication

log = logging.getLogger(__name__)

LOG_COLUMNS = ("app_id", "status", "stage", "error_class", "reason", "attempt", "instance_id", "instance_count",
               "session_id", "contract_version", "parse_ms", "map_ms", "insert_ms", "worker_pid", "logged_at")
EVENT_COLUMNS = ("app_id", "table_name", "column_name", "event_type", "raw_value", "reason", "locator",
                 "session_id", "logged_at")


def init_db(db: Database, with_source: bool = True) -> dict:
    """Create everything the contract needs (idempotent) and seed app_enums with missing ids."""
    stmts = db.dialect.ddl(db.contract, with_source)
    for s in stmts:
        try:
            db.execute(s).close()
        except Exception as exc:  # noqa: BLE001
            db.rollback()
            raise ConfigError(f"init-db failed on:\n{s}\n{exc}") from None
    db.commit()
    sql, rows = db.dialect.enum_seed_sql(db.contract)
    have = {r[0] for r in db.query(f"SELECT {db.dialect.quote('enum_id')} FROM {db.names['enums']}")}
    missing = [r for r in rows if r[0] not in have]
    if missing:
        cur = db.conn.cursor()
        cur.executemany(sql, missing)
        cur.close()
    db.commit()
    return {"statements": len(stmts), "enums_seeded": len(missing), "enums_total": len(rows)}


def utcnow() -> _dt.datetime:
    d = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    return d.replace(microsecond=d.microsecond // 1000 * 1000)


@dataclass
class FaultPlan:
    """Test-only fault injection, read from XML_EXTRACTOR_FAULTS (``key=value,...``) and honoured
    only behind the test harness's gate (xml_extractor/_testing.py: a production run cannot trip
    it by accident): ``fail_app=ID,fail_after_table=T`` raises inside the transaction right after
    table T was inserted for a batch holding application ID; ``sleep_before_commit=S`` holds every
    write transaction open S seconds (so a test can kill a worker mid-transaction)."""

    fail_app: int | None = None
    fail_after_table: str | None = None
    sleep_before_commit: float = 0.0

    @classmethod
    def from_env(cls) -> "FaultPlan":
        from .._testing import fault_spec
        spec = fault_spec()
        kv = dict(p.split("=", 1) for p in spec.split(",") if "=" in p)
        return cls(int(kv["fail_app"]) if "fail_app" in kv else None, kv.get("fail_after_table"),
                   float(kv.get("sleep_before_commit", 0)))


class InjectedFault(Exception):
    """Raised by FaultPlan inside a write transaction."""


@dataclass
class Outcome:
    """One application's result before it is written: mapped rows, or a failure."""

    app_id: int
    attempt: int
    mapped: "MappedApplication | None" = None
    stage: str | None = None
    error_class: str | None = None
    reason: str | None = None
    parse_ms: float | None = None
    map_ms: float | None = None
    extra_events: list[tuple] = field(default_factory=list)

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

    def __init__(self, db: Database, plan: "MappingPlan", ident: RunIdentity) -> None:
        self.db = db
        self.plan = plan
        self.ident = ident
        c = db.contract
        self.tables = [(t.name, db.table(t.name), c.table(t.name).stored_columns) for t in plan.tables]
        self.table_cols = {name: tuple(col.name for col in cols) for name, _, cols in self.tables}
        self.faults = FaultPlan.from_env()
        # tables whose key can collide across applications (the key does not contain app_id)
        self.cross_app_keys = [(t.name, t.primary_key[0]) for t in c.tables
                               if t.app_id_column not in t.primary_key and len(t.primary_key) == 1]

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
        except ConnectionLost:
            raise
        except Exception as exc:  # noqa: BLE001
            kind = self.db.dialect.classify(exc)
            if kind == ErrorKind.CONNECTION:
                raise ConnectionLost(str(exc)) from exc
            if _is_schema_error(exc):
                raise ConfigError(f"the database schema is missing or different from the contract "
                                  f"(run xml-extractor init-db): {exc}") from None
            if len(items) > 1:
                mid = len(items) // 2
                self._write_or_split(items[:mid], results)
                self._write_or_split(items[mid:], results)
                return
            self._resolve_single(items[0], exc, kind, results)
            return
        for it in items:
            results[it.app_id] = ("success", None, None) if it.ok else ("failed", it.stage, it.error_class)

    def _transaction(self, items: list[Outcome]) -> None:
        db = self.db
        t0 = time.perf_counter()
        db.begin()
        cur = db.conn.cursor()
        try:
            now = utcnow()
            ok = [it for it in items if it.ok]
            for name, qtable, _ in self.tables:
                rows = [r for it in ok for r in it.mapped.rows.get(name, ())]  # type: ignore[union-attr]
                if rows:
                    db.dialect.insert_rows(cur, qtable, self.table_cols[name], rows)
                f = self.faults
                if f.fail_after_table == name and any(it.app_id == f.fail_app for it in ok):
                    raise InjectedFault(f"injected fault after inserting {name} for application {f.fail_app}")
            ev_rows = []
            sid = self.ident.session_id
            for it in items:
                evs = list(it.mapped.events) if it.ok else []  # type: ignore[union-attr]
                evs += it.extra_events
                for e in evs:
                    ev_rows.append((it.app_id, e[0], e[1], e[2], e[3], e[4], e[5] if len(e) > 5 else None, sid, now))
            if ev_rows:
                db.dialect.insert_rows(cur, db.names["events"], EVENT_COLUMNS, ev_rows)
            per_app_ms = (time.perf_counter() - t0) * 1000 / max(1, len(items))
            db.dialect.insert_rows(cur, db.names["log"], LOG_COLUMNS, [self._log_row(it, now, per_app_ms) for it in items])
            self._count_progress(cur, items, now)
            cur.close()
            if self.faults.sleep_before_commit:
                time.sleep(self.faults.sleep_before_commit)
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def _count_progress(self, cur: Any, items: list[Outcome], now: _dt.datetime) -> None:
        i = self.ident
        ok = sum(1 for it in items if it.ok)
        counts = {"success": ok, "failed": len(items) - ok, "now": now, "session_id": i.session_id, "worker_pid": i.worker_pid}
        update = self.db.sql("progress_update")
        cur.execute(update, update.values(counts))
        if cur.rowcount == 0:
            insert = self.db.sql("progress_insert")
            cur.execute(insert, insert.values({**counts, "instance_id": i.instance_id, "instance_count": i.instance_count}))

    def _log_row(self, it: Outcome, now: _dt.datetime, insert_ms: float | None) -> tuple:
        i = self.ident
        return (it.app_id, "success" if it.ok else "failed", None if it.ok else it.stage,
                None if it.ok else it.error_class, None if it.ok else it.reason, it.attempt,
                i.instance_id, i.instance_count, i.session_id, i.contract_version,
                _r(it.parse_ms), _r(it.map_ms), _r(insert_ms) if it.ok else None, i.worker_pid, now)

    def _already_logged(self, it: Outcome) -> bool:
        rows = self.db.autocommit_query(self.db.sql("logged_status"), {"app_id": it.app_id})
        return any(st == "success" or att >= it.attempt for _, st, att in rows)

    def _resolve_single(self, it: Outcome, exc: Exception, kind: str, results: dict) -> None:
        if self._already_logged(it):
            results[it.app_id] = ("skipped", None, None)
            return
        if it.ok:
            reason, error_class, extra = self._explain(it, exc, kind)
            failed = Outcome(it.app_id, it.attempt, None, "insert", error_class, reason, it.parse_ms, it.map_ms,
                             extra_events=extra)
        else:
            failed = it  # a failure row that could not be written: retried once below, alone
        try:
            self.db.with_retry(lambda: self._transaction([failed]))
            results[it.app_id] = ("failed", failed.stage, failed.error_class)
        except ConnectionLost:
            raise
        except Exception as exc2:  # noqa: BLE001
            if self._already_logged(it):
                results[it.app_id] = ("skipped", None, None)
                return
            raise exc2

    def _explain(self, it: Outcome, exc: Exception, kind: str) -> tuple[str, str, list[tuple]]:
        """Name the other application that owns a colliding key, if that is what happened."""
        assert it.mapped is not None
        if kind == ErrorKind.DUPLICATE:
            for table, key in self.cross_app_keys:
                cols = self.table_cols[table]
                ki = cols.index(key)
                keys = [r[ki] for r in it.mapped.rows.get(table, ())]
                if not keys:
                    continue
                sql = self.db.sql("contact_owners", key_col=self.db.dialect.quote(key), contact_table=self.db.table(table))
                owners = self.db.autocommit_query(sql, {"keys": keys, "app_id": it.app_id})
                if owners:
                    desc = "; ".join(f"{key} {k} already belongs to application {a}" for k, a in owners)
                    reason = f"{desc} ({table}); nothing of application {it.app_id} was written"
                    events = [(table, key, "con_id_collision" if key == "con_id" else "key_collision", str(k),
                               f"{key} {k} already belongs to application {a}", None) for k, a in owners]
                    return reason, "KeyCollision", events
            return f"the database refused the rows as duplicates: {_short(exc)}", "DuplicateKey", []
        if kind == ErrorKind.FOREIGN_KEY:
            return f"foreign key violation: {_short(exc)}", "ForeignKeyViolation", []
        return f"the database refused the rows: {_short(exc)}", type(exc).__name__, []


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _short(exc: Exception) -> str:
    from .odbc import redact
    return redact(" ".join(str(a) for a in getattr(exc, "args", ()) or [str(exc)]))[:2000]


def _is_schema_error(exc: Exception) -> bool:
    msg = str(exc).lower()
    args = getattr(exc, "args", ())
    state = str(args[0]) if args else ""
    return ("no such table" in msg or "no such column" in msg or "has no column" in msg
            or state in ("42P01", "42703", "42S02", "42S22") or "does not exist" in msg and "relation" in msg)
