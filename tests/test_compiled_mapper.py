"""The compiled mapper (compiled_mapping.py) against the interpreted one, the reference: on
generated, sample and randomly mutated documents, for every packaged contract, the contract set
and contracts built here to exercise the column and generator policies the packaged ones leave
out, both give the same rows (values and their types), the same events in the same order and the
same failures."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xml_extractor import compiled_mapping
from xml_extractor.contract.compiler import compile_contract
from xml_extractor.contract.loader import contract_from_dict, load_contract
from xml_extractor.errors import ConfigError, DocumentFailure
from xml_extractor.mapping import REFERENCE, map_document
from xml_extractor.mock_rl import generator_for

CC_SAMPLE = (SAMPLES / "app-1001.xml").read_text("utf-8-sig")
RL_SAMPLE = (SAMPLES / "sample-rl-600000.xml").read_text("utf-8-sig")
INT_TYPES = ("int", "smallint", "tinyint", "bigint")


def outcome(plan: Any, text: str, app_id: int | None, mapper: str, monkeypatch: Any) -> tuple:
    """Everything a mapper decides about one document, in a form compared exactly (repr keeps
    the type and the scale of every value: Decimal('1.0') is not Decimal('1.00'))."""
    monkeypatch.setenv(compiled_mapping.MAPPER_ENV, mapper)
    try:
        r = map_document(plan, text, app_id)
    except DocumentFailure as f:
        return ("failed", type(f).__name__, f.stage, f.reason, f.error_class, f.contract)
    return ("mapped", r.app_id, repr(r.rows), repr(r.events), repr(r.extra))


def same(plan: Any, text: str, app_id: int | None, monkeypatch: Any) -> tuple:
    ref = outcome(plan, text, app_id, "interpreted", monkeypatch)
    got = outcome(plan, text, app_id, "compiled", monkeypatch)
    assert got == ref
    return ref


# -- contracts -------------------------------------------------------------------------------------


def _columns(raw: dict) -> list[tuple[dict, dict]]:
    return [(t, c) for t in raw["tables"] for c in t["columns"]]


def _keys(t: dict) -> set[str]:
    return set(t["primary_key"]) | {c for fk in t.get("foreign_keys", []) for c in fk["columns"]}


def _strict(raw: dict) -> None:
    """A refused value fails the document."""
    for _, c in _columns(raw):
        c["on_invalid"] = "fail"


def _repairing(raw: dict) -> None:
    """Strings too long are truncated, refused numbers and flags take a default."""
    for _, c in _columns(raw):
        if c.get("enum") or "default" in c:
            continue
        if c["type"] == "string":
            c["on_invalid"] = "truncate"
        elif c["type"] in INT_TYPES or c["type"] in ("decimal", "bit"):
            c["on_invalid"], c["default"] = "default", 0


def _not_null(raw: dict) -> None:
    """Data columns NOT NULL: four in five with a default, the others fail when empty."""
    n = 0
    for t, c in _columns(raw):
        if c["name"] in _keys(t) or c.get("nullable") is False or c["type"] != "string":
            continue
        if "attribute" not in c and "path" not in c:
            continue
        c["nullable"] = False
        n += 1
        if n % 5:
            c["default"] = "?"
        else:
            c["on_missing"] = "fail"


def _case_flipped(raw: dict) -> None:
    d = raw["document"]
    d["case_insensitive_attributes"] = not d.get("case_insensitive_attributes", False)


def _skip_empty(raw: dict) -> None:
    for t in raw["tables"]:
        t["skip_when_empty"] = True


def _extra_sources(raw: dict) -> None:
    """Constants, expressions reading raw attributes and columns, not-stored columns."""
    for t in raw["tables"]:
        first = t["columns"][0]["name"]
        t["columns"] += [
            {"name": "xe_const", "type": "string", "length": 8, "constant": "k'\"\\"},
            {"name": "xe_hidden", "type": "int", "store": False, "constant": 3},
            {
                "name": "xe_expr",
                "type": "text",
                "expression": f"COALESCE(TRIM(@status), 'none') || '/' || "
                f"COALESCE(LENGTH({first}), -1) || '/' || xe_hidden",
            },
        ]


VARIANTS = {
    "strict": _strict,
    "repairing": _repairing,
    "not_null": _not_null,
    "case_flipped": _case_flipped,
    "skip_empty": _skip_empty,
    "extra_sources": _extra_sources,
}


def variant(name: str, which: str) -> Any:
    raw = copy.deepcopy(load_contract(name).raw)
    VARIANTS[which](raw)
    raw["name"] = f"{name}_{which}"
    return compile_contract(contract_from_dict(json.loads(json.dumps(raw)), f"{name}-{which}"))


PLANS = {
    "credit_card": lambda: compile_contract(load_contract("credit_card")),
    "rec_lending": lambda: compile_contract(load_contract("rec_lending")),
    "set": lambda: compile_contract(load_contract("credit_card,rec_lending")),
    **{f"cc_{w}": (lambda w=w: variant("credit_card", w)) for w in VARIANTS},
    **{f"rl_{w}": (lambda w=w: variant("rec_lending", w)) for w in VARIANTS},
}
_CACHE: dict[str, Any] = {}


def plan_of(name: str) -> Any:
    if name not in _CACHE:
        _CACHE[name] = PLANS[name]()
    return _CACHE[name]


def corpus(product: str, count: int) -> list[tuple[str, int]]:
    """Generated documents of a product line, a fifth of them broken in the generator's ways."""
    gen = generator_for(product, 11, 0.2)
    return [(d.text, d.row_app_id) for d in gen.documents(1, count)]


# -- fixed corpora ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANS))
def test_both_mappers_agree_on_generated_and_sample_documents(name, monkeypatch):
    plan = plan_of(name)
    docs = [(CC_SAMPLE, None), (RL_SAMPLE, None)]
    if not name.startswith("rl"):
        docs += corpus("cc", 40)
    if not name.startswith("cc"):
        docs += corpus("rl", 40)
    outs = [same(plan, text, app_id, monkeypatch) for text, app_id in docs]
    # the corpus reaches the mapper, not only the parser
    assert any(o[0] == "mapped" or o[2] == "map" for o in outs)


def test_the_variants_reach_the_paths_they_are_for(monkeypatch):
    """The built contracts do what they are built for on the sample (so agreeing means something)."""
    strict = same(plan_of("cc_strict"), CC_SAMPLE, None, monkeypatch)
    assert strict[:2] == ("failed", "MapFailure")
    not_null = same(plan_of("cc_not_null"), CC_SAMPLE, None, monkeypatch)
    assert not_null[0] == "failed" and "NOT NULL" in not_null[3]
    repairing = same(plan_of("rl_repairing"), RL_SAMPLE, None, monkeypatch)
    assert repairing[0] == "mapped"
    extra = same(plan_of("cc_extra_sources"), CC_SAMPLE, None, monkeypatch)
    assert repr("k'\"\\") in extra[2] and "'none/4/3'" in extra[2]


def test_events_of_a_row_keep_the_element_attribute_order(monkeypatch):
    """Two refused values on one element: their events in the order of the element's attributes
    (app_type_code before app_receive_date, as the interpreted mapper walks them), not the
    contract's (receive_date before app_type_enum)."""
    plan = plan_of("credit_card")
    text = CC_SAMPLE.replace('app_type_code="PRODB"', 'app_type_code="NOPE"', 1)
    text = text.replace('app_receive_date="2025-10-14 20:09:54.949"', 'app_receive_date="x"', 1)
    same(plan, text, None, monkeypatch)
    monkeypatch.setenv(compiled_mapping.MAPPER_ENV, "compiled")
    events = map_document(plan, text).events
    mine = [e[1] for e in events if e[0] == "app_base" and e[3] in ("NOPE", "x")]
    assert mine == ["app_type_enum", "receive_date"]


def test_a_path_reads_the_last_element_it_matches_however_it_is_written(monkeypatch):
    """``app_product/@x`` (one plain step: a shortcut in both mappers) and ``./app_product/@x``
    (the general selection) read the same element, the last of two (docs/contract.md)."""
    raw = copy.deepcopy(load_contract("credit_card").raw)
    base = next(t for t in raw["tables"] if t["name"] == "app_base")
    base["columns"] += [
        {"name": "xe_plain", "type": "string", "length": 10, "path": "app_product/@decision_tp_c"},
        {
            "name": "xe_dotted",
            "type": "string",
            "length": 10,
            "path": "./app_product/@decision_tp_c",
        },
    ]
    plan = compile_contract(contract_from_dict(raw, "paths"))
    text = CC_SAMPLE.replace("<rmts_info", '<app_product decision_tp_c="SECOND"/>\n<rmts_info', 1)
    assert text != CC_SAMPLE
    for mapper in ("interpreted", "compiled"):
        monkeypatch.setenv(compiled_mapping.MAPPER_ENV, mapper)
        row = map_document(plan, text).as_dicts(plan)["app_base"][0]
        assert (row["xe_plain"], row["xe_dotted"]) == ("SECOND", "SECOND"), mapper


@pytest.mark.parametrize("written", ["app_product/@decision_tp_c", "./app_product/@decision_tp_c"])
def test_a_path_that_matches_several_elements_names_each_value_it_does_not_store(
    written, monkeypatch
):
    """A second ``app_product``: the path reads the last, and an earlier one's value that differs
    once converted is a ``value_conflict`` event at that element (no silent drop); an equal value
    is nothing lost. Both mappers, the shortcut (one plain step) and the general selection."""
    raw = copy.deepcopy(load_contract("credit_card").raw)
    base = next(t for t in raw["tables"] if t["name"] == "app_base")
    base["columns"].append({"name": "xe_code", "type": "string", "length": 10, "path": written})
    plan = compile_contract(contract_from_dict(raw, "several"))

    def second(attrs: str) -> str:
        return CC_SAMPLE.replace("<rmts_info", f"<app_product {attrs}/>\n<rmts_info", 1)

    conflicts = {}
    for name, text in {
        "different": second('decision_tp_c="DECNC" decision_date="10/15/2025"'),
        "same": second('decision_tp_c="APPRV" decision_date="10/15/2025"'),
        "the same code": second('decision_tp_c=" apprv " decision_date="10/15/2025"'),
        "last without it": second('decision_date="10/15/2025"'),
    }.items():
        outcome_ = same(plan, text, None, monkeypatch)
        assert outcome_[0] == "mapped"
        events = map_document(plan, text).events
        conflicts[name] = [
            (e[1], e[3], e[5]) for e in events if e[0] == "app_base" and e[2] == "value_conflict"
        ]
    first = "application/app_product[1]"
    assert conflicts["different"] == [
        ("decision_enum", "APPRV", first),
        ("xe_code", "APPRV", first),
    ]
    assert conflicts["same"] == []
    assert conflicts["the same code"] == [
        ("xe_code", "APPRV", first)
    ]  # an enum is compared as a code
    assert conflicts["last without it"] == [
        ("decision_enum", "APPRV", first),
        ("xe_code", "APPRV", first),
    ]


def test_a_path_reports_only_what_is_lost(monkeypatch):
    """What an outside attack found: an identical copy of an element whose value is rounded or
    refused loses nothing (no event), and a path that reaches the same element twice (a step after
    ``..``) counts it once and never reports an element against itself."""
    raw = copy.deepcopy(load_contract("credit_card").raw)
    base = next(t for t in raw["tables"] if t["name"] == "app_base")
    base["columns"] += [
        {"name": "xe_amount", "type": "decimal", "precision": 12, "scale": 2,
         "path": "app_product/@xe_amt"},
        {"name": "xe_flag", "type": "bit", "path": "app_product/@xe_flag"},
        {"name": "xe_round_trip", "type": "string", "length": 10,
         "path": "app_product/../app_product/@decision_tp_c"},
        {"name": "xe_up", "type": "int", "path": "app_product/../@campaign_num"},
    ]  # fmt: skip
    plan = compile_contract(contract_from_dict(raw, "lost"))
    first = 'xe_amt="4166.666667" xe_flag="D"'
    text = CC_SAMPLE.replace("<app_product ", f"<app_product {first} ", 1)

    def conflicts(second: str) -> list[tuple]:
        doc = text.replace("<rmts_info", f"<app_product {second}/>\n<rmts_info", 1)
        assert same(plan, doc, None, monkeypatch)[0] == "mapped"
        events = map_document(plan, doc).events
        return [(e[1], e[3], e[4].split(":")[0]) for e in events if e[2] == "value_conflict"]

    assert conflicts(f'{first} decision_tp_c="APPRV" decision_date="10/15/2025"') == []
    assert conflicts(
        'xe_amt="4166.67" xe_flag="Y" decision_tp_c="DECNC" decision_date="10/15/2025"'
    ) == [
        ("decision_enum", "APPRV", "app_product/@decision_tp_c matches 2 elements"),
        ("xe_flag", "D", "app_product/@xe_flag matches 2 elements"),
        (
            "xe_round_trip",
            "APPRV",
            "app_product/../app_product/@decision_tp_c matches 2 elements",
        ),
    ]  # 4166.666667 is stored as 4166.67 either way: nothing lost


def test_unknown_mapper_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv(compiled_mapping.MAPPER_ENV, "fast")
    with pytest.raises(ConfigError, match="XML_EXTRACTOR_MAPPER"):
        map_document(plan_of("credit_card"), CC_SAMPLE)


def test_generated_source_takes_contract_names_only_as_literals():
    """Names that would be code if spliced raw (the schema refuses them; the generator must not
    rely on it) reach the generated source as string literals and come back as dict keys."""
    from lxml import etree

    from xml_extractor.contract.compiler import DocContext, Scope

    raw = copy.deepcopy(load_contract("credit_card").raw)
    raw["description"] = "a plan of this test's own (its own digest): changed below"
    plan = compile_contract(contract_from_dict(raw, "own"))
    gen = plan.tables[0].generators[0]
    evil = "x'] = 1; import os; os.system('false'); row['"
    col = next(c for c in gen.columns if c.attr_key == "campaign_num")
    col.name, col.attr_key = evil + '\n"', evil
    source, ns = compiled_mapping.generator_source(gen, plan.case_insensitive, REFERENCE)
    assert "import os" not in source.replace(repr(evil), "").replace(repr(col.name), "")
    exec(compile(source, "<test>", "exec"), ns)
    scope = Scope(DocContext(1, False), etree.fromstring("<application/>"))
    scope.attrs = {evil: " Z4K "}  # no XML parser lets such a name through: given directly
    row = ns["build"](scope)
    assert row[col.name] == "Z4K"


def test_the_plan_source_takes_contract_names_only_as_literals():
    """The generated plan (tables, generators, keys, empty-row checks) quotes every name it takes
    from the contract: a table, key and element name that would be code if spliced raw."""
    raw = copy.deepcopy(load_contract("credit_card").raw)
    raw["description"] = "a plan of this test's own (its own digest): renamed below"
    plan = compile_contract(contract_from_dict(raw, "own"))
    evil = "x'] = 1; import os; os.system('false'); row['"
    tp = plan.tables[1]
    tp.name, tp.data_columns = evil + "\n", (evil,)
    tp.skip_when_empty = True
    gen = tp.generators[0]
    gen.required = (evil,)
    source, _ = compiled_mapping.plan_source(plan, REFERENCE)
    assert "import os" not in source.replace(repr(evil), "").replace(repr(evil + "\n"), "")
    compile(source, "<test>", "exec")


@pytest.mark.slow
def test_every_step_of_the_generated_plan_is_reached_by_the_plans_compared():
    """The plans the agreement tests compare generate every kind of step the plan source has
    (each checked there against the reference): an unpivot, a groups generator, a child table, a
    code not allowed, an element with nothing but its type, a blank element, a required value,
    several generators, also_at places, predicates and the record itself."""
    sources = "".join(compiled_mapping.plan_source(plan_of(n), REFERENCE)[0] for n in PLANS)
    for step in [
        "for name, label in up",
        "_run_generator(",
        "kept.get(",
        "_not_allowed(",
        "_all_empty(",
        "_drop_blank(",
        "_keep(",
        "_merge_generators(",
        ") + ",
        "select_elements(pel, ",
        "list(pel.iterchildren(",
        "[pel]",
        "if not (r.get(",
    ]:
        assert step in sources, step


# -- random documents ------------------------------------------------------------------------------

padding = st.sampled_from(["", "", " ", "\t "])
values = st.one_of(
    st.builds(lambda a, v, b: a + v + b, padding, st.text(max_size=30), padding),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "45.315",
            "1e999",
            "99999999999999999999",
            "13/45/2020",
            "2020-02-30 10:11:12.1234567",
            " 03/09/2025 ",
            " Y",
            "n ",
            " PR ",
            "SEC",
            "CURR",
            "x" * 300,
        ]
    ),
)


@st.composite
def mutated(draw: Any) -> tuple[str, str]:
    """A contract and a sample document with some attribute values replaced, some elements doubled."""
    name = draw(st.sampled_from(sorted(PLANS)))
    text = RL_SAMPLE if name.startswith("rl") else CC_SAMPLE
    if name == "set":
        text = draw(st.sampled_from([CC_SAMPLE, RL_SAMPLE]))
    start, end = text.index("<CustData"), text.index("</CustData>")  # what the mapper reads
    head, body, tail = text[:start], text[start:end], text[end:]
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.integers(0, 4)) == 0:  # double an element line
            lines = body.split("\n")
            i = draw(st.integers(1, len(lines) - 1))
            lines.insert(i, lines[i])
            body = "\n".join(lines)
            continue
        parts = body.split('="')
        i = draw(st.integers(1, len(parts) - 1))
        rest = parts[i].split('"', 1)
        v = draw(values).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        parts[i] = v + '"' + (rest[1] if len(rest) > 1 else "")
        body = '="'.join(parts)
    text = head + body + tail
    return name, text


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated())
def test_both_mappers_agree_on_mutated_documents(monkeypatch, case):
    name, text = case
    same(plan_of(name), text, None, monkeypatch)


def _events_without_the_unmapped_shortcut(plan: Any, text: str, monkeypatch: Any) -> tuple:
    """The events with the unmapped_record check's shortcut (every element of a record kind was
    selected by a generator: nothing to look for) and with the full check every time."""
    from xml_extractor import mapping

    monkeypatch.setenv(compiled_mapping.MAPPER_ENV, "compiled")

    def run() -> Any:
        try:
            return repr(map_document(plan, text).events)
        except DocumentFailure as f:
            return f.reason

    fast = run()
    selected = mapping._selected
    with monkeypatch.context() as m:  # nothing is remembered: the full check runs

        def forgetting(gen: Any, base: Any, doc: Any) -> list:
            found = selected(gen, base, doc)
            doc.selected.clear()
            return found

        m.setattr(mapping, "_selected", forgetting)
        full = run()
    return fast, full


def test_the_unmapped_record_shortcut_gives_the_full_checks_events(monkeypatch):
    """A contact beside the record (unmapped), a contact whose role is not allowed (dropped) with
    its address under it (read through the dropped contact: no unmapped event), both together,
    and generated documents of both product lines: the same events with and without the
    shortcut, and the cases reach both of its branches."""
    cc_beside = CC_SAMPLE.replace(
        "</CustData>", '<contact con_id="4242" ac_role_tp_c="PR"/></CustData>'
    )
    cc_dropped = CC_SAMPLE.replace('ac_role_tp_c="AUTHU"', 'ac_role_tp_c="NOPE"', 1)
    cases = [
        ("credit_card", CC_SAMPLE),
        ("credit_card", cc_beside),
        ("credit_card", cc_dropped),
        ("credit_card", cc_dropped.replace("</CustData>", '<contact con_id="4243"/></CustData>')),
        ("rec_lending", RL_SAMPLE),
    ]
    cases += [("credit_card", t) for t, _ in corpus("cc", 20)]
    cases += [("rec_lending", t) for t, _ in corpus("rl", 20)]
    events = []
    for name, text in cases:
        fast, full = _events_without_the_unmapped_shortcut(plan_of(name), text, monkeypatch)
        assert fast == full
        events.append(fast)
    assert "unmapped_record" not in events[0]  # the shortcut
    assert "unmapped_record" in events[1] and "4242" in events[1]  # the full check finds it
    assert "row_dropped" in events[2] and "unmapped_record" not in events[2]
    assert "4243" in events[3] and "4242" not in events[3]


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated())
def test_the_unmapped_record_shortcut_agrees_on_mutated_documents(monkeypatch, case):
    name, text = case
    fast, full = _events_without_the_unmapped_shortcut(plan_of(name), text, monkeypatch)
    assert fast == full


def test_profile_hook_sees_the_same_values_in_the_same_order():
    """``profile`` observes every refused or rounded value through ``map_record``'s hook: the
    compiled mapper hands them to it as the reference does."""
    from xml_extractor.mapping import map_record, parse_checked

    for name, product in (("credit_card", "cc"), ("rec_lending", "rl")):
        plan = plan_of(name)
        seen: dict[str, list] = {"interpreted": [], "compiled": []}
        for text, app_id in corpus(product, 30):
            try:
                parsed, _ = parse_checked(plan.document, text)
            except DocumentFailure:
                continue
            if parsed.record is None:
                continue
            for mapper, log in seen.items():

                def hook(table, column, raw, exc, scope, log=log):
                    log.append((table, column, raw, type(exc).__name__, exc.reason))

                try:
                    map_record(plan, parsed.record, app_id, observe=hook, mapper=mapper)
                except DocumentFailure as f:
                    log.append(("failed", f.reason))
        assert seen["compiled"] == seen["interpreted"]
        assert len(seen["interpreted"]) > 10  # the corpus has refused and rounded values


# -- specialised converters ------------------------------------------------------------------------


def _converters() -> dict[str, Any]:
    """One converter of each kind the compiled mapper specialises (converters.text_path)."""
    from xml_extractor.contract import converters as cv

    made = {
        "string5": cv.make_string(5),
        "string5_utf16": cv.make_string(5, cv.UNIT_UTF16),
        "string1": cv.make_string(1),
        "text": cv.make_string(None),
        "decimal5_2": cv.make_decimal(5, 2),
        "decimal18_4": cv.make_decimal(18, 4),
        "date": cv.make_datetime(cv.DEFAULT_DATE_FORMATS, True),
        "datetime": cv.make_datetime(cv.DEFAULT_DATE_FORMATS, False),
        "datetime_us": cv.make_datetime(["%m/%d/%Y", "%d/%m/%Y", "%Y%m%d%H%M"], False),
        "bit": cv.make_bit(None),
        "char_bit": cv.make_bit("char_to_bit"),
        "enum": cv.make_enum("status", {" a ": 1, "Pr": 2, "ß": 3, "SS": 4}),
    }
    made.update({t: cv.make_int(t) for t in INT_TYPES})
    return made


CONVERTERS = _converters()


def _result(fn: Any, s: str) -> tuple:
    """A converter's value (its type and scale kept by repr) or its refusal, every field of it."""
    try:
        return ("ok", repr(fn(s)))
    except Exception as e:
        fields = ("kind", "reason", "fixed", "capacity", "size", "value")
        return (type(e).__name__, *(repr(getattr(e, f, None)) for f in fields))


def _by_text_path(convert: Any, s: str) -> tuple:
    """What the compiled mapper does with trimmed non-empty text (compiled_mapping._attr_section)."""
    from xml_extractor.contract.converters import text_path

    path = text_path(convert)
    if isinstance(path, int):
        return ("ok", repr(s)) if len(s) <= path else _result(convert, s)
    return _result(path, s)


EDGES = [
    "0", "007", "255", "256", "-0", "+5", "1.0", "1.5", "32767", "32768", "-32769",
    "2147483647", "2147483648", "9223372036854775807", "9223372036854775808",
    "999999999999999999", "1" * 19, "1" * 40, "٣", "²", "1e3", ".5", "5.", "-.005",
    "999.994", "999.995", "-999.995", "0.005", "0.015", "0.0049999", "3333.3333333333335",
    "12345", "abcde", "abcdef", "a", "ab", "日本語日本", "😀😀😀", "😀😀",
    "2025-10-14 20:09:54.949", "2025-10-14 20:09:54.9495", "2025-10-14", "02/30/2020",
    "2020-02-30 10:11:12.1234567", "10/14/2025 12:00:00 AM", "10/14/2025 13:00:00 PM",
    "1752-12-31", "9999-12-31 23:59:59.999", "13/01/2020", "01/13/2020", "01/02/2020", "202001021304",
    "Y", "n", "TRUE", "yes", "2", "A", "pr", "ss", "ß", "SS", "x",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_text_paths_give_what_their_converters_give_on_edge_values(name):
    convert = CONVERTERS[name]
    for s in EDGES:
        assert _by_text_path(convert, s) == _result(convert, s), s


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(CONVERTERS)),
    st.one_of(
        st.text(min_size=1, max_size=12),
        st.from_regex(r"[+-]?\d{0,20}(\.\d{0,8})?", fullmatch=True),
        st.from_regex(
            r"\d{1,4}[-/]\d{1,2}[-/]\d{1,4}( \d{1,2}:\d{1,2}(:\d{1,2}(\.\d{1,8})?)?)?( [AP]M)?",
            fullmatch=True,
        ),
    )
    .map(str.strip)
    .filter(bool),
)
def test_text_paths_give_what_their_converters_give(name, s):
    convert = CONVERTERS[name]
    assert _by_text_path(convert, s) == _result(convert, s)


def _composed_plainly(transforms: tuple, check: Any, convert: Any, s: str) -> tuple:
    """A column's transforms, pattern and converter applied one after the other, as the contract
    describes them (compiler._compose_text does the same, ending in the converter's text path)."""
    from xml_extractor.contract import converters as cv

    def plain(s: str) -> Any:
        for tf in transforms:
            s = tf(s)
        if not s:
            raise cv.BadValue("value_rejected", "nothing left after " + ", ".join(names))
        if check is not None:
            check(s)
        return convert(s)

    names = [n for n, f in cv.TRANSFORMS.items() for t in transforms if f is t]
    return _result(plain, s)


CHAINS = [("upper",), ("digits_only",), ("trim", "lower"), ("collapse_spaces",), ("upper", "trim")]


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(CONVERTERS)),
    st.sampled_from(CHAINS),
    st.sampled_from([None, r"[0-9A-Z ]*", r"\d{3,}"]),
    st.one_of(st.sampled_from(EDGES), st.text(min_size=1, max_size=12)).map(str.strip).filter(bool),
)
def test_a_column_with_transforms_gives_its_parts_one_after_the_other(name, chain, pattern, s):
    """Transforms and a pattern composed with the converter's text path (what is left after the
    transforms is trimmed text, which the text path takes as the converter does) give what the
    transforms, the pattern check and the converter give one after the other."""
    from xml_extractor.contract import converters as cv
    from xml_extractor.contract.compiler import _compose_text

    transforms = tuple(cv.TRANSFORMS[t] for t in chain)
    check = cv.make_pattern(pattern) if pattern else None
    convert = CONVERTERS[name]
    composed = _compose_text(transforms, chain, check, convert)
    assert _result(composed, s) == _composed_plainly(transforms, check, convert, s)


def test_every_specialised_kind_has_its_text_path():
    """The converters above are specialised (else the tests above compare a converter with
    itself), except a date-time whose formats need strptime."""
    from xml_extractor.contract import converters as cv

    plain = [n for n, c in CONVERTERS.items() if cv.text_path(c) is c]
    assert plain == []
    odd = cv.make_datetime(["%Y-%j"], False)  # day of the year: no regex form
    assert cv.text_path(odd) is odd


def _built(build: Any, gen: Any, attrs: dict) -> tuple:
    """A row built from these attributes (given directly: the generated code reads them as
    ``scope.attrs``), with its events, or the failure."""
    from lxml import etree

    from xml_extractor.contract.compiler import DocContext, Scope

    doc = DocContext(1, False)
    scope = Scope(doc, etree.fromstring("<application/>"), {})
    scope.attrs = attrs
    try:
        row = build(gen, scope)
    except Exception as e:
        return ("failed", type(e).__name__, str(e), repr(doc.events))
    return (repr(row), repr(doc.events))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["credit_card", "rec_lending", "cc_repairing", "rl_strict"])
def test_generated_rows_agree_on_boundary_values_of_every_attribute_column(name):
    """Every attribute column of every generator, given edge values (padded, empty, a string of
    its exact length and one more): the generated row and its events are the reference's."""
    from xml_extractor.contract import converters as cv

    plan = plan_of(name)
    build = compiled_mapping.plan_builder(plan, REFERENCE)
    checked = 0
    for t in plan.tables:
        for gen in t.generators:
            for col in gen.columns:
                if col.attr_key is None:
                    continue
                path = cv.text_path(col.convert)
                n = path if isinstance(path, int) and path < 10**6 else 3
                for v in [
                    *EDGES[::3],
                    "",
                    "  ",
                    " 7 ",
                    "x" * n,
                    "é" * n,
                    "x" * (n + 1),
                    f" {'y' * n} ",
                ]:
                    attrs = {col.attr_key: v}
                    got = _built(build, gen, attrs)
                    assert got == _built(REFERENCE.build_row, gen, attrs), (t.name, col.name, v)
                    checked += 1
    assert checked > 500
