"""The compiled mapper: a plan's mapping as generated straight-line Python.

The interpreted mapper (mapping.py) builds a row by walking the element's attributes, looking
each up in the generator's column map and calling a chain of small helpers per value. Here each
generator gets one generated function that reads its attribute columns by name, calls their
converters directly and builds the row dict in one literal; the other sources follow in contract
order as in the interpreted mapper. Around them, the plan gets one generated ``map_tables``: the
interpreted ``map_record`` loop unrolled table by table and generator by generator (selection,
attribute dicts, the allowed-code and required-value checks, skipping empty rows), which hands
what is rare or intricate to the reference's own functions at the same place (the events of
dropped rows, dedup of clashing candidates, merging several generators, groups generators).

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
The code object of a source is cached by its SHA-256 digest, the mapper per plan.

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
    DocContext,
    GeneratorPlan,
    MappingPlan,
    PathSpec,
    Scope,
    TablePlan,
    generator_paths,
    parse_path,
    select_elements,
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
    # the generator and table steps the generated plan hands over whole (see plan_source)
    run_generator: Callable[..., list]  # a groups generator's candidates
    dedup: Callable[..., list]  # candidates whose dedup keys may clash
    keep: Callable[..., bool]  # the event of a row without a required value
    blank: Callable[[GeneratorPlan, dict], bool]  # drop_when_blank's test
    drop_blank: Callable[..., None]  # the event of a blank element
    all_empty: Callable[[dict, frozenset[str]], bool]  # empty_except's test
    not_allowed: Callable[..., None]  # the event of an element with a code not allowed
    merge_generators: Callable[..., list]  # the rows of several generators, by key


_CODE: dict[str, CodeType] = {}  # SHA-256 of a generated source -> its code object
MapTables = Callable[[Any, DocContext], dict[str, list[tuple]]]  # (record, doc) -> rows per table
_MAPPERS: dict[int, tuple[MappingPlan, MapTables]] = {}  # id(plan) -> (plan, its mapper)
_MAPPERS_KEPT = 32


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
        if isinstance(conv, int):  # a string: its own value up to its length
            ns[f"t{i}"] = col.text_fn
            lines += [
                "            try:",
                f"                c{i} = v if len(v) <= {conv} else t{i}(v)",
                "            except Exception:",
                f"                bad = [{i}] if bad is None else bad + [{i}]",
            ]
            continue
        ns[f"t{i}"] = conv
        lines += [
            "            try:",
            f"                c{i} = t{i}(v)",
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


def _place(
    ps: PathSpec, places: dict[tuple, str], ns: dict[str, Any], head: list[str]
) -> tuple[str, str | None]:
    """The local name of the attributes of the element ``ps`` leads to (None: no such element),
    found once per row in ``head``, and of the flag saying it matched several elements (then the
    reference reads the columns: mapping._path_conflicts); None when it cannot."""
    if not ps.steps:
        return "attrs", None
    name = places.get(ps.steps)
    if name is not None:
        return name, f"n{name}"
    name = places[ps.steps] = f"p{len(places)}"
    st = ps.steps
    if len(st) == 1 and st[0].pred_attr is None and st[0].tag not in (".", ".."):
        head.append(f"    {name}, n{name} = doc.child(element, {st[0].tag!r})")
    else:
        ns[f"s{name}"] = st
        head += [
            f"    {name} = select_elements(element, s{name}, doc.attrs_of)",
            f"    n{name} = len({name})",
            f"    {name} = doc.attrs_of({name}[-1]) if {name} else None",
        ]
    return name, f"n{name}"


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
        lines += [
            "            if not isinstance(raw, str):",
            "                raw = str(raw)",
            "            raw = raw.strip()",
        ]
        if conv == sys.maxsize:
            lines.append("            x = raw or None")
        elif isinstance(conv, int):
            ns[f"t{i}"] = col.text_fn
            lines.append(
                f"            x = (raw if len(raw) <= {conv} else t{i}(raw)) if raw else None"
            )
        else:
            ns[f"t{i}"] = conv
            lines.append(f"            x = t{i}(raw) if raw else None")
    else:
        ns[f"v{i}"] = col.convert
        lines += [f"            x = v{i}(raw)"]
    if not col.nullable:
        lines += ["        if x is None:", "            raise _SLOW"]
    return lines + ["    except Exception:", f"        x = {slow}", f"    row[{col.name!r}] = x"]


def _direct_read(i: int, col: ColumnPlan, ns: dict[str, Any]) -> str | None:
    """The expression reading what the column's fetch would return, for the sources that are one
    attribute of the scope (compiler._make_fetch: context, unpivot, parent, constant); None for
    the others (they keep their fetch)."""
    kind, src = col.source
    if kind == "context":
        return "doc.app_id" if src == "app_id" else "element.tag"
    if kind == "unpivot":
        return "scope.unpivot_name" if src == "name" else "scope.unpivot_value"
    if kind == "parent":
        return f"scope.parent_values.get({src!r})"
    if kind == "constant":
        ns[f"const{i}"] = src
        return f"const{i}"
    return None


def _others_section(gen: GeneratorPlan, plain: set[int], ci: bool, ns: dict[str, Any]) -> list[str]:
    """The columns of other sources in contract order; the elements their paths lead to first."""
    head = ["    doc = scope.doc", "    element = scope.element"]
    body: list[str] = []
    places: dict[tuple, str] = {}
    for i, col in enumerate(gen.columns):
        if i in plain:
            continue
        ps = None if col.fallbacks else _path_of(col, ci)
        read = several = None
        if ps is not None:
            p, several = _place(ps, places, ns, head)
            read = f"None if {p} is None else {p}.get({ps.attribute!r})"
        elif not col.fallbacks:
            read = _direct_read(i, col, ns)
        lines = _other_column(i, col, ns, read)
        if several is not None:  # several elements matched: the reference reads it, with events
            slow = f"_column_value(col{i}, scope, row, table)"
            lines = [
                f"    if {several} > 1:",
                f"        row[{col.name!r}] = {slow}",
                "    else:",
            ] + ["    " + ln for ln in lines]
        body += lines
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
        "select_elements": select_elements,
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


def _generator_builders(
    plan: MappingPlan, ref: Reference
) -> dict[int, Callable[[Scope], dict | None]]:
    """id(generator) -> its generated row builder, for every generator of the plan."""
    ci = plan.case_insensitive
    return {id(g): generator_builder(g, ci, ref) for t in plan.tables for g in t.generators}


def plan_builder(
    plan: MappingPlan, ref: Reference, fast: dict[int, Callable[[Scope], dict | None]] | None = None
) -> Build:
    """``build(generator, scope) -> row``: the generated builder's row, the reference's where the
    generated builder hands the row over (``groups`` generators build their rows through it)."""
    fast = _generator_builders(plan, ref) if fast is None else fast
    build_row = ref.build_row

    def build(gen: GeneratorPlan, scope: Scope) -> dict:
        row = fast[id(gen)](scope)
        return build_row(gen, scope) if row is None else row

    return build


def plan_mapper(plan: MappingPlan, ref: Reference) -> MapTables:
    """The generated mapper of a plan (every generator's row builder compiled, the tables and
    generators as one generated function), made once per plan."""
    hit = _MAPPERS.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    fast = _generator_builders(plan, ref)
    source, ns = plan_source(plan, ref)
    ns["build"] = plan_builder(plan, ref, fast)
    for ti, tp in enumerate(plan.tables):
        for gi, g in enumerate(tp.generators):
            ns[f"b{ti}_{gi}"] = fast[id(g)]
    exec(_compiled(source), ns)
    mapper: MapTables = ns["map_tables"]
    if len(_MAPPERS) >= _MAPPERS_KEPT:
        del _MAPPERS[next(iter(_MAPPERS))]
    _MAPPERS[id(plan)] = (plan, mapper)
    return mapper


# -- the plan: tables and generators ---------------------------------------------------------------


def plan_source(plan: MappingPlan, ref: Reference) -> tuple[str, dict[str, Any]]:
    """The source of a plan's ``map_tables(record, doc) -> rows``: the interpreted mapper's
    ``map_record`` loop (mapping.py: ``_map_table``, ``_run_generator``) unrolled, table by table
    and generator by generator, with each row built by its generator's generated builder
    (``b<t>_<g>``, bound by ``plan_mapper``). What is rare or intricate is the reference's own
    code, called at the same place: the events of dropped rows, dedup of clashing candidates,
    merging several generators, and unpivot and groups generators whole."""
    ns: dict[str, Any] = {
        "Scope": Scope,
        "select_elements": select_elements,
        "_build_row": ref.build_row,
        "_run_generator": ref.run_generator,
        "_dedup": ref.dedup,
        "_keep": ref.keep,
        "_blank": ref.blank,
        "_drop_blank": ref.drop_blank,
        "_all_empty": ref.all_empty,
        "_not_allowed": ref.not_allowed,
        "_merge_generators": ref.merge_generators,
        "len": len,
        "list": list,
    }
    lines = [
        "def map_tables(record, doc):",
        "    kept = doc.kept",
        "    sel = doc.selected",
        "    cache = doc.attr_cache",
        "    attrs_of = doc.attrs_of",
        "    rows = {}",
    ]
    for ti, tp in enumerate(plan.tables):
        lines += _table_lines(ti, tp, ns, plan.case_insensitive)
    lines.append("    return rows")
    return "\n".join(lines) + "\n", ns


def _table_lines(ti: int, tp: TablePlan, ns: dict[str, Any], ci: bool) -> list[str]:
    """One table: each generator's candidates, deduplicated, empty rows skipped, several
    generators merged; then what the table keeps (later tables read it) and its row tuples."""
    ns[f"tp{ti}"] = tp
    ns[f"as{ti}"] = tp.as_tuple
    lines = [f"    # {tp.name!r}"[:100], "    t = []"]
    for gi, gen in enumerate(tp.generators):
        key = f"{ti}_{gi}"
        ns[f"g{key}"] = gen
        if gen.unpivot_of is not None:
            lines += _unpivot_lines(key, gen, ns, ci)
        elif gen.for_each is None or gen.groups_of is not None:
            lines.append(f"    out = _run_generator(g{key}, doc, record, kept, build)")
        else:
            lines += _generator_lines(key, gen, ns)
        lines += ["    if len(out) > 1:", f"        out = _dedup(g{key}, doc, out)"]
        if tp.skip_when_empty:
            empty = " and ".join(f"r.get({c!r}) is None" for c in tp.data_columns) or "True"
            lines.append(f"    t += [(r, el) for r, el, _, _ in out if not ({empty})]")
        else:
            lines.append("    t += [(r, el) for r, el, _, _ in out]")
    if len(tp.generators) > 1:
        lines.append(f"    t = _merge_generators(tp{ti}, doc, t)")
    lines += [
        f"    kept[{tp.name!r}] = t",
        "    if t:",
        f"        rows[{tp.name!r}] = [as{ti}(r) for r, _ in t]",
    ]
    return lines


def _selection(key: str, gen: GeneratorPlan, ns: dict[str, Any]) -> str:
    """The expression of the elements a generator reads under ``pel`` (generator_paths, in
    order): a plain child's by ``iterchildren``, any other path's by ``select_elements``."""
    parts = []
    for j, ps in enumerate(generator_paths(gen)):
        st = ps.steps
        if len(st) == 1 and st[0].pred_attr is None and st[0].tag == ".":
            parts.append("[pel]")
        elif len(st) == 1 and st[0].pred_attr is None and st[0].tag != "..":
            parts.append(f"list(pel.iterchildren({st[0].tag!r}))")
        else:
            ns[f"sp{key}_{j}"] = st
            parts.append(f"select_elements(pel, sp{key}_{j}, attrs_of)")
    return " + ".join(parts) or "[]"


def _unpivot_lines(key: str, gen: GeneratorPlan, ns: dict[str, Any], ci: bool) -> list[str]:
    """An ``unpivot`` generator's candidates: a row per listed attribute with a value, each
    element's rows built in one scope, as ``_run_generator`` makes them."""
    ns[f"up{key}"] = tuple(
        (name.lower() if ci else name, label)
        for name, label in zip(gen.unpivot_names, gen.unpivot_labels)
    )
    lines = [
        "    out = []",
        "    pel = record",
        *_each_element(key, gen, ns, "    "),
        "        scope = Scope(doc, el, None, a)",
        f"        for name, label in up{key}:",
        "            v = a.get(name)",
        "            if v is None or not v.strip():",
        "                continue",
        "            scope.unpivot_name = label",
        "            scope.unpivot_value = v",
        *_built_row(key),
    ]
    return lines + _kept_row(key, gen, "v, el, label", "0")


def _each_element(key: str, gen: GeneratorPlan, ns: dict[str, Any], indent: str) -> list[str]:
    """The loop over the elements a generator reads under ``pel`` (noted as selected), each
    with its attribute dict ``a``; its body follows one level deeper than ``indent``."""
    return [
        f"{indent}found = {_selection(key, gen, ns)}",
        f"{indent}sel.update(found)",
        f"{indent}for el in found:",
        f"{indent}    a = cache.get(el)",
        f"{indent}    if a is None:",
        f"{indent}        a = attrs_of(el)",
    ]


def _built_row(key: str) -> list[str]:
    """A candidate's row: the generated builder's, or the reference's where it hands it over."""
    return [
        f"            row = b{key}(scope)",
        "            if row is None:",
        f"                row = _build_row(g{key}, scope)",
    ]


def _kept_row(key: str, gen: GeneratorPlan, keep_args: str, priority: str) -> list[str]:
    """A row without a required value is dropped (``_keep`` gives its event), else a candidate."""
    lines = []
    if gen.required:
        missing = " or ".join(f"row.get({r!r}) is None" for r in gen.required)
        lines += [
            f"            if {missing}:",
            f"                _keep(g{key}, doc, row, {keep_args})",
            "                continue",
        ]
    return lines + [f"            out.append((row, el, {priority}, len(out)))"]


def _generator_lines(key: str, gen: GeneratorPlan, ns: dict[str, Any]) -> list[str]:
    """A ``for_each`` generator's candidates ``(row, element, priority, position)``, as
    ``_run_generator`` makes them."""
    origins = f"kept.get({gen.parent_table!r}, ())" if gen.parent_table else "(({}, record),)"
    lines = [
        "    out = []",
        f"    for pv, pel in {origins}:",
        *_each_element(key, gen, ns, "        "),
        "            pr = 0",
    ]
    if gen.allowed_attr is not None:
        ns[f"al{key}"] = {v: i for i, v in reversed(list(enumerate(gen.allowed_values)))}
        lines += [
            f"            code = (a.get({gen.allowed_attr!r}) or '').strip().upper()",
            f"            pr = al{key}.get(code)",
            "            if pr is None:",
            f"                _not_allowed(g{key}, doc, a, el, code)",
            "                continue",
        ]
    if gen.empty_except is not None:
        ns[f"ex{key}"] = gen.empty_except
        lines += [f"            if _all_empty(a, ex{key}):", "                continue"]
    lines += ["            scope = Scope(doc, el, pv, a)", *_built_row(key)]
    if gen.blank_attrs:
        lines += [
            f"            if _blank(g{key}, a):",
            f"                _drop_blank(g{key}, doc, row, a, el)",
            "                continue",
        ]
    return lines + _kept_row(key, gen, "None, el", "pr")
