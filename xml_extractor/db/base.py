"""The connector interface: what differs between engines lives in a Dialect subclass, one module
per driver (sqlite.py, postgresql.py, mssql.py). Everything else talks to a :class:`Database`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..contract.model import ColumnDef, Contract, TableDef

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SECTION = re.compile(r"^-- (name|fragment): ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# A named parameter: ``:name`` not preceded by ``:`` or a word character (so PostgreSQL's ``::int``
# casts and ``a:b`` inside identifiers are left alone). String literals are skipped (see _code_parts).
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def check_identifier(name: str, what: str = "identifier") -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigError(f"invalid {what} {name!r}: use letters, digits and underscores only")
    return name


@dataclass(frozen=True)
class NamedQuery:
    """One ``-- name:`` section of a query file: identifiers as ``{braces}``, values as ``:name``."""

    name: str
    description: str
    template: str
    source: str  # the file that defined it (common.sql or the dialect's own)
    dialects: tuple[str, ...] = ()  # a "-- dialects:" restriction (empty: every dialect)


def load_queries(dialect: str) -> dict[str, NamedQuery]:
    """``-- name: x`` sections of common.sql, overridden by name by the dialect's own file.

    A section is ``-- name: x``, comment lines (the first is the one-line description), then one
    statement. Comment lines inside the statement are dropped; a trailing ``;`` is optional. A
    leading ``-- dialects: sqlite, postgresql`` line limits a common query to those dialects (a
    query only some code paths use on some engines, e.g. scripts/ops_bench.py's data generator)."""
    return _load_sections(dialect, "name")


def load_fragments(dialect: str) -> dict[str, NamedQuery]:
    """``-- fragment: x`` sections: a condition written once (an instance's share, "pending") that
    queries use as ``{x}``. Same format as a query; it may use identifiers and :parameters, and
    assumes the aliases its description names."""
    return _load_sections(dialect, "fragment")


def _load_sections(
    dialect: str, kind: str, prefix: str = "", package: str = "xml_extractor.db"
) -> dict[str, NamedQuery]:
    """``prefix``: another set of files in the same format (``preflight_common.sql`` + ``preflight_<dialect>.sql``);
    ``package``: whose ``sql`` folder holds them (xml_extractor.testing: the synthetic data's)."""
    out: dict[str, NamedQuery] = {}
    for fname in (f"{prefix}common.sql", f"{prefix}{dialect}.sql"):
        text = resources.files(package).joinpath("sql").joinpath(fname).read_text("utf-8")
        parts = _SECTION.split(text)
        for i in range(1, len(parts), 3):
            if parts[i] != kind:
                continue
            name = parts[i + 1]
            lines = parts[i + 2].strip().splitlines()
            leading = []
            for ln in lines:
                if not ln.lstrip().startswith("--"):
                    break
                leading.append(ln.lstrip()[2:].strip())
            only = [c for c in leading if c.startswith("dialects:")]
            dialects = (
                tuple(d.strip() for d in only[0][len("dialects:") :].split(",")) if only else ()
            )
            if dialects and dialect not in dialects:
                continue
            body = "\n".join(ln for ln in lines if not ln.lstrip().startswith("--")).strip()
            description = " ".join(c for c in leading if not c.startswith("dialects:"))
            out[name] = NamedQuery(name, description, body.rstrip(";").strip(), fname, dialects)
    return out


def _code_parts(sql: str) -> list[tuple[bool, str]]:
    """The text split into (is_code, piece): string literals are not code."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _LITERAL.finditer(sql):
        out.append((True, sql[pos : m.start()]))
        out.append((False, m.group(0)))
        pos = m.end()
    out.append((True, sql[pos:]))
    return out


class Statement(str):
    """A statement ready for the driver: its text has ``?`` markers, one per parameter occurrence,
    and ``params`` records which named parameter each marker takes (a name may repeat).

    Callers pass values by name: ``db.query(db.sql("pending_ids"), {"after_id": 0, ...})`` or
    ``stmt.bind({...})``. A list or tuple value expands in place to one marker per element
    (``IN (:ids)``). A statement written with bare ``?`` markers (the old style) has no ``params``
    and takes a positional sequence as before. It is a ``str``, so it goes anywhere SQL text goes."""

    name: str
    params: tuple[str, ...]
    _pieces: tuple[str, ...]  # the text around the markers: len(params) + 1 pieces

    def __new__(cls, text: str, name: str = "") -> Statement:
        pieces: list[str] = [""]
        params: list[str] = []
        positional = False
        for is_code, piece in _code_parts(text):
            if not is_code:
                pieces[-1] += piece
                continue
            positional = positional or "?" in piece
            pos = 0
            for m in _PARAM.finditer(piece):
                pieces[-1] += piece[pos : m.start()]
                params.append(m.group(1))
                pieces.append("")
                pos = m.end()
            pieces[-1] += piece[pos:]
        if positional and params:
            raise ConfigError(f"query {name!r} mixes ? and :name parameters")
        self = super().__new__(cls, "?".join(pieces))
        self.name = name
        self.params = tuple(params)
        self._pieces = tuple(pieces)
        return self

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional values in marker order (scalars only: for ``executemany``)."""
        self._check(params)
        return [params[p] for p in self.params]

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """Text and positional values; list/tuple values expand to one marker each."""
        self._check(params)
        if not any(isinstance(params[p], (list, tuple)) for p in self.params):
            return str(self), [params[p] for p in self.params]
        text = [self._pieces[0]]
        values: list[Any] = []
        for p, piece in zip(self.params, self._pieces[1:]):
            v = params[p]
            if isinstance(v, (list, tuple)):
                if not v:
                    raise ConfigError(f"query {self.name!r}: list parameter {p!r} is empty")
                text.append(", ".join("?" * len(v)))
                values.extend(v)
            else:
                text.append("?")
                values.append(v)
            text.append(piece)
        return "".join(text), values

    def _check(self, params: Mapping[str, Any]) -> None:
        names = set(self.params)
        if names != params.keys():
            missing, extra = names - params.keys(), params.keys() - names
            raise TypeError(
                f"query {self.name!r}: "
                + "; ".join(
                    s
                    for s in (
                        f"missing {sorted(missing)}" if missing else "",
                        f"unexpected {sorted(extra)}" if extra else "",
                    )
                    if s
                )
            )


REQUEST_TABLE = "reprocess_request"  # open reprocess requests (xml_extractor/reprocess.py)
COMMAND_TABLE = "reprocess_command"  # each reprocess command's selection, and when it completed
HISTORY_SUFFIX = "_history"  # processing_log_history: log rows of replaced attempts


class Dialect:
    """An engine's differences: quoting, types, DDL, bulk insert, clock, error classes."""

    name = "base"
    supports_schemas = True
    max_params = 2000  # bound parameters one statement may carry (a batch's IN list must fit)
    source_id_max = 2**31 - 1  # the largest id the source table's INTEGER/INT id column holds

    def __init__(self) -> None:
        self.queries = load_queries(self.name)
        self.fragments = load_fragments(self.name)

    # -- identifiers ----------------------------------------------------------------------------
    def quote(self, ident: str) -> str:
        return '"' + check_identifier(ident) + '"'

    def qualified(self, schema: str | None, name: str) -> str:
        if schema and self.supports_schemas:
            return f"{self.quote(schema)}.{self.quote(name)}"
        return self.quote(name)

    # a printed script's statement separator (init-db --print); SQL Server's tools want GO batches
    script_separator = ";\n"

    # -- row limits: "{top}" after SELECT and "{limit}" at the end of a named query; both take :limit
    top_clause = ""
    limit_clause = "LIMIT :limit"

    # A read run on the same connection right after each commit (Database.commit) that answers
    # NULL/0 only when no write transaction is open: the commit's proof where the driver may report
    # a commit that did not happen. None: the driver's commit raises whenever it fails (sqlite3).
    commit_probe: str | None = None

    # -- clock ----------------------------------------------------------------------------------
    now_sql = "CURRENT_TIMESTAMP"

    def lease_sql(self) -> str:
        """An expression for 'now + :lease_seconds seconds' (one named parameter)."""
        raise NotImplementedError

    # -- types ----------------------------------------------------------------------------------
    type_names = {
        "string": "VARCHAR({length})",
        "text": "TEXT",
        "int": "INTEGER",
        "smallint": "SMALLINT",
        "bigint": "BIGINT",
        "tinyint": "SMALLINT",
        "decimal": "DECIMAL({precision},{scale})",
        "bit": "SMALLINT",
        "date": "DATE",
        "datetime": "TIMESTAMP(3)",
    }

    def column_type(self, col: ColumnDef) -> str:
        try:
            return self.type_names[col.type].format(
                length=col.length, precision=col.precision, scale=col.scale
            )
        except KeyError:
            raise ConfigError(f"no SQL type for {col.type}") from None

    # The collation of string key columns (primary keys, the enum table's unique (type, value) and
    # foreign keys referencing them), so that keys compare as they do in Python, SQLite and
    # PostgreSQL: exact, case-sensitive. None: the engine's comparison already is (SQLite, PostgreSQL).
    key_collation: str | None = None

    text_type = "TEXT"
    timestamp_type = "TIMESTAMP(3)"
    float_type = "DOUBLE PRECISION"
    serial_pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def varchar(self, n: int) -> str:
        return f"VARCHAR({n})"

    def collate(self, key: bool, type_name: str = "string") -> str:
        """`` COLLATE x`` after a string key column's type (see key_collation), else ''."""
        return (
            f" COLLATE {self.key_collation}"
            if key and self.key_collation and type_name == "string"
            else ""
        )

    def column_sql(self, col: ColumnDef, key: bool) -> str:
        """A contract column's type as declared in CREATE/ALTER: its type, the key collation."""
        return self.column_type(col) + self.collate(key, col.type)

    # -- DDL ------------------------------------------------------------------------------------
    def create_schema(self, schema: str) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}"]

    def create_table(self, qname: str, body: list[str]) -> str:
        return f"CREATE TABLE IF NOT EXISTS {qname} (\n    " + ",\n    ".join(body) + "\n)"

    def create_index(
        self,
        name: str,
        qtable: str,
        cols: Sequence[str],
        unique: bool = False,
        schema: str | None = None,
    ) -> str:
        u = "UNIQUE " if unique else ""
        return f"CREATE {u}INDEX IF NOT EXISTS {self.quote(name)} ON {qtable} ({', '.join(self.quote(c) for c in cols)})"

    def reprocess_ddl(self, contract: Contract, log_body: list[str]) -> list[str]:
        """reprocess's tables (see xml_extractor/reprocess.py): the open requests, each command's
        recorded selection and whether it completed, and the log rows of attempts a reprocess
        replaced (the log's columns, ``log_body``, with log_id kept, no identity, plus
        replaced_at)."""
        sch = contract.target_schema
        history = self.qualified(sch, contract.log_table + HISTORY_SUFFIX)
        key = [self.quote(c) for c in ("command", "instance_id", "instance_count")]
        return [
            self.create_table(
                self.qualified(sch, REQUEST_TABLE),
                [
                    f"{self.quote('app_id')} BIGINT NOT NULL PRIMARY KEY",
                    f"{self.quote('requested_at')} {self.timestamp_type} NOT NULL",
                    f"{self.quote('command')} {self.varchar(400)} NOT NULL",
                ],
            ),
            self.create_table(
                self.qualified(sch, COMMAND_TABLE),
                [
                    f"{key[0]} {self.varchar(400)}{self.collate(True)} NOT NULL",
                    f"{key[1]} INTEGER NOT NULL",
                    f"{key[2]} INTEGER NOT NULL",
                    f"{self.quote('requested_at')} {self.timestamp_type} NOT NULL",
                    f"{self.quote('applications')} INTEGER NOT NULL",
                    f"{self.quote('completed_at')} {self.timestamp_type} NULL",
                    f"PRIMARY KEY ({', '.join(key)})",
                ],
            ),
            self.create_table(
                history,
                [f"{self.quote('log_id')} BIGINT NOT NULL"]
                + [c for c in log_body[1:] if not c.startswith("CONSTRAINT")]
                + [f"{self.quote('replaced_at')} {self.timestamp_type} NOT NULL"],
            ),
            self.create_index(
                f"ix_{contract.log_table}{HISTORY_SUFFIX}_app",
                history,
                ["app_id", "attempt"],
                schema=sch,
            ),
            # the rates of status and report count replaced attempts too: a range, not a scan
            self.create_index(
                f"ix_{contract.log_table}{HISTORY_SUFFIX}_logged_at",
                history,
                ["logged_at"],
                schema=sch,
            ),
        ]

    def ddl(self, contract: Contract, with_source: bool = True) -> list[str]:
        """Every statement init-db runs, in order, idempotent."""
        out = self._source_and_enum_ddl(contract, with_source)
        for t in contract.tables:
            out += self._table_ddl(t, contract.target_schema)
        log_statements, log_body = self._log_ddl(contract)
        out += log_statements
        out += self.reprocess_ddl(contract, log_body)
        out += self._event_ddl(contract)
        out += self._progress_and_queue_ddl(contract)
        return out

    def _source_and_enum_ddl(self, contract: Contract, with_source: bool) -> list[str]:
        """The schemas, the source table (when init-db creates it) and the enum table."""
        sch = contract.target_schema
        q = self.qualified
        out: list[str] = []
        if self.supports_schemas:
            out += self.create_schema(sch)
            if with_source and contract.source_schema:
                out += self.create_schema(contract.source_schema)
        if with_source:
            out.append(
                self.create_table(
                    q(contract.source_schema, contract.source_table),
                    [
                        f"{self.quote(contract.source_id_column)} INTEGER NOT NULL PRIMARY KEY",
                        f"{self.quote(contract.source_xml_column)} {self.text_type}",
                    ],
                )
            )
        out.append(
            self.create_table(
                q(sch, contract.enum_table),
                [
                    f"{self.quote('enum_id')} INTEGER NOT NULL PRIMARY KEY",
                    f"{self.quote('type')} {self.varchar(64)}{self.collate(True)} NOT NULL",
                    f"{self.quote('value')} {self.varchar(50)}{self.collate(True)} NOT NULL",
                    f"{self.quote('description')} {self.varchar(200)}",
                ],
            )
        )
        out.append(
            self.create_index(
                f"ux_{contract.enum_table}_type_value",
                q(sch, contract.enum_table),
                ["type", "value"],
                True,
                sch,
            )
        )
        return out

    def _table_ddl(self, t: TableDef, sch: str) -> list[str]:
        """One contract table: columns, primary key, foreign keys, its indexes and one on the
        application id when no index starts with it."""
        q = self.qualified
        out: list[str] = []
        body = []
        keys = key_columns(t)
        for c in t.stored_columns:
            body.append(
                f"{self.quote(c.name)} {self.column_sql(c, c.name.lower() in keys)}{'' if c.nullable else ' NOT NULL'}"
            )
        body.append(
            f"CONSTRAINT {self.quote('pk_' + t.name)} PRIMARY KEY ({', '.join(self.quote(k) for k in t.primary_key)})"
        )
        for i, fk in enumerate(t.foreign_keys):
            body.append(
                f"CONSTRAINT {self.quote(f'fk_{t.name}_{i + 1}')} FOREIGN KEY ({', '.join(self.quote(c) for c in fk.columns)}) "
                f"REFERENCES {q(sch, fk.references)} ({', '.join(self.quote(c) for c in fk.ref_columns)})"
            )
        out.append(self.create_table(q(sch, t.name), body))
        idx_cols = {tuple(ix[1]) for ix in t.indexes}
        for name, cols in t.indexes:
            out.append(self.create_index(name, q(sch, t.name), cols, schema=sch))
        if t.app_id_column not in t.primary_key[:1] and (t.app_id_column,) not in idx_cols:
            out.append(
                self.create_index(
                    f"ix_{t.name}_{t.app_id_column}"[:63],
                    q(sch, t.name),
                    [t.app_id_column],
                    schema=sch,
                )
            )
        return out

    def _log_ddl(self, contract: Contract) -> tuple[list[str], list[str]]:
        """processing_log and its indexes; also its column list, which the history table copies."""
        sch = contract.target_schema
        q = self.qualified
        out: list[str] = []
        log = q(sch, contract.log_table)
        out.append(
            self.create_table(
                log,
                log_body := [
                    f"{self.quote('log_id')} {self.serial_pk}",
                    f"{self.quote('app_id')} INTEGER NOT NULL",
                    f"{self.quote('status')} {self.varchar(10)} NOT NULL",
                    f"{self.quote('stage')} {self.varchar(10)}",
                    f"{self.quote('error_class')} {self.varchar(100)}",
                    f"{self.quote('reason')} {self.text_type}",
                    f"{self.quote('attempt')} INTEGER NOT NULL",
                    f"{self.quote('instance_id')} INTEGER NOT NULL",
                    f"{self.quote('instance_count')} INTEGER NOT NULL",
                    f"{self.quote('session_id')} {self.varchar(40)} NOT NULL",
                    f"{self.quote('contract_version')} {self.varchar(100)} NOT NULL",
                    # which contract of a contract set mapped the application (NULL: a failure before routing)
                    f"{self.quote('contract_name')} {self.varchar(63)}",
                    f"{self.quote('parse_ms')} {self.float_type}",
                    f"{self.quote('map_ms')} {self.float_type}",
                    f"{self.quote('insert_ms')} {self.float_type}",
                    f"{self.quote('worker_pid')} INTEGER",
                    f"{self.quote('logged_at')} {self.timestamp_type} NOT NULL",
                    f"CONSTRAINT {self.quote('ck_' + contract.log_table + '_status')} CHECK ({self.quote('status')} IN ('success', 'failed'))",
                ],
            )
        )
        # (app_id, attempt) unique: never two final rows for one attempt. It is also the index
        # that keeps "select unprocessed" an index probe per source row as the log grows.
        out.append(
            self.create_index(
                f"ux_{contract.log_table}_app_attempt", log, ["app_id", "attempt"], True, sch
            )
        )
        out.append(
            self.create_index(
                f"ix_{contract.log_table}_session", log, ["session_id", "logged_at"], schema=sch
            )
        )
        out.append(
            self.create_index(
                f"ix_{contract.log_table}_status_stage", log, ["status", "stage"], schema=sch
            )
        )
        # (status, app_id): "has a success row" probes match two columns here (the planner picks it
        # even without statistics: without it SQLite chose (status, stage) and reconcile went
        # quadratic), and counting or listing success/failed applications is an index range.
        out.append(
            self.create_index(
                f"ix_{contract.log_table}_status_app", log, ["status", "app_id"], schema=sch
            )
        )
        # which contract versions produced the log: a loose index scan instead of reading every row
        out.append(
            self.create_index(
                f"ix_{contract.log_table}_contract_version",
                log,
                ["contract_version", "app_id"],
                schema=sch,
            )
        )
        out.append(
            self.create_index(f"ix_{contract.log_table}_logged_at", log, ["logged_at"], schema=sch)
        )
        return out, log_body

    def _event_ddl(self, contract: Contract) -> list[str]:
        """data_quality_event and its indexes."""
        sch = contract.target_schema
        q = self.qualified
        out: list[str] = []
        ev = q(sch, contract.event_table)
        out.append(
            self.create_table(
                ev,
                [
                    f"{self.quote('event_id')} {self.serial_pk}",
                    f"{self.quote('app_id')} INTEGER NOT NULL",
                    f"{self.quote('table_name')} {self.varchar(128)} NOT NULL",
                    f"{self.quote('column_name')} {self.varchar(128)}",
                    f"{self.quote('event_type')} {self.varchar(30)} NOT NULL",
                    f"{self.quote('raw_value')} {self.text_type}",
                    f"{self.quote('reason')} {self.text_type}",
                    f"{self.quote('locator')} {self.varchar(400)}",
                    f"{self.quote('session_id')} {self.varchar(40)}",
                    f"{self.quote('logged_at')} {self.timestamp_type} NOT NULL",
                ],
            )
        )
        out.append(self.create_index(f"ix_{contract.event_table}_app", ev, ["app_id"], schema=sch))
        # app_id too: `quality` counts distinct applications per kind from the index alone (4x faster at 1M)
        out.append(
            self.create_index(
                f"ix_{contract.event_table}_kind_app",
                ev,
                ["table_name", "column_name", "event_type", "app_id"],
                schema=sch,
            )
        )
        return out

    def _progress_and_queue_ddl(self, contract: Contract) -> list[str]:
        """run_progress and work_queue."""
        sch = contract.target_schema
        q = self.qualified
        out: list[str] = []
        # One row per worker process and run, updated in each batch's own transaction: `status`
        # reads instances and sessions from here instead of aggregating the whole log.
        out.append(
            self.create_table(
                q(sch, contract.progress_table),
                [
                    f"{self.quote('session_id')} {self.varchar(40)} NOT NULL",
                    f"{self.quote('worker_pid')} INTEGER NOT NULL",
                    f"{self.quote('instance_id')} INTEGER NOT NULL",
                    f"{self.quote('instance_count')} INTEGER NOT NULL",
                    f"{self.quote('started_at')} {self.timestamp_type} NOT NULL",
                    f"{self.quote('last_at')} {self.timestamp_type} NOT NULL",
                    f"{self.quote('success')} BIGINT NOT NULL",
                    f"{self.quote('failed')} BIGINT NOT NULL",
                    f"CONSTRAINT {self.quote('pk_' + contract.progress_table)} PRIMARY KEY ({self.quote('session_id')}, {self.quote('worker_pid')})",
                ],
            )
        )
        out.append(
            self.create_table(
                q(sch, contract.queue_table),
                [
                    f"{self.quote('chunk_id')} BIGINT NOT NULL PRIMARY KEY",
                    f"{self.quote('lo')} BIGINT NOT NULL",
                    f"{self.quote('hi')} BIGINT NOT NULL",
                    f"{self.quote('owner')} {self.varchar(100)}",
                    f"{self.quote('lease_until')} {self.timestamp_type}",
                    f"{self.quote('claims')} INTEGER NOT NULL",
                    f"{self.quote('done_at')} {self.timestamp_type}",
                ],
            )
        )
        return out

    def schema_script(self, contract: Contract) -> str:
        """The whole schema as one script (``init-db --print``; the DBA scripts in sql/): every
        ``ddl`` statement, then the enum seed as literal INSERTs, in this dialect's batches."""
        from .. import __version__

        sep = self.script_separator
        sql, rows = self.enum_seed_sql(contract)
        head = (
            f"-- xml-extractor {__version__}: schema for contract {contract.version_tag} ({self.name})\n"
            "-- generated by: xml-extractor init-db --print --dialect " + self.name + "\n"
        )
        seeds = [sql.replace("?, ?, ?, ?", ", ".join(self.literal(v) for v in r)) for r in rows]
        return head + sep.join(self.ddl(contract) + seeds) + sep.rstrip("\n") + "\n"

    def literal(self, value: Any) -> str:
        """A value as an SQL literal, for printed scripts only (init-db --print); the tool itself
        always binds values."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, (int, float)):
            return repr(value)
        return "'" + str(value).replace("'", "''") + "'"

    def enum_seed_sql(self, contract: Contract) -> tuple[str, list[tuple]]:
        rows = [
            (v.id, e, v.code, v.description) for e, vals in contract.enums.items() for v in vals
        ]
        return (
            f"INSERT INTO {self.qualified(contract.target_schema, contract.enum_table)} "
            f"({self.quote('enum_id')}, {self.quote('type')}, {self.quote('value')}, {self.quote('description')}) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )

    # -- inserts --------------------------------------------------------------------------------
    def insert_sql(self, qtable: str, columns: Sequence[str], nrows: int = 1) -> str:
        ph = "(" + ", ".join("?" * 1 for _ in columns) + ")"
        return (
            f"INSERT INTO {qtable} ({', '.join(self.quote(c) for c in columns)}) VALUES "
            + ", ".join([ph] * nrows)
        )

    def insert_rows(
        self, cursor: Any, qtable: str, columns: Sequence[str], rows: list[tuple]
    ) -> None:
        cursor.executemany(self.insert_sql(qtable, columns), rows)

    # -- connections and errors -----------------------------------------------------------------
    def connect(self, url: Any) -> Any:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        """Start a write transaction (pyodbc connections are always in one)."""

    def read_documents(self, conn: Any, fetch: Callable[[], list[tuple]]) -> list[tuple]:
        """Run a fetch of documents (Database.fetch_documents): a dialect whose driver refuses a
        whole batch over one document's bad bytes fetches it again leniently here (SQLite)."""
        return fetch()

    def document_text(self, value: Any) -> Any:
        """One fetched document as map_document takes it (PostgreSQL fetches the text's bytes)."""
        return value

    def wrap(self, exc: BaseException) -> Exception:
        """The driver's exception as a typed error of xml_extractor.errors (see db/classify.py):
        RowsRefused, TransientDatabaseError, ConnectionLost, SchemaMissing or DatabaseError. An
        exception that is not the driver's is returned unchanged (a bug stays a bug)."""
        from ..errors import DatabaseError

        return exc if isinstance(exc, Exception) else DatabaseError(str(exc), exc)

    def reclaim_space_sql(self, qtables: Sequence[str]) -> list[str]:
        """Statements, run outside a transaction, that give back the space of deleted rows
        (bench empties its tables between runs); none by default."""
        return []

    def refresh_statistics_sql(self, qtables: Sequence[str]) -> list[str]:
        """Statements that refresh the planner's statistics of fast-growing tables (none by default)."""
        return []

    def in_list(self, n: int) -> str:
        return ", ".join("?" * 1 for _ in range(n))


def key_columns(t: Any) -> set[str]:
    """A contract table's key columns (lower-case): its primary key and its foreign-key columns
    (which must share the referenced key's type and collation)."""
    return {c.lower() for c in t.primary_key} | {
        c.lower() for fk in t.foreign_keys for c in fk.columns
    }


def chunks(rows: list, size: int) -> Iterable[list]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
