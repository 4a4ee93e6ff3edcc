"""Load a contract file: JSON Schema validation, then the cross-reference checks JSON Schema
cannot express (columns that exist, FK order, enum names). Every error names its place in the
contract as a path like ``tables[2].columns[5].enum``.

The JSON Schema validation (and jsonschema's import) costs about a quarter of a second, paid by
every command and every spawned worker. A packaged contract whose bytes, with the schema's, are
those the suite validated (``contracts/validated.sha256``, checked by tests/test_contract.py)
skips it: the same bytes give the same verdict. Any other file, or an edited one, is validated."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ContractError
from .compiler import compile_contract
from .converters import utf16_length
from .merge import merge_contracts, split_contract_spec
from .model import ColumnDef, Contract, EnumValue, ForeignKey, TableDef

DEFAULT_CONTRACT = "credit_card"
VERSION_TAG_LIMIT = (
    100  # processing_log.contract_version: VARCHAR(100) (UTF-16 units on SQL Server)
)
VALIDATED_DIGESTS = "validated.sha256"  # in xml_extractor.contracts
_SCHEMA: dict | None = None


@functools.cache
def _schema_bytes() -> bytes:
    return resources.files("xml_extractor.contract").joinpath("schema.json").read_bytes()


def contract_schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = json.loads(_schema_bytes().decode("utf-8"))
    return _SCHEMA


def validation_digest(contract_bytes: bytes) -> str:
    """What a validation verdict depends on: the schema's bytes and the contract's."""
    return hashlib.sha256(_schema_bytes() + b"\0" + contract_bytes).hexdigest()


@functools.cache
def validated_digests() -> frozenset[str]:
    """The validation digests of the packaged contracts as the suite validated them."""
    listed = resources.files("xml_extractor.contracts").joinpath(VALIDATED_DIGESTS)
    try:
        lines = listed.read_text("utf-8-sig").splitlines()
    except (OSError, ValueError):  # missing, unreadable or not UTF-8: nothing skips the pass
        lines = []
    return frozenset(ln.split()[0].lower() for ln in lines if ln.strip())


def default_contract_path() -> Path:
    return Path(
        str(resources.files("xml_extractor.contracts").joinpath(f"{DEFAULT_CONTRACT}.json"))
    )


def _where(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def validate_schema(raw: Any, source: str = "contract") -> None:
    import jsonschema  # here: a validated packaged contract never needs it

    validator = jsonschema.Draft202012Validator(contract_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        lines = []
        for e in errors[:20]:
            best = jsonschema.exceptions.best_match([e])
            lines.append(f"  {_where(best.absolute_path)}: {best.message}")
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ContractError(f"{source} is not a valid contract:\n" + "\n".join(lines) + more)


def packaged_contracts() -> list[str]:
    """The names of the contracts that ship with the package (``credit_card``, ``rec_lending``)."""
    return sorted(
        p.name[:-5]
        for p in resources.files("xml_extractor.contracts").iterdir()
        if p.name.endswith(".json")
    )


def resolve_contract_path(name_or_path: str | Path | None) -> Path:
    """``--contract`` takes a packaged contract's name (``rec_lending``) or a file path: a bare name
    without a suffix or a slash is a packaged contract when one has that name, else a path."""
    if not name_or_path:
        return default_contract_path()
    text = str(name_or_path)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) and not Path(text).exists():
        packaged = Path(str(resources.files("xml_extractor.contracts").joinpath(f"{text}.json")))
        if packaged.exists():
            return packaged
        raise ContractError(
            f"no packaged contract named {text!r} (packaged: {', '.join(packaged_contracts())}); "
            "give a path to a contract file instead"
        )
    return Path(text)


def load_contract(path: str | Path | None = None) -> Contract:
    """Read, validate and cross-check a contract file or packaged contract by name (default: the
    packaged credit_card). Several, comma-separated (what a repeated ``--contract`` becomes), are a
    contract set: one union contract whose plan routes each document (merge.py; mapping.map_routed)."""
    if path is not None and "," in str(path):
        members = [load_contract(p) for p in split_contract_spec(str(path))]
        return members[0] if len(members) == 1 else merge_contracts(members)
    p = resolve_contract_path(path)
    try:
        data = p.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ContractError(f"contract file not found: {p}") from None
    except OSError as exc:
        raise ContractError(f"cannot read contract {p}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ContractError(f"cannot read contract {p}: not UTF-8 ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{p}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return contract_from_dict(
        raw, str(p), schema_valid=validation_digest(data) in validated_digests()
    )


def contract_from_dict(raw: Any, source: str = "contract", schema_valid: bool = False) -> Contract:
    """A contract from its parsed JSON: schema validation (skipped when ``schema_valid``: the bytes
    it was parsed from are a packaged contract's the suite validated), the cross-reference checks,
    a compile (paths, expressions and generators fail here, not per document) and the version
    tag's length."""
    if not schema_valid:
        validate_schema(raw, source)
    digest = hashlib.sha256(
        json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    enums = _enums(raw, source)
    reserved = _reserved_names(raw)
    tables: list[TableDef] = []
    seen_tables: dict[str, TableDef] = {}
    for ti, t in enumerate(raw["tables"]):
        td = _table_def(t, f"tables[{ti}]", source, enums, seen_tables, reserved)
        tables.append(td)
        seen_tables[td.name] = td
    src = raw["source"]
    logs = raw.get("log_tables") or {}
    contract = Contract(
        raw=raw,
        path=source,
        name=raw["name"],
        version=raw["version"],
        digest=digest,
        target_schema=raw["target_schema"],
        source_schema=src.get("schema"),
        source_table=src["table"],
        source_id_column=src["id_column"],
        source_xml_column=src["xml_column"],
        source_min_length=src.get("min_length", 1),
        tables=tables,
        enums=enums,
        log_table=logs.get("processing_log", "processing_log"),
        event_table=logs.get("data_quality_event", "data_quality_event"),
        queue_table=logs.get("work_queue", "work_queue"),
        enum_table=logs.get("enums", "app_enums"),
        progress_table=logs.get("run_progress", "run_progress"),
    )
    # Compiling checks paths, expressions, generators and parent references; fail now, not per document.
    compile_contract(contract)
    if (
        utf16_length(contract.version_tag) > VERSION_TAG_LIMIT
    ):  # else every log row of the run is refused
        raise ContractError(
            f"{contract.path}: name and version are too long: {contract.version_tag!r} must fit "
            f"processing_log.contract_version ({VERSION_TAG_LIMIT}); shorten the version"
        )
    return contract


def _enums(raw: dict, source: str) -> dict[str, list[EnumValue]]:
    """The enums: codes unique (trimmed, upper case) within an enum, ids unique across all of them
    (they are the app_enums primary key)."""
    enums: dict[str, list[EnumValue]] = {}
    all_ids: dict[int, str] = {}
    for ename, edef in (raw.get("enums") or {}).items():
        seen_codes: set[str] = set()
        seen_ids: set[int] = set()
        vals = []
        for i, v in enumerate(edef["values"]):
            where = f"enums.{ename}.values[{i}]"
            code = v["code"].strip().upper()
            if code in seen_codes:
                raise ContractError(f"{source}: {where}.code: duplicate code {v['code']!r}")
            if v["id"] in seen_ids:
                raise ContractError(f"{source}: {where}.id: duplicate id {v['id']} in enum {ename}")
            if v["id"] in all_ids:
                raise ContractError(
                    f"{source}: {where}.id: id {v['id']} is already used by enum "
                    f"{all_ids[v['id']]} (ids are the app_enums primary key)"
                )
            all_ids[v["id"]] = ename
            seen_codes.add(code)
            seen_ids.add(v["id"])
            vals.append(EnumValue(ename, v["code"], v["id"], v.get("description", "")))
        enums[ename] = vals
    return enums


def _reserved_names(raw: dict) -> dict[str, str]:
    """The tool's own tables and the source table, by lower-case name -> what they are: names that
    differ only in case are one table on SQL Server and SQLite (and a trap on PostgreSQL), refused
    here rather than by a run that fails later."""
    logs = raw.get("log_tables") or {}
    log_name = logs.get("processing_log", "processing_log")
    reserved = {
        log_name: "the processing log",
        logs.get("data_quality_event", "data_quality_event"): "the event table",
        logs.get("work_queue", "work_queue"): "the work queue",
        logs.get("enums", "app_enums"): "the enum table",
        logs.get("run_progress", "run_progress"): "the progress table",
        "reprocess_request": "the reprocess request table",
        "reprocess_command": "the reprocess command table",
        log_name + "_history": "the log history table",
        (raw.get("source") or {}).get("table", ""): "the source table",
    }
    return {k.lower(): f"{v} {k!r}" for k, v in reserved.items() if k}


def _table_def(
    t: dict,
    tw: str,
    source: str,
    enums: dict[str, list[EnumValue]],
    seen_tables: dict[str, TableDef],
    reserved: dict[str, str],
) -> TableDef:
    """One table, checked: its name free, its columns, key, foreign keys (to tables defined
    earlier) and indexes over stored columns."""
    name = t["name"]
    if name.lower() in reserved:
        raise ContractError(
            f"{source}: {tw}.name: table {name!r} clashes with {reserved[name.lower()]} "
            "(names are compared without case): rename it"
        )
    if name.lower() in {s.lower() for s in seen_tables}:
        raise ContractError(
            f"{source}: {tw}.name: table {name!r} is defined twice (names are compared without case)"
        )
    cols = _column_defs(t, tw, source, enums)
    app_id_col = next(
        (c.name for c in cols if c.spec.get("context") == "app_id" and c.stored), None
    )
    stored_names = {c.name for c in cols if c.stored}
    for k in t["primary_key"]:
        if k not in stored_names:
            raise ContractError(
                f"{source}: {tw}.primary_key: {k!r} is not a stored column of {name}"
            )
        if next(c for c in cols if c.name == k).nullable:
            raise ContractError(
                f"{source}: {tw}.primary_key: key column {k!r} must be declared nullable: false"
            )
    if app_id_col is None:
        raise ContractError(
            f'{source}: {tw}: every table needs a stored column with "context": "app_id" '
            "(it keeps an application's rows findable for reprocess and reconcile)"
        )
    fks = _foreign_keys(t, tw, source, seen_tables, stored_names)
    idx = []
    for ii, ix in enumerate(t.get("indexes", [])):
        for col in ix["columns"]:
            if col not in stored_names:
                raise ContractError(
                    f"{source}: {tw}.indexes[{ii}].columns: {col!r} is not a stored column of {name}"
                )
        idx.append(
            (ix.get("name") or f"ix_{name}_{'_'.join(ix['columns'])}"[:63], tuple(ix["columns"]))
        )
    return TableDef(
        name, tuple(cols), tuple(t["primary_key"]), tuple(fks), tuple(idx), app_id_col, t
    )


_VALUE_SOURCES = (
    "attribute",
    "path",
    "context",
    "parent",
    "expression",
    "constant",
    "unpivot",
    "group",
    "kept",
)


def _column_defs(
    t: dict, tw: str, source: str, enums: dict[str, list[EnumValue]]
) -> list[ColumnDef]:
    """A table's columns: names unique without case, each column's own rules consistent."""
    cols: list[ColumnDef] = []
    names: set[str] = set()
    for ci, c in enumerate(t["columns"]):
        cw = f"{tw}.columns[{ci}]"
        if c["name"].lower() in names:
            raise ContractError(
                f"{source}: {cw}.name: duplicate column {c['name']!r} in {t['name']}"
            )
        names.add(c["name"].lower())
        _check_column(c, f"{source}: {cw}", enums)
        cols.append(
            ColumnDef(
                c["name"],
                c["type"],
                c.get("length"),
                c.get("precision"),
                c.get("scale"),
                c.get("nullable", True),
                c.get("store", True),
                c,
            )
        )
    return cols


def _check_column(c: dict, where: str, enums: dict[str, list[EnumValue]]) -> None:
    """What JSON Schema cannot say about one column: a known enum, a default where one is asked
    for, truncate on strings only, scale within precision, a valid pattern, one value source."""
    if c.get("enum") and c["enum"] not in enums:
        raise ContractError(
            f"{where}.enum: unknown enum {c['enum']!r} (declared: {', '.join(enums) or 'none'})"
        )
    if c.get("on_invalid") == "default" or c.get("on_missing") == "default":
        if "default" not in c:
            raise ContractError(f"{where}: on_invalid/on_missing 'default' needs a 'default' value")
    if c.get("on_invalid") == "truncate" and c["type"] not in ("string",):
        raise ContractError(f"{where}.on_invalid: 'truncate' applies to string columns only")
    if c["type"] == "decimal" and c["scale"] > c["precision"]:
        raise ContractError(f"{where}.scale: scale {c['scale']} exceeds precision {c['precision']}")
    if c.get("pattern"):
        try:
            re.compile(c["pattern"])
        except re.error as exc:
            raise ContractError(f"{where}.pattern: not a valid regular expression: {exc}") from None
    kinds = [k for k in _VALUE_SOURCES if k in c]
    if len(kinds) > 1:
        raise ContractError(f"{where}: a column takes one value source, got {', '.join(kinds)}")


def _foreign_keys(
    t: dict, tw: str, source: str, seen_tables: dict[str, TableDef], stored_names: set[str]
) -> list[ForeignKey]:
    """A table's foreign keys: to a table defined earlier, stored columns on both sides."""
    fks = []
    for fi, fk in enumerate(t.get("foreign_keys", [])):
        fw = f"{tw}.foreign_keys[{fi}]"
        ref = seen_tables.get(fk["references"])
        if ref is None:
            raise ContractError(
                f"{source}: {fw}.references: {fk['references']!r} must be a table defined "
                "earlier (tables are listed in FK order)"
            )
        if len(fk["columns"]) != len(fk["ref_columns"]):
            raise ContractError(f"{source}: {fw}: columns and ref_columns differ in length")
        for col in fk["columns"]:
            if col not in stored_names:
                raise ContractError(
                    f"{source}: {fw}.columns: {col!r} is not a stored column of {t['name']}"
                )
        ref_stored = {c.name for c in ref.stored_columns}
        for col in fk["ref_columns"]:
            if col not in ref_stored:
                raise ContractError(
                    f"{source}: {fw}.ref_columns: {col!r} is not a column of {ref.name}"
                )
        fks.append(ForeignKey(tuple(fk["columns"]), fk["references"], tuple(fk["ref_columns"])))
    return fks
