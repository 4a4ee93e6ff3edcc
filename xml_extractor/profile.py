"""Profile documents against a contract before the run: where would it lose data?

A sample of the source table (ids spread over the whole id range, picked by keyset from evenly
spaced points, never OFFSET) or a set of files is parsed and mapped with the contract's own
compiled plan -- the same converters, transforms, patterns and enum lookups the run uses, seen
through the mapper's ``observe`` hook -- and summarised:

- per column: how many values, how many the converter would reject, round, truncate or default
  (with examples), the longest value against the declared length, the most integer digits and
  decimal places against precision/scale, the date-times whose time would be lost;
- per attribute inside the parsed scope that no column reads: how many documents carry it (the
  "unmapped" list), with examples;
- per enum: the codes seen that the contract does not know.

It tells *capacity* loss -- a valid value the declared type cannot hold (too long, too many digits
or decimal places, a time the type drops): the contract must change -- from *invalid* values the
rules reject on purpose (an 8-digit SSN, an unknown code): the data is wrong. A number with more
significant digits than a binary float carries (``3333.3333333333335``), rounded to the column's
scale, is *precision noise*, a class of its own: nothing meaningful is lost. A report with any
capacity loss is what makes ``xml-extractor profile`` exit 1; every document that would fail is
named (its file, or its app_id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import converters as cv
from .contract.compiler import MappingPlan, Scope, compile_contract, parse_path
from .contract.expressions import tokenize
from .errors import DocumentFailure, ValidateFailure
from .mapping import map_record, parse_checked

if TYPE_CHECKING:
    from .contract.loader import Contract
    from .db.database import Database

EXAMPLES = 3  # examples kept per column and problem
FAILED_LISTED = (
    10_000  # failing documents named one by one (the counts by stage are always complete)
)
ElementPath = tuple[
    str, ...
]  # tags from the root: ("Provenir", "Request", "CustData", "application")


@dataclass
class ColumnProfile:
    """What the sample did to one contract column."""

    table: str
    column: str
    declared: str  # "string(20)", "decimal(10,5)", "date", ...
    stored: bool
    values: int = 0  # non-NULL values the column would hold
    events: Counter = field(default_factory=Counter)  # data-quality event kind -> count
    capacity: Counter = field(default_factory=Counter)  # CAPACITY_* label -> count
    invalid: int = 0  # values the rules reject on purpose
    longest: int = 0  # strings: in the target's unit (characters; UTF-16 units on SQL Server), kept and refused values
    max_integer_digits: int = 0  # decimals and integers
    max_decimal_places: int = 0
    time_lost: int = 0  # date-times whose time of day (or sub-millisecond part) the type drops
    capacity_examples: list[dict] = field(default_factory=list)
    invalid_examples: list[dict] = field(default_factory=list)
    precision_noise: int = 0  # float noise rounded to the scale (not a capacity loss)
    noise_examples: list[dict] = field(default_factory=list)

    @property
    def capacity_loss(self) -> int:
        return sum(self.capacity.values())


@dataclass
class UnmappedAttribute:
    element: str  # "Provenir/Request/CustData/application"
    attribute: str
    documents: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class EnumProfile:
    enum: str
    columns: set[str] = field(default_factory=set)
    unknown: Counter = field(default_factory=Counter)  # code -> times seen


@dataclass
class ProfileReport:
    contract: str
    source: str
    documents: int = 0
    mapped: int = 0
    failed: Counter = field(default_factory=Counter)  # stage -> documents that would fail
    failure_examples: list[dict] = field(default_factory=list)
    failed_files: list[dict] = field(
        default_factory=list
    )  # every failing document: path (files) or app_id, stage, reason
    columns: dict[tuple[str, str], ColumnProfile] = field(default_factory=dict)
    unmapped: dict[tuple[ElementPath, str], UnmappedAttribute] = field(default_factory=dict)
    enums: dict[str, EnumProfile] = field(default_factory=dict)

    @property
    def capacity_columns(self) -> list[ColumnProfile]:
        """Columns where a valid value would not fit: the contract must change."""
        return [c for c in self.columns.values() if c.capacity_loss]

    @property
    def noise_columns(self) -> list[ColumnProfile]:
        """Columns whose values carried float noise, rounded to the scale (not a loss)."""
        return [c for c in self.columns.values() if c.precision_noise]

    def as_dict(self) -> dict:
        def col(c: ColumnProfile) -> dict:
            return {
                "table": c.table,
                "column": c.column,
                "declared": c.declared,
                "stored": c.stored,
                "values": c.values,
                "events": dict(c.events),
                "capacity_loss": c.capacity_loss,
                "capacity": dict(c.capacity),
                "invalid": c.invalid,
                "longest": c.longest,
                "max_integer_digits": c.max_integer_digits,
                "max_decimal_places": c.max_decimal_places,
                "time_lost": c.time_lost,
                "capacity_examples": c.capacity_examples,
                "invalid_examples": c.invalid_examples,
                "precision_noise": c.precision_noise,
                "precision_noise_examples": c.noise_examples,
            }

        return {
            "contract": self.contract,
            "source": self.source,
            "documents": self.documents,
            "mapped": self.mapped,
            "failed": dict(self.failed),
            "failure_examples": self.failure_examples,
            "failed_files": self.failed_files,
            "capacity_loss_columns": [f"{c.table}.{c.column}" for c in self.capacity_columns],
            "precision_noise_columns": [f"{c.table}.{c.column}" for c in self.noise_columns],
            "columns": [col(c) for c in self.columns.values()],
            "unmapped": [
                {
                    "element": u.element,
                    "attribute": u.attribute,
                    "documents": u.documents,
                    "examples": u.examples,
                }
                for u in sorted(self.unmapped.values(), key=lambda u: -u.documents)
            ],
            "enums": [
                {
                    "enum": e.enum,
                    "columns": sorted(e.columns),
                    "unknown_codes": dict(e.unknown.most_common()),
                }
                for e in self.enums.values()
                if e.unknown
            ],
        }


def _declared(spec: dict) -> str:
    t = spec["type"]
    if t == "string":
        return f"string({spec['length']})"
    if t == "decimal":
        return f"decimal({spec['precision']},{spec['scale']})"
    return t + (f" enum {spec['enum']}" if spec.get("enum") else "")


# -- which attributes the contract reads ---------------------------------------------------------


def _walk_steps(base: ElementPath, steps: Iterable[Any], reads: set, ci: bool) -> ElementPath:
    """Apply path steps to an element path; predicate attributes count as read."""
    path = base
    for st in steps:
        if st.tag == ".":
            pass
        elif st.tag == "..":
            path = path[:-1]
        else:
            path = path + (st.tag,)
        if st.pred_attr is not None:
            reads.add((path, st.pred_attr))
    return path


def read_attributes(contract: Contract) -> set[tuple[ElementPath, str]]:
    """Every (element path from the root, attribute) the contract reads: columns' attributes, paths
    (and their predicates), expressions' ``@attr``, fallbacks, unpivot names, ``allowed`` and the
    id. Attribute names are case-folded when the contract matches them case-insensitively."""
    raw = contract.raw
    d = raw["document"]
    ci = bool(d.get("case_insensitive_attributes", False))

    def key(a: str) -> str:
        return a.lower() if ci else a

    root: ElementPath = (d["root"],)
    record = root + tuple(d["record_path"].split("/"))
    reads: set[tuple[ElementPath, str]] = set()
    id_parts = d["id_path"].split("/")
    reads.add((root + tuple(id_parts[:-1]), key(id_parts[-1][1:])))
    table_elements: dict[str, list[ElementPath]] = {}
    for t in raw["tables"]:
        gens = t["rows"] if isinstance(t["rows"], list) else [t["rows"]]
        bases_of_table: list[ElementPath] = []
        for g in gens:
            # also_at: the same elements at further places (relative to the record)
            also = [
                _walk_steps(record, parse_path(a, "also_at", False, ci).steps, reads, ci)
                for a in g.get("also_at", [])
            ]
            if "unpivot" in g:
                bases = [
                    _walk_steps(
                        record,
                        parse_path(g["unpivot"]["of"], "unpivot", False, ci).steps,
                        reads,
                        ci,
                    )
                ] + also
                for name in g["unpivot"][
                    "names"
                ]:  # "attr" or {"attribute": "attr", "name": "row name"}
                    for base in bases:
                        reads.add((base, key(name if isinstance(name, str) else name["attribute"])))
            elif (
                "groups" in g
            ):  # attribute groups: the compiler makes sure a column reads every field
                bases = [
                    _walk_steps(
                        record, parse_path(g["groups"]["of"], "groups", False, ci).steps, reads, ci
                    )
                ] + also
                for grp in g["groups"]["groups"]:
                    for attr in grp["attributes"].values():
                        for base in bases:
                            reads.add((base, key(attr)))
            else:
                steps = parse_path(g["for_each"], "for_each", False, ci).steps
                origins = (
                    table_elements.get(g["parent_table"], []) if g.get("parent_table") else [record]
                )
                bases = [_walk_steps(o, steps, reads, ci) for o in origins] + also
                blank = g.get("drop_when_blank")
                for b in bases if blank else ():
                    reads.update(
                        (b, key(a))
                        for a in blank["attributes"]
                        + ([blank["where"]["attribute"]] if blank.get("where") else [])
                    )
            if g.get("allowed"):
                for b in bases:
                    reads.add((b, key(g["allowed"]["attribute"])))
            overrides = g.get("values", {})
            for c in t["columns"]:
                sources = [overrides.get(c["name"], c)] + list(c.get("fallback", []))
                for src in sources:
                    for b in bases:
                        _source_reads(src, b, reads, ci, table_elements)
            bases_of_table.extend(bases)
        table_elements[t["name"]] = bases_of_table
    return reads


def _source_reads(
    src: dict, base: ElementPath, reads: set, ci: bool, table_elements: dict[str, list[ElementPath]]
) -> None:
    if (
        "kept" in src
    ):  # a value of an earlier table's kept row: its element's path (and the where rule)
        k = src["kept"]
        for kb in table_elements.get(k["table"], []):
            if k.get("where"):
                reads.add((kb, k["where"]["attribute"].lower() if ci else k["where"]["attribute"]))
            if "path" in k:
                ps = parse_path(k["path"], "kept.path", True, ci)
                reads.add((_walk_steps(kb, ps.steps, reads, ci), ps.attribute))
    elif "attribute" in src:
        reads.add((base, src["attribute"].lower() if ci else src["attribute"]))
    elif "path" in src:
        ps = parse_path(src["path"], "path", True, ci)
        reads.add((_walk_steps(base, ps.steps, reads, ci), ps.attribute))
    elif "expression" in src:
        for tok in tokenize(src["expression"]):
            if tok.kind == "attr":
                reads.add((base, tok.value[1:].lower() if ci else tok.value[1:]))


# -- the profiler ------------------------------------------------------------------------------------


class Profiler:
    """Feeds documents through the contract's plan and accumulates a :class:`ProfileReport`."""

    def __init__(
        self,
        contract: Contract,
        source: str,
        plan: MappingPlan | None = None,
        dialect: str | None = None,
    ) -> None:
        self.contract = contract
        self.plan = plan or compile_contract(
            contract, dialect
        )  # dialect: lengths in its unit (a --db profile)
        self._length = cv.utf16_length if cv.string_unit(dialect) == cv.UNIT_UTF16 else len
        self.ci = self.plan.case_insensitive
        self.report = ProfileReport(contract=contract.version_tag, source=source)
        self.reads = read_attributes(contract)
        self._stored: dict[str, tuple[tuple[ColumnProfile, str], ...]] = {}
        for t in contract.tables:
            for c in t.columns:
                self.report.columns[(t.name, c.name)] = ColumnProfile(
                    t.name, c.name, _declared(c.spec), c.stored
                )
                if c.spec.get("enum"):
                    e = self.report.enums.setdefault(c.spec["enum"], EnumProfile(c.spec["enum"]))
                    e.columns.add(f"{t.name}.{c.name}")
            self._stored[t.name] = tuple(
                (self.report.columns[(t.name, n)], t_type)
                for n, t_type in ((c.name, c.type) for c in t.stored_columns)
            )
        self._enum_of = {
            (t.name, c.name): c.spec["enum"]
            for t in contract.tables
            for c in t.columns
            if c.spec.get("enum")
        }
        self.path: str | None = (
            None  # the file being profiled (profile_files), for failure examples
        )

    # the mapper's hook: every value a converter refused or rounded, with the converter's verdict
    def _observe(self, table: str, column: str, raw: Any, exc: Any, scope: Scope) -> None:
        cp = self.report.columns.get((table, column))
        if cp is None:
            return
        label = getattr(exc, "capacity", None)
        where = f"{scope.unpivot_name}: " if scope.unpivot_name else ""
        example = {"app_id": scope.doc.app_id, "raw": _cut(raw), "reason": where + exc.reason}
        if self.path is not None:
            example["path"] = self.path
        if label == cv.PRECISION_NOISE:
            cp.precision_noise += 1
            if len(cp.noise_examples) < EXAMPLES:
                cp.noise_examples.append(example)
        elif label is not None:
            cp.capacity[label] += 1
            size = exc.size or 0
            if label == cv.CAPACITY_LENGTH:
                cp.longest = max(cp.longest, size)
            elif label == cv.CAPACITY_DIGITS:
                cp.max_integer_digits = max(cp.max_integer_digits, size)
            elif label == cv.CAPACITY_SCALE:
                cp.max_decimal_places = max(cp.max_decimal_places, size)
            elif label == cv.CAPACITY_TIME:
                cp.time_lost += 1
            if len(cp.capacity_examples) < EXAMPLES:
                cp.capacity_examples.append(example)
        else:
            cp.invalid += 1
            if len(cp.invalid_examples) < EXAMPLES:
                cp.invalid_examples.append(example)
            if exc.kind == "unknown_enum":
                enum = self._enum_of.get((table, column))
                if enum is not None:
                    self.report.enums[enum].unknown[str(raw).strip()[:80]] += 1

    def add(
        self,
        source: Any,
        expected_app_id: int | None = None,
        tail: Any = None,
        path: str | None = None,
    ) -> None:
        """One document (text or bytes; ``path``: the file it came from). A document the run would
        fail is counted by stage. NeedFullDocument (only a head was given and it did not settle the
        parse) propagates."""
        self.path = path
        try:
            parsed, app_id = parse_checked(
                self.plan.document, source, expected_app_id, self.contract.source_min_length, tail
            )
            if parsed.record is None:
                raise ValidateFailure(
                    f"no {self.plan.document.record_path} in the document", "NoRecordElement"
                )
        except DocumentFailure as f:
            self.report.documents += 1
            _count_failure(self.report, f, expected_app_id, path)
            return
        self.add_record(parsed.root, parsed.record, app_id)

    def add_record(self, root: Any, record: Any, app_id: int) -> None:
        """One parsed document whose record element this contract maps."""
        rep = self.report
        rep.documents += 1
        try:
            mapped = map_record(self.plan, record, app_id, observe=self._observe)
        except DocumentFailure as f:
            _count_failure(rep, f, app_id, self.path)
            return
        rep.mapped += 1
        for table, rows in mapped.rows.items():
            cols = self._stored[table]
            for row in rows:
                for (cp, typ), v in zip(cols, row):
                    if v is None:
                        continue
                    cp.values += 1
                    if isinstance(v, str):
                        n = self._length(v)
                        if n > cp.longest:
                            cp.longest = n
                    elif typ == "decimal":
                        n = cv.integer_digits(v)
                        if n > cp.max_integer_digits:
                            cp.max_integer_digits = n
                        p = cv.decimal_places(v)
                        if p > cp.max_decimal_places:
                            cp.max_decimal_places = p
                    elif typ in cv.INT_RANGES and isinstance(v, int):
                        n = len(str(abs(v)))
                        if n > cp.max_integer_digits:
                            cp.max_integer_digits = n
        for table, column, kind, *_ in mapped.events:
            target = rep.columns.get((table, column))
            if target is not None:
                target.events[kind] += 1
        self._unmapped(root, app_id)

    def _unmapped(self, root: Any, app_id: int) -> None:
        reads, ci, found = self.reads, self.ci, self.report.unmapped
        seen: set[tuple[ElementPath, str]] = set()
        stack: list[tuple[Any, ElementPath]] = [(root, (root.tag,))]
        while stack:
            el, path = stack.pop()
            for k, v in el.attrib.items():
                a = k.lower() if ci else k
                if (path, a) in reads or not v.strip() or (path, a) in seen:
                    continue
                seen.add((path, a))
                u = found.get((path, a))
                if u is None:
                    u = found[(path, a)] = UnmappedAttribute("/".join(path), k)
                u.documents += 1
                if len(u.examples) < EXAMPLES:
                    u.examples.append(f"{app_id}: {_cut(v, 60)}")
            for child in el:
                if isinstance(child.tag, str):
                    stack.append((child, path + (child.tag,)))


def _count_failure(
    rep: ProfileReport, f: DocumentFailure, app_id: int | None, path: str | None = None
) -> None:
    """Count a failure by stage; keep a few examples, with the file's path when profiling files
    (a document that fails to parse has no app_id to find it by)."""
    rep.failed[f.stage] += 1
    if len(rep.failed_files) < FAILED_LISTED:
        rep.failed_files.append(
            {"path": path, "app_id": app_id, "stage": f.stage, "reason": f.reason[:300]}
        )
    if len(rep.failure_examples) < EXAMPLES * 3:
        rep.failure_examples.append(
            {
                "app_id": app_id,
                "stage": f.stage,
                "reason": f.reason[:300],
                **({"path": path} if path is not None else {}),
            }
        )


class ProfileSet:
    """Several contracts over one source (a contract set): each document is parsed once and profiled
    by the member whose record element it has, as the run routes it; a document that fails before
    that, or matches no member, is counted in ``report`` (the set's own)."""

    def __init__(self, contracts: list[Contract], source: str, dialect: str | None = None) -> None:
        self.members = [Profiler(c, source, dialect=dialect) for c in contracts]
        self.report = ProfileReport(
            contract=" + ".join(c.version_tag for c in contracts), source=source
        )
        doc = self.members[
            0
        ].plan.document  # root, id and scope are the same for every member (mapping.map_routed)
        self._document = replace(
            doc, record_steps=doc.scope_steps
        )  # the parse yields the scope element
        self._records = [m.plan.document.record_steps[len(doc.scope_steps) :] for m in self.members]

    def add(
        self,
        source: Any,
        expected_app_id: int | None = None,
        tail: Any = None,
        path: str | None = None,
    ) -> None:
        first = self.members[0]
        for m in self.members:
            m.path = path
        try:
            parsed, app_id = parse_checked(
                self._document, source, expected_app_id, first.contract.source_min_length, tail
            )
        except DocumentFailure as f:
            self.report.documents += 1
            _count_failure(self.report, f, expected_app_id, path)
            return
        for member, steps in zip(self.members, self._records):
            record = parsed.record  # the scope element
            for step in steps:
                record = None if record is None else record.find(step)
            if record is not None:
                member.add_record(parsed.root, record, app_id)
                return
        self.report.documents += 1
        tried = "; ".join(m.plan.document.record_path for m in self.members)
        _count_failure(
            self.report,
            ValidateFailure(f"the document has none of the records {tried}", "NoContract"),
            app_id,
            path,
        )

    @property
    def reports(self) -> list[ProfileReport]:
        return [m.report for m in self.members]


def _cut(v: Any, n: int = 120) -> str:
    s = v if isinstance(v, str) else str(v)
    return s if len(s) <= n else s[:n] + f"... [{len(s)} characters]"


# -- sources ---------------------------------------------------------------------------------------


def sample_ids(db: Database, sample: int) -> list[int]:
    """Up to ``sample`` source ids spread evenly over the id range, ascending, never OFFSET.

    A table of at most ``sample`` rows is read whole (one keyset page). Otherwise, for each of
    ``sample`` evenly spaced points, the first id at or after it (and after the previous pick): one
    keyset probe each. Where the ids have gaps, several points meet the same id and the pass comes up
    short (ids 1..60 and 1000, sample 31: 5 ids); the rest is then taken after the ids already
    picked, spread over them (each takes its share of the next ids before the following pick), so the
    sample is exactly ``sample`` distinct ids."""
    lo, hi = db.autocommit_query(db.sql("profile_id_range"))[0]
    if lo is None:
        return []
    lo, hi = int(lo), int(hi)

    def ids_from(point: int, limit: int) -> list[int]:
        return [
            int(r[0])
            for r in db.autocommit_query(
                db.sql("profile_next_id"), {"point": point, "limit": limit}
            )
        ]

    first = ids_from(lo, sample + 1)
    if len(first) <= sample:  # the whole table fits the sample
        return first
    span = hi - lo + 1
    chosen: list[int] = []
    last = lo - 1
    for k in range(sample):
        point = max(lo + (span * k) // sample, last + 1)
        if point > hi:
            break
        row = ids_from(point, 1)
        if not row:
            break
        last = row[0]
        chosen.append(last)
    picked = set(chosen)
    while len(picked) < sample:  # fill: each pick's share of the ids that follow it
        anchors = sorted(picked)
        share = -(-(sample - len(picked)) // len(anchors))
        before = len(picked)
        for i, anchor in enumerate(anchors):
            bound = anchors[i + 1] if i + 1 < len(anchors) else hi + 1
            for x in ids_from(anchor + 1, share):
                if x >= bound or len(picked) >= sample:
                    break
                picked.add(x)
            if len(picked) >= sample:
                break
        if len(picked) == before:
            break
    return sorted(picked)


def documents_from_db(
    db: Database, plan: MappingPlan, ids: list[int], batch: int = 200
) -> Iterator[tuple[int, Any, Any]]:
    """(app_id, text, tail) in batches; the server dialects send only each document's head (as the
    run does: up to the end of the contract's scope element, and the last bytes)."""
    marker = f"</{plan.document.scope_steps[-1]}>"
    for i in range(0, len(ids), batch):
        yield from db.fetch_documents(ids[i : i + batch], marker)


def make_profiler(
    contracts: list[Contract], source: str, dialect: str | None = None
) -> Profiler | ProfileSet:
    """One contract: its profiler; several (a contract set): documents routed to their member.
    ``dialect``: the target whose string unit lengths are measured in (None: characters)."""
    return (
        Profiler(contracts[0], source, dialect=dialect)
        if len(contracts) == 1
        else ProfileSet(contracts, source, dialect)
    )


def profile_db(
    db: Database,
    sample: int,
    progress: Callable[[int], None] | None = None,
    contracts: list[Contract] | None = None,
) -> Profiler | ProfileSet:
    """Profile a sample of ``sample`` documents of the source table spread over its id range
    (``contracts``: the members of a contract set; default: the database's contract)."""
    from .parsing import NeedFullDocument

    prof = make_profiler(
        contracts or [db.contract], db.url.display(), db.dialect.name
    )  # the run writes here
    plan = prof.members[0].plan if isinstance(prof, ProfileSet) else prof.plan
    ids = sample_ids(db, sample)
    for app_id, text, tail in documents_from_db(db, plan, ids):
        try:
            prof.add(text, app_id, tail)
        except NeedFullDocument:  # the head did not settle it: the whole document, as the run does
            whole = db.fetch_documents([app_id])
            prof.add(whole[0][1] if whole else None, app_id)
        if progress is not None:
            progress(1)
    return prof


def profile_files(
    contracts: list[Contract], paths: list[Path], progress: Callable[[int], None] | None = None
) -> Profiler | ProfileSet:
    """Profile document files (no database)."""
    prof = make_profiler(contracts, f"{len(paths)} file(s)")
    for p in paths:
        prof.add(p.read_bytes(), path=str(p))
        if progress is not None:
            progress(1)
    return prof
