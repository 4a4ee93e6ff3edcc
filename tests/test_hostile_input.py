"""Hostile and broken input: each fails alone with a stage and reason; nothing from an external
entity is ever read; memory stays bounded."""
import resource

import pytest

from hostile import cases
from xml_extractor.errors import DocumentFailure
from xml_extractor.mapping import map_document

CASES = cases(5000)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case(plan, name):
    text, stage, expected = CASES[name]
    if stage is None:
        r = map_document(plan, text, expected_app_id=expected)
        rows = r.as_dicts(plan)
        assert rows["app_base"][0]["app_id"] == expected
        if name == "five_mb_attribute":
            assert rows["app_base"][0]["campaign_num"] is None
            (ev,) = [e for e in r.events if e[1] == "campaign_num"]
            assert "5000000 characters in all" in ev[3] and len(ev[3]) < 2100
        if name == "cp1252_bytes":
            assert rows["app_contact_base"][0]["first_name"] == "JOS\u00c9 M\u00dcLLER"
    else:
        with pytest.raises(DocumentFailure) as e:
            map_document(plan, text, expected_app_id=expected)
        assert e.value.stage == stage, e.value.reason
        assert e.value.reason
        assert "root:x:0" not in e.value.reason


def test_dtd_is_refused_with_a_clear_reason(plan):
    with pytest.raises(DocumentFailure, match="DOCTYPE/DTD is not allowed"):
        map_document(plan, CASES["xxe_file"][0], 5000)


def test_memory_stays_bounded(plan):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        map_document(plan, CASES["twenty_mb"][0], 5015)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150, f"peak memory grew {grown_mb:.0f} MB for a 20 MB document"


# -- issue 11: a DOCTYPE fails at stage parse whatever precedes it; no entity is ever expanded ------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hostile import good  # noqa: E402
from xml_extractor import parsing  # noqa: E402
from xml_extractor.errors import ParseFailure  # noqa: E402

PROLOG_PIECE = st.sampled_from(["\ufeff", " ", "\n", "\t", "\r\n", "<!-- c -->", "<!---->", "<!-- <!DOCTYPE x> -->",
                                "<?pi x?>", "<?note?>", '<?xml version="1.0" encoding="UTF-8"?>',
                                "<?xml version='1.0' encoding='windows-1252'?>"])
DOCTYPE = st.sampled_from([
    '<!DOCTYPE Provenir [<!ENTITY x "INJECTED">]>',
    '<!DOCTYPE Provenir [\n  <!ENTITY x "INJECTED">\n  <!ATTLIST contact first_name CDATA "INJECTED">\n]>',
    '<!DOCTYPE Provenir [<!ENTITY x SYSTEM "file:///etc/hostname">]>',
    '<!DOCTYPE Provenir SYSTEM "http://127.0.0.1:9/p.dtd">',
    '<!DOCTYPE Provenir PUBLIC "-//X//DTD X//EN" "http://127.0.0.1:9/p.dtd">',
    '<!DOCTYPE Provenir>',
    '<!DOCTYPE Provenir [<!ENTITY x "' + "INJECTED" * 125 + '">]>',
])
ENCODING = st.sampled_from(["text", "utf-8", "utf-8-boms", "cp1252", "utf-16", "utf-16-le"])
FIRST = st.sampled_from(["&x;", "&x;&x;&x;&x;", "JANE"])


def _encoded(text: str, encoding: str, byte_boms: int) -> str | bytes:
    if encoding == "text":
        return text
    if encoding == "utf-8-boms":
        return b"\xef\xbb\xbf" * byte_boms + text.encode("utf-8")
    if encoding == "cp1252":  # no U+FEFF in cp1252: an old export has none
        return text.replace("\ufeff", "").encode(encoding)
    return text.encode(encoding)


def _assert_refused(plan, source, app_id: int) -> None:
    with pytest.raises(DocumentFailure) as e:
        r = map_document(plan, source, expected_app_id=app_id)
        raise AssertionError(f"a document with a DOCTYPE succeeded: {r.as_dicts(plan)['app_contact_base']}")
    assert e.value.stage == "parse", (e.value.stage, e.value.reason)
    assert "INJECTED" not in e.value.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prolog=st.lists(PROLOG_PIECE, max_size=8), doctype=DOCTYPE, between=st.lists(PROLOG_PIECE, max_size=4),
       encoding=ENCODING, byte_boms=st.integers(1, 4), first=FIRST)
def test_a_doctype_fails_at_parse_whatever_precedes_it(plan, prolog, doctype, between, encoding, byte_boms, first):
    text = "".join(prolog) + doctype + "".join(between) + good(7001, first=first)
    _assert_refused(plan, _encoded(text, encoding, byte_boms), 7001)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prolog=st.lists(PROLOG_PIECE, max_size=8), doctype=DOCTYPE, between=st.lists(PROLOG_PIECE, max_size=4),
       encoding=ENCODING, byte_boms=st.integers(1, 4), first=FIRST)
def test_the_parser_refuses_a_dtd_even_without_the_prolog_scan(plan, monkeypatch, prolog, doctype, between,
                                                               encoding, byte_boms, first):
    """The prolog scan is a courtesy (an early, clear reason); the tree check is the enforcement."""
    monkeypatch.setattr(parsing, "_check_prolog", lambda text: None)
    text = "".join(prolog) + doctype + "".join(between) + good(7002, first=first)
    _assert_refused(plan, _encoded(text, encoding, byte_boms), 7002)
    # the server dialects' path: only the head up to </CustData> and the last characters
    if isinstance(_encoded(text, encoding, byte_boms), str):
        head = text[:text.index("</CustData>") + len("</CustData>")]
        with pytest.raises((ParseFailure, parsing.NeedFullDocument)):  # the latter: the whole text decides (above)
            parsing.parse_document(head, plan.document, tail=text[-200:])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prolog=st.lists(PROLOG_PIECE, max_size=8), encoding=ENCODING, byte_boms=st.integers(1, 4))
def test_the_same_prologs_without_a_doctype_parse_or_fail_cleanly(plan, prolog, encoding, byte_boms):
    text = "".join(prolog) + good(7003)
    try:
        r = map_document(plan, _encoded(text, encoding, byte_boms), expected_app_id=7003)
    except DocumentFailure as e:
        assert e.stage in ("read", "parse"), (e.stage, e.reason)
        return
    assert r.as_dicts(plan)["app_contact_base"][0]["first_name"] == "JANE"


def test_two_boms_and_an_internal_entity_is_refused_not_expanded(plan):
    """Reproduction 7 of issue 11, as text (two U+FEFF) and as bytes (three EF BB BF)."""
    doc = '<!DOCTYPE Provenir [<!ENTITY x "INJECTED">]>' + good(7004, first="&x;")
    for source in ("\ufeff\ufeff" + doc, b"\xef\xbb\xbf" * 3 + doc.encode()):
        with pytest.raises(DocumentFailure, match="DOCTYPE/DTD is not allowed") as e:
            map_document(plan, source, expected_app_id=7004)
        assert e.value.stage == "parse"
    big = '<!DOCTYPE Provenir [<!ENTITY x "' + "A" * 1000 + '">]>' + good(7004, first="&x;&x;&x;&x;")
    with pytest.raises(DocumentFailure) as e:
        map_document(plan, "\ufeff\ufeff" + big, expected_app_id=7004)
    assert e.value.stage == "parse"
