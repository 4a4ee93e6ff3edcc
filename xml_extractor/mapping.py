"""Map one document to rows: a pure function of (compiled contract, document text).

No database access. Returns the rows per table (tuples in the table's stored-column order, ready
to bind) and the data-quality events; or raises a typed :class:`DocumentFailure`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .compiled_mapping import Reference, mapper_kind, plan_mapper
from .contract.compiler import (
    ColumnPlan,
    DocContext,
    GeneratorPlan,
    MappingPlan,
    Route,
    Scope,
    TablePlan,
    generator_paths,
    select_elements,
)
from .contract.converters import BadValue, Rounded, cut_utf16, utf16_length
from .errors import DocumentFailure, MapFailure, ValidateFailure
from .parsing import (
    DocumentPlan,
    decode_head_and_tail,
    decode_source,
    parse_app_id,
    parse_document,
)

RAW_VALUE_LIMIT = 2000  # events keep at most this much of a raw value, and say when they cut it
# data_quality_event.locator is VARCHAR(400)/NVARCHAR(400): counted in UTF-16 units, which fits
# every engine (SQL Server counts units, the others characters, never more than units)
LOCATOR_LIMIT = 400

Event = tuple  # (table, column, event_type, raw_value, reason, locator)


@dataclass
class MappedApplication:
    app_id: int
    rows: dict[str, list[tuple]]
    events: list[Event]
    parse_ms: float = 0.0
    map_ms: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dicts(self, plan: MappingPlan) -> dict[str, list[dict]]:
        out = {}
        for t in plan.tables:
            rows = self.rows.get(t.name, [])
            if rows:
                out[t.name] = [dict(zip(t.stored_names, r)) for r in rows]
        return out


def _raw_for_event(raw: Any) -> str | None:
    if raw is None:
        return None
    s = raw if isinstance(raw, str) else str(raw)
    if len(s) > RAW_VALUE_LIMIT:
        return s[:RAW_VALUE_LIMIT] + f"... [{len(s)} characters in all]"
    return s


def locate(el: Any) -> str:
    """``application/contact[2]/contact_address[1]``: where in the document an event comes from."""
    parts: list[str] = []
    while el is not None and len(parts) < 12:
        parent = el.getparent()
        if parent is None:
            parts.append(el.tag)
            break
        same = [c for c in parent if c.tag == el.tag]
        parts.append(f"{el.tag}[{same.index(el) + 1}]" if len(same) > 1 else el.tag)
        if el.tag == "application":
            break
        el = parent
    return fit_locator("/".join(reversed(parts)))


def fit_locator(loc: str) -> str:
    """A locator that fits its column: the end of the path (the element itself) is kept,
    the beginning cut to '…'."""
    if len(loc) * 2 <= LOCATOR_LIMIT or (
        len(loc) <= LOCATOR_LIMIT and (loc.isascii() or utf16_length(loc) <= LOCATOR_LIMIT)
    ):
        return loc
    return "…" + cut_utf16(loc[::-1], LOCATOR_LIMIT - 1)[::-1]


def _event(
    doc: DocContext,
    table: str,
    column: str | None,
    kind: str,
    raw: Any,
    reason: str,
    element: Any = None,
) -> None:
    doc.events.append(
        (
            table,
            column,
            kind,
            _raw_for_event(raw),
            reason,
            locate(element) if element is not None else None,
        )
    )


def _text_value(col: ColumnPlan, raw: str, scope: Scope, table: str) -> Any:
    """Raw attribute text -> column value: trim, '' -> NULL, transforms, pattern, convert."""
    s = raw.strip()
    if not s:
        return None  # empty strings are NULL
    return _convert(col, col.text_fn, s, raw, scope, table)  # type: ignore[arg-type]


def _named(scope: Scope, reason: str) -> str:
    """Events of an unpivoted row name the attribute it came from ('DIE_Plus_Score: ...')."""
    return reason if scope.unpivot_name is None else f"{scope.unpivot_name}: {reason}"


def _convert(col: ColumnPlan, fn: Any, value: Any, raw: Any, scope: Scope, table: str) -> Any:
    """Apply a converter; a rounded value is kept with an event, a bad one meets on_invalid."""
    try:
        return fn(value)
    except Rounded as r:
        if scope.doc.observe is not None:
            scope.doc.observe(table, col.name, raw, r, scope)
        _event(
            scope.doc, table, col.name, "value_rounded", raw, _named(scope, r.reason), scope.element
        )
        return r.value
    except BadValue as b:
        if scope.doc.observe is not None:
            scope.doc.observe(table, col.name, raw, b, scope)
        return _invalid(col, scope, table, raw, b)


def _column_value(col: ColumnPlan, scope: Scope, row: dict, table: str) -> Any:
    raw = col.fetch(scope, row)
    value: Any
    if raw is None:
        value = None
    elif col.textual:
        value = _text_value(col, raw if isinstance(raw, str) else str(raw), scope, table)
    else:
        value = _convert(col, col.convert, raw, raw, scope, table)
    if col.path is not None:
        _path_conflicts(col, scope, table, value)
    if col.fallbacks:
        if value is None:
            value = _fallback_value(col, scope, row, table)
        elif col.fallback_conflict:
            _other_places(col, scope, row, table, value)
    if value is None and not col.nullable:
        return _missing(col, scope, table)
    return value


def _fallback_value(col: ColumnPlan, scope: Scope, row: dict, table: str) -> Any:
    """The column's own source gave nothing usable: its fallback sources, in order."""
    for fetch, textual, label in col.fallbacks:
        raw = fetch(scope, row)
        if raw is None:
            continue
        if textual:
            value = _text_value(col, raw if isinstance(raw, str) else str(raw), scope, table)
        else:
            value = _convert(col, col.convert, raw, raw, scope, table)
        if value is not None:
            if col.fallback_event:
                _event(
                    scope.doc,
                    table,
                    col.name,
                    "fallback_applied",
                    raw,
                    f"no usable value from {col.source_label}; {label} used",
                    scope.element,
                )
            return value
    return None


def _other_places(col: ColumnPlan, scope: Scope, row: dict, table: str, used: Any) -> None:
    """A column whose fallbacks are other places of the same attribute (``fallback_conflict``):
    when one of them carries a different value, that value is not stored -- say so."""
    for fetch, textual, label in col.fallbacks:
        raw = fetch(scope, row)
        if raw is None or (textual and not str(raw).strip()):
            continue
        try:
            other = col.text_fn(str(raw).strip()) if textual else col.convert(raw)  # type: ignore[misc]
        except (BadValue, Rounded):
            other = None
        if other != used:
            _value_conflict(
                scope,
                table,
                col,
                raw,
                f"{label} differs from {col.source_label}, whose value is stored; not stored",
                scope.element,
            )


def _value_conflict(
    scope: Scope, table: str, col: ColumnPlan, raw: Any, reason: str, element: Any
) -> None:
    """The ``value_conflict`` event of a value ``col`` read at ``element`` and did not store."""
    _event(scope.doc, table, col.name, "value_conflict", raw, _named(scope, reason), element)


_REFUSED = object()  # an earlier element's value that its column refuses: never the stored one


def _path_conflicts(col: ColumnPlan, scope: Scope, table: str, used: Any) -> None:
    """A path that matches several elements reads the last (``used`` is what came of it): each
    earlier one whose value differs is a ``value_conflict`` event, never a silent drop."""
    ps = col.path
    assert ps is not None
    doc, st = scope.doc, ps.steps
    if not st:
        return  # an attribute of the element itself
    if len(st) == 1 and st[0].pred_attr is None and st[0].tag not in (".", ".."):
        if doc.child(scope.element, st[0].tag)[1] < 2:
            return
    # distinct elements: a step after ``..`` reaches the same element once per child it left
    found = list(
        {id(e): e for e in reversed(select_elements(scope.element, st, doc.attrs_of))}.values()
    )
    if len(found) < 2:
        return
    found.reverse()
    last = (doc.attrs_of(found[-1]).get(ps.attribute) or "").strip()  # type: ignore[arg-type]
    for el in found[:-1]:
        raw = doc.attrs_of(el).get(ps.attribute)  # type: ignore[arg-type]
        if raw is None or not raw.strip() or raw.strip() == last:
            continue  # nothing there, or the very text the last one has
        try:
            other = col.text_fn(raw.strip())  # type: ignore[misc]
        except Rounded as r:
            other = r.value  # what would have been stored
        except BadValue:
            other = _REFUSED
        if other == used:
            continue
        _value_conflict(
            scope,
            table,
            col,
            raw,
            f"{col.source_label} matches {len(found)} elements: the last one's value is "
            "stored, not this one's",
            el,
        )


def _invalid(col: ColumnPlan, scope: Scope, table: str, raw: Any, bad: BadValue) -> Any:
    doc, el = scope.doc, scope.element
    policy = col.on_invalid
    reason = _named(scope, bad.reason)
    if policy == "fail":
        raise MapFailure(f"{table}.{col.name}: {reason}", "InvalidValue")
    if policy == "truncate" and bad.fixed is not None:
        _event(doc, table, col.name, "value_truncated", raw, f"{reason}; truncated", el)
        return bad.fixed
    if policy == "default" and col.default is not None:
        _event(
            doc,
            table,
            col.name,
            "default_applied",
            raw,
            f"{reason}; default {col.default} used",
            el,
        )
        return col.default
    _event(doc, table, col.name, bad.kind, raw, f"{reason}; stored NULL", el)
    if not col.nullable:
        return _missing(col, scope, table)
    return None


def _missing(col: ColumnPlan, scope: Scope, table: str) -> Any:
    if col.on_missing == "default" and col.default is not None:
        _event(
            scope.doc,
            table,
            col.name,
            "default_applied",
            None,
            f"no usable value for NOT NULL column; default {col.default} used",
            scope.element,
        )
        return col.default
    if col.on_missing == "null":
        return None  # a required key: the row is dropped by the generator with its own event
    raise MapFailure(
        f"{table}.{col.name} is NOT NULL and the document has no usable value for it",
        "MissingValue",
    )


def _build_row(gen: GeneratorPlan, scope: Scope) -> dict:
    """Attribute columns are driven by the attributes the element has (most mapped attributes
    are absent from any one element); then the other sources, in contract order."""
    table = gen.table
    row = gen.template.copy()
    amap = gen.attr_map
    for k, v in scope.attrs.items():
        cols = amap.get(k)
        if cols is not None:
            for col in cols:
                row[col.name] = _text_value(col, v, scope, table)
    for col in gen.attr_notnull:
        if row[col.name] is None:
            row[col.name] = _missing(col, scope, table)
    for col in gen.others:
        row[col.name] = _column_value(col, scope, row, table)
    return row


def _all_empty(attrs: dict, except_: frozenset[str]) -> bool:
    return all(not (k not in except_ and v and v.strip()) for k, v in attrs.items())


Build = Callable[[GeneratorPlan, Scope], dict]


def _run_generator(
    gen: GeneratorPlan,
    doc: DocContext,
    record: Any,
    kept: dict[str, list[tuple[dict, Any]]],
    build: Build = _build_row,
) -> list[tuple[dict, Any, int, int]]:
    """-> [(row values, element, priority, position)] before dedup. ``build`` makes one row:
    the interpreted ``_build_row`` or the compiled mapper's (compiled_mapping.py)."""
    out: list[tuple[dict, Any, int, int]] = []
    if gen.unpivot_of is not None:
        for el in _selected(gen, record, doc):
            scope = Scope(doc, el)
            attrs = scope.attrs
            for name, label in zip(gen.unpivot_names, gen.unpivot_labels):
                v = attrs.get(name.lower() if doc.ci else name)
                if v is None or not v.strip():
                    continue
                scope.unpivot_name, scope.unpivot_value = label, v
                row = build(gen, scope)
                if _keep(gen, doc, row, v, el, label):
                    out.append((row, el, 0, len(out)))
        return out
    if gen.groups_of is not None:
        return _run_groups(gen, doc, record, build)
    if gen.parent_table is not None:
        origins = kept.get(gen.parent_table, [])
    else:
        origins = [({}, record)]
    assert gen.for_each is not None
    for parent_values, parent_el in origins:
        for el in _selected(gen, parent_el, doc):
            attrs = doc.attrs_of(el)
            priority = 0
            if gen.allowed_attr is not None:
                code = (attrs.get(gen.allowed_attr) or "").strip().upper()
                if code not in gen.allowed_values:
                    _not_allowed(gen, doc, attrs, el, code)
                    continue
                priority = gen.allowed_values.index(code)
            if gen.empty_except is not None and _all_empty(attrs, gen.empty_except):
                continue  # an element with nothing but its type writes no row of NULLs
            scope = Scope(doc, el, parent_values, attrs)
            row = build(gen, scope)
            if gen.blank_attrs and _blank(gen, attrs):
                _drop_blank(gen, doc, row, attrs, el)
                continue
            if _keep(gen, doc, row, None, el):
                out.append((row, el, priority, len(out)))
    return out


def _not_allowed(gen: GeneratorPlan, doc: DocContext, attrs: dict, el: Any, code: str) -> None:
    """The event of an element whose ``allowed`` code is not one of the generator's."""
    _event(
        doc,
        gen.table,
        gen.allowed_attr,
        "row_dropped",
        attrs.get(gen.allowed_attr),  # type: ignore[arg-type]
        f"{gen.drop_label} dropped: {gen.allowed_attr} {code!r} is not one of "
        f"{', '.join(gen.allowed_values)}",
        el,
    )


def _generator_elements(gen: GeneratorPlan, base: Any, doc: DocContext) -> list:
    """The elements of every path of ``gen`` under ``base`` (generator_paths: its own, then its
    ``also_at`` places), in that order."""
    return [e for ps in generator_paths(gen) for e in select_elements(base, ps.steps, doc.attrs_of)]


def _selected(gen: GeneratorPlan, base: Any, doc: DocContext) -> list:
    """:func:`_generator_elements`, remembered in ``doc.selected`` (the unmapped_record check)."""
    found = _generator_elements(gen, base, doc)
    doc.selected.update(found)
    return found


def _blank(gen: GeneratorPlan, attrs: dict) -> bool:
    """drop_when_blank: every listed attribute absent or blank (and the where-rule's code matches)."""
    if (
        gen.blank_where_attr is not None
        and (attrs.get(gen.blank_where_attr) or "").strip().upper() not in gen.blank_where_values
    ):
        return False
    return not any((attrs.get(a) or "").strip() for a in gen.blank_attrs)


def _drop_blank(gen: GeneratorPlan, doc: DocContext, row: dict, attrs: dict, el: Any) -> None:
    """The event of a blank element: which one (its key values), why, and what lay under it."""
    ident = " ".join(f"{k} {row[k]}" for k in gen.required if row.get(k) is not None)
    what = f"{gen.drop_label} {ident}".rstrip()
    cond = (
        f" ({gen.blank_where_attr} {(attrs.get(gen.blank_where_attr) or '').strip()})"
        if gen.blank_where_attr is not None
        else ""
    )
    under = [
        f"{len(found)} {ps.steps[-1].tag}"
        for ps in gen.child_paths
        for found in [select_elements(el, ps.steps, doc.attrs_of)]
        if found
    ]
    _event(
        doc,
        gen.table,
        ",".join(gen.blank_attrs),
        "row_dropped",
        ident or None,
        f"{what} dropped: {', '.join(gen.blank_attrs)} empty{cond}, not a real {gen.drop_label}"
        + (f"; with it {', '.join(under)} not mapped" if under else ""),
        el,
    )


def _run_groups(
    gen: GeneratorPlan, doc: DocContext, record: Any, build: Build = _build_row
) -> list[tuple[dict, Any, int, int]]:
    """A ``groups`` generator: each attribute group of each element (``item1_*``..``item4_*``, the
    fields of one product type) with a non-empty ``present_if`` field (default: any field) is a row."""
    out: list[tuple[dict, Any, int, int]] = []
    assert gen.groups_of is not None
    for el in _selected(gen, record, doc):
        scope = Scope(doc, el)
        attrs = scope.attrs
        for group in gen.groups:
            fields = gen.present_if or tuple(group.fields)
            if not any(
                (attrs.get(group.fields[f]) or "").strip() for f in fields if f in group.fields
            ):
                continue  # nothing of this group is there: no row, nothing lost
            scope.group = group
            scope.unpivot_name = f"group {group.key}"  # events name the group they come from
            row = build(gen, scope)
            if _keep(gen, doc, row, None, el, f"group {group.key}"):
                out.append((row, el, 0, len(out)))
    return out


def _keep(
    gen: GeneratorPlan, doc: DocContext, row: dict, raw: Any, el: Any, attribute: str | None = None
) -> bool:
    """A row without a required value is dropped with an event naming the attribute (for an
    unpivoted row, the attribute it came from: 'score DIE_Plus_Score dropped: ...')."""
    for r in gen.required:
        if row.get(r) is None:
            if (
                attribute is None
            ):  # an element's row: named by its other required values ('score V4 dropped')
                attribute = (
                    " ".join(str(row[k]) for k in gen.required if k != r and row.get(k) is not None)
                    or None
                )
            what = f"{gen.drop_label} {attribute}" if attribute else gen.drop_label
            _event(doc, gen.table, r, "row_dropped", raw, f"{what} dropped: no usable {r}", el)
            return False
    return True


def _lost_values(loser: dict, winner: dict, key: tuple[str, ...]) -> str:
    """What a row that loses a key clash held and the winner does not ('; not kept: score=45.31'):
    a duplicate_key event carries the values it drops, so a reconciliation can find them."""
    lost = [
        f"{k}={v}"
        for k, v in loser.items()
        if k not in key and v is not None and winner.get(k) != v
    ]
    text = ", ".join(lost)
    return f"; not kept: {text[:RAW_VALUE_LIMIT]}" if lost else "; nothing else differs"


def _dedup(
    gen: GeneratorPlan, doc: DocContext, cands: list[tuple[dict, Any, int, int]]
) -> list[tuple[dict, Any, int, int]]:
    if len(cands) < 2:
        return cands  # nothing to clash with (and already in position order)
    winners: dict[tuple, tuple[dict, Any, int, int]] = {}
    for cand in cands:
        key = tuple(cand[0].get(k) for k in gen.dedup_key)
        prev = winners.get(key)
        if prev is None:
            winners[key] = cand
            continue
        # the higher-priority value wins; on a tie, the later element
        if gen.prefer_allowed and prev[2] < cand[2]:
            loser, winner = cand, prev
        else:
            loser, winner = prev, cand
        winners[key] = winner
        _duplicate_key(
            doc,
            gen.table,
            gen.dedup_key,
            key,
            f"{gen.drop_label} dropped: another element has the same {', '.join(gen.dedup_key)} "
            f"{', '.join(map(str, key))} and takes precedence",
            loser[0],
            winner[0],
            loser[1],
        )
    return sorted(winners.values(), key=lambda c: c[3])


def _duplicate_key(
    doc: DocContext,
    table: str,
    columns: tuple[str, ...],
    key: tuple,
    what: str,
    loser: dict,
    winner: dict,
    el: Any = None,
) -> None:
    """The ``duplicate_key`` event of a row that lost to another with the same key: what it held
    and the winner does not goes with it (``_lost_values``)."""
    _event(
        doc,
        table,
        ",".join(columns),
        "duplicate_key",
        "|".join(map(str, key)),
        what + _lost_values(loser, winner, columns),
        el,
    )


def _map_table(
    tp: TablePlan, doc: DocContext, record: Any, kept: dict, build: Build = _build_row
) -> list[tuple[dict, Any]]:
    rows: list[tuple[dict, Any]] = []
    for gen in tp.generators:
        cands = _dedup(gen, doc, _run_generator(gen, doc, record, kept, build))
        for row, el, _, _ in cands:
            if tp.skip_when_empty and all(row.get(c) is None for c in tp.data_columns):
                continue
            rows.append((row, el))
    if len(tp.generators) > 1:
        rows = _merge_generators(tp, doc, rows)
    return rows


def _merge_generators(
    tp: TablePlan, doc: DocContext, rows: list[tuple[dict, Any]]
) -> list[tuple[dict, Any]]:
    """The rows of a table with several generators, which may produce the same key: the later
    wins, with an event."""
    seen: dict[tuple, int] = {}
    out: list[tuple[dict, Any]] = []
    for row, el in rows:
        key = tuple(row.get(k) for k in tp.primary_key)
        if key in seen:
            _duplicate_key(
                doc,
                tp.name,
                tuple(tp.primary_key),
                key,
                f"{tp.name}: a later source has the same key and takes precedence",
                out[seen[key]][0],
                row,
            )
            out[seen[key]] = (row, el)
        else:
            seen[key] = len(out)
            out.append((row, el))
    return out


def map_record(
    plan: MappingPlan, record: Any, app_id: int, observe: Any = None, mapper: str | None = None
) -> MappedApplication:
    """``observe`` (profile's hook) sees every value a converter refused or rounded. ``mapper``:
    ``compiled`` (generated row builders, compiled_mapping.py) or ``interpreted`` (the
    reference); None: what ``XML_EXTRACTOR_MAPPER`` says, compiled by default. Both give the
    same rows, events and failures."""
    doc = DocContext(app_id, plan.case_insensitive, observe)
    rows: dict[str, list[tuple]]
    if (mapper or mapper_kind()) == "interpreted":
        kept: dict[str, list[tuple[dict, Any]]] = doc.kept
        rows = {}
        for tp in plan.tables:
            trows = _map_table(tp, doc, record, kept)
            kept[tp.name] = trows
            if trows:
                as_tuple = tp.as_tuple
                rows[tp.name] = [as_tuple(r) for r, _ in trows]
    else:
        rows = plan_mapper(plan, REFERENCE)(record, doc)
    if plan.record_kinds:
        _unmapped_records(plan, doc, record)
    return MappedApplication(app_id=app_id, rows=rows, events=doc.events)


REFERENCE = Reference(
    _build_row,
    _column_value,
    _missing,
    _text_value,
    run_generator=_run_generator,
    dedup=_dedup,
    keep=_keep,
    blank=_blank,
    drop_blank=_drop_blank,
    all_empty=_all_empty,
    not_allowed=_not_allowed,
    merge_generators=_merge_generators,
)


def _unmapped_records(plan: MappingPlan, doc: DocContext, record: Any) -> None:
    """Every element of a kind some generator makes rows of (a contact, an address, ...) that lies
    inside the scope where no generator reads it is an ``unmapped_record`` event, never a silent
    drop (a contact beside the record element when the contract does not say it may be there)."""
    scope_el = record
    for _ in range(len(plan.document.record_steps) - len(plan.document.scope_steps)):
        parent = scope_el.getparent()
        if parent is None:
            break
        scope_el = parent
    kinds = {k.tag: k for k in plan.record_kinds}
    found = list(scope_el.iter(*kinds))
    if doc.selected.issuperset(found):
        # (also when nothing is found) a generator read each: each is in ``read`` below, which
        # holds every element the generators select and those under the parents they dropped
        return
    read: set = set()
    elements_of: dict[str, list] = {}
    for (
        tp
    ) in plan.tables:  # every element a generator reads, kept or not (a dropped one has its event)
        mine = elements_of.setdefault(tp.name, [])
        for gen in tp.generators:
            bases = (
                elements_of.get(gen.parent_table, []) if gen.parent_table is not None else [record]
            )
            for base in bases:
                mine += _generator_elements(gen, base, doc)
        read.update(mine)
    flagged: set = set()
    for el in found:
        if el in read:
            continue
        up = el.getparent()
        while up is not None and up not in flagged and up is not scope_el:
            up = up.getparent()
        if up is not None and up in flagged:
            continue  # inside an element already reported
        flagged.add(el)
        k = kinds[el.tag]
        attrs = " ".join(f'{a}="{v}"' for a, v in el.attrib.items() if v.strip())
        _event(
            doc,
            k.table,
            None,
            "unmapped_record",
            attrs or None,
            f"{el.tag} where the contract does not read it (it reads {el.tag} at: {'; '.join(k.places)}); "
            "not mapped",
            el,
        )


def parse_checked(
    document: DocumentPlan,
    source: Any,
    expected_app_id: int | None = None,
    min_length: int = 1,
    tail: Any = None,
) -> tuple[Any, int]:
    """Decode, parse (scoped, safely) and read the document's ID, checked against the row's:
    (parsed document, app_id). What map_document and profile do before mapping."""
    if tail is None:
        text = decode_source(source, min_length)
    else:  # only the document's head and tail were fetched
        text, tail = decode_head_and_tail(source, tail, min_length)
    parsed = parse_document(text, document, tail)
    app_id = parse_app_id(parsed.document_id, document)
    if expected_app_id is not None and app_id != expected_app_id:
        raise ValidateFailure(
            f"the document's /{document.root}/{'/'.join(document.id_steps)}/@{document.id_attribute} "
            f"is {app_id} but the row's app_id is {expected_app_id}",
            "IdMismatch",
        )
    return parsed, app_id


@functools.lru_cache(maxsize=1)
def _packaged_records() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(name, root, record steps) of every packaged contract, compiled once per process."""
    from .contract.compiler import compile_contract
    from .contract.loader import load_contract, packaged_contracts

    plans = [(n, compile_contract(load_contract(n)).document) for n in packaged_contracts()]
    return tuple((n, d.root, d.record_steps) for n, d in plans)


def missing_record(doc: DocumentPlan, root: Any) -> ValidateFailure:
    """The failure of a document without the contract's record: when it has the record of another
    packaged contract, it names that contract and the flag to run it with."""
    for name, other_root, steps in _packaged_records():
        if (other_root, steps) == (doc.root, doc.record_steps) or root.tag != other_root:
            continue
        el = root
        for step in steps:
            el = el.find(step) if el is not None else None
        if el is not None:
            return ValidateFailure(
                f"this is a {name} document (it has /{other_root}/{'/'.join(steps)}, not "
                f"{doc.record_path}): run it with --contract {name}",
                "OtherContractDocument",
            )
    return ValidateFailure(f"no {doc.record_path} in the document", "NoRecordElement")


def map_document(
    plan: MappingPlan,
    source: Any,
    expected_app_id: int | None = None,
    min_length: int = 1,
    tail: Any = None,
) -> MappedApplication:
    """Decode, parse (scoped, safely), validate the ID and map. Raises DocumentFailure subclasses
    (and NeedFullDocument when given only a document's head and tail that do not settle it)."""
    t0 = time.perf_counter()
    parsed, app_id = parse_checked(plan.document, source, expected_app_id, min_length, tail)
    if parsed.record is None:
        raise missing_record(plan.document, parsed.root)
    t1 = time.perf_counter()
    routes = plan.extra.get("routes")
    try:
        if routes:  # a contract set: the member whose record the document has
            result = map_routed(routes, parsed.record, app_id)
        else:
            result = map_record(plan, parsed.record, app_id)
    except DocumentFailure:
        raise
    except RecursionError:
        raise MapFailure("the document is nested too deeply to map", "RecursionError") from None
    t2 = time.perf_counter()
    result.parse_ms = (t1 - t0) * 1000
    result.map_ms = (t2 - t1) * 1000
    return result


def map_routed(routes: tuple[Route, ...], scope_element: Any, app_id: int) -> MappedApplication:
    """Map the document with the member whose record element it has; its rows in the union's
    column order; ``extra["contract"]`` = (version tag, name) for processing_log. A document with
    the record elements of several members fails (AmbiguousContract): which one maps it must not
    depend on the order the contracts were given in, which two instances may not share."""
    found = []
    for r in routes:
        record = scope_element
        for step in r.record_steps:
            record = record.find(step)
            if record is None:
                break
        if record is not None:
            found.append((r, record))
    if len(found) > 1:
        which = " and ".join(f"{r.name} ({r.plan.document.record_path})" for r, _ in found)
        raise ValidateFailure(
            f"the document has the record elements of several contracts: {which}; none maps it",
            "AmbiguousContract",
        )
    for r, record in found:
        try:
            result = map_record(r.plan, record, app_id)
        except DocumentFailure as f:  # the log's reason says which contract refused it
            f.reason = f"{r.name}: {f.reason}"
            f.args = (f.reason,)
            f.contract = (r.version_tag, r.name)
            raise
        for table, positions in r.remap.items():
            rows = result.rows.get(table)
            if rows:
                result.rows[table] = [
                    tuple(row[i] if i >= 0 else None for i in positions) for row in rows
                ]
        result.extra["contract"] = (r.version_tag, r.name)
        return result
    tried = "; ".join(f"{r.name} (no {r.plan.document.record_path})" for r in routes)
    raise ValidateFailure(f"the document matches none of the contracts: {tried}", "NoContract")
