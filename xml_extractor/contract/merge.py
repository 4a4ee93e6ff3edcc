"""A contract set's union contract: several contracts over one source table as one.

One source table can hold documents of several product lines (credit card, rec lending). The set is
presented to the rest of the engine as one :class:`Contract` whose tables are the union of the
members' tables (what ``init-db`` creates, ``reconcile``/``status`` read and the batch writer
binds). A table two members declare has one definition: a column both declare must agree exactly
(type, length, precision, scale, nullability, key) and a column only one declares must be
nullable; enum ids are one id space (``app_enums``). Anything else is refused here, naming the
columns. The set's plan (compiler.compile_set) routes each document to its member
(mapping.map_routed).
"""

from __future__ import annotations

import hashlib

from ..errors import ContractError
from .model import ColumnDef, Contract, EnumValue, TableDef

SEPARATOR = (
    ","  # --contract a --contract b travels as "a,b" (RunContext.contract_path, the environment)
)


def split_contract_spec(spec: str | None) -> list[str]:
    """``"credit_card,rec_lending"`` -> the member names or paths (one entry: a single contract)."""
    return [p.strip() for p in (spec or "").split(SEPARATOR) if p.strip()]


def join_contract_specs(specs: tuple[str, ...] | list[str] | None) -> str | None:
    """The repeatable ``--contract`` option as the one string the run's context carries."""
    parts = [p for s in (specs or ()) for p in split_contract_spec(s)]  # "a,b" is two as well
    return SEPARATOR.join(parts) if parts else None


def _column_shape(c: ColumnDef, key: bool) -> tuple:
    return (c.type, c.length, c.precision, c.scale, c.nullable, key)


def _describe(c: ColumnDef) -> str:
    size = f"({c.length})" if c.length else (f"({c.precision},{c.scale})" if c.precision else "")
    return f"{c.type}{size}{'' if c.nullable else ' NOT NULL'}"


def merge_contracts(members: list[Contract]) -> Contract:
    """The set's union contract, or ContractError naming every disagreement. Members in name order:
    the set's name and version tag do not depend on the order of the --contract flags."""
    members = sorted(members, key=lambda m: m.name)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ContractError(f"the same contract is given twice: {', '.join(names)}")
    problems = _shared_setting_problems(members)
    enums = _merge_enums(members, problems)
    tables = _merge_tables(members, problems)
    if problems:
        raise ContractError("the contracts cannot share one database:\n  " + "\n  ".join(problems))
    return _union_contract(members, _fk_order(tables), enums)


def _shared_setting_problems(members: list[Contract]) -> list[str]:
    """What every member must share with the first: the source table, the target schema, the log
    tables, the document's root, id and scope; and what must differ: the record path (it routes)."""
    first = members[0]
    problems: list[str] = []
    for m in members[1:]:
        for what, a, b in (
            (
                "source table",
                (
                    first.source_schema,
                    first.source_table,
                    first.source_id_column,
                    first.source_xml_column,
                ),
                (m.source_schema, m.source_table, m.source_id_column, m.source_xml_column),
            ),
            ("target schema", first.target_schema, m.target_schema),
            (
                "log tables",
                (first.log_table, first.event_table, first.queue_table, first.enum_table),
                (m.log_table, m.event_table, m.queue_table, m.enum_table),
            ),
            (
                "document root, id_path and scope",
                tuple(first.raw["document"][k] for k in ("root", "id_path", "scope")),
                tuple(m.raw["document"][k] for k in ("root", "id_path", "scope")),
            ),
        ):
            if a != b:
                problems.append(f"{first.name} and {m.name} differ in their {what}: {a} vs {b}")
        if m.raw["document"]["record_path"] == first.raw["document"]["record_path"]:
            problems.append(
                f"{first.name} and {m.name} have the same record_path: a document could not be routed"
            )
    return problems


def _merge_enums(members: list[Contract], problems: list[str]) -> dict[str, list[EnumValue]]:
    """The members' enums as one id space: an id means one (enum, code), a code has one id;
    each disagreement is added to ``problems``."""
    by_id: dict[int, tuple[str, str, str]] = {}
    by_code: dict[tuple[str, str], tuple[int, str]] = {}
    enums: dict[str, list[EnumValue]] = {}
    for m in members:
        for ename, vals in m.enums.items():
            for v in vals:
                key = (ename, v.code.strip().upper())
                seen = by_id.get(v.id)
                if seen and seen[:2] != key:
                    problems.append(
                        f"enum id {v.id} is {seen[0]} {seen[1]!r} in {seen[2]} but {ename} {v.code!r} in {m.name}"
                    )
                    continue
                had = by_code.get(key)
                if had and had[0] != v.id:
                    problems.append(
                        f"enum {ename} code {v.code!r} is id {had[0]} in {had[1]} but {v.id} in {m.name}"
                    )
                    continue
                if seen is None:
                    by_id[v.id] = (*key, m.name)
                    by_code[key] = (v.id, m.name)
                    enums.setdefault(ename, []).append(v)
    return enums


def _merge_tables(members: list[Contract], problems: list[str]) -> list[TableDef]:
    """One definition per table name, in first-declared order: a table several members declare
    gets the union of their columns, foreign keys and indexes when they agree (else a problem)."""
    merged: dict[str, TableDef] = {}
    owner: dict[str, str] = {}
    for m in members:
        for t in m.tables:
            have = merged.get(t.name)
            if have is None:
                merged[t.name] = TableDef(
                    t.name,
                    t.stored_columns,
                    t.primary_key,
                    t.foreign_keys,
                    t.indexes,
                    t.app_id_column,
                    t.spec,
                )
                owner[t.name] = m.name
                continue
            diffs = _table_differences(have, t, owner[t.name], m.name)
            if diffs:
                problems.append(
                    f"table {t.name} is declared by {owner[t.name]} and {m.name} differently: "
                    + "; ".join(diffs)
                )
                continue
            merged[t.name] = _table_union(have, t)
    return list(merged.values())


def _table_differences(have: TableDef, t: TableDef, have_owner: str, member: str) -> list[str]:
    """Why ``t`` (of ``member``) cannot share the table ``have`` (of ``have_owner``): another
    primary key, a shared column of another shape, a column only one declares that is not nullable."""
    diffs = []
    if have.primary_key != t.primary_key:
        diffs.append(f"primary key ({', '.join(have.primary_key)}) vs ({', '.join(t.primary_key)})")
    theirs = {c.name: c for c in t.stored_columns}
    mine = {c.name for c in have.columns}
    for c in have.columns:
        o = theirs.get(c.name)
        if o is None:
            if not c.nullable:
                diffs.append(
                    f"column {c.name} ({_describe(c)}) only in {have_owner} must be nullable"
                )
        elif _column_shape(c, c.name in have.primary_key) != _column_shape(
            o, o.name in t.primary_key
        ):
            diffs.append(
                f"column {c.name}: {_describe(c)} in {have_owner} vs {_describe(o)} in {member}"
            )
    for c in t.stored_columns:
        if c.name not in mine and not c.nullable:
            diffs.append(f"column {c.name} ({_describe(c)}) only in {member} must be nullable")
    return diffs


def _table_union(have: TableDef, t: TableDef) -> TableDef:
    """``have`` with the columns, foreign keys and indexes only ``t`` declares appended."""
    mine = {c.name for c in have.columns}
    extra = tuple(c for c in t.stored_columns if c.name not in mine)
    fks = have.foreign_keys + tuple(fk for fk in t.foreign_keys if fk not in have.foreign_keys)
    idx = have.indexes + tuple(ix for ix in t.indexes if ix[1] not in {i[1] for i in have.indexes})
    return TableDef(
        t.name,
        have.columns + extra,
        have.primary_key,
        fks,
        idx,
        have.app_id_column,
        have.spec,
    )


def _union_contract(
    members: list[Contract], tables: list[TableDef], enums: dict[str, list[EnumValue]]
) -> Contract:
    """The set as one contract: the first member's settings (they agree), the members' tables
    and enums, a digest of theirs; ``extra["members"]`` for compiler.compile_set."""
    first = members[0]
    names = [m.name for m in members]
    digest = hashlib.sha256("".join(m.digest for m in members).encode()).hexdigest()
    raw = dict(
        first.raw,
        name="+".join(names),
        version="+".join(m.version for m in members),
        tables=[t.spec for t in tables],
    )
    return Contract(
        raw=raw,
        path=" + ".join(m.path for m in members),
        name="+".join(names),
        version="+".join(m.version for m in members),
        digest=digest,
        target_schema=first.target_schema,
        source_schema=first.source_schema,
        source_table=first.source_table,
        source_id_column=first.source_id_column,
        source_xml_column=first.source_xml_column,
        source_min_length=min(m.source_min_length for m in members),
        tables=tables,
        enums=enums,
        log_table=first.log_table,
        event_table=first.event_table,
        queue_table=first.queue_table,
        progress_table=first.progress_table,
        enum_table=first.enum_table,
        extra={"members": members},
    )


def _fk_order(tables: list[TableDef]) -> list[TableDef]:
    """Referenced tables first (each member is in FK order; the union keeps that, stably)."""
    done: list[TableDef] = []
    names: set[str] = set()
    pending = list(tables)
    while pending:
        for t in pending:
            if all(fk.references in names or fk.references == t.name for fk in t.foreign_keys):
                done.append(t)
                names.add(t.name)
                pending.remove(t)
                break
        else:
            raise ContractError(
                "the contracts' foreign keys form a cycle: " + ", ".join(t.name for t in pending)
            )
    return done
