"""Documents fetched as their stored bytes (SQLite's fetch_documents_stored, parsing.StoredBytes)
are decoded, refused and mapped exactly as the text the driver would have given: the same rows
and events, or the same stage, error class and reason, for every hostile case, any prolog, byte-
order marks, characters of every width, and on a real SQLite source."""

from typing import Any

import pytest
from hostile import cases, good
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xml_extractor.errors import DocumentFailure
from xml_extractor.mapping import map_document
from xml_extractor.parsing import StoredBytes, Utf8Document, decode_source, text_or_undecodable

CASES = cases(7000)


def outcome(plan: Any, source: Any, app_id: int | None) -> tuple:
    """What map_document makes of a source value: its rows and events, or its failure."""
    try:
        r = map_document(plan, source, expected_app_id=app_id)
    except DocumentFailure as f:
        return ("failed", f.stage, f.error_class, f.reason)
    return ("ok", r.as_dicts(plan), sorted(map(repr, r.events)))


def as_stored(value: Any) -> list[tuple[Any, StoredBytes]]:
    """(what the driver gives, the same value fetched as stored bytes) for a TEXT and a BLOB."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return [(value, StoredBytes(raw, True)), (raw, StoredBytes(raw, False))]
    return [
        (text_or_undecodable(value), StoredBytes(value, True)),
        (value, StoredBytes(value, False)),
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_hostile_case_is_the_same_from_stored_bytes(plan, name):
    value, stage, app_id = CASES[name]
    for driver, stored in as_stored(value):
        expected = outcome(plan, driver, app_id)
        assert outcome(plan, stored, app_id) == expected
        if stage is not None:
            assert expected[1] == stage  # the case still fails where it must


def test_the_span_is_parsed_from_the_bytes_without_decoding_them(plan):
    """A long UTF-8 document comes back undecoded; one with a bad byte takes the driver's path."""
    doc = "\ufeff\ufeff" + good(7100, first="J\u00d6RG \u4e2d", noise="<r a='\u20ac'/>" * 4000)
    got = decode_source(StoredBytes(doc.encode(), True))
    assert isinstance(got, Utf8Document) and got.text() == doc.lstrip("\ufeff")
    assert outcome(plan, StoredBytes(doc.encode(), True), 7100) == outcome(plan, doc, 7100)
    bad = doc.encode()[:-40] + b"\xff" + doc.encode()[-40:]
    failed = outcome(plan, StoredBytes(bad, True), 7100)
    assert failed[:3] == ("failed", "parse", "InvalidUTF8"), failed
    assert failed == outcome(plan, text_or_undecodable(bad), 7100)


EDGES = [
    " " * 40000,  # long, all spaces
    "\u3000" * 9000 + good(7200),  # long, its head only non-ASCII white space
    "\u3000" * 20,  # short, white space only
    "\ufeff" * 3 + "\n" * 50000,
    "x",
    "\u00e9" * 20000 + "\x00" + good(7200),  # a NUL's offset counts characters, not bytes
    good(7200)[:-3],  # truncated
    good(7200) + " \u3000\n",  # white space past the root's end tag
    good(7200) + "\u2003" * 100,  # 300 bytes of white space, 100 characters: complete
    good(7200) + "\u2003" * 300,  # more than 200 characters of it: truncated
    "<!-- \u00e9 -->\ufeff<?pi \u20ac?><!doctype x>" + good(7200),
    "<!-- a --><!DOCTY\u00c9>" + good(7200),
]


@pytest.mark.parametrize("text", EDGES, ids=[f"edge{i}" for i in range(len(EDGES))])
def test_edges_of_the_checks_are_the_same(plan, text):
    for driver, stored in as_stored(text):
        assert outcome(plan, stored, 7200) == outcome(plan, driver, 7200)


PIECE = st.sampled_from(
    [
        "\ufeff",
        " ",
        "\r\n",
        "\t",
        "<!-- c -->",
        "<!-- <!DOCTYPE x> -->",
        "<?pi x?>",
        "\u00e9",
        "<!x>",
    ]
)
DOCTYPE = st.sampled_from(
    ["", '<!DOCTYPE Provenir [<!ENTITY x "INJECTED">]>', "<!doctype Provenir>", "<!DOCTYPEx>"]
)


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.lists(PIECE, max_size=6),
    doctype=DOCTYPE,
    after=st.lists(PIECE, max_size=3),
    first=st.sampled_from(["JANE", "&x;", "J\u00c9", "\u4e2d"]),
)
def test_any_prolog_is_judged_the_same(plan, before, doctype, after, first):
    text = "".join(before) + doctype + "".join(after) + good(7300, first=first)
    for driver, stored in as_stored(text):
        expected = outcome(plan, driver, 7300)
        assert outcome(plan, stored, 7300) == expected
        if "DOCTYPE" in doctype.upper():
            assert expected[0] == "failed"  # never a document with a DTD, whatever precedes it


@pytest.mark.slow
def test_a_sqlite_source_fetched_as_stored_bytes_maps_the_same(sqlite_url, plan):
    """A real SQLite source: generated documents, a TEXT value with a bad byte, a cp1252 BLOB, a
    UTF-8 BLOB with byte-order marks, a NULL and a number: the stored fetch gives what the text
    fetch gives, once mapped."""
    from conftest import cli, open_db

    cli("generate-mock", "--db", sqlite_url, "--count", "12", "--faulty-share", "0.3", check=True)
    db = open_db(sqlite_url)
    try:
        up = "UPDATE app_xml SET xml = {} WHERE app_id = ?"
        raw = good(3, first="JOS\u00c9").encode()
        db.conn.execute(up.format("CAST(? AS TEXT)"), (raw[:50] + b"\xff" + raw[50:], 3))
        db.conn.execute(up.format("?"), (good(4, first="JOS\u00c9").encode("cp1252"), 4))
        db.conn.execute(up.format("?"), (b"\xef\xbb\xbf" * 2 + good(5, first="\u4e2d").encode(), 5))
        db.conn.execute(up.format("NULL"), (6,))
        db.conn.execute(up.format("42"), (7,))
        db.conn.commit()
        ids = list(range(1, 13))
        text = {a: x for a, x, _ in db.fetch_documents(ids)}
        stored = {a: x for a, x, _ in db.fetch_documents(ids, "</CustData>", stored=True)}
    finally:
        db.close()
    assert sorted(stored) == ids
    assert isinstance(stored[1], StoredBytes) and stored[1].text
    assert isinstance(stored[4], StoredBytes) and not stored[4].text
    assert stored[6] is None and text[7] == "42"  # the column's TEXT affinity stores 42 as text
    for a in ids:
        assert outcome(plan, stored[a], a) == outcome(plan, text[a], a), a
    assert outcome(plan, stored[3], 3)[2] == "InvalidUTF8"
    assert outcome(plan, stored[4], 4)[0] == outcome(plan, stored[5], 5)[0] == "ok"
