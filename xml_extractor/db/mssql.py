"""SQL Server through pyodbc + Microsoft ODBC Driver 18/17.

Not runnable here: its SQL is unit-tested, and live tests run when XML_EXTRACTOR_TEST_MSSQL holds
a connection string. Bulk path: ``fast_executemany`` in bounded chunks (its buffer grows with
chunk x column widths); NVARCHAR(n)/VARCHAR(MAX), never text/ntext.
"""
from __future__ import annotations

from typing import Any, Sequence

from .base import Dialect, chunks
from .classify import wrap_odbc
from .odbc import odbc_connect

FAST_EXECUTEMANY_CHUNK = 1000


class MSSQLDialect(Dialect):
    name = "mssql"
    script_separator = "\nGO\n"
    top_clause = "TOP (:limit)"
    limit_clause = ""
    now_sql = "SYSUTCDATETIME()"
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

    type_names = {**Dialect.type_names, "string": "NVARCHAR({length})", "text": "NVARCHAR(MAX)", "int": "INT",
                  "tinyint": "TINYINT", "bit": "BIT", "datetime": "DATETIME2(3)"}

    def column_type(self, col: Any) -> str:
        if col.type == "string" and col.length > 4000:
            return "NVARCHAR(MAX)"
        return super().column_type(col)

    def create_schema(self, schema: str) -> list[str]:
        return [f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {self.quote(schema)}')"]

    def create_table(self, qname: str, body: list[str]) -> str:
        return (f"IF OBJECT_ID(N'{qname}', N'U') IS NULL\nCREATE TABLE {qname} (\n    "
                + ",\n    ".join(body) + "\n)")

    def create_index(self, name: str, qtable: str, cols: Sequence[str], unique: bool = False, schema: str | None = None) -> str:
        u = "UNIQUE " if unique else ""
        return (f"IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'{name}' AND object_id = OBJECT_ID(N'{qtable}'))\n"
                f"CREATE {u}INDEX {self.quote(name)} ON {qtable} ({', '.join(self.quote(c) for c in cols)})")

    def ddl(self, contract: Any, with_source: bool = True) -> list[str]:
        out = super().ddl(contract, with_source)
        # the source column is VARCHAR(MAX) as in the users' [dbo].[app_xml]
        src = self.qualified(contract.source_schema or "dbo", contract.source_table)
        return [s.replace(f"{self.quote(contract.source_xml_column)} NVARCHAR(MAX)",
                          f"{self.quote(contract.source_xml_column)} {self.source_xml_type}") if src in s else s for s in out]

    def qualified(self, schema: str | None, name: str) -> str:
        return f"{self.quote(schema or 'dbo')}.{self.quote(name)}"

    def connect(self, url: Any) -> Any:
        conn = odbc_connect(url.odbc_connection_string(), url.driver)
        return conn

    def wrap(self, exc: BaseException) -> Exception:
        return wrap_odbc(exc)

    def insert_rows(self, cursor: Any, qtable: str, columns: Sequence[str], rows: list[tuple]) -> None:
        cursor.fast_executemany = True
        sql = self.insert_sql(qtable, columns)
        for part in chunks(rows, FAST_EXECUTEMANY_CHUNK):
            cursor.executemany(sql, part)
