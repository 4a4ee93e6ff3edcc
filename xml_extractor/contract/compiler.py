"""Compile a validated contract into a mapping plan made of closures.

Done once per process. Paths are split into steps, enums into dicts, patterns and expressions
into compiled objects, so that mapping a document is only dictionary lookups and small function
calls. Nothing in here knows a table name: every behaviour comes from the contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ContractError
from . import converters as cv
from .expressions import compile_expression

if TYPE_CHECKING:
    from ..parsing import DocumentPlan
    from .model import Contract, TableDef

_STEP = re.compile(
    r"^(?P<tag>\.\.|\.|[A-Za-z_][A-Za-z0-9_.\-]*)(?:\[@(?P<pa>[A-Za-z_][A-Za-z0-9_.\-]*)='(?P<pv>[^']*)'\])?$"
)


@dataclass(frozen=True)
class Step:
    tag: str  # '..' parent, '.' self, or a child element name
    pred_attr: str | None = None
    pred_value: str | None = None


@dataclass(frozen=True)
class PathSpec:
    steps: tuple[Step, ...]
    attribute: str | None
    text: str


def parse_path(text: str, where: str, want_attribute: bool | None, ci: bool) -> PathSpec:
    """``a/b[@t='CURR']/../@x`` -> steps + attribute. ``want_attribute`` None = either."""
    parts = text.strip().split("/")
    attribute = None
    if parts and parts[-1].startswith("@"):
        attribute = parts.pop()[1:]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", attribute):
            raise ContractError(f"{where}: bad attribute name {attribute!r} in path {text!r}")
    if want_attribute is True and attribute is None:
        raise ContractError(f"{where}: path {text!r} must end with /@attribute")
    if want_attribute is False and attribute is not None:
        raise ContractError(
            f"{where}: path {text!r} selects elements and must not end with an attribute"
        )
    steps = []
    for part in parts:
        if part == "" and len(parts) == 1 and attribute is not None:
            continue
        m = _STEP.fullmatch(part)
        if not m:
            raise ContractError(
                f"{where}: bad path step {part!r} in {text!r} "
                "(steps are element names, '.', '..' or name[@attr='value'])"
            )
        pa = m.group("pa")
        steps.append(
            Step(m.group("tag"), (pa.lower() if ci else pa) if pa else None, m.group("pv"))
        )
    return PathSpec(
        tuple(steps), (attribute.lower() if ci else attribute) if attribute else None, text
    )


def select_elements(el: Any, steps: tuple[Step, ...], attrs_of: Callable[[Any], dict]) -> list:
    """All elements reached by ``steps`` from ``el``, in document order. A step's tag is a plain
    name (the contract's grammar): ``iterchildren(tag)`` selects what ``findall(tag)`` does,
    without the path machinery (a third less per lookup)."""
    current = [el]
    for st in steps:
        tag = st.tag
        if tag == ".":
            cands = current
        elif tag == "..":
            cands = [p for e in current if (p := e.getparent()) is not None]
        elif len(current) == 1:
            cands = list(current[0].iterchildren(tag))
        else:
            cands = [c for e in current for c in e.iterchildren(tag)]
        if st.pred_attr is not None:
            want = (st.pred_value or "").strip().upper()
            cands = [
                c for c in cands if (attrs_of(c).get(st.pred_attr) or "").strip().upper() == want
            ]
        current = cands
        if not current:
            break
    return current


def select_one(el: Any, steps: tuple[Step, ...], attrs_of: Callable[[Any], dict]) -> Any:
    """The last element reached by ``steps`` (the later element wins), or None."""
    if len(steps) == 1 and steps[0].pred_attr is None and steps[0].tag not in (".", ".."):
        return last_child(el, steps[0].tag)  # the common case: one plain child
    found = select_elements(el, steps, attrs_of)
    return found[-1] if found else None


def last_child(el: Any, tag: str) -> Any:
    """``el``'s last child ``tag`` (None: none): the element a one-step path reads."""
    found = list(el.iterchildren(tag))  # mostly one
    return found[-1] if found else None


class Scope:
    """What a column can see while one row is built."""

    __slots__ = (
        "doc",
        "element",
        "attrs",
        "parent_values",
        "unpivot_name",
        "unpivot_value",
        "group",
    )

    def __init__(
        self,
        doc: DocContext,
        element: Any,
        parent_values: dict | None = None,
        attrs: dict | None = None,  # the element's attributes when the caller has them
    ) -> None:
        self.doc = doc
        self.element = element
        self.attrs = doc.attrs_of(element) if attrs is None else attrs
        self.parent_values = parent_values
        self.unpivot_name: str | None = None
        self.unpivot_value: str | None = None
        self.group: AttributeGroup | None = None  # set while an attribute group builds its row


class DocContext:
    """Per-document state: the app_id, an attribute-dict cache, the collected events."""

    __slots__ = ("app_id", "ci", "attr_cache", "events", "observe", "kept", "_children", "selected")

    def __init__(
        self, app_id: int, case_insensitive: bool, observe: Callable[..., None] | None = None
    ) -> None:
        self.app_id = app_id
        self.ci = case_insensitive
        # element -> its attribute dict (the generated mapper reads it too)
        self.attr_cache: dict[Any, dict] = {}
        self.events: list[tuple] = []
        # profile's hook: called with (table, column, raw, BadValue|Rounded, scope) for every value
        # a converter refused or rounded; None (the default) while mapping for real
        self.observe = observe
        # the rows each table kept so far (table -> [(row values, element)]): "kept" sources read it
        self.kept: dict[str, list[tuple[dict, Any]]] = {}
        self._children: dict[tuple[Any, str], tuple[dict | None, int]] = {}
        # every element a generator selected: the unmapped_record check has nothing to look for
        # when each element of a record kind is among them
        self.selected: set[Any] = set()

    def child_attrs(self, el: Any, tag: str) -> dict | None:
        """The attributes of ``el``'s child ``tag`` (the last, as select_one; None: none), found once per document."""
        return self.child(el, tag)[0]

    def child(self, el: Any, tag: str) -> tuple[dict | None, int]:
        """(:meth:`child_attrs`, how many children ``tag`` ``el`` has: with several, a path reads
        only the last), found once per document."""
        key = (el, tag)
        try:
            return self._children[key]
        except KeyError:
            pass
        found = list(el.iterchildren(tag))
        got = self._children[key] = (None if not found else self.attrs_of(found[-1]), len(found))
        return got

    def attrs_of(self, el: Any) -> dict:
        d = self.attr_cache.get(el)
        if d is None:
            d = dict(el.items())  # a quarter cheaper than dict(el.attrib), the same pairs
            if self.ci:
                # names are mostly lower case already: one look at them all, not one per name
                names = "".join(d)
                if names != names.lower():
                    d = {k.lower(): v for k, v in d.items()}
            self.attr_cache[el] = d
        return d


Fetch = Callable[[Scope, dict], Any]


@dataclass
class ColumnPlan:
    name: str
    type: str
    stored: bool
    nullable: bool
    fetch: Fetch
    textual: bool  # fetch returns raw attribute text (trim/transforms/pattern apply)
    convert: Callable[[Any], Any]
    transforms: tuple[Callable[[str], str], ...]
    transform_names: tuple[str, ...]
    check: Callable[[str], None] | None
    on_invalid: str
    on_missing: str
    default: Any
    context_like: bool  # key-ish values that do not count as data (app_id, parent keys, constants)
    attr_key: str | None = None  # set for plain attribute columns: the (case-folded) attribute name
    text_fn: Callable[[str], Any] | None = (
        None  # trimmed non-empty text -> value (transforms, check, convert)
    )
    # "fallback": further sources, tried in order when the column's own source gives no usable value
    fallbacks: tuple[tuple[Fetch, bool, str], ...] = ()  # (fetch, textual, label)
    source_label: str = ""  # how events name the column's own source ("@regb_start_date")
    # the contract's source: (kind, value), ("context", "app_id")
    source: tuple[str, Any] = ("", None)
    path: PathSpec | None = None  # a ``path`` source, parsed: several elements may match it
    fallback_event: bool = True  # record a fallback_applied event when a fallback is used
    fallback_conflict: bool = False  # fallbacks are other places of the same attribute: a different value there is an event

    def __post_init__(self) -> None:
        self.text_fn = _compose_text(
            self.transforms, self.transform_names, self.check, self.convert
        )


def _up_to(n: int, convert: Callable[[Any], Any]) -> Callable[[str], Any]:
    """A string converter's text path: text of at most ``n`` characters is its own value."""
    return lambda s: s if len(s) <= n else convert(s)


def _compose_text(
    transforms: tuple,
    names: tuple,
    check: Callable[[str], None] | None,
    convert: Callable[[Any], Any],
) -> Callable[[str], Any]:
    """Fold transforms, pattern check and conversion into one closure, built once."""
    if not transforms and check is None:
        return convert
    what = ", ".join(names)
    # what is left after the transforms is trimmed non-empty text (each keeps trimmed text
    # trimmed), which the converter's text path takes as the converter would
    path = cv.text_path(convert)
    final: Callable[[str], Any] = path if not isinstance(path, int) else _up_to(path, convert)

    def text_fn(s: str) -> Any:
        for tf in transforms:
            s = tf(s)
        if not s:
            raise cv.BadValue("value_rejected", f"nothing left after {what}")
        if check is not None:
            check(s)
        return final(s)

    return text_fn


@dataclass(frozen=True)
class AttributeGroup:
    """One group of a ``groups`` generator: its key and which attribute gives each field."""

    key: Any
    fields: dict  # field name -> (case-folded) attribute name


@dataclass
class GeneratorPlan:
    table: str
    for_each: PathSpec | None
    parent_table: str | None
    unpivot_of: PathSpec | None
    unpivot_names: tuple[str, ...]
    allowed_attr: str | None
    allowed_values: tuple[str, ...]
    required: tuple[str, ...]
    dedup_key: tuple[str, ...]
    prefer_allowed: bool
    empty_except: frozenset[str] | None
    columns: list[ColumnPlan]
    drop_label: str
    unpivot_labels: tuple[
        str, ...
    ] = ()  # the row name of each unpivoted attribute (default: the attribute)
    groups_of: PathSpec | None = None
    groups: tuple[AttributeGroup, ...] = ()
    present_if: tuple[str, ...] = ()  # group fields of which one must be non-empty for a row
    also_at: tuple[
        PathSpec, ...
    ] = ()  # further places of this generator's elements (relative to the record)
    blank_attrs: tuple[
        str, ...
    ] = ()  # drop_when_blank: an element with all of these blank is dropped
    blank_where_attr: str | None = None
    blank_where_values: tuple[str, ...] = ()
    child_paths: list[PathSpec] = field(
        default_factory=list
    )  # for_each of the generators under this table's rows
    template: dict = field(default_factory=dict)
    attr_map: dict[str, list[ColumnPlan]] = field(default_factory=dict)
    attr_notnull: list[ColumnPlan] = field(default_factory=list)
    others: list[ColumnPlan] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.template = {c.name: None for c in self.columns}
        for c in self.columns:
            if c.attr_key is not None and not c.fallbacks:
                self.attr_map.setdefault(c.attr_key, []).append(c)
                if not c.nullable:
                    self.attr_notnull.append(c)
            else:
                self.others.append(c)


@dataclass
class TablePlan:
    name: str
    generators: list[GeneratorPlan]
    stored_names: tuple[str, ...]
    primary_key: tuple[str, ...]
    skip_when_empty: bool
    data_columns: tuple[str, ...]
    as_tuple: Callable[[dict], tuple] = field(default=lambda row: ())

    def __post_init__(self) -> None:
        import operator

        names = self.stored_names
        getter = operator.itemgetter(*names)
        self.as_tuple = getter if len(names) > 1 else (lambda row: (getter(row),))


@dataclass(frozen=True)
class RecordKind:
    """An element tag some generator makes rows of (``IL_contact``, ``contact_address``): every
    element of it inside the scope must be one a generator reads, else an ``unmapped_record`` event."""

    tag: str
    table: str  # the (first) table whose generator reads it: events are filed under it
    places: tuple[str, ...]  # the contract's paths to it, for the event's reason


@dataclass
class MappingPlan:
    document: DocumentPlan
    tables: list[TablePlan]
    case_insensitive: bool
    contract_version: str
    extra: dict = field(default_factory=dict)
    record_kinds: tuple[RecordKind, ...] = ()


def _make_fetch(
    src_kind: str,
    src: Any,
    where: str,
    ci: bool,
    columns_so_far: set[str],
    parent_columns: set[str] | None,
    in_unpivot: bool,
    group_fields: set[str] | None = None,
    kept_tables: dict[str, set[str]] | None = None,
) -> tuple[Fetch, bool, Any]:
    """Returns (fetch, textual, compiled-expression-or-None)."""
    if src_kind == "group":
        return _group_fetch(src, where, group_fields)
    if src_kind == "kept":
        return _make_kept_fetch(src, where, ci, kept_tables or {})
    if src_kind == "attribute":
        key = src.lower() if ci else src
        return (lambda s, row: s.attrs.get(key)), True, None
    if src_kind == "path":
        return _path_fetch(src, where, ci)
    if src_kind == "context":
        if src == "app_id":
            return (lambda s, row: s.doc.app_id), False, None
        return (lambda s, row: s.element.tag), True, None
    if src_kind == "parent":
        if parent_columns is None:
            raise ContractError(
                f"{where}.parent: only generators with a parent_table can use parent values"
            )
        if src not in parent_columns:
            raise ContractError(f"{where}.parent: {src!r} is not a column of the parent table")
        return (lambda s, row: s.parent_values.get(src)), False, None
    if src_kind == "constant":
        return (lambda s, row: src), False, None
    if src_kind == "unpivot":
        if not in_unpivot:
            raise ContractError(f"{where}.unpivot: only unpivot generators provide name/value")
        if src == "name":
            return (lambda s, row: s.unpivot_name), True, None
        return (lambda s, row: s.unpivot_value), True, None
    if src_kind == "expression":
        return _expression_fetch(src, where, ci, columns_so_far)
    raise ContractError(
        f"{where}: no value source (attribute, path, context, parent, expression, constant, unpivot)"
    )


def _group_fetch(src: str, where: str, group_fields: set[str] | None) -> tuple[Fetch, bool, Any]:
    """``{"group": "key"}`` (the group's key) or ``{"group": field}`` (the attribute the current
    group names for that field)."""
    if group_fields is None:
        raise ContractError(f"{where}.group: only 'groups' generators provide group fields")
    if src == "key":
        return (lambda s, row: None if s.group is None else str(s.group.key)), True, None
    if src not in group_fields:
        raise ContractError(
            f"{where}.group: no group declares the field {src!r} "
            f"(declared: {', '.join(sorted(group_fields)) or 'none'})"
        )

    def fetch_group(s: Scope, row: dict) -> Any:
        g = s.group
        name = None if g is None else g.fields.get(src)
        return None if name is None else s.attrs.get(name)

    return fetch_group, True, None


def _path_fetch(src: str, where: str, ci: bool) -> tuple[Fetch, bool, Any]:
    """``{"path": "child/@attr"}``: an attribute of the element itself, of a plain child (its
    attributes read once per document) or of the first element the steps select."""
    ps = parse_path(src, where, True, ci)
    steps, attr = ps.steps, ps.attribute
    if not steps:
        return (lambda s, row: s.attrs.get(attr)), True, None
    if len(steps) == 1 and steps[0].pred_attr is None and steps[0].tag not in (".", ".."):
        tag = steps[0].tag

        def fetch_child(s: Scope, row: dict) -> Any:
            # a 1:1 table reads dozens of attributes of the same child: its attributes once per document
            d = s.doc.child_attrs(s.element, tag)
            return None if d is None else d.get(attr)

        return fetch_child, True, None

    def fetch_path(s: Scope, row: dict) -> Any:
        el = select_one(s.element, steps, s.doc.attrs_of)
        return None if el is None else s.doc.attrs_of(el).get(attr)

    return fetch_path, True, None


def _expression_fetch(
    src: str, where: str, ci: bool, columns_so_far: set[str]
) -> tuple[Fetch, bool, Any]:
    """``{"expression": ...}``: evaluated over the row's earlier columns and the element's
    attributes (trimmed; empty is None)."""
    ce = compile_expression(src, columns_so_far, f"{where}.expression")
    ev = ce.evaluate
    key_of = str.lower if ci else (lambda x: x)

    def fetch_expr(s: Scope, row: dict) -> Any:
        attrs = s.attrs

        def attr(name: str) -> Any:
            v = attrs.get(key_of(name))
            if v is None:
                return None
            v = v.strip()
            return v or None

        return ev(row, attr)

    return fetch_expr, False, ce


_SOURCE_KINDS = (
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


def _make_kept_fetch(
    src: dict, where: str, ci: bool, kept_tables: dict[str, set[str]]
) -> tuple[Fetch, bool, Any]:
    """``{"kept": {"table": t, "where": {"attribute": a, "value": v}, "path": p | "column": c}}``: a
    value of the last row table ``t`` kept (after its filters and dedup) whose element has
    attribute ``a`` = ``v`` (trimmed, case-insensitive) -- e.g. a value of the kept PR contact."""
    table = src["table"]
    if table not in kept_tables:
        raise ContractError(f"{where}.kept.table: {table!r} must be a table defined earlier")
    cond = src.get("where")
    want_attr = None if cond is None else (cond["attribute"].lower() if ci else cond["attribute"])
    want_value = None if cond is None else cond["value"].strip().upper()

    def matching(s: Scope) -> list[tuple[dict, Any]]:
        rows = s.doc.kept.get(table, ())
        if want_attr is None:
            return list(rows)
        return [
            (r, el)
            for r, el in rows
            if (s.doc.attrs_of(el).get(want_attr) or "").strip().upper() == want_value
        ]

    if "column" in src:
        col = src["column"]
        if col not in kept_tables[table]:
            raise ContractError(f"{where}.kept.column: {col!r} is not a column of {table}")

        def fetch_kept_column(s: Scope, row: dict) -> Any:
            found = matching(s)
            return found[-1][0].get(col) if found else None

        return fetch_kept_column, False, None
    ps = parse_path(src["path"], f"{where}.kept.path", True, ci)

    def fetch_kept_path(s: Scope, row: dict) -> Any:
        found = matching(s)
        if not found:
            return None
        el = found[-1][1]
        if ps.steps:
            el = select_one(el, ps.steps, s.doc.attrs_of)
        return None if el is None else s.doc.attrs_of(el).get(ps.attribute)

    return fetch_kept_path, True, None


def _converter_for(
    col: dict, contract: Contract, date_formats: list[str], unit: str = cv.UNIT_CHARS
) -> Callable[[Any], Any]:
    t = col["type"]
    if col.get("enum"):
        codes = {v.code: v.id for v in contract.enums[col["enum"]]}
        return cv.make_enum(col["enum"], codes)
    if t in cv.INT_RANGES:
        return cv.make_int(t)
    if t == "decimal":
        return cv.make_decimal(col["precision"], col["scale"])
    if t == "string":
        return cv.make_string(col["length"], unit)
    if t == "text":
        return cv.make_string(None)
    if t == "bit":
        bt = next((x for x in col.get("transforms", []) if x in cv.BIT_TRANSFORMS), None)
        return cv.make_bit(bt)
    if t in ("date", "datetime"):
        return cv.make_datetime(col.get("formats") or date_formats, t == "date")
    raise ContractError(f"unsupported type {t}")  # unreachable: the schema enumerates types


def _source_label(kind: str, value: Any) -> str:
    """How an event names a value source: ``@attr``, the path, ``constant 'x'``, ``expression``."""
    if kind == "attribute":
        return f"@{value}"
    if kind == "kept":
        return f"kept {value.get('table')} {value.get('column') or value.get('path')}"
    if kind == "path":
        return str(value)
    if kind == "constant":
        return f"constant {value!r}"
    return kind if kind == "expression" else f"{kind} {value}"


_PLANS: dict[
    tuple[str, str], MappingPlan
] = {}  # (contract digest, string unit) -> plan (oldest first)
_PLANS_KEPT = 16


def compile_contract(contract: Contract, dialect: str | None = None) -> MappingPlan:
    """The plan of a contract, compiled once per process: cached by the contract's identity, its
    content digest (the loader's validation compile fills the cache, the run reuses it; a
    contract loaded twice is compiled once). A plan is never changed after compilation.

    ``dialect``: the target the rows are written to, which decides the unit string lengths are
    checked in (SQL Server's NVARCHAR(n) counts UTF-16 units; converters.string_unit). A plan
    that writes must be compiled for its target; None (map, profile) counts characters."""
    unit = cv.string_unit(dialect)
    plan = _PLANS.get((contract.digest, unit))
    if plan is None:
        if contract.extra.get("members"):
            plan = compile_set(contract, dialect)
        else:
            plan = _compile(contract, unit)
        if len(_PLANS) >= _PLANS_KEPT:
            del _PLANS[next(iter(_PLANS))]
        _PLANS[(contract.digest, unit)] = plan
    return plan


@dataclass(frozen=True)
class Route:
    """One member of a set's plan: where its record lies under the scope, how its rows fit the union."""

    name: str
    version_tag: str
    plan: MappingPlan
    record_steps: tuple[str, ...]  # below the scope element
    remap: dict  # table -> positions of the union's columns in the member's tuple (-1: NULL), when they differ


def compile_set(contract: Contract, dialect: str | None = None) -> MappingPlan:
    """The set's plan: the scope element is the parsed record; :func:`mapping.map_routed` picks the member."""
    from ..parsing import DocumentPlan

    members: list[Contract] = contract.extra["members"]
    plans = [
        compile_contract(m, dialect) for m in members
    ]  # dialect: the string unit (compile_contract)
    doc = plans[0].document
    set_doc = DocumentPlan(
        root=doc.root,
        id_steps=doc.id_steps,
        id_attribute=doc.id_attribute,
        record_steps=doc.scope_steps,
        scope_steps=doc.scope_steps,
        huge_tree=any(p.document.huge_tree for p in plans),
    )
    union = {t.name: tuple(c.name for c in t.stored_columns) for t in contract.tables}
    routes = []
    for m, p in zip(members, plans):
        remap = {}
        for tp in p.tables:
            if tp.stored_names != union[tp.name]:
                pos = {n: i for i, n in enumerate(tp.stored_names)}
                remap[tp.name] = tuple(pos.get(n, -1) for n in union[tp.name])
        routes.append(
            Route(m.name, m.version_tag, p, p.document.record_steps[len(doc.scope_steps) :], remap)
        )
    tables = [
        TablePlan(t.name, [], union[t.name], t.primary_key, False, ()) for t in contract.tables
    ]
    return MappingPlan(
        document=set_doc,
        tables=tables,
        case_insensitive=plans[0].case_insensitive,
        contract_version=contract.version_tag,
        extra={"routes": tuple(routes)},
    )


def _compile(contract: Contract, unit: str = cv.UNIT_CHARS) -> MappingPlan:
    """A single contract's plan: the document's paths, then each table's generators in FK order
    (a generator reads only tables defined before its own)."""
    d = contract.raw["document"]
    ci = d.get("case_insensitive_attributes", False)
    doc_plan = _document_plan(contract)
    tables: list[TablePlan] = []
    table_columns: dict[str, set[str]] = {}  # tables compiled so far -> their column names
    for ti, tdef in enumerate(contract.tables):
        at = _TableContext(
            contract=contract,
            tdef=tdef,
            where=f"{contract.path}: tables[{ti}]",
            ci=ci,
            unit=unit,
            date_formats=d.get("date_formats") or cv.DEFAULT_DATE_FORMATS,
            up_limit=len(doc_plan.record_steps) - len(doc_plan.scope_steps),
            table_columns=dict(table_columns),
        )
        tables.append(_table_plan(at))
        table_columns[tdef.name] = {c.name for c in tdef.columns}
    _link_child_paths(tables)
    return MappingPlan(
        document=doc_plan,
        tables=tables,
        case_insensitive=ci,
        contract_version=contract.version_tag,
        record_kinds=_record_kinds(tables),
    )


def _document_plan(contract: Contract) -> DocumentPlan:
    """The document's root, id, record and scope paths, checked against each other: the id lies on
    the way to the scope and the scope contains the record (the parser stops at the scope's end)."""
    from ..parsing import DocumentPlan

    d = contract.raw["document"]
    id_parts = d["id_path"].split("/")
    record_steps = tuple(d["record_path"].split("/"))
    scope_steps = tuple(d["scope"].split("/"))
    if record_steps[: len(scope_steps)] != scope_steps:
        raise ContractError(
            f"{contract.path}: document.scope {d['scope']!r} must contain document.record_path"
        )
    if tuple(id_parts[:-1]) != scope_steps[: len(id_parts) - 1]:
        raise ContractError(
            f"{contract.path}: document.id_path must be on the way to document.scope "
            "(the parser stops at the end of the scope)"
        )
    return DocumentPlan(
        root=d["root"],
        id_steps=tuple(id_parts[:-1]),
        id_attribute=id_parts[-1][1:],
        record_steps=record_steps,
        scope_steps=scope_steps,
        huge_tree=d.get("huge_tree", False),
    )


@dataclass(frozen=True)
class _TableContext:
    """What compiling one table's generators needs from the contract around it."""

    contract: Contract
    tdef: TableDef
    where: str  # "<contract>: tables[i]", the prefix of every error about the table
    ci: bool  # attribute names compared without case
    unit: str  # the unit string lengths are counted in
    date_formats: list[str]
    up_limit: int  # how far also_at may climb: the steps between the scope and the record
    table_columns: dict[str, set[str]]  # tables defined earlier -> their column names


@dataclass(frozen=True)
class _GeneratorContext:
    """One generator of a table: where its errors point and what its columns may read."""

    table: _TableContext
    spec: dict  # the generator's contract entry
    where: str  # "<table where>.rows[i]"
    parent: str | None
    parent_cols: set[str] | None
    in_unpivot: bool
    group_fields: set[str] | None


def _table_plan(at: _TableContext) -> TablePlan:
    """A table's plan: its generators, stored columns and the data columns a row is judged empty by."""
    tdef, t = at.tdef, at.tdef.spec
    listed = isinstance(t["rows"], list)
    gens = [
        _generator_plan(at, g, f"{at.where}.rows" + (f"[{gi}]" if listed else ""))
        for gi, g in enumerate(t["rows"] if listed else [t["rows"]])
    ]
    data_cols = tuple(
        c.name
        for c in gens[0].columns
        if c.stored and not c.context_like and c.name not in tdef.primary_key
    )
    return TablePlan(
        tdef.name,
        gens,
        tuple(c.name for c in tdef.stored_columns),
        tdef.primary_key,
        t.get("skip_when_empty", False),
        data_cols,
    )


def _link_child_paths(tables: list[TablePlan]) -> None:
    """What lies under a table's rows (a dropped element's event counts it)."""
    by_name = {tp.name: tp for tp in tables}
    for tp in tables:
        for g in tp.generators:
            if g.parent_table is not None and g.for_each is not None:
                for pg in by_name[g.parent_table].generators:
                    pg.child_paths.append(g.for_each)


def _generator_plan(at: _TableContext, g: dict, gw: str) -> GeneratorPlan:
    """One ``rows`` entry: its columns, then the checks of its row rules, then the plan."""
    parent = g.get("parent_table")
    parent_cols = None
    if parent is not None:
        if parent not in at.table_columns:
            raise ContractError(f"{gw}.parent_table: {parent!r} must be a table defined earlier")
        parent_cols = at.table_columns[parent]
    colspec = {c["name"]: c for c in at.tdef.spec["columns"]}
    for oname in g.get("values", {}):
        if oname not in colspec:
            raise ContractError(f"{gw}.values: {oname!r} is not a column of {at.tdef.name}")
    groups_def = g.get("groups")
    group_fields: set[str] | None = None
    if groups_def is not None:
        if parent:
            raise ContractError(f"{gw}: groups generators cannot have a parent_table")
        group_fields = {f for grp in groups_def["groups"] for f in grp["attributes"]}
    gc = _GeneratorContext(at, g, gw, parent, parent_cols, "unpivot" in g, group_fields)
    cols = _column_plans(gc)
    required, dkey = _required_and_dedup_key(gc, cols, colspec)
    _check_unpivot(gc)
    groups, present_if = _attribute_groups(gc)
    also_at = tuple(
        _also_at_path(x, f"{gw}.also_at[{ai}]", at.ci, at.up_limit)
        for ai, x in enumerate(g.get("also_at", []))
    )
    if also_at and parent:
        raise ContractError(
            f"{gw}.also_at: a generator with a parent_table reads under its parent's rows; "
            "give also_at to the parent table's generator"
        )
    if g.get("drop_when_blank") and "for_each" not in g:
        raise ContractError(f"{gw}.drop_when_blank: only for_each generators drop elements")
    return _build_generator(gc, cols, required, dkey, groups, present_if, also_at)


def _column_plans(gc: _GeneratorContext) -> list[ColumnPlan]:
    """The generator's columns in contract order (an expression reads the columns before it)."""
    at = gc.table
    overrides = gc.spec.get("values", {})
    kept_cols = dict(at.table_columns)
    cols: list[ColumnPlan] = []
    so_far: set[str] = set()
    for ci_, c in enumerate(at.tdef.spec["columns"]):
        if c["name"] in overrides:
            src_def, cw = overrides[c["name"]], f"{gc.where}.values.{c['name']}"
        else:
            src_def, cw = c, f"{at.where}.columns[{ci_}]"
        kinds = [k for k in _SOURCE_KINDS if k in src_def]
        if not kinds:
            raise ContractError(f"{cw}: column {c['name']!r} has no value source in this generator")
        kind = kinds[0]

        def fetch_for(kind: str, src: Any, where: str) -> tuple[Fetch, bool, Any]:
            return _make_fetch(
                kind,
                src,
                where,
                at.ci,
                so_far,
                gc.parent_cols,
                gc.in_unpivot,
                gc.group_fields,
                kept_cols,
            )

        fetch, textual, _ = fetch_for(kind, src_def[kind], cw)
        conv, default = _converter_and_default(at, c, cw)
        fallbacks = []
        for fi, fb in enumerate(c.get("fallback", [])):
            fkind = next(k for k in _SOURCE_KINDS if k in fb)
            ff, ftextual, _ = fetch_for(
                fkind, fb[fkind], f"{at.where}.columns[{ci_}].fallback[{fi}]"
            )
            fallbacks.append((ff, ftextual, _source_label(fkind, fb[fkind])))
        cols.append(
            _column_plan(
                at, c, kind, src_def[kind], (fetch, textual, conv, default), tuple(fallbacks)
            )
        )
        so_far.add(c["name"])
    return cols


def _converter_and_default(at: _TableContext, c: dict, cw: str) -> tuple[Callable[[Any], Any], Any]:
    """A column's converter and its ``default`` value parsed by it (None when it has none)."""
    conv = _converter_for(c, at.contract, at.date_formats, at.unit)
    default = None
    if "default" in c:
        try:
            default = cv.parse_default(c["type"], c["default"], conv)
        except cv.BadValue as exc:
            raise ContractError(f"{cw}.default: {exc.reason}") from None
    return conv, default


def _column_plan(
    at: _TableContext,
    c: dict,
    kind: str,
    src: Any,
    compiled: tuple[Fetch, bool, Callable[[Any], Any], Any],
    fallbacks: tuple,
) -> ColumnPlan:
    """One column of a generator: its value source, converter and default (compiled by the
    caller: ``compiled`` = fetch, textual, convert, default), transforms, pattern and what to do
    with a missing or invalid value."""
    fetch, textual, conv, default = compiled
    tnames = tuple(x for x in c.get("transforms", []) if x in cv.TRANSFORMS)
    nullable = c.get("nullable", True)
    return ColumnPlan(
        name=c["name"],
        type=c["type"],
        stored=c.get("store", True),
        nullable=nullable,
        fetch=fetch,
        textual=textual,
        convert=conv,
        transforms=tuple(cv.TRANSFORMS[x] for x in tnames),
        transform_names=tnames,
        check=cv.make_pattern(c["pattern"]) if c.get("pattern") else None,
        on_invalid=c.get("on_invalid", "null"),
        on_missing=c.get(
            "on_missing",
            "null" if nullable else ("default" if "default" in c else "fail"),
        ),
        default=default,
        context_like=kind in ("context", "parent", "constant")
        or (kind == "unpivot" and src == "name")
        or (kind == "group" and src == "key"),
        attr_key=((src.lower() if at.ci else src) if kind == "attribute" else None),
        fallbacks=fallbacks,
        source_label=_source_label(kind, src),
        source=(kind, src),
        path=parse_path(src, "", True, at.ci) if kind == "path" else None,
        fallback_event=c.get("fallback_event", True),
        fallback_conflict=c.get("fallback_conflict", False),
    )


def _required_and_dedup_key(
    gc: _GeneratorContext, cols: list[ColumnPlan], colspec: dict
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns a row needs (default: the primary key) and the key rows are deduplicated by."""
    g, gw, tdef = gc.spec, gc.where, gc.table.tdef
    names = {c.name for c in cols}
    stored = {c.name for c in cols if c.stored}
    required = tuple(g.get("required", [])) or tuple(k for k in tdef.primary_key)
    for r in required:
        if r not in names:
            raise ContractError(f"{gw}.required: {r!r} is not a column of {tdef.name}")
    for cp in cols:  # a missing required value drops the row (with an event), not the app
        if cp.name in required and "on_missing" not in colspec[cp.name]:
            cp.on_missing = "null"
    dedup = g.get("dedup", {})
    dkey = tuple(dedup.get("key", ())) or tdef.primary_key
    for k in dkey:
        if k not in stored:
            raise ContractError(f"{gw}.dedup.key: {k!r} is not a stored column of {tdef.name}")
    if dedup.get("prefer_allowed_order") and not g.get("allowed"):
        raise ContractError(f"{gw}.dedup.prefer_allowed_order needs 'allowed'")
    return required, dkey


def _check_unpivot(gc: _GeneratorContext) -> None:
    """An unpivot generator has no parent and exactly a name and a value column."""
    g, gw = gc.spec, gc.where
    if not g.get("unpivot"):
        return
    if gc.parent:
        raise ContractError(f"{gw}: unpivot generators cannot have a parent_table")
    overrides = g.get("values", {})
    have = {
        src_def_kind
        for cdef in gc.table.tdef.spec["columns"]
        for src_def_kind in [(overrides.get(cdef["name"]) or cdef).get("unpivot")]
        if src_def_kind
    }
    if have != {"name", "value"}:
        raise ContractError(
            f'{gw}.unpivot: the table needs one column with "unpivot": "name" '
            'and one with "unpivot": "value"'
        )


def _attribute_groups(
    gc: _GeneratorContext,
) -> tuple[tuple[AttributeGroup, ...], tuple[str, ...]]:
    """A groups generator's groups (every field read by a column) and its present_if fields."""
    groups_def = gc.spec.get("groups")
    if groups_def is None:
        return (), ()
    ci, gw = gc.table.ci, gc.where
    overrides = gc.spec.get("values", {})
    used = {
        (overrides.get(cdef["name"]) or cdef).get("group") for cdef in gc.table.tdef.spec["columns"]
    }
    for gi_, grp in enumerate(groups_def["groups"]):
        for f in grp["attributes"]:
            if f not in used:
                raise ContractError(
                    f"{gw}.groups.groups[{gi_}].attributes: no column reads the field "
                    f'{f!r} (columns take it with {{"group": "{f}"}})'
                )
    groups = tuple(
        AttributeGroup(
            grp["key"],
            {f: (a.lower() if ci else a) for f, a in grp["attributes"].items()},
        )
        for grp in groups_def["groups"]
    )
    present_if = tuple(groups_def.get("present_if", ()))
    for f in present_if:
        if f not in (gc.group_fields or set()):
            raise ContractError(f"{gw}.groups.present_if: {f!r} is not a field of any group")
    return groups, present_if


def _build_generator(
    gc: _GeneratorContext,
    cols: list[ColumnPlan],
    required: tuple[str, ...],
    dkey: tuple[str, ...],
    groups: tuple[AttributeGroup, ...],
    present_if: tuple[str, ...],
    also_at: tuple[PathSpec, ...],
) -> GeneratorPlan:
    """The checked generator as a plan: paths parsed, attribute names in the document's case."""
    g, gw, ci = gc.spec, gc.where, gc.table.ci
    unp, groups_def, allowed = g.get("unpivot"), g.get("groups"), g.get("allowed")
    skip, blank = g.get("skip_when_empty"), g.get("drop_when_blank")
    where_ = blank.get("where") if blank else None
    unpivot_entries = [
        (n, n) if isinstance(n, str) else (n["attribute"], n["name"])
        for n in (unp["names"] if unp else [])
    ]

    def key(name: str) -> str:
        return name.lower() if ci else name

    def path(text: str, where: str) -> PathSpec:
        return parse_path(text, where, False, ci)

    return GeneratorPlan(
        table=gc.table.tdef.name,
        for_each=path(g["for_each"], f"{gw}.for_each") if "for_each" in g else None,
        parent_table=gc.parent,
        unpivot_of=path(unp["of"], f"{gw}.unpivot.of") if unp else None,
        unpivot_names=tuple(a for a, _ in unpivot_entries),
        unpivot_labels=tuple(n for _, n in unpivot_entries),
        groups_of=path(groups_def["of"], f"{gw}.groups.of") if groups_def else None,
        groups=groups,
        present_if=present_if,
        allowed_attr=key(allowed["attribute"]) if allowed else None,
        allowed_values=tuple(v.strip().upper() for v in allowed["values"]) if allowed else (),
        required=required,
        dedup_key=dkey,
        prefer_allowed=bool(g.get("dedup", {}).get("prefer_allowed_order")),
        empty_except=frozenset(key(x) for x in skip["except"]) if skip else None,
        columns=cols,
        drop_label=g.get("drop_event") or gc.table.tdef.name,
        also_at=also_at,
        blank_attrs=tuple(key(a) for a in blank["attributes"]) if blank else (),
        blank_where_attr=key(where_["attribute"]) if where_ else None,
        blank_where_values=tuple(v.strip().upper() for v in where_["values"]) if where_ else (),
    )


def generator_paths(g: GeneratorPlan) -> tuple[PathSpec, ...]:
    """The paths of the elements a generator reads: for_each / unpivot.of / groups.of, then also_at."""
    first = g.for_each or g.unpivot_of or g.groups_of
    return ((first,) if first is not None else ()) + g.also_at


def _record_kinds(tables: list[TablePlan]) -> tuple[RecordKind, ...]:
    kinds: dict[str, RecordKind] = {}
    for tp in tables:
        for g in tp.generators:
            for ps in generator_paths(g):
                if not ps.steps or ps.steps[-1].tag in (".", ".."):
                    continue
                tag = ps.steps[-1].tag
                where = (f"under {g.parent_table} rows: " if g.parent_table else "") + ps.text
                k = kinds.get(tag)
                if k is None:
                    kinds[tag] = RecordKind(tag, tp.name, (where,))
                elif where not in k.places:
                    kinds[tag] = RecordKind(tag, k.table, k.places + (where,))
    return tuple(kinds.values())


def _also_at_path(text: str, where: str, ci: bool, up_limit: int) -> PathSpec:
    """An ``also_at`` path: elements, and no further up than the scope element (the parser stops
    at the end of document.scope: nothing outside it is there to read)."""
    ps = parse_path(text, where, False, ci)
    depth = 0
    for st in ps.steps:
        depth += -1 if st.tag == ".." else 0 if st.tag == "." else 1
        if depth < -up_limit:
            raise ContractError(
                f"{where}: path {text!r} leaves document.scope (at most {up_limit} '..' "
                "from the record element)"
            )
    if not ps.steps or ps.steps[-1].tag in (".", ".."):
        raise ContractError(f"{where}: path {text!r} must end with an element name")
    return ps
