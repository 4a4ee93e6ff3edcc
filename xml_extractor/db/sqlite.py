"""SQLite, the embedded default: a file in WAL mode through the stdlib driver.

Several worker processes write to one file: each write transaction is a short
``BEGIN IMMEDIATE`` (the write lock up front, so two writers never deadlock on an upgrade) with a
long busy timeout, and all mapping happens before it. ``synchronous=NORMAL`` in WAL mode: a power
loss can lose the last commits, never half of one, and a lost commit is simply redone by the
next run (rows and log row go together). Each connection keeps a 64 MB page cache.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..errors import ConfigError
from ..parsing import text_or_undecodable
from .base import Dialect
from .classify import wrap_sqlite

# How Decimal, date and datetime are stored, applied by this module's connections only (not by
# sqlite3.register_adapter, which would change every sqlite3 connection of the host process).
_BIND: dict[type, Callable[[Any], Any]] = {
    Decimal: str,
    _dt.date: _dt.date.isoformat,
    _dt.datetime: lambda d: d.isoformat(sep=" ", timespec="milliseconds"),
}


def bind_values(params: Any) -> Any:
    """Parameters as this dialect stores them (exact types, as sqlite3's adapters match)."""
    if not params:
        return params
    get = _BIND.get
    if isinstance(params, Mapping):
        return {k: v if (f := get(type(v))) is None else f(v) for k, v in params.items()}
    return [v if (f := get(type(v))) is None else f(v) for v in params]


def bind_rows(seq_of_parameters: Any) -> Any:
    """executemany's rows, converted column by column: a column holds one type, so the type
    check runs over each column at C speed (zip, map) and only the columns that hold a Decimal,
    date or datetime are converted in Python (half the cost of converting row by row)."""
    rows = seq_of_parameters if isinstance(seq_of_parameters, list) else list(seq_of_parameters)
    if not rows or isinstance(rows[0], Mapping) or len({len(r) for r in rows}) != 1:
        return [bind_values(r) for r in rows]
    columns: list[Any] = list(zip(*rows))
    changed = False
    get = _BIND.get
    for i, column in enumerate(columns):
        if not _BIND.keys().isdisjoint(map(type, column)):
            columns[i] = [v if (f := get(type(v))) is None else f(v) for v in column]
            changed = True
    return list(zip(*columns)) if changed else rows


class BindingCursor(sqlite3.Cursor):
    """A cursor that converts its parameters with :func:`bind_values`."""

    def execute(self, sql: str, parameters: Any = (), /) -> BindingCursor:  # type: ignore[override]
        return super().execute(sql, bind_values(parameters))

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> BindingCursor:  # type: ignore[override]
        return super().executemany(sql, bind_rows(seq_of_parameters))


class BindingConnection(sqlite3.Connection):
    """The connection class of the dialect: every cursor (and the execute shortcuts) binds
    through :func:`bind_values`."""

    def cursor(self, factory: Any = BindingCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)


def check_sqlite_path(path: str) -> None:
    """A path SQLite cannot use, said with the path (exit 2): the driver only says "unable to open
    database file"."""
    import os

    if path == ":memory:" or path.startswith("file:"):
        return
    if os.path.isdir(path):
        raise ConfigError(f"not a SQLite database: {path} is a folder")
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise ConfigError(f"cannot create {path}: folder {folder} does not exist")


def _switch_to_wal(conn: sqlite3.Connection, wait_seconds: float = 120.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file. On a fresh
    file two processes converting it at once (two generate-mock, two init-db) both hold a read
    lock and want the exclusive one: SQLite refuses one *at once* with "database is locked",
    without calling the busy handler (deadlock avoidance), so the 120 s busy timeout does not help.
    Once the file is in WAL mode the pragma is a no-op that never conflicts."""
    import random
    import time

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class SQLiteDialect(Dialect):
    name = "sqlite"
    supports_schemas = False
    now_sql = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    serial_pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    float_type = "REAL"
    max_params = 32000
    source_id_max = 2**63 - 1  # SQLite's INTEGER is 64-bit

    def lease_sql(self) -> str:
        return "strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :lease_seconds || ' seconds')"

    type_names = {**Dialect.type_names, "datetime": "TIMESTAMP"}

    timestamp_type = "TIMESTAMP"

    def connect(self, url: Any) -> sqlite3.Connection:
        check_sqlite_path(url.path)
        conn = sqlite3.connect(
            url.path,
            timeout=120,
            isolation_level=None,
            check_same_thread=False,
            factory=BindingConnection,
        )
        try:
            _switch_to_wal(conn)  # the first statement that reads the file's header
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "encrypted" in str(exc):
                raise ConfigError(f"not a SQLite database: {url.path}") from None
            raise
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=120000")
        # SQLite's default page cache is 2 MB: once the indexes outgrow it, every insert into a
        # random-order index (the event table's) reads pages back, and a long run slows down
        # (measured: -18% over 100,000 applications). 64 MB per connection keeps them resident.
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def ddl(self, contract: Any, with_source: bool = True) -> list[str]:
        """Plus an index on the source id: the source table's rows hold the documents (2-4 KB of
        each stays in the row even when the rest overflows), so counting or scanning ids through
        the table reads gigabytes; through this index, megabytes."""
        out = super().ddl(contract, with_source)
        if with_source:
            out.append(
                self.create_index(
                    f"ix_{contract.source_table}_{contract.source_id_column}"[:63],
                    self.qualified(contract.source_schema, contract.source_table),
                    [contract.source_id_column],
                )
            )
        return out

    def refresh_statistics_sql(self, qtables: Sequence[str]) -> list[str]:
        """Without sqlite_stat1 SQLite guesses, and guessed wrong for reconcile's per-row probes
        (see db/statistics.py). analysis_limit samples each index instead of reading it whole:
        ~0.1 s on a million-application database, plans as good as a full ANALYZE."""
        return ["PRAGMA analysis_limit=1000"] + [f"ANALYZE {t}" for t in qtables]

    def read_documents(self, conn: Any, fetch: Callable[[], list[tuple]]) -> list[tuple]:
        """sqlite3 decodes TEXT as UTF-8 and refuses the whole statement over one bad byte (a TEXT
        value can hold any bytes). Then the batch is fetched again with each document decoded
        alone: one that is not UTF-8 arrives as UndecodableText and fails at stage parse. Only
        then: a Python text_factory on every fetch cost 5-15% of the fetch (measured)."""
        try:
            return fetch()
        except Exception as exc:
            original = getattr(exc, "original", exc)
            if not (
                isinstance(original, sqlite3.OperationalError)
                and str(original).startswith("Could not decode to UTF-8")
            ):
                raise
        conn.text_factory = text_or_undecodable
        try:
            return fetch()
        finally:
            conn.text_factory = str

    def blob_rowid(self, facts: tuple[Any, Any, Any]) -> str | None:
        """``_rowid_``, the name the blob queries read the source's rowid by, from the
        ``blob_source`` query's (kind, encoding, column names); None when documents cannot be read
        by blob: the source is not a table, TEXT is not stored as UTF-8, a column (generated ones
        included) is named ``_rowid_``, or this Python's sqlite3 has no ``blobopen`` (3.11+). A
        column named ``rowid`` or ``oid`` (more likely) does not shadow ``_rowid_``."""
        kind, encoding, columns = facts
        if kind != "table" or str(encoding).upper() != "UTF-8":
            return None
        if not hasattr(sqlite3.Connection, "blobopen"):
            return None
        return None if "_rowid_" in str(columns or "").split("\n") else "_rowid_"

    def read_heads(
        self,
        conn: Any,
        select: tuple[str, Any],
        by_rowid: str,
        table: str,
        column: str,
        marker: bytes,
    ) -> list[tuple[int, Any, Any]]:
        """Each document's head (its stored bytes up to ``marker``, the scope's end tag) and its
        decoded last 200 bytes, by incremental blob I/O: only the pages holding them are read,
        not the ~95% of a document that is vendor payload (what fetch_heads does on the servers).
        ``select`` (fetch_blob_rows, bound) gives (id, rowid, type, other value), in the order
        (and with the duplicate ids) fetch_documents_stored would; the rows and the blobs are
        read in one read transaction, one snapshot. Whole, as fetch_documents_stored gives it
        (tail None): a document without the marker (like fetch_heads'), a BLOB whose head or
        tail is not UTF-8 (cp1252 or latin-1 is decided on every byte), a TEXT value whose tail
        is not (its reason names the offset), a value that is not TEXT or BLOB, and a row whose
        blob does not open (``by_rowid``: fetch_stored_by_rowid)."""
        from ..parsing import StoredBytes, decoded_tail, is_utf8

        out: list[tuple[int, Any, Any]] = []
        conn.execute("BEGIN")
        try:
            for app_id, rowid, kind, other in conn.execute(*select).fetchall():
                if kind not in ("text", "blob"):
                    out.append((int(app_id), other, None))
                    continue
                text = kind == "text"
                try:
                    with conn.blobopen(table, column, rowid, readonly=True) as blob:
                        head, tail = head_and_tail(blob, marker)
                        decoded = None if tail is None else decoded_tail(tail, True)
                        if isinstance(decoded, str) and (text or is_utf8(head)):
                            out.append((int(app_id), StoredBytes(head, text), decoded))
                            continue
                        if tail is not None:
                            head = blob[0 : len(blob)]
                except sqlite3.Error:
                    row = conn.execute(by_rowid, (rowid,)).fetchone()
                    if row is None:
                        continue  # gone
                    value, kind = row
                    text = kind == "text"
                    if not isinstance(value, bytes):
                        out.append((int(app_id), value, None))
                        continue
                    head = value
                out.append((int(app_id), StoredBytes(head, text), None))
        finally:
            conn.execute("COMMIT")  # a read: nothing to keep, nothing to undo
        return out

    def wrap(self, exc: BaseException) -> Exception:
        return wrap_sqlite(exc)


HEAD_BYTES = 8192  # the first read of a document by blob: the scope ends within it in 99% of generated documents (at 4.5 KB median)
TAIL_BYTES = 200  # the last bytes read, as fetch_heads sends them (is the document complete?)


def head_and_tail(value: Any, marker: bytes) -> tuple[bytes, bytes | None]:
    """(bytes up to and with the first ``marker``, the last TAIL_BYTES) of an open blob (or of
    bytes: bench splits documents as the run reads them), reading HEAD_BYTES, then twice as much
    each time the marker is not yet found; (the whole, None) when it is nowhere."""
    size = len(value)
    buf = value[0:HEAD_BYTES]
    at = buf.find(marker)
    while at < 0 and len(buf) < size:
        searched = max(0, len(buf) - len(marker) + 1)
        buf += value[len(buf) : 2 * len(buf)]
        at = buf.find(marker, searched)
    if at < 0:
        return buf, None
    tail = buf[-TAIL_BYTES:] if len(buf) == size else value[size - TAIL_BYTES : size]
    return buf[: at + len(marker)], tail
