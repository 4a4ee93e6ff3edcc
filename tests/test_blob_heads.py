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


MIN_LENGTH = 20  # the packaged contracts' source.min_length


def outcome(plan: Any, source: Any, app_id: int, tail: Any = None) -> tuple:
    try:
        r = map_document(plan, source, expected_app_id=app_id, min_length=MIN_LENGTH, tail=tail)
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
    mixed_head = good(9118, first="Zo\u00eb", noise="<r/>" * 4000).encode()
    cp1252 = {
        a: good(a, first="EUR\u20ac", noise="<r/>" * 4000).encode("cp1252")
        for a in (9119, 9120, 9121)
    }
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
        # the marker in its first 20 characters: shorter than source.min_length, the whole is not
        9111: "<!--</CustData>-->" + good(9111, noise="<r/>" * 4000),
        9112: "<!--</CustData>-->" + good(9112),
        9113: "<!--</CustData>-->",  # too short, said with the whole's length
        9114: "  \n" * 9 + MARKER + "  " + good(9114),  # white space, then the marker
        # complete: its last 200 characters hold the end tag, its last 200 bytes do not
        9115: good(9115, noise="<r/>" * 4000) + "\u00a0" * 95,
        9116: good(9116, noise="<r/>" * 4000) + "\u3000" * 66,
        9117: good(9117, noise="<r/>" * 4000) + "\u3000" * 201,  # truncated: 201 characters
        # UTF-8 in its head, one cp1252 byte in its tail: mixed, refused as read whole
        9118: mixed_head[:-40] + b"\xe9" + mixed_head[-40:],
        # a byte cp1252 leaves undefined past the head: the whole is latin-1, not cp1252
        9119: cp1252[9119][:-3000] + b"\x81" + cp1252[9119][-3000:],
        9120: cp1252[9120][:-40] + b"\x81" + cp1252[9120][-40:],
        # a cp1252 head and a UTF-8 character in the tail: mixed
        9121: cp1252[9121][:-40] + "\u00eb".encode() + cp1252[9121][-40:],
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
    assert expected[9110][2] == expected[9118][2] == expected[9121][2] == "InvalidUTF8"
    assert expected[9111][0] == expected[9112][0] == "ok"
    assert expected[9114][2] == "XMLSyntaxError"  # its short head is no EmptyDocument
    assert expected[9113][2] == "EmptyDocument" and "(18 characters" in expected[9113][3]
    assert expected[9115][0] == expected[9116][0] == "ok"
    assert expected[9117][2] == "TruncatedDocument"
    if as_blob:  # latin-1: the head's 0x80 stays U+0080, as read whole
        names = {v for rows in expected[9119][1].values() for r in rows for v in r.values()}
        assert "EUR\x80" in names and "EUR\u20ac" not in names


@pytest.mark.slow
def test_what_lies_between_the_head_and_the_tail_is_not_read(sqlite_url, plan):
    """The part of a document that is not read (past the scope, before the last 200 bytes) is not
    checked: a NUL or a byte that is not UTF-8 there fails the document read whole, not the run,
    which reads heads, as on PostgreSQL and SQL Server (docs/operations.md)."""
    cli("init-db", "--db", sqlite_url, check=True)
    noise = "<r/>" * 2000
    nul = good(1, noise=noise + "<r a='\x00'/>" + noise)
    bad = good(2, noise=noise + "<r a='x'/>" + noise).encode().replace(b"a='x'", b"a='\xff'")
    # a BLOB: UTF-8 in its head and tail, one cp1252 byte between them (read whole: mixed)
    mixed = good(3, first="Zo\u00eb", noise=noise + "<r a='x'/>" + noise).encode()
    store(sqlite_url, {1: nul, 2: bad}, as_blob=False)
    store(sqlite_url, {3: mixed.replace(b"a='x'", b"a='\xe9'")}, as_blob=True)
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


@pytest.mark.slow
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
    "_rowid_column": (  # _rowid_ names a column: read whole
        "CREATE TABLE app_xml (_rowid_ INTEGER, app_id INTEGER NOT NULL UNIQUE, xml TEXT)",
        None,
        "INSERT INTO app_xml (_rowid_, app_id, xml) VALUES (5 - ?, ?, ?)",
        None,
    ),
    "generated_rowid": (  # a generated column named rowid (pragma_table_info omits it)
        "CREATE TABLE app_xml (app_id INTEGER NOT NULL, xml TEXT,"
        " rowid INTEGER GENERATED ALWAYS AS (4 - app_id) VIRTUAL)",
        None,
        "INSERT INTO app_xml (app_id, xml) VALUES (?, ?)",
        "_rowid_",
    ),
    "ids_not_rowids": (  # the rowids run the other way
        "CREATE TABLE app_xml (app_id INTEGER NOT NULL UNIQUE, xml TEXT)",
        None,
        "INSERT INTO app_xml (_rowid_, app_id, xml) VALUES (10 - ?, ?, ?)",
        "_rowid_",
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


def test_duplicate_ids_and_values_that_are_not_documents_come_as_read_whole(tmp_path, plan):
    """A source whose app_ids repeat, with NULL and numbers among the values: the same rows, in the
    same order, as fetch_documents_stored gives them (none twice), and the same outcomes."""
    path = tmp_path / "src.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE app_xml (app_id INTEGER NOT NULL, xml)")
    rows = [(2, None), (4, 42), (1, good(1)), (2, good(2)), (3, good(3)), (4, good(4)), (5, 7.5)]
    con.executemany("INSERT INTO app_xml (app_id, xml) VALUES (?, ?)", rows)
    con.commit()
    con.close()
    db = open_db(f"sqlite:///{path}")
    try:
        heads = db.fetch_documents([1, 2, 3, 4, 5], MARKER, stored=True, blob_heads=True)
        stored = db.fetch_documents([1, 2, 3, 4, 5], MARKER, stored=True)
    finally:
        db.close()

    def shape(fetched: list) -> list:
        return [
            (a, type(x).__name__, x if not isinstance(x, StoredBytes) else None)
            for a, x, _ in fetched
        ]

    assert shape(heads) == shape(stored) and len(heads) == 7
    for (a, x, t), (b, y, _) in zip(heads, stored):
        assert outcome(plan, x, a, t) == outcome(plan, y, b)


def test_a_row_gone_before_its_whole_read_is_not_logged(sqlite_url, plan, monkeypatch):
    """A document whose head does not settle it is read whole; a row deleted in between is left
    alone (nothing logged, as if it had not been selected), not logged failed as NULL."""
    from xml_extractor.db.database import Database
    from xml_extractor.db.store import BatchWriter, RunIdentity
    from xml_extractor.processing.worker import process_batch

    cli("init-db", "--db", sqlite_url, check=True)
    store(sqlite_url, {1: good(1), 2: good(2, noise="<r/>" * 4000)[:-30]}, as_blob=False)
    fetch = Database.fetch_documents

    def gone_when_whole(self: Any, ids: list[int], scope_end: Any = None, **kw: Any) -> list:
        return fetch(self, ids, scope_end, **kw) if scope_end is not None else []

    monkeypatch.setattr(Database, "fetch_documents", gone_when_whole)
    db = open_db(sqlite_url)
    try:
        writer = BatchWriter(db, plan, RunIdentity("s-test", 0, 1, db.contract.version_tag))
        res = process_batch(db, plan, writer, [1, 2], False)
        logged = db.autocommit_query("SELECT app_id, status FROM processing_log")
    finally:
        db.close()
    assert (res.success, res.failed) == (1, 0) and logged == [(1, "success")]


def test_a_value_whose_blob_does_not_open_is_read_whole(tmp_path, plan):
    """A generated xml column cannot be opened as a blob: each of its documents is read whole by
    its rowid (fetch_stored_by_rowid), in its place among the others."""
    path = tmp_path / "src.db"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE app_xml (app_id INTEGER PRIMARY KEY, body TEXT,"
        " xml TEXT GENERATED ALWAYS AS (body) VIRTUAL)"
    )
    for a in (3, 1, 2):
        con.execute("INSERT INTO app_xml (app_id, body) VALUES (?, ?)", (a, good(a)))
    con.commit()
    con.close()
    db = open_db(f"sqlite:///{path}")
    try:
        assert db._blob_rowid() == "_rowid_"
        got = db.fetch_documents([1, 2, 3], MARKER, stored=True, blob_heads=True)
    finally:
        db.close()
    assert [(a, t) for a, _, t in got] == [(1, None), (2, None), (3, None)]
    for a, value, _ in got:
        assert isinstance(value, StoredBytes) and value.raw == good(a).encode()
        assert outcome(plan, value, a)[0] == "ok"


def test_a_failed_fetch_leaves_no_read_snapshot_behind(sqlite_url, plan):
    """A whole fetch of a TEXT value that is not UTF-8 fails in sqlite3 and is fetched again
    (SQLiteDialect.read_documents). The failed cursor must not keep its read snapshot: once
    another connection commits, this connection's next write transaction would fail at once
    with "database is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait), six times, and the run
    would stop with exit 3 over one document. And a head the worker cannot settle is read
    whole as stored bytes, which never fail in the driver."""
    cli("init-db", "--db", sqlite_url, check=True)
    bad = good(1, noise="<r/>" * 4000).encode()
    bad = bad[:-100] + b"\xff" + bad[-100:]
    store(sqlite_url, {1: bad, 2: good(2)}, as_blob=False)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    db = open_db(sqlite_url)
    try:
        got = db.fetch_documents([1])
        assert outcome(plan, got[0][1], 1)[2] == "InvalidUTF8"
        other.execute("INSERT INTO app_xml (app_id, xml) VALUES (3, 'x')")
        db.conn.execute("BEGIN IMMEDIATE")
        db.conn.execute("ROLLBACK")
    finally:
        db.close()
        other.close()


@pytest.mark.slow
def test_a_whole_read_after_a_head_never_decodes_in_the_driver(sqlite_url):
    """Two workers, documents whose heads do not settle them (95 U+00A0 after the root's end tag:
    read whole) and that are not UTF-8 past their heads: each fails alone, the run ends with
    exit 1, not exit 3 on a lock."""
    cli("init-db", "--db", sqlite_url, check=True)
    docs: dict[int, Any] = {a: good(a) for a in range(1, 201)}
    for a in range(5, 200, 20):
        raw = (good(a, noise="<r/>" * 2000) + "\u00a0" * 95).encode()
        docs[a] = raw[:-400] + b"\xff" + raw[-400:]
    store(sqlite_url, docs, as_blob=False)
    r = cli("run", "--db", sqlite_url, "--workers", "2", "--batch-size", "10", "--no-progress")
    assert r.returncode == 1, r.stderr
    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    failed = con.execute(
        "SELECT app_id, stage, error_class FROM processing_log WHERE status = 'failed'"
    ).fetchall()
    assert sorted(failed) == [(a, "parse", "InvalidUTF8") for a in range(5, 200, 20)]
    assert con.execute("SELECT COUNT(*) FROM processing_log").fetchone()[0] == 200
