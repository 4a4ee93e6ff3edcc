"""SQL Server through pyodbc + Microsoft ODBC Driver 18/17.

Not runnable here: its SQL is unit-tested, and live tests run when XML_EXTRACTOR_TEST_MSSQL holds
a connection string. Bulk path: ``fast_executemany`` in bounded chunks (its buffer grows with
chunk x column widths); NVARCHAR(n)/VARCHAR(MAX), never text/ntext.

The source column. The users' ``[dbo].[app_xml].[xml]`` is ``varchar(max)`` holding UTF-8 bytes
(most with a byte-order mark) and some older cp1252 rows. pyodbc reads a varchar as text decoded
through the column's code page (SQL_C_WCHAR), which turns a UTF-8 BOM into 'ï»¿' and UTF-8 text
into mojibake, so the dialect reads the column's type once per connection (``source_kind``) and:

- ``varchar``/``char``/``varbinary``/``binary``: fetches BYTES (CAST AS VARBINARY(MAX)), decoded
  in Python like every engine's bytes (parsing.decode_source: BOM dropped, UTF-8, cp1252 for older
  rows, mixed bytes fail at parse), and loads UTF-8 bytes (stored byte for byte: never a '?' for a
  character the code page lacks). A ``*_UTF8`` collation stores UTF-8 anyway: the same path is right;
- ``nvarchar``/``nchar``: text both ways (Unicode, nothing between);
- ``text``/``ntext``/``image``/``xml`` or anything else: ConfigError (exit 2) naming the change.

Every connection runs with ``SET LOCK_TIMEOUT`` (a statement blocked by a lock nobody releases
raises 1222, retried as transient, instead of hanging), ``SET NOCOUNT OFF`` (row counts are what
the log's progress row and reprocess's request consumption rely on; a server whose ``user
options`` turn NOCOUNT on would return -1) and a query timeout (HYT00, retried likewise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Dialect, chunks
from .classify import wrap_odbc
from .connect import odbc_connect

FAST_EXECUTEMANY_CHUNK = 1000
# Per connection (seconds; environment overrides). LOCK_TIMEOUT: the longest a statement waits for
# a lock (the applocks wait 120 s on their own); the query timeout: far above the longest batch
# transaction or operator query at 11 M rows, it only ends a statement that hangs.
LOCK_TIMEOUT_ENV, QUERY_TIMEOUT_ENV = "XML_EXTRACTOR_LOCK_TIMEOUT", "XML_EXTRACTOR_QUERY_TIMEOUT"
DEFAULT_LOCK_TIMEOUT, DEFAULT_QUERY_TIMEOUT = 30, 3600


def _seconds(env: str, default: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a whole number of seconds") from None
    if value < 0:
        raise ConfigError(f"{env}={raw!r}: give 0 (no limit) or more seconds")
    return value


def session_settings() -> tuple[str, int]:
    """The batch every new connection runs, and its query timeout (seconds, 0: none)."""
    lock_ms = _seconds(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT) * 1000
    return f"SET LOCK_TIMEOUT {lock_ms if lock_ms else -1}; SET NOCOUNT OFF", _seconds(
        QUERY_TIMEOUT_ENV, DEFAULT_QUERY_TIMEOUT
    )


@dataclass(frozen=True)
class SourceColumn:
    """The source xml column as sys.columns describes it."""

    type_name: str  # the base type (sys.types of system_type_id), lower case
    max_length: int  # bytes; -1: (max)
    collation: str | None

    @property
    def kind(self) -> str | None:
        """'bytes' (fetched and loaded as bytes), 'text', or None: a type the tool cannot read."""
        if self.type_name in ("varchar", "char", "varbinary", "binary"):
            return "bytes"
        if self.type_name in ("nvarchar", "nchar"):
            return "text"
        return None


_TEXT_FETCH = {"fetch_heads": "fetch_heads_text", "fetch_documents": "fetch_documents_text"}

# What to change a legacy source type to, and why it cannot stay.
_LEGACY = {
    "text": (
        "VARCHAR(MAX)",
        "text is deprecated and CHARINDEX cannot search it (msg 8116); varchar(max) keeps the same bytes",
    ),
    "ntext": (
        "NVARCHAR(MAX)",
        "ntext is deprecated and CHARINDEX cannot search it (msg 8116); nvarchar(max) keeps the same text",
    ),
    "image": (
        "VARBINARY(MAX)",
        "image is deprecated and cannot be searched; varbinary(max) keeps the same bytes",
    ),
    "xml": (
        "NVARCHAR(MAX)",
        "SQL Server stores an xml value re-serialised, without the document's encoding "
        "declaration and byte-order mark, so the documents as written are gone; nvarchar(max) keeps "
        "what is stored (better: load the original documents into varchar(max))",
    ),
}


class MSSQLDialect(Dialect):
    name = "mssql"
    script_separator = "\nGO\n"
    top_clause = "TOP (:limit)"
    limit_clause = ""
    now_sql = "SYSUTCDATETIME()"
    # manual-commit ODBC runs with IMPLICIT_TRANSACTIONS ON; a SELECT without a table starts none
    commit_probe = "SELECT @@TRANCOUNT"
    text_type = "NVARCHAR(MAX)"
    key_collation = "Latin1_General_100_BIN2"  # keys compare exactly, as in SQLite/PostgreSQL (base.Dialect.key_collation)
    source_xml_type = "VARCHAR(MAX)"
    timestamp_type = "DATETIME2(3)"
    float_type = "FLOAT"
    serial_pk = "BIGINT IDENTITY(1,1) NOT NULL PRIMARY KEY"
    max_params = 2000

    def quote(self, ident: str) -> str:
        from .base import check_identifier

        return "[" + check_identifier(ident) + "]"

    def lease_sql(self) -> str:
        return "DATEADD(second, :lease_seconds, SYSUTCDATETIME())"

    def literal(self, value: Any) -> str:
        """Strings as N'...': NVARCHAR columns, so non-ASCII text survives any server collation."""
        if isinstance(value, str):
            return "N" + super().literal(value)
        return super().literal(value)

    def varchar(self, n: int) -> str:
        return f"NVARCHAR({n})"

    type_names = {
        **Dialect.type_names,
        "string": "NVARCHAR({length})",
        "text": "NVARCHAR(MAX)",
        "int": "INT",
        "tinyint": "TINYINT",
        "bit": "BIT",
        "datetime": "DATETIME2(3)",
    }

    def column_type(self, col: Any) -> str:
        if col.type == "string" and col.length > 4000:
            return "NVARCHAR(MAX)"
        return super().column_type(col)

    def create_schema(self, schema: str) -> list[str]:
        return [f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {self.quote(schema)}')"]

    def create_table(self, qname: str, body: list[str]) -> str:
        return (
            f"IF OBJECT_ID(N'{qname}', N'U') IS NULL\nCREATE TABLE {qname} (\n    "
            + ",\n    ".join(body)
            + "\n)"
        )

    def create_index(
        self,
        name: str,
        qtable: str,
        cols: Sequence[str],
        unique: bool = False,
        schema: str | None = None,
    ) -> str:
        u = "UNIQUE " if unique else ""
        return (
            f"IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'{name}' AND object_id = OBJECT_ID(N'{qtable}'))\n"
            f"CREATE {u}INDEX {self.quote(name)} ON {qtable} ({', '.join(self.quote(c) for c in cols)})"
        )

    def ddl(self, contract: Any, with_source: bool = True) -> list[str]:
        """The source column the tool creates is VARCHAR(MAX) as in the users' [dbo].[app_xml], so
        load-xml, generate-mock and the live tests take the very path their rows take: UTF-8 bytes
        stored byte for byte (source_value), fetched as bytes."""
        out = super().ddl(contract, with_source)
        src = self.qualified(contract.source_schema or "dbo", contract.source_table)
        return [
            s.replace(
                f"{self.quote(contract.source_xml_column)} NVARCHAR(MAX)",
                f"{self.quote(contract.source_xml_column)} {self.source_xml_type}",
            )
            if src in s
            else s
            for s in out
        ]

    def qualified(self, schema: str | None, name: str) -> str:
        return f"{self.quote(schema or 'dbo')}.{self.quote(name)}"

    def connect(self, url: Any) -> Any:
        conn = odbc_connect(url.odbc_connection_string(), url.driver)
        settings, timeout = session_settings()
        cur = conn.cursor()
        cur.execute(settings)  # SET opens no transaction, even under implicit transactions
        cur.close()
        conn.timeout = timeout  # SQL_ATTR_QUERY_TIMEOUT of every cursor made from now on
        return conn

    # -- the source column (see the module docstring) --------------------------------------------
    def source_kind(self, column: SourceColumn | None, where: str) -> str:
        """'bytes' or 'text' for the source column (``where``: its qualified name); None (the table
        or column is not there): 'bytes', the users' varchar(max), and the fetch reports what is
        missing. A legacy or other type: ConfigError with the one statement that fixes it."""
        if column is None:
            return "bytes"
        if column.kind is not None:
            return column.kind
        size = (
            "(max)"
            if column.max_length == -1
            else f"({column.max_length})"
            if column.max_length
            else ""
        )
        table, col = where.rsplit(".", 1)
        if column.type_name in _LEGACY:
            to, why = _LEGACY[column.type_name]
            raise ConfigError(
                f"the source column {where} is {column.type_name}: {why}. "
                f"Change it: ALTER TABLE {table} ALTER COLUMN {col} {to}"
            )
        raise ConfigError(
            f"the source column {where} is {column.type_name}{size}: the tool reads varchar, nvarchar or "
            f"varbinary documents. Change it: ALTER TABLE {table} ALTER COLUMN {col} VARCHAR(MAX)"
        )

    def source_value(self, kind: str, text: str) -> Any:
        """A document as load-xml/generate-mock bind it for a source column of this ``kind``: UTF-8
        bytes for varchar/varbinary (varbinary converts to varchar byte for byte: the column holds
        UTF-8 as the users' rows do, whatever its code page, and nothing becomes '?'), text for nvarchar."""
        return text.encode("utf-8") if kind == "bytes" else text

    def fetch_query(self, kind: str, name: str) -> str:
        """The named fetch query for this source kind: fetch_heads / fetch_documents fetch bytes,
        their _text twins an nvarchar column's text."""
        return name if kind == "bytes" else _TEXT_FETCH[name]

    def wrap(self, exc: BaseException) -> Exception:
        return wrap_odbc(exc)

    def insert_rows(
        self, cursor: Any, qtable: str, columns: Sequence[str], rows: list[tuple]
    ) -> None:
        cursor.fast_executemany = True
        sql = self.insert_sql(qtable, columns)
        for part in chunks(rows, FAST_EXECUTEMANY_CHUNK):
            cursor.executemany(sql, part)
