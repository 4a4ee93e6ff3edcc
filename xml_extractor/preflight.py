"""``xml-extractor preflight``: everything that would hurt a migration, found in seconds first.

Each check is a function of a :class:`Preflight` (the open :class:`Database`, whose ``conn`` may be
any DB-API-like connection, the check's named queries from ``db/sql/preflight_*.sql`` and the
facts earlier checks found) returning one :class:`Check`: a short stable name, a status (ok, warn,
fail, skip), what was found and what to do. :func:`run_checks` runs them in order, each isolated:
a query that raises fails that check with the error, rolls back, and the next check runs. The SQL
Server checks run on a recording fake connection in the tests, statement by statement.

What is checked, per engine (a check that does not apply says so as ``skip``):
connection (encryption), driver, server (version, edition), permissions, lock (applock/advisory
lock), collation (case, encoding), read_committed_snapshot (SQL Server), source_table (exists,
rows, column type), sample_encoding and sample_mapping (a sample spread over the id range: its
bytes, what the run's own fetch path returns for them, and what parse/map make of it), size
(edition limit, free space) and schema (what init-db would do).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .db.base import (
    COMMAND_TABLE,
    HISTORY_SUFFIX,
    REQUEST_TABLE,
    NamedQuery,
    Statement,
    _load_sections,
)
from .errors import DocumentFailure

if TYPE_CHECKING:
    from .db.database import Database

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
GB = 1024**3
EXPRESS_LIMIT = 10 * GB  # SQL Server Express: data per database (log files not counted)
EXPRESS_WARN = 8 * GB
# Target bytes per application when no document of the sample mapped: rows, log row, indexes
# (measured on the credit_card contract's mock documents: about 6 KB on PostgreSQL).
DEFAULT_BYTES_PER_APP = 6000
SHOW = 5  # app_ids / names listed per finding
HEAD_BYTES = 65536  # of each sampled document's stored bytes: its head, where the run reads (the scope element)
EXACT_COUNT_BELOW = 1_000_000  # PostgreSQL: below this estimate COUNT(*) is cheap and exact


@dataclass
class Check:
    """One check's result. ``fix`` says what to change (empty when nothing is to be done)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def load_preflight_queries(dialect: str) -> dict[str, NamedQuery]:
    """preflight_common.sql overridden by name by preflight_<dialect>.sql (base.load_queries' format)."""
    return _load_sections(dialect, "name", "preflight_")


@dataclass
class Preflight:
    """What the checks share: the database, the sample size, the facts found so far."""

    db: Database
    sample: int = 200
    facts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dialect = self.db.dialect.name
        self.contract = self.db.contract
        self.queries = load_preflight_queries(self.dialect)

    def sql(self, name: str) -> Statement:
        """The named preflight query with the contract's identifiers (as Database.sql)."""
        return Statement(self.queries[name].template.format(**self.db.names), name)

    def rows(self, name: str, **params: Any) -> list[tuple]:
        """Run one named query; no transaction stays open."""
        return self.db.autocommit_query(self.sql(name), params)

    def row(self, name: str, **params: Any) -> tuple | None:
        rows = self.rows(name, **params)
        return rows[0] if rows else None

    def target(self, table: str) -> str:
        """A target table as messages show it: schema.table (SQLite: the table)."""
        sch = self.contract.target_schema
        return f"{sch}.{table}" if self.db.dialect.supports_schemas else table

    @property
    def source_name(self) -> str:
        c = self.contract
        sch = c.source_schema or ("dbo" if self.dialect == "mssql" else "")
        return (
            f"{sch}.{c.source_table}"
            if sch and self.db.dialect.supports_schemas
            else c.source_table
        )

    def target_tables(self) -> list[str]:
        c = self.contract
        return [t.name for t in c.tables] + [
            c.log_table,
            c.event_table,
            c.progress_table,
            c.queue_table,
            c.enum_table,
            REQUEST_TABLE,
            COMMAND_TABLE,
            c.log_table + HISTORY_SUFFIX,
        ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _listed(items: list[Any], n: int = SHOW) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _size(n: float) -> str:
    for unit, f in (("GB", GB), ("MB", 1024**2), ("KB", 1024)):
        if abs(n) >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


# -- connection, driver, server --------------------------------------------------------------------


def check_connection(pf: Preflight) -> Check:
    """Connected (else preflight exits 2 before any check); how: encryption, transport."""
    url = pf.db.url
    if pf.dialect == "sqlite":
        return Check("connection", OK, f"SQLite file {os.path.abspath(url.path)}")
    if pf.dialect == "postgresql":
        r = pf.row("pf_connection")
        tls = f"encrypted ({r[1]})" if r and r[0] else "not encrypted (no TLS)"
        return Check("connection", OK, f"connected to {url.display()}, {tls}")
    try:
        r = pf.row("pf_connection")
    except Exception as exc:
        pf.db.rollback()
        return Check(
            "connection",
            OK,
            f"connected to {url.display()}; encryption not readable without VIEW SERVER "
            f"STATE ({_first_line(exc)})",
        )
    if r is None:
        return Check("connection", OK, f"connected to {url.display()}")
    encrypted = str(r[0]).upper() == "TRUE"
    trust = (
        str(url.params.get("trust_server_certificate", "")).lower() in ("yes", "true", "1")
        or "trustservercertificate=yes" in url.odbc.replace(" ", "").lower()
    )
    how = (
        "encrypted"
        + (" (server certificate not verified: trust_server_certificate)" if trust else "")
        if encrypted
        else "not encrypted"
    )
    return Check(
        "connection", OK, f"connected to {url.display()}, {how}, {r[1]}, {r[2]} authentication"
    )


def check_driver(pf: Preflight) -> Check:
    """The driver: sqlite3's library, or pyodbc and the ODBC driver (name, version)."""
    if pf.dialect == "sqlite":
        import sqlite3

        return Check("driver", OK, f"Python sqlite3, SQLite library {sqlite3.sqlite_version}")
    try:
        import pyodbc

        pyodbc_version = pyodbc.version
        info = (getattr(pyodbc, "SQL_DRIVER_NAME", 6), getattr(pyodbc, "SQL_DRIVER_VER", 7))
    except ImportError:
        pyodbc_version, info = "?", (6, 7)
    name, version = (str(pf.db.conn.getinfo(i)) for i in info)
    detail = f"pyodbc {pyodbc_version}, ODBC driver {name} {version} ({pf.db.url.driver})"
    if pf.dialect == "mssql" and "msodbcsql" not in name.lower():
        return Check(
            "driver",
            FAIL,
            detail + ": not Microsoft ODBC Driver 17/18 for SQL Server",
            "install Microsoft ODBC Driver 18 for SQL Server (the legacy 'SQL Server' driver and SNAC "
            "return DATETIME2 as text and fail bulk inserts) and select it with ?driver=",
        )
    try:
        major = int(str(pyodbc_version).split(".")[0])
    except ValueError:
        major = 5
    if major < 5:
        return Check("driver", WARN, detail + ": pyodbc older than 5", "pip install 'pyodbc>=5'")
    return Check("driver", OK, detail)


def check_server(pf: Preflight) -> Check:
    """Server version and edition; SQL Server Express is remembered for the size check."""
    if pf.dialect == "sqlite":
        library = (pf.row("pf_server") or ("?",))[0]
        return Check("server", SKIP, f"SQLite is a file, no server (library {library})")
    r = pf.row("pf_server")
    if r is None:
        return Check("server", FAIL, "the server did not say its version")
    if pf.dialect == "postgresql":
        pf.facts["database"] = r[2]
        ok = int(r[1]) >= 120000
        return Check(
            "server",
            OK if ok else WARN,
            f"PostgreSQL {r[0]}, database {r[2]}",
            "" if ok else "PostgreSQL 12 or later is what the tool is tested on",
        )
    version, edition, engine, dbname = str(r[0]), str(r[1]), int(r[2] or 0), str(r[3])
    pf.facts.update(database=dbname, express=engine == 4, edition=edition)
    detail = f"SQL Server {version} {edition}, database {dbname}"
    if engine == 4:
        detail += " (Express: at most 10 GB of data per database, see check size)"
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if 0 < major < 13:
        return Check(
            "server",
            WARN,
            detail + ": older than SQL Server 2016",
            "SQL Server 2016 (13.x) or later",
        )
    return Check("server", OK, detail)


# -- permissions and locks ------------------------------------------------------------------------


def check_permissions(pf: Preflight) -> Check:
    """What the migration login must be allowed: create the tables, write and delete in them, read the source."""
    if pf.dialect == "sqlite":
        path = os.path.abspath(pf.db.url.path)
        folder = os.path.dirname(path)
        cannot = [
            w
            for w, p in (("write the file " + path, path), ("write its folder " + folder, folder))
            if not os.access(p, os.W_OK)
        ]
        if cannot:
            return Check(
                "permissions",
                FAIL,
                "cannot " + " or ".join(cannot) + " (WAL mode writes -wal/-shm files next to it)",
                "run as a user who may write the database file and its folder",
            )
        return Check("permissions", OK, f"the file and its folder are writable ({path})")
    missing: list[str] = []
    sch = pf.contract.target_schema
    if pf.dialect == "postgresql":
        create_db, schema_exists, create_schema, usage = pf.row(
            "pf_database_permissions", schema=sch
        ) or (0, 0, 0, 0)
        if schema_exists:
            if not usage:
                missing.append(f"USAGE on schema {sch}")
            if not create_schema:
                missing.append(f"CREATE on schema {sch}")
        elif not create_db:
            missing.append(
                f"CREATE on database {pf.facts.get('database', '')} (schema {sch} does not exist)"
            )
        grant = f"GRANT USAGE, CREATE ON SCHEMA {sch} TO <login>; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {sch} TO <login>"
    else:
        create_table, create_schema, schema_exists, alter_schema = pf.row(
            "pf_database_permissions", schema=sch
        ) or (0, 0, 0, 0)
        if not create_table:
            missing.append("CREATE TABLE in the database")
        if schema_exists and not alter_schema:
            missing.append(f"ALTER on schema {sch}")
        if not schema_exists and not create_schema:
            missing.append(f"CREATE SCHEMA in the database (schema {sch} does not exist)")
        grant = f"GRANT CREATE TABLE TO <user>; GRANT ALTER, SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[{sch}] TO <user>"
    lacking: dict[str, list[str]] = {}
    existing = 0
    for table in pf.target_tables():
        r = pf.row("pf_table_permissions", qtable=pf.db.table(table))
        if not r or not r[0]:
            continue
        existing += 1
        for priv, has in zip(("SELECT", "INSERT", "UPDATE", "DELETE"), r[1:]):
            if not has:
                lacking.setdefault(priv, []).append(pf.target(table))
    src = pf.row("pf_table_permissions", qtable=pf.db.names["src"])
    if src and src[0] and not src[1]:
        lacking.setdefault("SELECT", []).insert(0, pf.source_name)
    missing += [f"{priv} on {_listed(tables)}" for priv, tables in lacking.items()]
    if missing:
        return Check("permissions", FAIL, "missing: " + "; ".join(missing), grant)
    return Check(
        "permissions",
        OK,
        f"may create tables in {sch}, read the source and write, update and delete in "
        f"the {existing} existing target table(s)",
    )


def check_lock(pf: Preflight) -> Check:
    """The lock init-db and the work queue take: usable inside a transaction, released at rollback."""
    if pf.dialect == "sqlite":
        return Check(
            "lock", SKIP, "SQLite serialises writers with BEGIN IMMEDIATE (no named locks)"
        )
    db = pf.db
    try:
        rows = db.query(pf.sql("pf_lock"))
    finally:
        db.rollback()  # releases the lock either way
    if pf.dialect == "postgresql":
        ok = bool(rows and rows[0][0])
        return Check(
            "lock",
            OK if ok else WARN,
            "advisory lock taken and released"
            if ok
            else "advisory lock held by another session (another preflight?)",
            "" if ok else "run preflight again",
        )
    if not rows:
        return Check(
            "lock",
            FAIL,
            "sp_getapplock returned nothing",
            "check that the login may EXECUTE sp_getapplock",
        )
    code, trancount = int(rows[0][0]), rows[0][1]
    if code >= 0:
        return Check(
            "lock",
            OK,
            f"sp_getapplock granted inside a transaction (return {code}), released at rollback",
        )
    why = {
        -1: "timed out (another session holds xml_extractor:preflight)",
        -2: "cancelled",
        -3: "chosen as deadlock victim",
        -999: f"refused: parameter or call error, e.g. not inside a transaction (@@TRANCOUNT {trancount})",
    }
    return Check(
        "lock",
        FAIL,
        f"sp_getapplock returned {code}: {why.get(code, 'not granted')}",
        "the tool's init-db and queue locks need sp_getapplock inside a transaction: check that the login may "
        "EXECUTE sp_getapplock and that no server option turns transactions off",
    )


# -- collation, isolation -------------------------------------------------------------------------


def check_collation(pf: Preflight) -> Check:
    """How the database compares and stores text: case-insensitive keys collide; non-UTF-8 storage."""
    if pf.dialect == "sqlite":
        file_enc = pf.row("pf_encoding")
        return Check(
            "collation", OK, f"BINARY (case-sensitive), {file_enc[0] if file_enc else 'UTF-8'} text"
        )
    if pf.dialect == "postgresql":
        pg = pf.row("pf_collation") or ("?", "?", "?")
        nd = pf.rows(
            "pf_nondeterministic", schema=pf.contract.target_schema, qsource=pf.db.names["src"]
        )
        detail = f"server encoding {pg[0]}, collation {pg[1]}, ctype {pg[2]}, deterministic (case-sensitive) comparisons"
        if nd:
            cols = [f"{a}.{b}.{c} ({d})" for a, b, c, d in nd]
            return Check(
                "collation",
                FAIL,
                f"non-deterministic collation on {_listed(cols)}: keys that differ only by "
                "case or accents compare equal there",
                "recreate those columns with the default (deterministic) collation",
            )
        if str(pg[0]).upper() == "SQL_ASCII":
            return Check(
                "collation",
                WARN,
                f"server encoding SQL_ASCII: the server checks no bytes it stores; {detail}",
                "a document that is not UTF-8 fails at parse (InvalidUTF8, see check sample_encoding); a UTF8 "
                "database refuses such bytes when they are written",
            )
        return Check("collation", OK, detail)
    ms = pf.row("pf_collation")
    name, codepage = (str(ms[0]), int(ms[1] or 0)) if ms else ("?", 0)
    pf.facts["collation"] = name
    utf8 = codepage == 65001 or name.upper().endswith("_UTF8")
    enc = "UTF-8" if utf8 else f"code page {codepage}"
    if "_CI_" not in name.upper() + "_":
        return Check("collation", OK, f"{name}: case-sensitive, {enc}")
    detail = (
        f"{name}: case-insensitive, {enc}. Keys that differ only by case (score identifiers, codes) would be one "
        "key under it: init-db declares the tool's string key columns with a binary collation"
    )
    keys = pf.rows("pf_ci_keys", schema=pf.contract.target_schema)
    if keys:
        cols = [f"{pf.target(str(t))}.{c} ({k})" for t, c, k in keys]
        return Check(
            "collation",
            WARN,
            f"{detail}, but these existing key columns are case-insensitive: {_listed(cols)}",
            "nothing if those keys never differ only by case; otherwise recreate the tables with init-db "
            "(ALTER COLUMN ... COLLATE Latin1_General_100_BIN2 needs their indexes dropped first)",
        )
    return Check("collation", OK, detail + " (no existing key column is case-insensitive)")


def check_rcsi(pf: Preflight) -> Check:
    """SQL Server: with READ_COMMITTED_SNAPSHOT off, status/reconcile/ops reads wait behind the writers."""
    if pf.dialect != "mssql":
        return Check(
            "read_committed_snapshot", SKIP, f"{pf.dialect}: readers never wait for writers"
        )
    r = pf.row("pf_rcsi")
    if r is None:
        return Check("read_committed_snapshot", FAIL, "sys.databases has no row for this database")
    if r[0]:
        return Check("read_committed_snapshot", OK, f"on (snapshot isolation {r[1]})")
    db = pf.facts.get("database") or pf.db.url.database
    return Check(
        "read_committed_snapshot",
        WARN,
        "off: status, failures and reconcile queue behind 12 writers' locks",
        f"ALTER DATABASE [{db}] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE (a quiet moment: "
        "it ends other sessions' transactions)",
    )


# -- the source table -----------------------------------------------------------------------------

_OK_TYPES = {
    "mssql": ("varchar", "nvarchar", "varbinary"),
    "postgresql": ("text", "character varying"),
    "sqlite": ("text", "", "clob", "varchar", "blob"),
}


def check_source_table(pf: Preflight) -> Check:
    """The source table exists as the contract names it, its row count, the xml column's type."""
    c, d = pf.contract, pf.dialect
    cols = pf.rows(
        "pf_source_columns",
        **({"table": c.source_table} if d == "sqlite" else {"qsource": pf.db.names["src"]}),
    )
    if not cols:
        like = pf.rows("pf_source_like", table=c.source_table)
        if like:
            names = [f"{s}.{t}" if s else str(t) for s, t in like]
            return Check(
                "source_table",
                FAIL,
                f"no table {pf.source_name}; found {_listed(names)}, which differs by case "
                "(names are case-sensitive here)",
                f'name it as the database does: "table": "{like[0][1]}" in the contract\'s source section',
            )
        return Check(
            "source_table",
            FAIL,
            f"no table {pf.source_name}",
            "load the documents first, or set the contract's source schema/table",
        )
    by_name = {str(r[0]): r for r in cols}
    problems, fix = [], ""
    for role, col in (("id", c.source_id_column), ("xml", c.source_xml_column)):
        if col not in by_name:
            near = [n for n in by_name if n.lower() == col.lower()]
            problems.append(
                f"no {role} column {col}"
                + (f" (there is {near[0]}: names are case-sensitive here)" if near else "")
            )
    if problems:
        return Check(
            "source_table",
            FAIL,
            f"{pf.source_name}: " + "; ".join(problems),
            "name the columns as the database does in the contract's source section",
        )
    xr = by_name[c.source_xml_column]
    type_name = str(xr[1] or "").lower()
    pf.facts["xml_type"] = type_name
    shown = type_name + ("(max)" if d == "mssql" and len(xr) > 2 and xr[2] == -1 else "")
    if d == "mssql" and type_name in ("text", "ntext", "xml"):
        to = "NVARCHAR(MAX)" if type_name in ("ntext", "xml") else "VARCHAR(MAX)"
        q = pf.db.names["src"]
        fix = f"ALTER TABLE {q} ALTER COLUMN {pf.db.names['src_xml']} {to} (a DBA, once, before the migration)"
        return Check(
            "source_table",
            FAIL,
            f"{pf.source_name}.{c.source_xml_column} is {type_name}: a legacy type the "
            "fetch cannot cut (LEFT/CHARINDEX) or read as the document's bytes",
            fix,
        )
    base = type_name.split("(")[0].strip()
    if base not in _OK_TYPES[d]:
        return Check(
            "source_table",
            FAIL,
            f"{pf.source_name}.{c.source_xml_column} is {type_name}: not a text column "
            "the tool reads",
            f"store the documents in a {_OK_TYPES[d][0]} column",
        )
    rows, how = _source_rows(pf)
    pf.facts["source_rows"] = rows
    collation = f", collation {xr[3]}" if d == "mssql" and len(xr) > 3 and xr[3] else ""
    detail = f"{pf.source_name}: {rows:,} rows{how}, {c.source_xml_column} {shown}{collation}"
    if rows == 0:
        return Check(
            "source_table",
            WARN,
            detail + ": nothing to migrate",
            "load the documents first (load-xml)",
        )
    return Check("source_table", OK, detail)


def _source_rows(pf: Preflight) -> tuple[int, str]:
    """The row count: SQL Server's partition metadata, PostgreSQL's estimate once analyzed, else COUNT(*)."""
    if pf.dialect == "mssql":
        r = pf.row("pf_source_rows", qsource=pf.db.names["src"])
        return int(r[0] or 0) if r else 0, " (partition metadata)"
    if pf.dialect == "postgresql":
        r = pf.row("pf_source_rows", qsource=pf.db.names["src"])
        if r and r[0] is not None and float(r[0]) >= EXACT_COUNT_BELOW:
            return int(float(r[0])), " (planner estimate)"
    r = pf.row("pf_source_count")
    return int(r[0]) if r else 0, ""


# -- the sample -----------------------------------------------------------------------------------


@dataclass
class SampleDoc:
    app_id: int
    raw: bytes | None  # the stored bytes (None: NULL)
    boms: int = 0
    encoding: str = ""  # ascii, utf-8, cp1252, mixed, undecodable, utf-16, null
    fetch_problem: str = ""  # the run's fetch returns something else than the stored document
    stage: str | None = None  # the run's outcome: None = maps
    error_class: str | None = None
    reason: str | None = None
    target_bytes: int = 0


def _classify(raw: bytes, utf16: bool) -> tuple[int, str]:
    """(leading byte-order marks, encoding) of stored bytes, as parsing.decode_source reads them."""
    from .parsing import _UTF8_SEQUENCE

    if utf16:
        text = raw.decode("utf-16-le", errors="replace")
        return len(text) - len(text.lstrip("\ufeff")), "utf-16"
    boms = 0
    while raw.startswith(b"\xef\xbb\xbf", boms * 3):
        boms += 1
    body = raw[boms * 3 :]
    try:
        body.decode("utf-8")
        return boms, "ascii" if body.isascii() else "utf-8"
    except UnicodeDecodeError:
        if _UTF8_SEQUENCE.search(body):
            return boms, "mixed"
        try:
            body.decode("cp1252")
            return boms, "cp1252"
        except UnicodeDecodeError:
            return boms, "undecodable"


def _whole_characters(raw: bytes, utf16: bool) -> bytes:
    """A head cut at HEAD_BYTES without the start of a character the cut split."""
    if len(raw) < HEAD_BYTES:
        return raw
    if utf16:
        return raw[: len(raw) - len(raw) % 2]
    for k in range(1, 4):  # a UTF-8 lead byte within the last 3 bytes whose sequence was cut
        b = raw[-k]
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return raw[:-k] if need > k else raw
        if b < 0x80:
            return raw
    return raw


def _expected_text(raw: bytes, utf16: bool) -> str | None:
    """The document the stored bytes hold (byte-order marks dropped), None when no reading is right."""
    from .parsing import decode_source

    if utf16:
        return raw.decode("utf-16-le", errors="replace").lstrip("\ufeff")
    try:
        return decode_source(raw)
    except DocumentFailure:
        return None


def _row_bytes(row: tuple, wide: bool) -> int:
    """A stored row's size, roughly: values plus the engine's per-row overhead."""
    n = 24
    for v in row:
        if v is None:
            continue
        if isinstance(v, str):
            n += 2 + len(v) * (2 if wide else 1)
        elif isinstance(v, (bool, int)):
            n += 4 if isinstance(v, bool) or abs(v) < 2**31 else 8
        elif isinstance(v, Decimal):
            n += 9
        else:
            n += 8
    return n


def collect_sample(pf: Preflight) -> list[SampleDoc]:
    """The sample once for both sample checks: ids spread over the id range (profile.sample_ids),
    the stored bytes, then the run's own path: Database.fetch_documents (heads, then the whole
    document when the head does not settle it) and map_outcome, as a worker does."""
    if "sample" in pf.facts:
        return pf.facts["sample"]  # type: ignore[no-any-return]
    from .contract.compiler import compile_contract
    from .parsing import NeedFullDocument, UndecodableText, decode_source
    from .processing.worker import map_outcome
    from .profile import sample_ids

    db = pf.db
    ids = sample_ids(db, pf.sample)
    utf16 = pf.facts.get("xml_type") == "nvarchar"
    wide = pf.dialect == "mssql"
    docs: dict[int, SampleDoc] = {}
    for i in range(0, len(ids), 100):
        for app_id, raw in pf.rows("pf_sample_bytes", ids=ids[i : i + 100], head=HEAD_BYTES):
            raw = _whole_characters(bytes(raw), utf16) if raw is not None else None
            doc = docs[int(app_id)] = SampleDoc(int(app_id), raw)
            doc.boms, doc.encoding = _classify(raw, utf16) if raw is not None else (0, "null")
    plan = compile_contract(
        pf.contract, pf.dialect
    )  # string lengths in the target's unit, as the worker compiles it
    marker = f"</{plan.document.scope_steps[-1]}>"
    min_length = pf.contract.source_min_length
    for i in range(0, len(ids), 100):
        for app_id, text, tail in db.fetch_documents(ids[i : i + 100], marker):
            doc = docs.setdefault(int(app_id), SampleDoc(int(app_id), None))
            try:
                oc = map_outcome(plan, doc.app_id, text, 1, min_length, tail)
            except NeedFullDocument:
                whole = db.fetch_documents([doc.app_id])
                text = whole[0][1] if whole else None
                oc = map_outcome(plan, doc.app_id, text, 1, min_length)
            doc.stage, doc.error_class, doc.reason = oc.stage, oc.error_class, oc.reason
            if oc.mapped is not None:
                doc.target_bytes = sum(
                    _row_bytes(r, wide) for rows in oc.mapped.rows.values() for r in rows
                )
                doc.target_bytes += 200 * len(
                    oc.mapped.events
                )  # an event row: names, values, reason
            if isinstance(text, UndecodableText):
                doc.fetch_problem = text.reason()
            elif doc.raw is not None and text is not None:
                expected = _expected_text(doc.raw, utf16)
                try:
                    got = decode_source(text)
                except (
                    DocumentFailure
                ) as f:  # NULL or empty is the document's problem (sample_mapping), not the fetch's
                    doc.fetch_problem = f.reason if f.error_class == "InvalidUTF8" else ""
                    continue
                if (
                    expected is not None
                    and not expected.startswith(got[: len(expected)])
                    or expected is None
                    and doc.stage is None
                ):
                    at = next((k for k, (a, b) in enumerate(zip(expected or "", got)) if a != b), 0)
                    doc.fetch_problem = (
                        f"the fetch returns {got[at : at + 12]!r} where the stored bytes hold "
                        f"{(expected or '')[at : at + 12]!r} (character {at})"
                    )
    out = [docs[k] for k in sorted(docs)]
    pf.facts["sample"] = out
    return out


def _sample_precondition(pf: Preflight, name: str) -> Check | None:
    """The sample needs a source table the run can read (check source_table found one)."""
    if "source_rows" not in pf.facts:
        return Check(name, SKIP, "no usable source table (see check source_table)")
    return None


def check_sample_encoding(pf: Preflight) -> Check:
    """The sample's bytes: byte-order marks, encodings; and whether the run's fetch returns the
    document the bytes hold (a driver decoding through a code page, bytes that are not UTF-8)."""
    pre = _sample_precondition(pf, "sample_encoding")
    if pre:
        return pre
    docs = collect_sample(pf)
    if not docs:
        return Check(
            "sample_encoding",
            WARN,
            "the source table has no rows to sample",
            "load the documents first",
        )
    counts: dict[str, int] = {}
    for d in docs:
        counts[d.encoding] = counts.get(d.encoding, 0) + 1
    boms = sum(1 for d in docs if d.boms)
    summary = f"{len(docs)} documents sampled: " + ", ".join(
        f"{n} {e}" for e, n in sorted(counts.items(), key=lambda x: -x[1])
    )
    summary += (
        f"; {boms} start with a byte-order mark" if boms else "; none starts with a byte-order mark"
    )
    bad = [d for d in docs if d.fetch_problem]
    if bad:
        first = bad[0]
        return Check(
            "sample_encoding",
            FAIL,
            f"{summary}. {len(bad)} not read as stored by the run's fetch: app_id {_listed([d.app_id for d in bad])} "
            f"(app_id {first.app_id}: {first.fetch_problem})",
            "store these documents as UTF-8 (or in a varbinary/BLOB column, read as UTF-8 with a cp1252 fallback); "
            "they fail at stage parse (InvalidUTF8) otherwise",
        )
    return Check("sample_encoding", OK, summary + "; the run's fetch reads each as stored")


def check_sample_mapping(pf: Preflight) -> Check:
    """What the run would make of the sample: documents that would not parse, validate or map."""
    pre = _sample_precondition(pf, "sample_mapping")
    if pre:
        return pre
    docs = collect_sample(pf)
    if not docs:
        return Check("sample_mapping", SKIP, "no sample (the source table is empty)")
    failed = [d for d in docs if d.stage is not None]
    mapped = [d for d in docs if d.stage is None]
    if mapped:
        pf.facts["bytes_per_app"] = sum(d.target_bytes for d in mapped) / len(mapped)
    if not failed:
        return Check("sample_mapping", OK, f"all {len(docs)} sampled documents parse and map")
    by_class: dict[str, list[SampleDoc]] = {}
    for d in failed:
        by_class.setdefault(f"{d.stage}/{d.error_class}", []).append(d)
    parts = [
        f"{k}: {len(v)} (app_id {_listed([d.app_id for d in v], 3)}; {(v[0].reason or '')[:160]})"
        for k, v in sorted(by_class.items(), key=lambda x: -len(x[1]))
    ]
    return Check(
        "sample_mapping",
        WARN,
        f"{len(failed)} of {len(docs)} sampled documents would fail: " + "; ".join(parts),
        "the run records them as failed and goes on; `xml-extractor map` on one shows why; "
        "`profile` shows which values the contract would lose",
    )


# -- size -----------------------------------------------------------------------------------------


def check_size(pf: Preflight) -> Check:
    """The target's size estimated from the source's rows against the edition's limit and free space."""
    rows = pf.facts.get("source_rows")
    if rows is None:
        return Check("size", SKIP, "no source row count (see check source_table)")
    per_app = pf.facts.get("bytes_per_app")
    per_app_est = (
        (per_app * 1.8 + 600) if per_app else DEFAULT_BYTES_PER_APP
    )  # + indexes, log row and its indexes
    how = (
        "measured on the sample" if per_app else "a documented constant: no sampled document mapped"
    )
    estimate = rows * per_app_est
    detail = f"target estimate {_size(estimate)} for {rows:,} applications ({_size(per_app_est)} each, {how})"
    if pf.dialect == "sqlite":
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(pf.db.url.path))).free
        detail += f"; {_size(free)} free on the file's disk"
        if estimate > free:
            return Check(
                "size", FAIL, detail, "free disk space or put the database file on a larger disk"
            )
        return Check("size", OK, detail)
    if pf.dialect == "postgresql":
        r = pf.row("pf_space")
        detail += f"; the database uses {_size(int(r[0]))} now" if r else ""
        return Check("size", OK, detail + " (free disk space is the server's: check it there)")
    files = pf.rows("pf_space")
    used = sum(int(f[3] or 0) for f in files) * 8192
    limits = [int(f[2]) for f in files]
    cap = None if any(m == -1 for m in limits) or not limits else sum(limits) * 8192
    detail += f"; data files use {_size(used)}"
    total = used + estimate
    if pf.facts.get("express"):
        detail += f" of Express's 10 GB: {_size(total)} after the migration"
        if total > EXPRESS_LIMIT:
            return Check(
                "size",
                FAIL,
                detail,
                "the data will not fit Express (1105: filegroup full mid-run): a Standard "
                "edition, or migrate in parts to separate databases",
            )
        if total > EXPRESS_WARN:
            return Check(
                "size",
                WARN,
                detail + " (over 8 GB)",
                "close to Express's 10 GB per database: keep the source in "
                "another database, or plan for a Standard edition",
            )
    if cap is not None and total > cap:
        return Check(
            "size",
            FAIL,
            detail + f"; the files may grow to {_size(cap)} (max_size)",
            "ALTER DATABASE ... MODIFY FILE (NAME = ..., MAXSIZE = UNLIMITED) or a larger MAXSIZE",
        )
    try:
        r = pf.row("pf_volume")
    except Exception:
        pf.db.rollback()
        r = None
    if r and r[0] is not None:
        free = int(r[0])
        detail += f"; {_size(free)} free on the data volume"
        if estimate > free:
            return Check("size", FAIL, detail, "free space on the data files' volume")
    return Check("size", OK, detail)


# -- schema ---------------------------------------------------------------------------------------


def check_schema(pf: Preflight) -> Check:
    """What init-db would do: nothing, create tables, alter them, or refuse."""
    from .db.migrate import plan

    p = plan(pf.db)
    if p.refusals:
        return Check(
            "schema",
            FAIL,
            f"{len(p.refusals)} difference(s) init-db cannot apply: "
            + "; ".join(c.describe() for c in p.refusals[:SHOW]),
            "see `xml-extractor init-db --dry-run`; change the contract or migrate the tables yourself",
        )
    new = [c for c in p.additions if c.what == "new table"]
    other = [c for c in p.additions if c.what != "new table"]
    if not p.additions:
        return Check("schema", OK, "up to date with the contract")
    detail = ", ".join(
        s
        for s in (
            f"{len(new)} table(s) to create" if new else "",
            f"{len(other)} change(s) to existing tables: "
            + "; ".join(c.describe() for c in other[:SHOW])
            if other
            else "",
        )
        if s
    )
    if other:
        return Check(
            "schema",
            WARN,
            detail,
            "run `xml-extractor init-db --dry-run` and review it (a DBA may run the "
            "script), then init-db",
        )
    return Check("schema", OK, detail + " (run `xml-extractor init-db`)")


CHECKS: list[tuple[str, Callable[[Preflight], Check]]] = [
    ("connection", check_connection),
    ("driver", check_driver),
    ("server", check_server),
    ("permissions", check_permissions),
    ("lock", check_lock),
    ("collation", check_collation),
    ("read_committed_snapshot", check_rcsi),
    ("source_table", check_source_table),
    ("sample_encoding", check_sample_encoding),
    ("sample_mapping", check_sample_mapping),
    ("size", check_size),
    ("schema", check_schema),
]


def run_checks(pf: Preflight, only: list[str] | None = None) -> list[Check]:
    """Every check in order, each isolated: an exception fails that check (with its first line),
    the transaction is rolled back and the next check runs."""
    out = []
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            result = fn(pf)
        except Exception as exc:
            pf.db.rollback()
            err = pf.db.dialect.wrap(exc)
            result = Check(
                name,
                FAIL,
                f"the check could not run: {_first_line(err)}",
                "see the error; the other checks ran",
            )
        pf.facts.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 3)
        out.append(result)
    return out


def exit_code(checks: list[Check]) -> int:
    """0 when every check is ok or skipped, 1 when any warns or fails."""
    return 1 if any(c.status in (WARN, FAIL) for c in checks) else 0
