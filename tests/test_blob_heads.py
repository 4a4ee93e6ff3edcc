"""SQLite documents read by blob (Database.fetch_documents with ``blob_heads``, SQLiteDialect.read_heads):
only each document's head (up to ``</CustData>``) and its last 200 bytes are read, as fetch_heads
sends them on the servers, and every document maps, or fails, exactly as it does read whole: every
hostile case as TEXT and as BLOB, heads past the first read, tails that cannot be read, sources
that cannot be read by blob (a view, a WITHOUT ROWID table, a column named rowid), and the run."""

import sqlite3
from typing import Any

import pytest
from conftest import cli, open_db
from hostile import cases, good

from xml_extractor.errors import DocumentFailure
from xml_extractor.mapping import map_document
from xml_extractor.parsing import NeedFullDocument, StoredBytes

MARKER = "</CustData>"
CASES = cases(9000)


def outcome(plan: Any, source: Any, app_id: int, tail: Any = None) -> tuple:
    try:
        r = map_document(plan, source, expected_app_id=app_id, tail=tail)
    except DocumentFailure as f:
        return ("failed", f.stage, f.error_class, f.reason)
    return ("ok", r.as_dicts(plan), sorted(map(repr, r.events)))


def by_heads(db: Any, plan: Any, ids: list[int]) -> dict[int, tuple]:
    """What the worker makes of each document: its head and tail, and the whole stored bytes when
    they do not settle it (NeedFullDocument), as processing.worker.process_batch does."""
    out = {}
    for app_id, value, tail in db.fetch_documents(ids, MARKER, stored=True, blob_heads=True):
        try:
            out[app_id] = outcome(plan, value, app_id, tail)
        except NeedFullDocument:
            out[app_id] = outcome(plan, db.fetch_documents([app_id], stored=True)[0][1], app_id)
    return out


def whole(db: Any, plan: Any, ids: list[int]) -> dict[int, tuple]:
    return {a: outcome(plan, x, a) for a, x, _ in db.fetch_documents(ids, MARKER, stored=True)}


def store(url: str, docs: dict[int, Any], as_blob: bool) -> None:
    """Each document into app_xml: a str as TEXT (or its UTF-8 bytes as a BLOB), bytes as a TEXT
    value holding those bytes (or a BLOB)."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    for a, x in docs.items():
        raw = x.encode("utf-8") if isinstance(x, str) else x
        conn.execute(
            "INSERT INTO app_xml (app_id, xml) VALUES (?, ?)"
            if as_blob
            else "INSERT INTO app_xml (app_id, xml) VALUES (?, CAST(? AS TEXT))",
            (a, raw),
        )
    conn.commit()
    conn.close()


def edge_documents() -> dict[int, Any]:
    """Heads and tails at the edges of the blob read."""
    big_scope = "".join(
        f'<contact con_id="{i}" ac_role_tp_c="AUTHU" first_name="N{i}"/>' for i in range(9100, 9500)
    )
    mixed_tail = good(9110, noise="<r/>" * 4000 + "<r a='Zo\u00eb'/>").encode()
    return {
        # the scope ends past the first 8 KB, then past 16 KB
        9100: good(9100).replace("</application>", big_scope + "</application>"),
        9101: good(9101).replace("</application>", big_scope * 3 + "</application>"),
        9102: good(9102),  # shorter than the tail: head and tail overlap
        9103: good(9103, noise="<r/>" * 4000).replace(MARKER, "</CustDat>"),  # no marker at all
        9104: good(9104, noise="<r/>" * 4000)[:-30],  # truncated far from its head
        9105: good(9105, noise="<r/>" * 4000)[:-20] + "\x00" + good(9105)[-20:],  # NUL in its tail
        9106: "<!-- </CustData> -->" + good(9106, noise="<r/>" * 4000),  # the marker in a comment
        9107: ("\ufeff" * 2 + good(9107, first="J\u00d6RG \u4e2d", noise="<r/>" * 4000)).encode(),
        9108: good(9108, first="Jos\u00e9", noise="<r a='\u00e9'/>" * 4000).encode("cp1252"),
        # a character cut by the tail's first byte
        9109: good(9109, noise="<r/>" * 4000).replace("</Reports>", "\u4e2d" * 67 + "</Reports>"),
        # UTF-8 and a cp1252 byte in its tail: mixed, fails at parse as read whole
        9110: mixed_tail[:-40] + b"\xe9" + mixed_tail[-40:],
    }


@pytest.mark.slow
@pytest.mark.parametrize("as_blob", [False, True], ids=["text", "blob"])
def test_every_document_maps_from_its_head_as_from_the_whole(sqlite_url, plan, as_blob):
    cli("init-db", "--db", sqlite_url, check=True)
    docs = {app_id: value for value, _, app_id in CASES.values()} | edge_documents()
    store(sqlite_url, docs, as_blob)
    db = open_db(sqlite_url)
    try:
        ids = sorted(docs)
        heads = {a: (x, t) for a, x, t in db.fetch_documents(ids, MARKER, blob_heads=True)}
        got, expected = by_heads(db, plan, ids), whole(db, plan, ids)
    finally:
        db.close()
    assert sorted(got) == ids
    for a in ids:
        if got[a][0] == "failed" and ("near its end" in got[a][3] or "its last 200" in got[a][3]):
            assert got[a][:3] == expected[a][:3], a  # in the tail: read whole, its offset is said
        else:
            assert got[a] == expected[a], a
    # only heads were read: the scope's end is the head's end, the tail the document's last bytes
    twenty_mb = CASES["twenty_mb"][2]
    head, tail = heads[twenty_mb]
    assert isinstance(head, StoredBytes) and head.raw.endswith(MARKER.encode())
    assert len(head.raw) < 1000 and tail.endswith("</Provenir>") and len(tail) == 200
    assert heads[9101][0].raw.endswith(MARKER.encode()) and len(heads[9101][0].raw) > 16384
    assert heads[9103][1] is None and len(heads[9103][0].raw) == len(docs[9103])  # whole
    assert expected[9104][2] == "TruncatedDocument" and expected[9105][2] == "NulCharacter"
    assert expected[9106][0] == expected[9107][0] == "ok"
    assert expected[9108][0] == ("ok" if as_blob else "failed")  # cp1252: a BLOB's, not TEXT's
    assert expected[9110][2] == "InvalidUTF8"


def test_what_lies_between_the_head_and_the_tail_is_not_read(sqlite_url, plan):
    """The parts of a document that are not read (past the scope, before the last 200 bytes) are
    not checked: a NUL or a byte that is not UTF-8 there fails the document read whole, not the
    run, which reads heads, as on PostgreSQL and SQL Server (docs/usage.md)."""
    cli("init-db", "--db", sqlite_url, check=True)
    noise = "<r/>" * 2000
    nul = good(1, noise=noise + "<r a='\x00'/>" + noise)
    bad = good(2, noise=noise + "<r a='x'/>" + noise).encode().replace(b"a='x'", b"a='\xff'")
    # a BLOB: UTF-8 in its head, one cp1252 byte in its tail (read whole: mixed, refused; read as
    # head and tail, each is read in its own encoding: no value is taken from the tail)
    mixed = good(3, first="Zo\u00eb", noise=noise).encode()
    store(sqlite_url, {1: nul, 2: bad}, as_blob=False)
    store(sqlite_url, {3: mixed[:-40] + b"\xe9" + mixed[-40:]}, as_blob=True)
    db = open_db(sqlite_url)
    try:
        read_whole = whole(db, plan, [1, 2, 3])
    finally:
        db.close()
    assert [read_whole[a][2] for a in (1, 2, 3)] == ["NulCharacter", "InvalidUTF8", "InvalidUTF8"]
    r = cli("run", "--db", sqlite_url, "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    assert con.execute("SELECT app_id, status FROM processing_log ORDER BY app_id").fetchall() == [
        (1, "success"),
        (2, "success"),
        (3, "success"),
    ]
    names = {r[0] for r in con.execute("SELECT first_name FROM app_contact_base")}
    assert "Zo\u00eb" in names  # its head's UTF-8, read as UTF-8


def test_a_tail_that_cannot_be_read_fails_its_document_alone(sqlite_url):
    """A TEXT value with a byte that is not UTF-8 in its last bytes, a BLOB whose last bytes mix
    UTF-8 with such a byte: each document fails at parse (InvalidUTF8), the run goes on (decoded
    in the fetch, the failure would have stopped the batch and the worker)."""
    cli("init-db", "--db", sqlite_url, check=True)
    raw = {a: good(a, noise="<r/>" * 4000 + "<r a='Zo\u00eb'/>").encode() for a in (2, 4)}
    bad = {a: x[:-40] + b"\xe9" + x[-40:] for a, x in raw.items()}
    store(sqlite_url, {1: good(1), 2: bad[2]}, as_blob=False)
    store(sqlite_url, {3: good(3).encode(), 4: bad[4]}, as_blob=True)
    r = cli("run", "--db", sqlite_url, "--workers", "1", "--no-progress")
    assert r.returncode == 1, r.stderr
    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    rows = con.execute(
        "SELECT app_id, status, stage, error_class FROM processing_log ORDER BY app_id"
    ).fetchall()
    assert rows == [
        (1, "success", None, None),
        (2, "failed", "parse", "InvalidUTF8"),
        (3, "success", None, None),
        (4, "failed", "parse", "InvalidUTF8"),
    ]


SOURCES = {
    "view": (
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE VIEW app_xml AS SELECT id AS app_id, body AS xml FROM docs",
        "INSERT INTO docs (id, body) VALUES (?, ?)",
        None,
    ),
    "without_rowid": (
        "CREATE TABLE app_xml (app_id INTEGER PRIMARY KEY, xml TEXT) WITHOUT ROWID",
        None,
        "INSERT INTO app_xml (app_id, xml) VALUES (?, ?)",
        None,
    ),
    "rowid_column": (  # rowid names a column: the blob is opened by _rowid_
        "CREATE TABLE app_xml (rowid INTEGER, app_id INTEGER NOT NULL UNIQUE, xml TEXT)",
        None,
        "INSERT INTO app_xml (rowid, app_id, xml) VALUES (5 - ?, ?, ?)",
        "_rowid_",
    ),
    "ids_not_rowids": (  # the rowids run the other way
        "CREATE TABLE app_xml (app_id INTEGER NOT NULL UNIQUE, xml TEXT)",
        None,
        "INSERT INTO app_xml (_rowid_, app_id, xml) VALUES (10 - ?, ?, ?)",
        "rowid",
    ),
}


@pytest.mark.parametrize("shape", sorted(SOURCES))
def test_a_source_that_cannot_be_read_by_blob_is_read_whole(tmp_path, plan, shape):
    create, view, insert, rowid = SOURCES[shape]
    path = tmp_path / "src.db"
    con = sqlite3.connect(path)
    con.execute(create)
    if view:
        con.execute(view)
    for a in (1, 2, 3):
        doc = good(a, noise="<r/>" * 3000)
        con.execute(insert, ((a, doc) if insert.count("?") == 2 else (a, a, doc)))
    con.commit()
    con.close()
    url = f"sqlite:///{path}"
    db = open_db(url)
    try:
        assert db._blob_rowid() == rowid
        got = db.fetch_documents([1, 2, 3], MARKER, stored=True, blob_heads=True)
    finally:
        db.close()
    assert sorted(a for a, _, _ in got) == [1, 2, 3]
    for a, value, tail in got:
        assert isinstance(value, StoredBytes)
        assert (tail is None) == (rowid is None)  # whole documents, or heads and tails
        assert outcome(plan, value, a, tail)[0] == "ok"  # each its own document (ids checked)
