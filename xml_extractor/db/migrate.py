"""Schema evolution: compare the database with the contract and plan what makes them match.

Migrations of millions of applications meet a contract change half-way. What can be done without
losing anything is planned as SQL: a new table (its CREATE TABLE), a new nullable column
(``ALTER TABLE ... ADD``), a wider string/number on PostgreSQL and SQL Server (SQLite does not
enforce declared lengths: nothing to do). What could lose or invent data is refused with the exact
difference and what to do: a narrower type, length or precision; a column the database has and
the contract dropped; a different primary key; a NULL-able column the contract makes NOT NULL; a
new NOT NULL column (existing rows have no value for it); a change of type family.

``init-db`` applies the plan (``--dry-run`` prints it: T-SQL batches with ``GO`` for SQL Server,
for a DBA to run); ``run`` and ``reprocess`` call :func:`require_current` at start and refuse a
database that does not match, printing the plan. Introspection per dialect: SQLite
``pragma_table_info``, ``information_schema`` on PostgreSQL and SQL Server (named queries
``schema_columns`` / ``schema_primary_key``).

SQL Server cannot ``ALTER COLUMN`` a column in a primary or foreign key, nor one in an index
unless it stays (n)varchar and grows within a non-primary-key index (ALTER TABLE, "The modified
column can't be"; msgs 5074/4922). Such a widening is refused (exit 2), with the DBA script that
drops the dependent foreign keys and indexes, alters and recreates them in one transaction: on a
table of millions of rows that rebuild takes hours and log space the size of the table, a
maintenance window the DBA chooses, never a side effect of ``init-db`` or a ``run`` start. The
catalogue facts (``sys.indexes``/``sys.index_columns``, ``sys.foreign_keys``) are read by the
mssql-only named queries ``schema_index_columns`` / ``schema_foreign_keys``; what they decide is a
pure function of them (:func:`mssql_alter_blockers`, :func:`mssql_dba_script`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SchemaMissing, TransientDatabaseError
from .base import COMMAND_TABLE, HISTORY_SUFFIX, REQUEST_TABLE, key_columns
from .database import Database
from .store import init_db

if TYPE_CHECKING:
    from ..contract.model import ColumnDef, TableDef


class SchemaRefused(ConfigError):
    """The contract differs from the database in a way that could lose data (exit 2)."""


class SchemaApplyFailed(ConfigError):
    """The database refused a statement of the plan (exit 2, naming the statement)."""


@dataclass(frozen=True)
class ColType:
    """A column type reduced to what decides whether a value fits: family and size."""

    family: str  # char, text, int, decimal, float, date, timestamp, other
    size: int = 0  # char: length; int: bytes; decimal: precision
    scale: int = 0  # decimal only

    def __str__(self) -> str:
        if self.family == "char":
            return f"string({self.size})"
        if self.family == "int":
            return {1: "tinyint", 2: "smallint", 4: "int", 8: "bigint"}.get(
                self.size, f"int{self.size * 8}"
            )
        if self.family == "decimal":
            return f"decimal({self.size},{self.scale})"
        return self.family


_TYPE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*(?:\(\s*(\w+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
_INT_BYTES = {"tinyint": 1, "smallint": 2, "int": 4, "integer": 4, "bigint": 8, "bit": 1}


def parse_type(name: str, length: Any = None, precision: Any = None, scale: Any = None) -> ColType:
    """A declared type (``VARCHAR(50)``, ``character varying`` + length, ``DECIMAL(12,2)``, ...)."""
    m = _TYPE.match(name or "")
    base = (m.group(1) if m else (name or "")).strip().lower()
    a = m.group(2) if m else None
    b = m.group(3) if m else None
    if base in ("varchar", "nvarchar", "character varying", "char", "nchar", "character"):
        n = a if a is not None else length
        if n is None or str(n).lower() == "max" or int(n) < 0:
            return ColType("text")
        return ColType("char", int(n))
    if base in ("text", "ntext", "clob"):
        return ColType("text")
    if base in _INT_BYTES:
        return ColType("int", _INT_BYTES[base])
    if base in ("decimal", "numeric"):
        p = a if a is not None else precision
        s = b if b is not None else scale
        return ColType("decimal", int(p or 0), int(s or 0))
    if base in ("real", "double precision", "float", "double"):
        return ColType("float")
    if base == "date":
        return ColType("date")
    if base.startswith("timestamp") or base.startswith("datetime"):
        return ColType("timestamp")
    return ColType("other", 0)


@dataclass
class DbColumn:
    name: str
    type: ColType
    nullable: bool


@dataclass
class Change:
    """One difference: ``sql`` when it can be applied, ``why``/``todo`` when it is refused."""

    table: str
    column: str | None
    what: str
    sql: list[str] = field(default_factory=list)
    refused: bool = False
    todo: str = ""
    dba: DbaWiden | None = None  # a widening SQL Server cannot ALTER in place: in the DBA script
    enum_move: EnumMove | None = (
        None  # an enum code whose id changes (applied by apply_enum_changes)
    )

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.what}" + (f" -- {self.todo}" if self.todo else "")


@dataclass(frozen=True)
class EnumMove:
    """An enum code the database holds under another id than the contract declares."""

    enum: str
    code: str  # as the database holds it
    old_id: int
    new_id: int
    description: str


@dataclass
class MigrationPlan:
    dialect: str
    changes: list[Change] = field(default_factory=list)
    dba_script: str = ""  # one T-SQL batch (one transaction) for the refused widenings, or ""
    enum_sql: list[str] = field(
        default_factory=list
    )  # the enum id rewrite, printed (literal values)

    @property
    def enum_moves(self) -> list[EnumMove]:
        return [c.enum_move for c in self.changes if c.enum_move is not None]

    @property
    def additions(self) -> list[Change]:
        return [c for c in self.changes if not c.refused]

    @property
    def refusals(self) -> list[Change]:
        return [c for c in self.changes if c.refused]

    @property
    def statements(self) -> list[str]:
        return [s for c in self.additions if c.enum_move is None for s in c.sql]

    def render(self) -> str:
        """The plan as a script: what is refused (as comments), then the statements."""
        sep = "\nGO\n" if self.dialect == "mssql" else ";\n"
        out = [
            f"-- xml-extractor schema plan ({self.dialect}): {len(self.additions)} change(s) to apply, "
            f"{len(self.refusals)} refused"
        ]
        for c in self.refusals:
            out.append(f"-- REFUSED {c.describe()}")
        for c in self.additions:
            out.append(f"-- {c.describe()}")
        text = "\n".join(out) + "\n"
        if self.enum_sql:
            text += (
                "-- enum ids: app_enums and every stored id rewritten in one transaction, before the rest\n"
                if any(not c.refused for c in self.changes if c.enum_move)
                else "-- what `init-db --allow-enum-change` would run (one transaction):\n"
            )
            text += "".join(
                f"{'' if any(not c.refused for c in self.changes if c.enum_move) else '-- '}{s}{sep}"
                for s in self.enum_sql
            )
        if self.statements:
            text += sep.join(self.statements) + sep.rstrip("\n") + "\n"
        if self.dba_script:
            text += DBA_SCRIPT_HEAD + self.dba_script + sep.rstrip("\n") + "\n"
        return text


DBA_SCRIPT_HEAD = """-- DBA script for the widenings SQL Server cannot ALTER in place (one transaction: all or nothing).
-- Stop every xml-extractor instance first (run, reprocess, launch): it holds schema locks on these tables.
-- Dropping and recreating a clustered primary key rebuilds the table and its indexes: on millions of rows
-- this takes hours and transaction log space of about the table's size; on Enterprise edition add
-- WITH (ONLINE = ON) to the index statements. Indexes are recreated with default options (fill factor,
-- compression, filegroup): adjust them to yours. Then run xml-extractor init-db for the rest of the plan.
"""


def _params(stmt: Any, known: dict[str, Any]) -> dict[str, Any]:
    return {k: known[k] for k in stmt.params}


def table_columns(db: Database, table: str) -> dict[str, DbColumn] | None:
    """The columns of a target-schema table by lower-case name, or None if there is no such table."""
    stmt = db.sql("schema_columns")
    rows = db.autocommit_query(
        stmt, _params(stmt, {"schema": db.contract.target_schema, "table": table})
    )
    if not rows:
        return None
    return {
        str(r[0]).lower(): DbColumn(
            str(r[0]), parse_type(str(r[1]), r[2], r[3], r[4]), str(r[5]).upper() != "NO"
        )
        for r in rows
    }


def table_primary_key(db: Database, table: str) -> list[str]:
    stmt = db.sql("schema_primary_key")
    rows = db.autocommit_query(
        stmt, _params(stmt, {"schema": db.contract.target_schema, "table": table})
    )
    return [str(r[0]).lower() for r in rows]


def require_exists(url: Any) -> None:
    """A SQLite file must exist for every command that does not create one (exit 2 otherwise):
    connecting would silently create an empty database at a mistyped path."""
    import os

    from .url import parse_url

    if isinstance(url, str) or url is None:
        url = parse_url(url)
    if url.dialect == "sqlite" and url.path != ":memory:" and not os.path.exists(url.path):
        raise ConfigError(
            f"no database at {url.path} (create it with: xml-extractor init-db --db {url.display()})"
        )


def has_index(db: Database, table: str, index: str) -> bool:
    """Whether the (unique, where the engine tells) index exists on a target-schema table."""
    stmt = db.sql("schema_has_index")
    known = {
        "schema": db.contract.target_schema,
        "table": table,
        "index": index,
        "qtable": db.dialect.qualified(db.contract.target_schema, table),
    }
    try:
        return int(db.autocommit_query(stmt, _params(stmt, known))[0][0]) > 0
    except Exception:
        db.rollback()
        return False


def _expected(db: Database, col: ColumnDef) -> ColType:
    return parse_type(db.dialect.column_type(col))


def _column_sql(db: Database, t: TableDef, col: ColumnDef) -> str:
    """The column's declared type (with the key collation of a string key column)."""
    return db.dialect.column_sql(col, col.name.lower() in key_columns(t))


def _add_column_sql(db: Database, t: TableDef, col: ColumnDef) -> str:
    d, qt = db.dialect, db.table(t.name)
    if d.name == "mssql":
        return f"ALTER TABLE {qt} ADD {d.quote(col.name)} {_column_sql(db, t, col)} NULL"
    if d.name == "postgresql":
        return f"ALTER TABLE {qt} ADD COLUMN IF NOT EXISTS {d.quote(col.name)} {d.column_type(col)}"
    return f"ALTER TABLE {qt} ADD COLUMN {d.quote(col.name)} {d.column_type(col)}"


def _widen_sql(db: Database, t: TableDef, col: ColumnDef) -> list[str]:
    d, qt = db.dialect, db.table(t.name)
    if d.name == "mssql":  # COLLATE repeated: ALTER COLUMN without it resets the database's default
        return [
            f"ALTER TABLE {qt} ALTER COLUMN {d.quote(col.name)} {_column_sql(db, t, col)}"
            f"{' NULL' if col.nullable else ' NOT NULL'}"
        ]
    if d.name == "postgresql":
        return [f"ALTER TABLE {qt} ALTER COLUMN {d.quote(col.name)} TYPE {d.column_type(col)}"]
    return []  # SQLite stores any length in any declared type


def _compare_type(have: ColType, want: ColType) -> str:
    """'' (same), 'wider' (the contract's type holds everything the database's does) or the reason
    the contract's type is narrower or different."""
    if have == want:
        return ""
    if have.family != want.family:
        if {have.family, want.family} == {"char", "text"} and want.family == "text":
            return "wider"
        return f"type {have} in the database, {want} in the contract (a different kind of value)"
    if have.family == "char" and want.size < have.size:
        return f"length {have.size} in the database, {want.size} in the contract: longer values would be cut"
    if have.family == "int" and want.size < have.size:
        return f"{have} in the database, {want} in the contract: large values would not fit"
    if have.family == "decimal":
        if want.scale < have.scale:
            return f"{have} in the database, {want} in the contract: digits after the point would be lost"
        if want.size - want.scale < have.size - have.scale:
            return f"{have} in the database, {want} in the contract: large values would not fit"
    return "wider"


# -- SQL Server: what ALTER COLUMN cannot change in place ----------------------------------------


@dataclass(frozen=True)
class IndexFact:
    """One index of a table as sys.indexes/sys.index_columns describe it (PK and UNIQUE constraints
    are indexes there too)."""

    table: str  # the qualified, quoted table name
    name: str
    primary_key: bool = False
    unique: bool = False
    constraint: bool = False  # a UNIQUE constraint (dropped/added with ALTER TABLE, like the PK)
    clustered: bool = False
    keys: tuple[tuple[str, bool], ...] = ()  # (column, descending) in key order
    included: tuple[str, ...] = ()
    filter: str | None = None

    def columns(self) -> set[str]:
        return {k.lower() for k, _ in self.keys} | {c.lower() for c in self.included}


@dataclass(frozen=True)
class ForeignKeyFact:
    """One foreign key touching a table (from it, or referencing it): sys.foreign_keys."""

    name: str
    table: str  # the referencing table, qualified and quoted
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO_ACTION"
    on_update: str = "NO_ACTION"


@dataclass
class TableFacts:
    indexes: list[IndexFact] = field(default_factory=list)
    foreign_keys: list[ForeignKeyFact] = field(default_factory=list)


@dataclass(frozen=True)
class DbaWiden:
    """A widening for the DBA script: ALTER TABLE table ALTER COLUMN column sql_type [NOT] NULL."""

    table: str
    column: str
    sql_type: str
    nullable: bool


def _bracket(name: str) -> str:
    """A catalogue name (any characters) as a T-SQL identifier."""
    return "[" + name.replace("]", "]]") + "]"


def mssql_table_facts(db: Database, qtable: str) -> TableFacts:
    """The indexes of a table and the foreign keys from or to it, read from SQL Server's catalogue."""
    out = TableFacts()
    stmt = db.sql("schema_index_columns")
    rows = db.autocommit_query(stmt, _params(stmt, {"qtable": qtable}))
    by_name: dict[str, dict[str, Any]] = {}
    for name, is_pk, is_unique, is_uc, type_desc, is_included, is_desc, col, filt in rows:
        ix = by_name.setdefault(
            str(name),
            {
                "primary_key": bool(is_pk),
                "unique": bool(is_unique),
                "constraint": bool(is_uc),
                "clustered": str(type_desc).upper() == "CLUSTERED",
                "keys": [],
                "included": [],
                "filter": filt or None,
            },
        )
        if is_included:
            ix["included"].append(str(col))
        else:
            ix["keys"].append((str(col), bool(is_desc)))
    out.indexes = [
        IndexFact(
            qtable,
            n,
            v["primary_key"],
            v["unique"],
            v["constraint"],
            v["clustered"],
            tuple(v["keys"]),
            tuple(v["included"]),
            v["filter"],
        )
        for n, v in by_name.items()
    ]
    stmt = db.sql("schema_foreign_keys")
    fks: dict[tuple[str, str], dict[str, Any]] = {}
    for name, sch, tab, col, rsch, rtab, rcol, on_del, on_upd in db.autocommit_query(
        stmt, _params(stmt, {"qtable": qtable})
    ):
        t, rt = (
            f"{_bracket(str(sch))}.{_bracket(str(tab))}",
            f"{_bracket(str(rsch))}.{_bracket(str(rtab))}",
        )
        fk = fks.setdefault(
            (t, str(name)),
            {"ref": rt, "cols": [], "rcols": [], "del": str(on_del), "upd": str(on_upd)},
        )
        fk["cols"].append(str(col))
        fk["rcols"].append(str(rcol))
    out.foreign_keys = [
        ForeignKeyFact(n, t, tuple(v["cols"]), v["ref"], tuple(v["rcols"]), v["del"], v["upd"])
        for (t, n), v in fks.items()
    ]
    return out


def mssql_alter_blockers(
    table: str, column: str, have: ColType, want: ColType, facts: TableFacts
) -> tuple[list[str], bool]:
    """Why SQL Server refuses ``ALTER COLUMN`` of this widening (msgs 5074/4922), and whether the
    DBA script can do it (False: the new type cannot be an index key at all: NVARCHAR(MAX)).
    No reasons: a plain ALTER COLUMN works. The rules (ALTER TABLE, "The modified column can't
    be"): not in a PRIMARY KEY or FOREIGN KEY; not in an index unless it is (n)varchar, stays so,
    does not shrink and the index is not the primary key's."""
    c = column.lower()
    why: list[str] = []
    possible = True
    for ix in facts.indexes:
        if c not in ix.columns():
            continue
        is_key = c in {k.lower() for k, _ in ix.keys}
        if want.family == "text" and is_key:
            why.append(f"key of index {ix.name} (an index key cannot be NVARCHAR(MAX))")
            possible = False
        elif ix.primary_key:
            why.append(f"in primary key {ix.name}")
        elif not (have.family == want.family == "char" and want.size >= have.size):
            why.append(f"in index {ix.name}")
    for fk in facts.foreign_keys:
        if (fk.table == table and c in {x.lower() for x in fk.columns}) or (
            fk.ref_table == table and c in {x.lower() for x in fk.ref_columns}
        ):
            why.append(f"in foreign key {fk.name}")
    return why, possible


def _index_sql(ix: IndexFact) -> str:
    keys = ", ".join(_bracket(k) + (" DESC" if desc else "") for k, desc in ix.keys)
    kind = "CLUSTERED" if ix.clustered else "NONCLUSTERED"
    if ix.primary_key or ix.constraint:
        what = "PRIMARY KEY" if ix.primary_key else "UNIQUE"
        return f"ALTER TABLE {ix.table} ADD CONSTRAINT {_bracket(ix.name)} {what} {kind} ({keys})"
    inc = f" INCLUDE ({', '.join(_bracket(c) for c in ix.included)})" if ix.included else ""
    where = f" WHERE {ix.filter}" if ix.filter else ""
    return f"CREATE {'UNIQUE ' if ix.unique else ''}{kind} INDEX {_bracket(ix.name)} ON {ix.table} ({keys}){inc}{where}"


def _drop_index_sql(ix: IndexFact) -> str:
    if ix.primary_key or ix.constraint:
        return f"ALTER TABLE {ix.table} DROP CONSTRAINT {_bracket(ix.name)}"
    return f"DROP INDEX {_bracket(ix.name)} ON {ix.table}"


def _fk_sql(fk: ForeignKeyFact) -> str:
    actions = "".join(
        f" ON {verb} {act.replace('_', ' ')}"
        for verb, act in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update))
        if act.upper() != "NO_ACTION"
    )
    return (
        f"ALTER TABLE {fk.table} WITH CHECK ADD CONSTRAINT {_bracket(fk.name)} FOREIGN KEY "
        f"({', '.join(_bracket(c) for c in fk.columns)}) REFERENCES {fk.ref_table} "
        f"({', '.join(_bracket(c) for c in fk.ref_columns)}){actions}"
    )


def mssql_dba_script(widen: list[DbaWiden], facts: dict[str, TableFacts]) -> str:
    """One T-SQL batch, one transaction (XACT_ABORT: any error rolls all of it back): drop the
    foreign keys and indexes the widened columns are in, ALTER the columns, recreate them. A
    table whose clustered index is dropped has all its indexes dropped first and recreated after
    it (each rebuilt once, not once for the heap and again for the new clustered index)."""
    drop_ix: dict[tuple[str, str], IndexFact] = {}
    drop_fk: dict[tuple[str, str], ForeignKeyFact] = {}
    for w in widen:
        f = facts.get(w.table, TableFacts())
        c = w.column.lower()
        for ix in f.indexes:
            if c in ix.columns():
                drop_ix[(ix.table, ix.name)] = ix
        for fk in f.foreign_keys:
            if (fk.table == w.table and c in {x.lower() for x in fk.columns}) or (
                fk.ref_table == w.table and c in {x.lower() for x in fk.ref_columns}
            ):
                drop_fk[(fk.table, fk.name)] = fk
    for (table, _), ix in list(drop_ix.items()):
        if ix.clustered:  # rebuild every index of the table once
            drop_ix.update({(i.table, i.name): i for i in facts.get(table, TableFacts()).indexes})
    for ix in list(drop_ix.values()):  # foreign keys that reference a dropped key
        if ix.primary_key or ix.unique:
            for f in facts.values():
                for fk in f.foreign_keys:
                    if fk.ref_table == ix.table and {x.lower() for x in fk.ref_columns} == {
                        k.lower() for k, _ in ix.keys
                    }:
                        drop_fk[(fk.table, fk.name)] = fk
    fks = sorted(drop_fk.values(), key=lambda k: (k.table, k.name))
    ixs = sorted(
        drop_ix.values(), key=lambda i: (i.table, i.clustered, i.name)
    )  # nonclustered first
    lines = ["SET XACT_ABORT ON;", "BEGIN TRANSACTION;"]
    lines += [f"ALTER TABLE {fk.table} DROP CONSTRAINT {_bracket(fk.name)};" for fk in fks]
    lines += [_drop_index_sql(ix) + ";" for ix in ixs]
    lines += [
        f"ALTER TABLE {w.table} ALTER COLUMN {_bracket(w.column)} {w.sql_type}{' NULL' if w.nullable else ' NOT NULL'};"
        for w in widen
    ]
    lines += [
        _index_sql(ix) + ";"
        for ix in sorted(drop_ix.values(), key=lambda i: (i.table, not i.clustered, i.name))
    ]
    lines += [_fk_sql(fk) + ";" for fk in fks]
    lines.append("COMMIT TRANSACTION;")
    return "\n".join(lines)


ENUM_TODO = (
    "the stored ids would mix old and new meanings: stop every run, then `xml-extractor init-db "
    "--allow-enum-change` rewrites app_enums and every stored id in one transaction (or keep the old id "
    "in the contract)"
)


def enum_changes(
    db: Database, existing: dict[str, dict[str, DbColumn] | None], allow: bool
) -> tuple[list[Change], list[str]]:
    """The enum codes whose id the contract changes, and the printed statements that rewrite them.

    A code the database holds under another id is a move (refused unless ``allow``: the stored
    ids of every column of that enum are rewritten with app_enums, in one transaction); an id the
    contract gives a code while the database holds another code there, which the contract does not
    declare, is always refused (which meaning should the stored ids keep?)."""
    c = db.contract
    if existing.get(c.enum_table) is None:
        return [], []
    rows = db.autocommit_query(db.sql("enum_rows"))
    have_by_code = {(str(t), str(v).strip().upper()): (int(i), str(v)) for i, t, v in rows}
    have_by_id = {int(i): (str(t), str(v).strip().upper()) for i, t, v in rows}
    want_codes = {(v.enum, v.code.strip().upper()) for vals in c.enums.values() for v in vals}
    moves: list[EnumMove] = []
    out: list[Change] = []
    for vals in c.enums.values():
        for v in vals:
            key = (v.enum, v.code.strip().upper())
            held = have_by_code.get(key)
            if held is not None and held[0] != v.id:
                moves.append(EnumMove(v.enum, held[1], held[0], v.id, v.description))
            other = have_by_id.get(v.id)
            if other is not None and other != key and other not in want_codes:
                out.append(
                    Change(
                        c.enum_table,
                        None,
                        f"id {v.id} is {other[0]} {other[1]!r} in the database, "
                        f"{v.enum} {v.code!r} in the contract",
                        refused=True,
                        todo="the contract gives a code an id the database uses for a code it does not "
                        "declare: run init-db with every contract the database serves (--contract a "
                        "--contract b), or keep the old id in the contract",
                    )
                )
    if not moves:
        return out, []
    columns = _enum_columns(db, existing, {m.enum for m in moves})
    for m in moves:
        held_in = [f"{t}.{col}" for t, col, e in columns if e == m.enum] or ["no stored column"]
        out.append(
            Change(
                c.enum_table,
                None,
                f"enum {m.enum} code {m.code!r}: id {m.old_id} in the database, "
                f"{m.new_id} in the contract (stored in {', '.join(held_in)})",
                refused=not allow,
                todo="" if allow else ENUM_TODO,
                enum_move=m,
            )
        )
    return out, [stmt for stmt, _ in _enum_statements(db, moves, columns, literal=True)]


def _enum_columns(
    db: Database, existing: dict[str, dict[str, DbColumn] | None], enums: set[str]
) -> list[tuple[str, str, str]]:
    """(table, column, enum) of every stored column of those enums that the database has."""
    out = []
    for t in db.contract.tables:
        have = existing.get(t.name)
        if have is None:
            continue
        for col in t.stored_columns:
            e = col.spec.get("enum")
            if e in enums and col.name.lower() in have:
                out.append((t.name, col.name, e))
    return out


def _enum_statements(
    db: Database, moves: list[EnumMove], columns: list[tuple[str, str, str]], literal: bool
) -> list[tuple[str, tuple]]:
    """(statement, parameters): delete the moved rows, insert them under their new ids, rewrite each
    stored column with one CASE (the moves happen at once: 602->600 and 603->602 cannot collide).
    ``literal``: the strings written into the text (the printed plan) instead of bound; ids are
    always written as integer literals (psqlODBC binds parameters as text, which a CASE over a
    smallint column refuses)."""
    c, d = db.contract, db.dialect
    q, et = d.quote, d.qualified(c.target_schema, c.enum_table)

    def v(x: Any) -> str:
        return d.literal(x) if literal else "?"

    def n(x: int) -> str:
        return str(int(x))

    olds = [m.old_id for m in moves]
    out: list[tuple[str, tuple]] = [
        (f"DELETE FROM {et} WHERE {q('enum_id')} IN ({', '.join(n(o) for o in olds)})", ())
    ]
    for m in moves:
        out.append(
            (
                f"INSERT INTO {et} ({q('enum_id')}, {q('type')}, {q('value')}, {q('description')}) "
                f"VALUES ({n(m.new_id)}, {v(m.enum)}, {v(m.code)}, {v(m.description)})",
                () if literal else (m.enum, m.code, m.description),
            )
        )
    for table, col, enum in columns:
        mine = [m for m in moves if m.enum == enum]
        qc = q(col)
        case = " ".join(f"WHEN {n(m.old_id)} THEN {n(m.new_id)}" for m in mine)
        out.append(
            (
                f"UPDATE {db.table(table)} SET {qc} = CASE {qc} {case} END "
                f"WHERE {qc} IN ({', '.join(n(m.old_id) for m in mine)})",
                (),
            )
        )
    return out


def apply_enum_changes(db: Database, p: MigrationPlan) -> int:
    """Rewrite app_enums and every stored id of the plan's enum moves in one transaction (all or
    nothing); returns the rows of target tables rewritten."""
    moves = p.enum_moves
    if not moves:
        return 0
    existing = {t.name: table_columns(db, t.name) for t in db.contract.tables}
    stmts = _enum_statements(
        db, moves, _enum_columns(db, existing, {m.enum for m in moves}), literal=False
    )
    rewritten = 0
    try:
        with db.transaction():
            for i, (sql, params) in enumerate(stmts):
                cur = db.execute(sql, params)
                if i > len(moves):  # the UPDATEs
                    rewritten += max(cur.rowcount or 0, 0)
                cur.close()
    except Exception as exc:
        typed = db.dialect.wrap(exc)
        if typed is exc:
            raise
        if isinstance(typed, TransientDatabaseError):
            raise typed from exc
        raise SchemaApplyFailed(
            f"init-db could not rewrite the enum ids: {str(exc).splitlines()[0][:300]}\n"
            "  the transaction was rolled back: nothing changed"
        ) from None
    return rewritten


def tool_tables(c: Any) -> tuple[str, ...]:
    """The tool's own tables beside the contract's (their columns are the tool's, not the
    contract's: the plan only checks that they exist): log, events, progress, queue, enums, and
    reprocess's requests, commands and log history."""
    return (
        c.log_table,
        c.event_table,
        c.progress_table,
        c.queue_table,
        c.enum_table,
        REQUEST_TABLE,
        COMMAND_TABLE,
        c.log_table + HISTORY_SUFFIX,
    )


def plan(db: Database, allow_enum_change: bool = False) -> MigrationPlan:
    """Compare every contract table with the database (tool tables: that they exist), and the
    enum ids the database holds with the contract's (``allow_enum_change``: a moved id is a change
    to apply, not a refusal)."""
    c = db.contract
    out = MigrationPlan(db.dialect.name)
    existing: dict[str, dict[str, DbColumn] | None] = {}
    create_stmts = db.dialect.ddl(c, with_source=True)
    facts: dict[
        str, TableFacts
    ] = {}  # SQL Server: indexes and foreign keys of tables with widenings
    for t in c.tables:
        have = existing[t.name] = table_columns(db, t.name)
        if have is None:
            qt = db.table(t.name)
            stmts = [s for s in create_stmts if qt in s.splitlines()[0]]
            out.changes.append(Change(t.name, None, "new table", stmts))
            continue
        out.changes += _table_changes(db, t, have, facts)
    out.changes += _tool_table_changes(db, existing, create_stmts)
    enum_changes_, out.enum_sql = enum_changes(db, existing, allow_enum_change)
    out.changes += enum_changes_
    widen = [ch.dba for ch in out.changes if ch.dba is not None]
    if widen:
        out.dba_script = mssql_dba_script(widen, facts)
    return out


def _table_changes(
    db: Database, t: TableDef, have: dict[str, DbColumn], facts: dict[str, TableFacts]
) -> list[Change]:
    """An existing contract table against the contract: each column, the columns only the
    database has, the primary key."""
    changes: list[Change] = []
    want = {col.name.lower(): col for col in t.stored_columns}
    for name, col in want.items():
        h = have.get(name)
        if h is None:
            changes.append(_new_column_change(db, t, col))
            continue
        changes += _column_changes(db, t, col, h, facts)
    for name, h in have.items():
        if name not in want:
            changes.append(
                Change(
                    t.name,
                    h.name,
                    f"column {h.type} is in the database but not in the contract",
                    refused=True,
                    todo="its values would no longer be written: put the column back "
                    "in the contract (or archive and drop it yourself)",
                )
            )
    pk = table_primary_key(db, t.name)
    if pk and pk != [k.lower() for k in t.primary_key]:
        changes.append(
            Change(
                t.name,
                None,
                f"primary key ({', '.join(pk)}) in the database, "
                f"({', '.join(t.primary_key)}) in the contract",
                refused=True,
                todo="a changed key changes which rows are one row: keep the key, or migrate "
                "into new tables",
            )
        )
    return changes


def _new_column_change(db: Database, t: TableDef, col: ColumnDef) -> Change:
    """A contract column the table lacks: added when nullable, refused when NOT NULL."""
    if col.nullable:
        return Change(
            t.name,
            col.name,
            f"new column {db.dialect.column_type(col)}",
            [_add_column_sql(db, t, col)],
        )
    return Change(
        t.name,
        col.name,
        f"new NOT NULL column {db.dialect.column_type(col)}",
        refused=True,
        todo="existing rows have no value for it: declare it nullable "
        '("nullable": true) in the contract',
    )


def _column_changes(
    db: Database, t: TableDef, col: ColumnDef, h: DbColumn, facts: dict[str, TableFacts]
) -> list[Change]:
    """A column both have: a wider type is applied (or, on SQL Server, left to the DBA script when
    keys or indexes block it), any other type change or a nullability change is refused."""
    changes: list[Change] = []
    diff = _compare_type(h.type, _expected(db, col))
    if diff == "wider":
        sql = _widen_sql(db, t, col)
        blocked = (
            _mssql_blocked(db, t, col, h.type, facts)
            if sql and db.dialect.name == "mssql"
            else None
        )
        if blocked is not None:
            changes.append(blocked)
        elif sql:
            changes.append(Change(t.name, col.name, f"widen {h.type} to {_expected(db, col)}", sql))
    elif diff:
        changes.append(
            Change(
                t.name,
                col.name,
                diff,
                refused=True,
                todo=f"keep {h.type} in the contract, or change the column in the "
                f"database yourself after checking its values",
            )
        )
    if h.nullable and not col.nullable:
        changes.append(
            Change(
                t.name,
                col.name,
                "NULL allowed in the database, NOT NULL in the contract",
                refused=True,
                todo="rows with NULL would break: keep it nullable in the contract",
            )
        )
    elif not h.nullable and col.nullable:
        changes.append(
            Change(
                t.name,
                col.name,
                "NOT NULL in the database, nullable in the contract",
                refused=True,
                todo="NULL values would be refused: keep it not nullable in the "
                "contract, or drop the NOT NULL in the database yourself",
            )
        )
    return changes


def _tool_table_changes(
    db: Database, existing: dict[str, dict[str, DbColumn] | None], create_stmts: list[str]
) -> list[Change]:
    """The tool's own tables (log, events, progress, queue, enums, reprocess's three): created when
    missing; the log and its history gain ``contract_name`` when they lack it. Fills ``existing``."""
    c, d = db.contract, db.dialect
    changes: list[Change] = []
    for name in tool_tables(c):
        cols = existing[name] = table_columns(db, name)
        if cols is None:
            qt = d.qualified(c.target_schema, name)
            changes.append(
                Change(
                    name, None, "new table", [s for s in create_stmts if qt in s.splitlines()[0]]
                )
            )
        elif name in (c.log_table, c.log_table + HISTORY_SUFFIX) and "contract_name" not in cols:
            # the contract of a contract set that mapped each application (nullable: old rows keep NULL)
            qt, new_col = (
                d.qualified(c.target_schema, name),
                f"{d.quote('contract_name')} {d.varchar(63)}",
            )
            add = (
                f"ALTER TABLE {qt} ADD {new_col} NULL"
                if d.name == "mssql"
                else f"ALTER TABLE {qt} ADD COLUMN {new_col}"
            )
            changes.append(Change(name, "contract_name", "new column", [add]))
    return changes


@dataclass
class InitResult:
    """What :func:`initialise` did: the statements run, the enum rows seeded, the enum ids moved
    (and the stored values rewritten for them), the schema changes applied."""

    statements: int
    enums_seeded: int
    enums_total: int
    moves: list[EnumMove]
    rewritten: int
    altered: int
    applied: list[Change]  # the column additions among the applied changes

    def describe(self) -> str:
        """One line after "initialised <database>: " (init-db prints it)."""
        text = (
            f"{self.statements} statements, "
            f"{self.enums_seeded} enum rows seeded ({self.enums_total} declared)"
        )
        if self.moves:
            text += (
                "; enum ids changed: "
                + ", ".join(f"{m.enum} {m.code} {m.old_id} -> {m.new_id}" for m in self.moves)
                + f" ({self.rewritten} stored value(s) rewritten)"
            )
        if self.altered:
            text += f"; {self.altered} schema change(s) applied: " + "; ".join(
                c.describe() for c in self.applied
            )
        return text


def initialise(db: Database, allow_enum_change: bool = False) -> InitResult:
    """init-db: create what the contract needs and migrate an existing database to it. Refused
    (SchemaRefused, nothing changed) when a change could lose data, or an enum id moves without
    ``allow_enum_change``; else moved enum ids are rewritten first (the seed adds missing ids),
    then the schema is created and seeded, then the additive changes are applied."""
    first = plan(db, allow_enum_change)
    if first.refusals:
        raise SchemaRefused(refusal_message(first))
    moves = first.enum_moves
    rewritten = apply_enum_changes(db, first) if moves else 0
    res = init_db(db)
    altered = apply(db, plan(db))
    return InitResult(
        statements=res["statements"],
        enums_seeded=res["enums_seeded"],
        enums_total=res["enums_total"],
        moves=moves,
        rewritten=rewritten,
        altered=altered,
        applied=[c for c in first.additions if c.column],
    )


def dry_run(db: Database, allow_enum_change: bool = False) -> MigrationPlan:
    """init-db --dry-run: the plan, nothing changed. The caller shows ``plan.render()``, then
    :func:`require_no_refusal` refuses (exit 2) a plan that could lose data."""
    return plan(db, allow_enum_change)


def require_no_refusal(p: MigrationPlan) -> None:
    """SchemaRefused (exit 2) naming every change the plan refuses; nothing when there is none."""
    if p.refusals:
        raise SchemaRefused(refusal_message(p))


DBA_TODO = (
    "SQL Server cannot change it in place: run the DBA script that `xml-extractor init-db --dry-run` "
    "prints (it drops and recreates those keys and indexes in one transaction; stop every instance "
    "first), then init-db"
)


def _mssql_blocked(
    db: Database, t: TableDef, col: ColumnDef, have: ColType, facts: dict[str, TableFacts]
) -> Change | None:
    """The refusal of a widening SQL Server cannot ALTER in place, or None (a plain ALTER works)."""
    qt, want = db.table(t.name), _expected(db, col)
    if qt not in facts:
        facts[qt] = mssql_table_facts(db, qt)
    why, possible = mssql_alter_blockers(qt, col.name, have, want, facts[qt])
    if not why:
        return None
    what = f"widen {have} to {want}: SQL Server cannot ALTER a column " + "; ".join(why)
    if not possible:
        return Change(
            t.name,
            col.name,
            what,
            refused=True,
            todo="keep the length at most 4000 in the contract, or drop that index yourself first",
        )
    return Change(
        t.name,
        col.name,
        what,
        refused=True,
        todo=DBA_TODO,
        dba=DbaWiden(qt, col.name, _column_sql(db, t, col), col.nullable),
    )


def apply(db: Database, p: MigrationPlan) -> int:
    """Run the plan's statements (the caller has checked there are no refusals)."""
    if p.refusals:
        raise SchemaRefused(refusal_message(p))
    with db.transaction():
        for s in p.statements:
            try:
                db.execute(s).close()
            except Exception as exc:
                typed = db.dialect.wrap(exc)
                if typed is exc:
                    raise  # not the driver's: a bug stays a bug
                if isinstance(typed, TransientDatabaseError):
                    raise typed from exc  # the environment (exit 3)
                said = (
                    max((a for a in exc.args if isinstance(a, str)), key=len, default="")
                    or str(exc)
                    or type(exc).__name__
                )
                raise SchemaApplyFailed(
                    f"init-db could not apply: {' '.join(s.split())[:300]}\n"
                    f"  the database said: {said.splitlines()[0][:300]}\n"
                    "  the plan's transaction was rolled back; `xml-extractor init-db --dry-run` shows "
                    "what is left to apply (change it in the database yourself, then run init-db again)"
                ) from None
    return len(p.statements)


def refusal_message(p: MigrationPlan) -> str:
    dba = sum(1 for c in p.refusals if c.dba is not None)
    what = (
        "in a way that could lose data"
        if not dba
        else "in a way only a DBA script can apply"
        if dba == len(p.refusals)
        else "in ways that could lose data or only a DBA script can apply"
    )
    lines = [
        f"the contract changes the database {what} ({len(p.refusals)} difference(s)); nothing was changed:"
    ]
    lines += [f"  {line}" for line in _grouped(p.refusals)]
    return "\n".join(lines)


_TYPED = re.compile(r"^column (.+?) is in the database but not in the contract$")


def _grouped(refusals: list[Change]) -> list[str]:
    """One line per kind of difference (the same thing to do), its columns listed by table: 97
    columns of another contract are a line, not 97."""
    kinds: dict[str, list[Change]] = {}
    for c in refusals:
        kinds.setdefault(c.todo or c.describe(), []).append(c)
    out = []
    for todo, cs in kinds.items():
        if len(cs) == 1 or not all(_TYPED.match(c.what) for c in cs):
            out += [c.describe() for c in cs]
            continue
        tables: dict[str, list[str]] = {}
        for c in cs:
            m = _TYPED.match(c.what)
            tables.setdefault(c.table, []).append(f"{c.column} {m.group(1) if m else ''}")
        listed = "; ".join(f"{t}({', '.join(cols)})" for t, cols in tables.items())
        out.append(
            f"{len(cs)} columns are in the database but not in the contract -- {todo}: {listed}"
        )
    return out


def _schema_present(db: Database, c: Any, seen: dict[str, dict[str, DbColumn] | None]) -> bool:
    """Whether every table and stored column contract ``c`` declares is in the database: the
    schema init-db creates for it (``seen`` caches each table's columns)."""
    for t in c.tables:
        if t.name not in seen:
            seen[t.name] = table_columns(db, t.name)
        have = seen[t.name]
        if have is None or any(col.name.lower() not in have for col in t.stored_columns):
            return False
    return True


def initialised_contracts(db: Database) -> list[str]:
    """The contracts (the running one's members and the packaged ones) whose whole schema the
    database holds: what init-db was run with, read from the tables themselves."""
    from ..contract.loader import load_contract, packaged_contracts

    members = {m.name: m for m in db.contract.extra.get("members", [])} or {
        db.contract.name: db.contract
    }
    seen: dict[str, dict[str, DbColumn] | None] = {}
    found = [n for n, c in members.items() if _schema_present(db, c, seen)]
    for name in packaged_contracts():
        if name not in members and _schema_present(db, load_contract(name), seen):
            found.append(name)
    return sorted(found)


def _logged_others(db: Database, mine: set[str]) -> list[str]:
    """Contracts other than ``mine`` that processed applications here (processing_log)."""
    try:  # an index probe per version
        logged = {v.split("@", 1)[0] for v in db.logged_contract_versions()}
    except Exception:
        db.rollback()
        logged = set()
    return sorted(n for n in logged if "+" not in n and n not in mine)


def contract_set_hint(db: Database, p: MigrationPlan) -> str:
    """A run whose contracts differ from those the database was initialised with sees the other
    contracts' columns as lossy differences: name the contracts the schema holds and what to type
    (a line ending in a newline), or "" when neither the schema nor the log names another."""
    mine = sorted({m.name for m in db.contract.extra.get("members", [])} or {db.contract.name})
    try:
        have = initialised_contracts(db)
    except Exception:
        db.rollback()
        have = []
    if not have:
        others = _logged_others(db, set(mine))
        if not others:
            return ""
        have = sorted(set(mine) | set(others))
    missing = [n for n in mine if n not in have]
    if not missing:
        if have == mine:
            return ""
        return (
            f"this database was initialised with contracts {'+'.join(have)}; run with "
            f"{_flags(have)}\n"
        )
    both = sorted(set(have) | set(mine))
    return (
        f"this database was initialised with contract{'s' if len(have) > 1 else ''} "
        f"{'+'.join(have)}, not {'+'.join(missing)}: for {'+'.join(have)} documents, run with "
        f"{_flags(have)}; to process {'+'.join(missing)} documents here too, first "
        f"`xml-extractor init-db {_flags(both)}`, then run with {_flags(both)}\n"
    )


def _flags(names: list[str]) -> str:
    return " ".join(f"--contract {n}" for n in names)


def require_current(db: Database) -> None:
    """At the start of run/reprocess: the database must match the contract. Raises SchemaRefused
    (lossy differences) or SchemaMissing (init-db would fix it), both exit 2, with the plan."""
    db.check_source()  # a source column the fetch cannot read (SQL Server text/ntext/xml): ConfigError, exit 2
    try:
        p = db.with_retry(
            lambda: plan(db)
        )  # read-only: a dropped connection is reconnected and read again
    except (ConfigError, TransientDatabaseError):
        raise  # a connection that stays lost is the environment (exit 3), not a schema to create
    except Exception as exc:
        db.rollback()
        raise SchemaMissing(
            f"could not read the database schema ({str(exc).splitlines()[0][:300]}): "
            f"run xml-extractor init-db"
        ) from None
    if p.refusals:
        raise SchemaRefused(contract_set_hint(db, p) + refusal_message(p))
    if p.additions:
        raise SchemaMissing(
            "the database does not match the contract: run `xml-extractor init-db` "
            "(or `init-db --dry-run` to see the SQL) to apply:\n  "
            + "\n  ".join(grouped_additions(p.additions))
        )


def grouped_additions(additions: list[Change]) -> list[str]:
    """One line per kind of addition (new tables; new columns listed by table): another
    contract's 97 columns are a line, not 97."""
    tables = [c.table for c in additions if c.column is None and c.what == "new table"]
    columns: dict[str, list[str]] = {}
    rest: list[str] = []
    for c in additions:
        if c.column is not None and c.what.startswith("new column"):
            columns.setdefault(c.table, []).append(c.column)
        elif not (c.column is None and c.what == "new table"):
            rest.append(c.describe())
    out = [f"{len(tables)} new table(s): {', '.join(tables)}"] if tables else []
    if columns:
        n = sum(len(v) for v in columns.values())
        listed = "; ".join(f"{t}({', '.join(cols)})" for t, cols in columns.items())
        out.append(f"{n} new column(s): {listed}")
    return out + rest
