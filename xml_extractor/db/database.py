"""A connection plus its dialect plus the contract's table names: what every command talks to."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Union

from ..errors import ConfigError
from .base import COMMAND_TABLE, HISTORY_SUFFIX, REQUEST_TABLE, Dialect, Statement
from .url import DatabaseURL, parse_url

if TYPE_CHECKING:
    from ..contract.loader import Contract

log = logging.getLogger(__name__)
T = TypeVar("T")
Params = Union[Sequence[Any], Mapping[str, Any]]


def make_dialect(name: str) -> Dialect:
    if name == "sqlite":
        from .sqlite import SQLiteDialect

        return SQLiteDialect()
    if name == "postgresql":
        from .postgresql import PostgreSQLDialect

        return PostgreSQLDialect()
    if name == "mssql":
        from .mssql import MSSQLDialect

        return MSSQLDialect()
    raise ConfigError(f"unknown dialect {name!r} (sqlite, postgresql, mssql)")


from ..errors import ConnectionLost, TransientDatabaseError  # noqa: E402  (re-exported: the database went away and did not come back)


class CommitNotProven(TransientDatabaseError):
    """A commit the driver reported but the database did not confirm (Database.commit): retried."""


class NestedTransaction(RuntimeError):
    """Database.transaction() entered while one is open on the same connection: a programming
    error (the inner commit would end the outer transaction half-way), never the database's."""


class Transaction:
    """One write transaction on a Database, as a context manager (Database.transaction): begins
    on entry, commits through Database.commit (with its proof read) when the block ends, rolls
    back and re-raises unchanged when it raises. It neither retries nor types the driver's error:
    the caller's ``with_retry`` wraps the whole block and does both, so a transaction that failed
    is run again from its begin. ``committing`` tells, after an exception, whether it came from
    the commit itself (or its proof), when whether the transaction landed is unknown."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.committing = False

    def __enter__(self) -> Database:
        db = self.db
        if db.in_transaction:
            raise NestedTransaction("a transaction is already open on this connection")
        self.committing = False
        db.in_transaction = True
        try:
            db.begin()
        except BaseException:
            db.in_transaction = False
            db.rollback()
            raise
        return db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self.db
        try:
            if exc_type is None:
                self.committing = True
                try:
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
            else:
                db.rollback()
        finally:
            db.in_transaction = False


class Database:
    """One connection, reconnecting with backoff; named queries with the contract's identifiers."""

    def __init__(
        self,
        url: DatabaseURL | str | None,
        contract: Contract,
        reconnect_seconds: float = 60.0,
        connect: bool = True,
    ) -> None:
        """``connect=False``: names and statements only (the SQL tests render every query this way)."""
        self.url = url if isinstance(url, DatabaseURL) else parse_url(url)
        self.contract = contract
        self.dialect = make_dialect(self.url.dialect)
        self.reconnect_seconds = reconnect_seconds
        d, c = self.dialect, contract
        sch = c.target_schema
        self.names = {
            "src": d.qualified(c.source_schema, c.source_table),
            "src_id": d.quote(c.source_id_column),
            "src_xml": d.quote(c.source_xml_column),
            "log": d.qualified(sch, c.log_table),
            "events": d.qualified(sch, c.event_table),
            "queue": d.qualified(sch, c.queue_table),
            "progress": d.qualified(sch, c.progress_table),
            "enums": d.qualified(sch, c.enum_table),
            "requests": d.qualified(sch, REQUEST_TABLE),
            "commands": d.qualified(sch, COMMAND_TABLE),
            "log_history": d.qualified(sch, c.log_table + HISTORY_SUFFIX),
            "now": d.now_sql,
            "lease_expr": d.lease_sql(),
            "top": d.top_clause,
            "limit": d.limit_clause,
        }
        # fragments (conditions written once in the SQL files) with the identifiers substituted
        self.names.update({k: f.template.format(**self.names) for k, f in d.fragments.items()})
        self._sql: dict[tuple, Statement] = {}
        self._source_kind: str | None = None  # how the source column is read (source_kind), once
        # _blob_rowid, once: "" when documents are not read by blob
        self._blob_rowid_name: str | None = None
        self.conn: Any = None
        self.in_transaction = False  # inside a Database.transaction() block
        self._retrying = 0  # with_retry calls open on this connection (autocommit_query retries on its own outside them)
        if connect:
            self.connect()

    # -- connection -----------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            self.conn = self.dialect.connect(self.url)
        except Exception as exc:
            err = self.dialect.wrap(exc)
            if err is exc:
                raise
            raise err from exc

    def connect_patiently(self) -> None:
        """Connect, retrying a refused/unreachable server (ConnectionLost) with backoff for at most
        ``reconnect_seconds`` (a run started while the database restarts); any other error at once."""
        deadline = time.monotonic() + self.reconnect_seconds
        delay = 0.2
        while True:
            try:
                self.connect()
                return
            except ConnectionLost as exc:
                if time.monotonic() + delay > deadline:
                    raise ConnectionLost(
                        f"{exc} (retried for {self.reconnect_seconds:.0f}s)", exc.original
                    ) from None
                log.warning("cannot connect yet (%s); retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def reconnect(self) -> None:
        """Reconnect with exponential backoff for at most ``reconnect_seconds``."""
        self.close()
        deadline = time.monotonic() + self.reconnect_seconds
        delay = 0.2
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect()
                log.warning("reconnected to %s", self.url.display())
                return
            except Exception as exc:
                last = exc
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 5.0) * (0.8 + 0.4 * random.random())
        raise ConnectionLost(
            f"lost the connection to {self.url.display()} and could not reconnect within "
            f"{self.reconnect_seconds:.0f}s: {last}"
        )

    def with_retry(self, fn: Callable[[], T], attempts: int = 6) -> T:
        """Run ``fn`` (a whole transaction) and type what the driver raises (``Dialect.wrap``):
        ConnectionLost -> reconnect and run it again; TransientDatabaseError (timeout, lock wait,
        deadlock, disk full, read-only) -> back off and run it again; after ``attempts`` the typed
        error propagates (the run stops, exit 3, the applications still pending). RowsRefused,
        SchemaMissing and DatabaseError propagate at once; exceptions that are not the driver's
        propagate unchanged."""
        self._retrying += 1
        try:
            return self._retry(fn, attempts)
        finally:
            self._retrying -= 1

    def _retry(self, fn: Callable[[], T], attempts: int) -> T:
        for i in range(attempts):
            try:
                return fn()
            except ConnectionLost:
                raise
            except Exception as exc:
                err = self.dialect.wrap(exc)
                self.rollback()
                if isinstance(err, ConnectionLost) and i < attempts - 1:
                    log.warning("database connection lost (%s); reconnecting", err)
                    self.reconnect()
                    continue
                if isinstance(err, TransientDatabaseError) and i < attempts - 1:
                    delay = min(5.0, 0.1 * (2**i)) * (0.5 + random.random())
                    log.warning("transient database error (%s); retrying in %.1fs", err, delay)
                    time.sleep(delay)
                    continue
                if err is exc:
                    raise
                raise err from exc
        raise AssertionError("unreachable")

    # -- SQL ------------------------------------------------------------------------------------
    def sql(self, name: str, **identifiers: str) -> Statement:
        """The named query for this dialect with the contract's identifiers substituted.

        ``identifiers`` fill extra ``{braces}`` (already quoted identifiers, never values). Values
        go to execute/query/scalar as a mapping by parameter name."""
        key = (name, tuple(sorted(identifiers.items())))
        s = self._sql.get(key)
        if s is None:
            try:
                template = self.dialect.queries[name].template
            except KeyError:
                raise ConfigError(f"no query named {name!r} for {self.dialect.name}") from None
            s = Statement(template.format(**self.names, **identifiers), name)
            self._sql[key] = s
        return s

    def table(self, name: str) -> str:
        return self.dialect.qualified(self.contract.target_schema, name)

    def execute(self, sql: str, params: Params = ()) -> Any:
        """Run one statement; ``params`` by name (a mapping) for a named-parameter Statement,
        a sequence for one written with ``?``."""
        if isinstance(params, Mapping):
            if not isinstance(sql, Statement):
                raise TypeError("parameters by name need a Statement (db.sql(name))")
            sql, values = sql.bind(params)
        elif isinstance(sql, Statement) and sql.params:
            raise TypeError(
                f"query {sql.name!r} takes parameters by name: {', '.join(dict.fromkeys(sql.params))}"
            )
        else:
            values = list(params)
        cur = self.conn.cursor()
        cur.execute(sql, values)
        return cur

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        cur = self.execute(sql, params)
        try:
            # an UPDATE ... RETURNING that matched nothing has no result set through psqlODBC
            rows = cur.fetchall() if cur.description is not None else []
        finally:
            # also when the fetch raises: a sqlite3 cursor left open with its exception (held by
            # the traceback's frames until the garbage collector runs) keeps its read snapshot,
            # and the connection's next BEGIN IMMEDIATE fails at once (SQLITE_BUSY_SNAPSHOT)
            # once another connection has committed
            cur.close()
        return [tuple(r) for r in rows]

    def scalar(self, sql: str, params: Params = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def begin(self) -> None:
        self.dialect.begin(self.conn)

    def transaction(self) -> Transaction:
        """``with db.transaction():`` one write transaction: begin, commit (Database.commit, proof
        read included) at the end of the block, rollback and re-raise if it raises. Run it inside
        ``with_retry`` for the retry and the typed errors. Nested use raises NestedTransaction."""
        return Transaction(self)

    def commit(self) -> None:
        """Commit, then prove it where the driver's word is not enough (Dialect.commit_probe): psqlODBC
        returns success from cursor.close() and commit() after the backend died, with nothing
        committed. A probe on the same connection that answers "no write transaction open" shows the
        backend was alive after the commit, so the COMMIT reached it; a dead one raises the driver's
        error (ConnectionLost: with_retry reconnects and the caller checks what landed), and a
        transaction still open raises CommitNotProven (rolled back, done again)."""
        self.conn.commit()
        probe = self.dialect.commit_probe
        if probe is None:
            return
        cur = self.conn.cursor()
        cur.execute(probe)
        row = cur.fetchone()
        cur.close()
        self.conn.commit()  # the probe's own (read-only) transaction
        if row is None or row[0]:
            raise CommitNotProven(
                "the database still had this connection's write transaction open after the "
                f"commit ({probe} gave {None if row is None else row[0]!r})"
            )

    def rollback(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rollback()
        except Exception:
            pass

    def source_kind(self) -> str:
        """How documents cross the connection: 'native' (SQLite, PostgreSQL: their own fetch), or on
        SQL Server 'bytes' (varchar/varbinary source column) or 'text' (nvarchar), from the column's
        type read once per Database (sys.columns). A source type the tool cannot read (text, ntext,
        xml, image, ...) raises ConfigError naming the ALTER that fixes it: at run start
        (check_source) and in every command that fetches documents."""
        if self._source_kind is None:
            from .mssql import MSSQLDialect, SourceColumn

            d = self.dialect
            if not isinstance(d, MSSQLDialect):
                self._source_kind = "native"
            else:
                params = {"qtable": self.names["src"], "column": self.contract.source_xml_column}
                rows = self.with_retry(
                    lambda: self.autocommit_query(self.sql("source_column_type"), params)
                )
                column = (
                    SourceColumn(str(rows[0][0]).lower(), int(rows[0][1]), rows[0][2])
                    if rows
                    else None
                )
                self._source_kind = d.source_kind(
                    column, f"{self.names['src']}.{self.names['src_xml']}"
                )
        return self._source_kind

    def check_source(self) -> None:
        """Refuse, before any work, a source column the fetch cannot read (see source_kind)."""
        self.source_kind()

    def source_value(self, text: str) -> Any:
        """A document as load-xml/generate-mock bind it into the source column: text, or on SQL
        Server UTF-8 bytes for a varchar/varbinary column (stored byte for byte, never '?')."""
        from .mssql import MSSQLDialect

        kind = self.source_kind()
        return (
            self.dialect.source_value(kind, text)
            if isinstance(self.dialect, MSSQLDialect)
            else text
        )

    def fetch_documents(
        self,
        ids: list[int],
        scope_end: str | None = None,
        stored: bool = False,
        blob_heads: bool = False,
    ) -> list[tuple[int, Any, Any]]:
        """(app_id, text, tail) of these source rows, outside any transaction. With ``scope_end``
        (the end tag of the contract's scope, ``</CustData>``) a dialect that has ``fetch_heads``
        sends only the text up to it plus the document's last bytes (``tail``, to tell a truncated
        document); otherwise the whole text, tail None. SQL Server picks the query of its source
        column's kind (source_kind): bytes, decoded by parsing.decode_source like every engine's
        bytes (the tail by parsing.decoded_tail), or nvarchar text. With ``stored`` a dialect
        that has ``fetch_documents_stored`` (SQLite) sends whole documents as their stored bytes
        (parsing.StoredBytes: no text decoding in the driver; map_document parses the bytes).
        With ``blob_heads`` and ``scope_end`` a dialect that reads documents by blob (SQLite, see
        SQLiteDialect.read_heads) sends each one's head as stored bytes and its decoded tail, as
        fetch_heads does on the servers; a document it cannot read so comes whole, as ``stored``."""
        from .mssql import MSSQLDialect

        text = self.dialect.document_text  # one document's bytes that are not UTF-8 fail it alone
        kind = self.source_kind()
        heads, whole = "fetch_heads", "fetch_documents"
        tail: Callable[[Any], Any] = lambda t: t  # noqa: E731 - str, or bytes mapping decodes strictly (PostgreSQL)
        if isinstance(self.dialect, MSSQLDialect):
            heads, whole = (
                self.dialect.fetch_query(kind, heads),
                self.dialect.fetch_query(kind, whole),
            )
            if kind == "bytes":
                from ..parsing import decoded_tail

                # a tail that cannot be read sends its document alone to be read whole
                # (parsing.decode_head_and_tail), not the batch's fetch to fail
                tail = lambda t: None if t is None else decoded_tail(t, False)  # noqa: E731
        if scope_end is not None and heads in self.dialect.queries:
            stmt = self.sql(heads)
            known = {
                "marker": scope_end,
                "marker_bytes": len(scope_end.encode()),
                "marker_chars": len(scope_end.encode("utf-16-le")) // 2,
                "ids": ids,
            }
            params = {k: known[k] for k in dict.fromkeys(stmt.params)}
            rows = self.dialect.read_documents(
                self.conn, lambda: self.autocommit_query(stmt, params)
            )
            return [(int(a), text(x), tail(t)) for a, x, t in rows]
        if blob_heads and scope_end is not None and not self.in_transaction:
            rowid = self._blob_rowid()
            if rowid is not None:
                c = self.contract
                return self.dialect.read_heads(  # type: ignore[attr-defined, no-any-return]
                    self.conn,
                    self.sql("fetch_blob_rows").bind({"ids": ids}),
                    self.sql("fetch_stored_by_rowid").bind({"ids": [0]})[0],  # one rowid
                    c.source_table,
                    c.source_xml_column,
                    scope_end.encode(),
                )
        if stored and "fetch_documents_stored" in self.dialect.queries:
            from ..parsing import StoredBytes

            rows = self.autocommit_query(self.sql("fetch_documents_stored"), {"ids": ids})
            return [
                (int(a), StoredBytes(x, t == "text") if isinstance(x, bytes) else x, None)
                for a, x, t in rows
            ]
        rows = self.dialect.read_documents(
            self.conn, lambda: self.autocommit_query(self.sql(whole), {"ids": ids})
        )
        return [(int(a), text(x), None) for a, x in rows]

    def _blob_rowid(self) -> str | None:
        """The name the blob queries read the source's rowid by when its documents can be read by
        blob (SQLite: SQLiteDialect.blob_rowid), else None; asked once per Database."""
        if self._blob_rowid_name is None:
            name = ""
            d = self.dialect
            if (
                "blob_source" in d.queries
                and "blob_rowid_probe" in d.queries
                and "fetch_blob_rows" in d.queries
                and "fetch_stored_by_rowid" in d.queries
            ):
                table = self.contract.source_table
                facts = self.autocommit_query(self.sql("blob_source"), {"table": table})[0]
                name = self.dialect.blob_rowid(facts) or ""  # type: ignore[attr-defined]
                if name:
                    from ..errors import DatabaseError, SchemaMissing

                    try:
                        self.autocommit_query(self.sql("blob_rowid_probe"))
                    except TransientDatabaseError:
                        raise
                    except (SchemaMissing, DatabaseError):
                        name = ""  # a WITHOUT ROWID table: "no such column"
            self._blob_rowid_name = name
        return self._blob_rowid_name or None

    def run_batch(self, sql: str, params: Params = ()) -> None:
        """Run a statement that may be a batch of several (SQL Server's lock batches) and read every
        result it produces: an error raised by a later statement of the batch (RAISERROR after a
        row count) reaches pyodbc only when the results before it are consumed."""
        cur = self.execute(sql, params)
        try:
            nextset = getattr(cur, "nextset", None)
            while nextset is not None and nextset():
                pass
        finally:
            cur.close()

    def logged_contract_versions(self) -> list[str]:
        """The contract versions (``name@version``) in processing_log, by a loose index scan: one
        probe per version, cheap at any log size (log_contract_version_list)."""
        return [
            str(v)
            for (v,) in self.with_retry(
                lambda: self.autocommit_query(self.sql("log_contract_version_list"))
            )
        ]

    def claim_chunk(self, params: Mapping[str, Any]) -> tuple[int, int, int] | None:
        """One queue claim transaction: the first free or lease-expired chunk (queue_claim's
        parameters: owner, lease_seconds, after_chunk, id_lo, id_hi) taken by this owner, as
        (chunk_id, lo, hi), or None. The server dialects do it in one statement that skips rows
        other instances hold locked; SQLite picks and takes inside BEGIN IMMEDIATE (a short write
        lock; no UPDATE ... RETURNING before SQLite 3.35)."""
        with self.transaction():
            if "queue_claim" in self.dialect.queries:
                row = self.query(self.sql("queue_claim"), params)
            else:
                pick = self.sql("queue_pick")
                row = self.query(pick, {k: params[k] for k in dict.fromkeys(pick.params)})
                if row:
                    self.execute(
                        self.sql("queue_take"),
                        {
                            "owner": params["owner"],
                            "lease_seconds": params["lease_seconds"],
                            "chunk_id": row[0][0],
                        },
                    ).close()
        return (int(row[0][0]), int(row[0][1]), int(row[0][2])) if row else None

    def execute_outside_transaction(self, statements: Sequence[str]) -> None:
        """Statements that cannot run in a transaction (VACUUM): autocommit for their duration."""
        if not statements:
            return
        self.conn.commit()
        self.conn.autocommit = True
        try:
            for sql in statements:
                self.execute(sql).close()
        finally:
            self.conn.autocommit = False

    def autocommit_query(self, sql: str, params: Params = ()) -> list[tuple]:
        """A read that must not leave a transaction open (pyodbc starts one implicitly). Outside a
        with_retry it retries itself (a read is safe to repeat): a connection lost during a read
        reconnects within reconnect_seconds instead of surfacing as the driver's raw error."""
        if not self._retrying:
            return self.with_retry(lambda: self.autocommit_query(sql, params))
        rows = self.query(sql, params)
        if self.dialect.name != "sqlite":
            self.conn.commit()
        return rows
