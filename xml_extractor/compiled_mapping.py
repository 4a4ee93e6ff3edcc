"""The compiled mapper: each row generator's row building as generated straight-line Python.

The interpreted mapper (mapping.py) builds a row by walking the element's attributes, looking
each up in the generator's column map and calling a chain of small helpers per value. Here each
generator gets one generated function that reads its attribute columns by name, calls their
converters directly and builds the row dict in one literal; the other sources follow in contract
order as in the interpreted mapper.

The generated code is a fast path only: it emits no event and raises nothing of its own. The
moment anything out of the ordinary happens while reading the attribute columns (a converter
refuses or rounds a value, a NOT NULL attribute column is empty), it returns None and the
interpreted ``_build_row`` builds that row from the start, so events, their order and failures
are the reference's by construction. A column from another source whose value is refused, or
that has fallbacks or is NOT NULL and comes out empty, is handed to the interpreted
``_column_value`` at its place in the row, which emits what the reference emits.

Safety: nothing from the contract is spliced into the source raw. Column and attribute names
enter only as ``repr()`` string literals; functions and column plans are bound through the
namespace under generated names (``t3``, ``col3``); local names are generated from indices.
The code object of a source is cached by its SHA-256 digest, the builders per plan.

``XML_EXTRACTOR_MAPPER=interpreted`` selects the interpreted mapper (the reference) instead.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any

from .contract.compiler import (
    ColumnPlan,
    GeneratorPlan,
    MappingPlan,
    PathSpec,
    Scope,
    parse_path,
    select_one,
)
from .contract.converters import text_path
from .errors import ConfigError, ContractError

MAPPER_ENV = "XML_EXTRACTOR_MAPPER"
MAPPERS = ("compiled", "interpreted")

Build = Callable[[GeneratorPlan, Scope], dict]


@dataclass(frozen=True)
class Reference:
    """The interpreted mapper's helpers the generated code hands the unusual cases to (given by
    mapping.py, which imports this module: no import back)."""

    build_row: Build  # a whole row
    column_value: Callable[[ColumnPlan, Scope, dict, str], Any]  # one column of any source
    missing: Callable[[ColumnPlan, Scope, str], Any]  # a NOT NULL column without a value
    text_value: Callable[[ColumnPlan, str, Scope, str], Any]  # raw attribute text -> value


_CODE: dict[str, CodeType] = {}  # SHA-256 of a generated source -> its code object
_BUILDERS: dict[int, tuple[MappingPlan, Build]] = {}  # id(plan) -> (plan, its row builder)
_BUILDERS_KEPT = 32


def mapper_kind() -> str:
    """The mapper the environment selects: ``compiled`` (default) or ``interpreted``."""
    kind = os.environ.get(MAPPER_ENV, "").strip().lower() or "compiled"
    if kind not in MAPPERS:
        raise ConfigError(f"{MAPPER_ENV}={kind!r}: expected one of {', '.join(MAPPERS)}")
    return kind


def _attr_section(gen: GeneratorPlan, plain: list[int], ns: dict[str, Any]) -> list[str]:
    """Attribute columns read by name, trimmed and converted; a value a converter refuses or
    rounds is left to ``_troubled`` (which emits its event in the reference's order)."""
    lines = ["    bad = None"]
    for i in plain:
        col = gen.columns[i]
        lines += [
            f"    v = attrs.get({col.attr_key!r})",
            f"    c{i} = None",
            "    if v is not None:",
            "        v = v.strip()",
            "        if v:",
        ]
        conv = _text_converter(col)
        if conv == sys.maxsize:  # a string of any length: the text is the value
            lines.append(f"            c{i} = v")
            continue
        ns[f"t{i}"] = col.text_fn if isinstance(conv, int) else conv
        call = f"v if len(v) <= {conv} else t{i}(v)" if isinstance(conv, int) else f"t{i}(v)"
        lines += [
            "            try:",
            f"                c{i} = {call}",
            "            except Exception:",
            f"                bad = [{i}] if bad is None else bad + [{i}]",
        ]
    return lines


def _text_converter(col: ColumnPlan) -> Callable[[str], Any] | int:
    """What turns a column's trimmed non-empty text into its value: the converter's specialised
    text path (converters.text_path: a function, or the length up to which a string is its own
    value) when the column has no transforms or pattern; else its composed ``text_fn``."""
    if col.transforms or col.check is not None:
        assert col.text_fn is not None
        return col.text_fn
    return text_path(col.convert)


def _troubled(
    bad: list[int], scope: Scope, table: str, columns: list[ColumnPlan], ref: Reference
) -> dict:
    """The values of the attribute columns whose converter raised, through the reference's
    ``_text_value`` in the reference's order (the element's attribute order, then the contract's):
    their events, and their failure if one fails the document, are the reference's."""
    attrs = scope.attrs
    position = {k: n for n, k in enumerate(attrs)}
    fixed = {}
    for i in sorted(bad, key=lambda i: (position[columns[i].attr_key], i)):
        col = columns[i]
        fixed[col.name] = ref.text_value(col, attrs[col.attr_key], scope, table)  # type: ignore[index]
    return fixed


def _path_of(col: ColumnPlan, ci: bool) -> PathSpec | None:
    """The path a column reads (``child/@attr``, ``../../@attr``), when its source is a path:
    its label is then the path's text. None for every other source (they keep their fetch)."""
    if not col.textual or col.attr_key is not None:
        return None
    try:
        ps = parse_path(col.source_label, col.name, True, ci)
    except ContractError:
        return None
    return ps if ps.attribute is not None else None


def _place(ps: PathSpec, places: dict[tuple, str], ns: dict[str, Any], head: list[str]) -> str:
    """The local name of the attributes of the element ``ps`` leads to (None: no such element),
    found once per row in ``head``."""
    if not ps.steps:
        return "attrs"
    name = places.get(ps.steps)
    if name is not None:
        return name
    name = places[ps.steps] = f"p{len(places)}"
    st = ps.steps
    if len(st) == 1 and st[0].pred_attr is None and st[0].tag not in (".", ".."):
        head.append(f"    {name} = doc.child_attrs(element, {st[0].tag!r})")
    else:
        ns[f"s{name}"] = st
        head += [
            f"    {name} = select_one(element, s{name}, doc.attrs_of)",
            f"    if {name} is not None:",
            f"        {name} = doc.attrs_of({name})",
        ]
    return name


def _other_column(
    i: int, col: ColumnPlan, ns: dict[str, Any], read: str | None = None
) -> list[str]:
    """One column of another source, at its place in contract order (it may read the row). Any
    exception, or no value for a NOT NULL column, hands the column to the reference.
    ``read``: an expression giving the raw value (a path's attribute) instead of the fetch."""
    ns[f"col{i}"] = col
    slow = f"_column_value(col{i}, scope, row, table)"
    if col.fallbacks:
        return [f"    row[{col.name!r}] = {slow}"]
    if read is None:
        ns[f"k{i}"] = col.fetch
        read = f"k{i}(scope, row)"
    lines = ["    try:", f"        raw = {read}", "        if raw is None:"]
    lines += ["            x = None", "        else:"]
    if col.textual:
        conv = _text_converter(col)
        ns[f"t{i}"] = col.text_fn if isinstance(conv, int) else conv
        lines += [
            "            if not isinstance(raw, str):",
            "                raw = str(raw)",
            "            raw = raw.strip()",
            f"            x = t{i}(raw) if raw else None",
        ]
    else:
        ns[f"v{i}"] = col.convert
        lines += [f"            x = v{i}(raw)"]
    if not col.nullable:
        lines += ["        if x is None:", "            raise _SLOW"]
    return lines + ["    except Exception:", f"        x = {slow}", f"    row[{col.name!r}] = x"]


def _others_section(gen: GeneratorPlan, plain: set[int], ci: bool, ns: dict[str, Any]) -> list[str]:
    """The columns of other sources in contract order; the elements their paths lead to first."""
    head = ["    doc = scope.doc", "    element = scope.element"]
    body: list[str] = []
    places: dict[tuple, str] = {}
    for i, col in enumerate(gen.columns):
        if i in plain:
            continue
        ps = None if col.fallbacks else _path_of(col, ci)
        read = None
        if ps is not None:
            p = _place(ps, places, ns, head)
            read = f"None if {p} is None else {p}.get({ps.attribute!r})"
        body += _other_column(i, col, ns, read)
    return head + body


def generator_source(gen: GeneratorPlan, ci: bool, ref: Reference) -> tuple[str, dict[str, Any]]:
    """The source of one generator's row builder and the names it is bound to."""
    ns: dict[str, Any] = {
        "_column_value": ref.column_value,
        "_SLOW": _Slow(),
        "_missing": ref.missing,
        "_troubled": _troubled,
        "ref": ref,
        "columns": gen.columns,
        "table": gen.table,
        "isinstance": isinstance,
        "str": str,
        "Exception": Exception,
        "select_one": select_one,
    }
    lines = ["def build(scope):", "    attrs = scope.attrs"]
    plain = [i for i, c in enumerate(gen.columns) if c.attr_key is not None and not c.fallbacks]
    lines += _attr_section(gen, plain, ns)
    items = [f"{c.name!r}: {f'c{i}' if i in plain else 'None'}" for i, c in enumerate(gen.columns)]
    lines.append("    row = {" + ", ".join(items) + "}")
    if plain:
        lines += [
            "    if bad is not None:",
            "        row.update(_troubled(bad, scope, table, columns, ref))",
        ]
    for i in plain:
        col = gen.columns[i]
        if not col.nullable:
            ns[f"col{i}"] = col
            lines += [
                f"    if row[{col.name!r}] is None:",
                f"        row[{col.name!r}] = _missing(col{i}, scope, table)",
            ]
    lines += _others_section(gen, set(plain), ci, ns)
    lines.append("    return row")
    return "\n".join(lines) + "\n", ns


class _Slow(Exception):
    """Raised inside generated code to hand one column to the reference."""


def _compiled(source: str) -> CodeType:
    """The code object of a generated source, compiled once per process per content digest."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    code = _CODE.get(digest)
    if code is None:
        code = _CODE[digest] = compile(source, f"<compiled mapper {digest[:12]}>", "exec")
    return code


def generator_builder(
    gen: GeneratorPlan, ci: bool, ref: Reference
) -> Callable[[Scope], dict | None]:
    """One generator's generated row builder: the row, or None when the reference must build it."""
    source, ns = generator_source(gen, ci, ref)
    exec(_compiled(source), ns)
    fn: Callable[[Scope], dict | None] = ns["build"]
    return fn


def plan_builder(plan: MappingPlan, ref: Reference) -> Build:
    """The row builder of a plan (every generator compiled), made once per plan."""
    hit = _BUILDERS.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    build_row = ref.build_row
    fast = {
        id(g): generator_builder(g, plan.case_insensitive, ref)
        for t in plan.tables
        for g in t.generators
    }

    def build(gen: GeneratorPlan, scope: Scope) -> dict:
        row = fast[id(gen)](scope)
        return build_row(gen, scope) if row is None else row

    if len(_BUILDERS) >= _BUILDERS_KEPT:
        del _BUILDERS[next(iter(_BUILDERS))]
    _BUILDERS[id(plan)] = (plan, build)
    return build
