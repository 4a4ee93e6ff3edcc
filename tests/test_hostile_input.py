"""Hostile and broken input: each fails alone with a stage and reason; nothing from an external
entity is ever read; memory stays bounded."""

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


@pytest.mark.posix
def test_memory_stays_bounded(plan):
    import resource  # POSIX only: the module stays importable on Windows

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        map_document(plan, CASES["twenty_mb"][0], 5015)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150, f"peak memory grew {grown_mb:.0f} MB for a 20 MB document"


# -- issue 11: a DOCTYPE fails at stage parse whatever precedes it; no entity is ever expanded ------
from hostile import good  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xml_extractor import parsing  # noqa: E402
from xml_extractor.errors import ParseFailure  # noqa: E402

PROLOG_PIECE = st.sampled_from(
    [
        "\ufeff",
        " ",
        "\n",
        "\t",
        "\r\n",
        "<!-- c -->",
        "<!---->",
        "<!-- <!DOCTYPE x> -->",
        "<?pi x?>",
        "<?note?>",
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<?xml version='1.0' encoding='windows-1252'?>",
    ]
)
DOCTYPE = st.sampled_from(
    [
        '<!DOCTYPE Provenir [<!ENTITY x "INJECTED">]>',
        '<!DOCTYPE Provenir [\n  <!ENTITY x "INJECTED">\n  <!ATTLIST contact first_name CDATA "INJECTED">\n]>',
        '<!DOCTYPE Provenir [<!ENTITY x SYSTEM "file:///etc/hostname">]>',
        '<!DOCTYPE Provenir SYSTEM "http://127.0.0.1:9/p.dtd">',
        '<!DOCTYPE Provenir PUBLIC "-//X//DTD X//EN" "http://127.0.0.1:9/p.dtd">',
        "<!DOCTYPE Provenir>",
        '<!DOCTYPE Provenir [<!ENTITY x "' + "INJECTED" * 125 + '">]>',
    ]
)
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
        raise AssertionError(
            f"a document with a DOCTYPE succeeded: {r.as_dicts(plan)['app_contact_base']}"
        )
    assert e.value.stage == "parse", (e.value.stage, e.value.reason)
    assert "INJECTED" not in e.value.reason


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prolog=st.lists(PROLOG_PIECE, max_size=8),
    doctype=DOCTYPE,
    between=st.lists(PROLOG_PIECE, max_size=4),
    encoding=ENCODING,
    byte_boms=st.integers(1, 4),
    first=FIRST,
)
def test_a_doctype_fails_at_parse_whatever_precedes_it(
    plan, prolog, doctype, between, encoding, byte_boms, first
):
    text = "".join(prolog) + doctype + "".join(between) + good(7001, first=first)
    _assert_refused(plan, _encoded(text, encoding, byte_boms), 7001)


@pytest.mark.slow
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prolog=st.lists(PROLOG_PIECE, max_size=8),
    doctype=DOCTYPE,
    between=st.lists(PROLOG_PIECE, max_size=4),
    encoding=ENCODING,
    byte_boms=st.integers(1, 4),
    first=FIRST,
)
def test_the_parser_refuses_a_dtd_even_without_the_prolog_scan(
    plan, monkeypatch, prolog, doctype, between, encoding, byte_boms, first
):
    """The prolog scan is a courtesy (an early, clear reason); the tree check is the enforcement."""
    monkeypatch.setattr(parsing, "_check_prolog", lambda text: None)
    text = "".join(prolog) + doctype + "".join(between) + good(7002, first=first)
    _assert_refused(plan, _encoded(text, encoding, byte_boms), 7002)
    # the server dialects' path: only the head up to </CustData> and the last characters
    if isinstance(_encoded(text, encoding, byte_boms), str):
        head = text[: text.index("</CustData>") + len("</CustData>")]
        with pytest.raises(
            (ParseFailure, parsing.NeedFullDocument)
        ):  # the latter: the whole text decides (above)
            parsing.parse_document(head, plan.document, tail=text[-200:])


@pytest.mark.slow
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prolog=st.lists(PROLOG_PIECE, max_size=8), encoding=ENCODING, byte_boms=st.integers(1, 4))
def test_the_same_prologs_without_a_doctype_parse_or_fail_cleanly(
    plan, prolog, encoding, byte_boms
):
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
    big = (
        '<!DOCTYPE Provenir [<!ENTITY x "' + "A" * 1000 + '">]>' + good(7004, first="&x;&x;&x;&x;")
    )
    with pytest.raises(DocumentFailure) as e:
        map_document(plan, "\ufeff\ufeff" + big, expected_app_id=7004)
    assert e.value.stage == "parse"


# -- red team: one invalid UTF-8 byte in the source TEXT stopped the whole run (exit 3) -----------
import json  # noqa: E402
import uuid  # noqa: E402

from conftest import PG_URL, _pg_admin_exec, cli_in_process, engine, log_rows, open_db  # noqa: E402

from xml_extractor.parsing import UndecodableText, decode_source, decode_tail, text_or_undecodable  # noqa: E402

BAD_IN_SCOPE = 5  # an 0xFF inside Request/CustData: what the run reads, on every engine
BAD_AT_END = 12  # an 0xFF after </Provenir> (the red team's case)


@pytest.fixture
def source_url(db_url):
    """The engine's database that can hold a text that is not UTF-8: SQLite's TEXT holds any bytes;
    PostgreSQL only in a SQL_ASCII database (a UTF8 one refuses the byte on the way in), created
    here next to the fixture's UTF8 one; SQL Server in a database of a UTF-8 collation (in a
    Latin1 one the byte is the cp1252 character 'ÿ', a valid text), created the same way."""
    if db_url.startswith("sqlite"):
        yield db_url
        return
    if not db_url.startswith("postgresql"):
        from conftest import _mssql_database

        yield from _mssql_database(collation="Latin1_General_100_CI_AS_SC_UTF8")
        return
    name = "xe_ascii_" + uuid.uuid4().hex[:12]
    try:
        _pg_admin_exec(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    except Exception as exc:
        pytest.skip(f"the PostgreSQL server cannot create a SQL_ASCII database: {exc}")
    yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    try:
        _pg_admin_exec(f"DROP DATABASE {name} WITH (FORCE)")
    except Exception:
        pass


def _put_invalid_bytes(url: str) -> None:
    """Write 0xFF into two documents' text, below the tool (the column stays a text column)."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        read, write = (
            "SELECT CAST(xml AS BLOB) FROM app_xml WHERE app_id = ?",
            "UPDATE app_xml SET xml = CAST(? AS TEXT) WHERE app_id = ?",
        )
    else:
        import pyodbc

        from xml_extractor.db.url import parse_url

        u = parse_url(url)
        conn = pyodbc.connect(u.odbc_connection_string())
        read, write = (
            "SELECT textsend(xml) FROM app_xml WHERE app_id = ?",
            "UPDATE app_xml SET xml = convert_from(?, 'SQL_ASCII') WHERE app_id = ?",
        )
        if u.dialect == "mssql":  # varchar(max): the bytes as they are, no code-page conversion
            read, write = (
                "SELECT CAST(xml AS VARBINARY(MAX)) FROM app_xml WHERE app_id = ?",
                "UPDATE app_xml SET xml = CAST(CAST(? AS VARBINARY(MAX)) AS VARCHAR(MAX)) WHERE app_id = ?",
            )
    for app_id in (BAD_IN_SCOPE, BAD_AT_END):
        raw = bytes(conn.execute(read, (app_id,)).fetchone()[0])
        at = raw.index(b"<CustData") + len(b"<CustData") if app_id == BAD_IN_SCOPE else len(raw)
        conn.execute(write, (raw[:at] + b" \xff" + raw[at:], app_id))
    conn.commit()
    conn.close()


@pytest.mark.slow
def test_a_text_that_is_not_utf8_fails_alone_at_parse_and_the_run_goes_on(source_url):
    cli_in_process(
        "generate-mock", "--db", source_url, "--count", "20", "--faulty-share", "0", check=True
    )
    _put_invalid_bytes(source_url)
    p = cli_in_process("run", "--db", source_url, "--no-progress", "--batch-size", "8")
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    assert "Provenir" not in p.stdout + p.stderr  # no document text on the screen
    rows = {r[0]: r for r in log_rows(source_url)}
    assert sorted(rows) == list(range(1, 21))  # every application has its log row
    failed = {a: r for a, r in rows.items() if r[1] == "failed"}
    assert set(failed) == {BAD_IN_SCOPE, BAD_AT_END}, failed
    _, _, stage, _, error_class, reason = failed[BAD_IN_SCOPE]
    assert (stage, error_class) == ("parse", "InvalidUTF8")
    assert reason.startswith(
        "the xml column's text is not valid UTF-8: byte(s) 0xff at byte offset "
    )
    # after the root's end: in the tail the server dialects fetch (their last 200 bytes), the whole text on SQLite
    assert failed[BAD_AT_END][2:5:2] == ("parse", "InvalidUTF8"), failed[BAD_AT_END]
    for r in failed.values():
        assert "<" not in r[5] and "Provenir" not in r[5], r
    again = cli_in_process(
        "run", "--db", source_url, "--no-progress"
    )  # nothing to do: it does not stop on them again
    assert again.returncode in (0, 1) and "error" not in again.stderr, again.stderr
    prof = cli_in_process("profile", "--db", source_url, "--format", "json")
    assert prof.returncode == 0 and "Traceback" not in prof.stderr, prof.stderr
    report = json.loads(prof.stdout)
    assert report["documents"] == 20 and report["failed"] == {"parse": 2}, report["failed"]
    examples = {e["app_id"]: e for e in report["failure_examples"]}
    assert examples[BAD_IN_SCOPE]["reason"].startswith("the xml column's text is not valid UTF-8")
    assert all("<" not in e["reason"] for e in report["failure_examples"])


@pytest.mark.slow
def test_the_sqlite_fetch_decodes_leniently_only_while_it_fetches(sqlite_url):
    """Everything else the connection reads keeps sqlite3's own text handling."""
    from conftest import open_db

    cli_in_process(
        "generate-mock", "--db", sqlite_url, "--count", "3", "--faulty-share", "0", check=True
    )
    _put_invalid_bytes_one = b"<Provenir>\xff</Provenir>"
    db = open_db(sqlite_url)
    try:
        db.conn.execute(
            "UPDATE app_xml SET xml = CAST(? AS TEXT) WHERE app_id = 2", (_put_invalid_bytes_one,)
        )
        docs = {a: x for a, x, _ in db.fetch_documents([1, 2, 3])}
        assert isinstance(docs[2], UndecodableText) and docs[2].offset == 10
        assert isinstance(docs[1], str) and docs[1].lstrip("\ufeff").startswith("<")
        assert db.conn.text_factory is str
    finally:
        db.close()


def test_undecodable_text_fails_at_parse_naming_bytes_not_text():
    bad = text_or_undecodable("<a>caf\u00e9</a>".encode() + b"\xe2\x82<b secret='x'/>")
    with pytest.raises(ParseFailure) as e:
        decode_source(bad)
    assert e.value.stage == "parse" and e.value.error_class == "InvalidUTF8"
    assert (
        e.value.reason
        == "the xml column's text is not valid UTF-8: byte(s) 0xe2 0x82 at byte offset 12"
    )
    assert text_or_undecodable("caf\u00e9".encode()) == "caf\u00e9"


def test_a_tail_cut_inside_a_character_is_fine_a_bad_byte_in_it_is_not():
    assert (
        decode_tail("\u20ac</Provenir>".encode()[1:]) == "</Provenir>"
    )  # cut by bytes: 2 of 3 bytes of a character
    with pytest.raises(ParseFailure, match="0xff within its last 12 bytes") as e:
        decode_tail(b"</Provenir>\xff")
    assert e.value.error_class == "InvalidUTF8"


def refuse_log_inserts_sql(db) -> list[str]:
    """A trigger that makes every insert into the processing log fail with 'log refused', in the
    engine's own words (a DBA's trigger, a permission revoked: the log cannot be written)."""
    log, name = db.names["log"], db.dialect.qualified(db.contract.target_schema, "refuse_log")
    if db.dialect.name == "sqlite":
        return [
            f"CREATE TRIGGER refuse_log BEFORE INSERT ON {log} BEGIN SELECT RAISE(ABORT, 'log refused'); END"
        ]
    if db.dialect.name == "postgresql":
        return [
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'log refused'; END $$",
            f"CREATE TRIGGER refuse_log BEFORE INSERT ON {log} FOR EACH ROW EXECUTE FUNCTION {name}()",
        ]
    return [
        f"CREATE TRIGGER {name} ON {log} INSTEAD OF INSERT AS THROW 50000, 'log refused', 1;"
    ]  # SQL Server


@pytest.mark.slow
def test_a_run_that_stops_says_error_once(db_url):
    """A stop reason is kept as "error: ..." (or "config: ..."); stderr said "error: error: ..."."""
    cli_in_process(
        "generate-mock", "--db", db_url, "--count", "3", "--faulty-share", "0", check=True
    )
    cli_in_process("init-db", "--db", db_url, check=True)
    db = open_db(db_url)
    try:
        db.execute_outside_transaction(refuse_log_inserts_sql(db))
    finally:
        db.close()
    p = cli_in_process("run", "--db", db_url, "--no-progress")
    assert p.returncode == 3, p.stdout[-2000:] + p.stderr
    assert (
        p.stderr.startswith("error: ")
        and "error: error" not in p.stderr
        and "log refused" in p.stderr
    ), p.stderr


def _source_bytes(url: str, changes: "dict[int, bytes] | None" = None) -> dict[int, bytes]:
    """The source rows' bytes, read below the tool; ``changes`` written back first, as bytes the
    column keeps as they are: SQLite's BLOB (Python's sqlite3 binds bytes so, even in the TEXT
    column), SQL Server's varchar(max) (from varbinary, byte for byte, whatever its code page)."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        read, write = (
            "SELECT app_id, CAST(xml AS BLOB) FROM app_xml",
            "UPDATE app_xml SET xml = ? WHERE app_id = ?",
        )
    else:
        import pyodbc

        from xml_extractor.db.url import parse_url

        assert parse_url(url).dialect == "mssql"
        conn = pyodbc.connect(parse_url(url).odbc_connection_string())
        read, write = (
            "SELECT app_id, CAST(xml AS VARBINARY(MAX)) FROM app_xml",
            "UPDATE app_xml SET xml = CAST(CAST(? AS VARBINARY(MAX)) AS VARCHAR(MAX)) WHERE app_id = ?",
        )
    try:
        for app_id, raw in (changes or {}).items():
            conn.execute(write, (raw, app_id))
        conn.commit()
        return {int(a): bytes(b) for a, b in conn.execute(read).fetchall()}
    finally:
        conn.close()


@pytest.mark.slow
def test_bytes_that_mix_utf8_with_another_encoding_fail_at_parse_and_cp1252_rows_still_load(db_url):
    """Bytes in the source column (SQLite's BLOB: Python's sqlite3 stores bytes so even in the TEXT
    column; SQL Server's varchar(max), where the users' older rows live) are read as bytes: UTF-8,
    else cp1252 (older rows are cp1252, domain.md). A document with UTF-8 characters and one byte
    that is not UTF-8 was read as cp1252 and succeeded with its valid 'Zoë' stored as 'ZoÃ«'. Mixed
    bytes fail alone (InvalidUTF8); a pure cp1252 row still loads."""
    import re

    if engine(db_url) == "postgresql":
        pytest.skip(
            "PostgreSQL's source column is text, read strictly as UTF-8 (no cp1252 fallback: "
            "parsing.text_or_undecodable); a byte that is not UTF-8 there is test_a_text_that_is_not_utf8's"
        )
    url = db_url
    cli_in_process("generate-mock", "--db", url, "--count", "3", "--faulty-share", "0", check=True)
    texts = {a: b.decode("utf-8") for a, b in _source_bytes(url).items()}
    zoe = {i: re.sub(r'last_name="[^"]*"', 'last_name="Zoë"', t) for i, t in texts.items()}
    mixed = re.sub(rb'first_name="[^"]*"', b'first_name="Jos\xe9"', zoe[1].encode("utf-8"))
    older = zoe[2].lstrip("\ufeff").encode("cp1252")  # an older row
    stored_bytes = _source_bytes(url, {1: mixed, 2: older})
    assert (stored_bytes[1], stored_bytes[2]) == (
        mixed,
        older,
    )  # below the tool: the bytes as written
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            assert (
                conn.execute("SELECT typeof(xml) FROM app_xml WHERE app_id = 1").fetchone()[0]
                == "blob"
            )
    p = cli_in_process("run", "--db", url, "--no-progress")
    assert p.returncode == 1, p.stdout + p.stderr
    log = {a: (s, st, e) for a, s, st, _, e, _ in log_rows(url)}
    db = open_db(url)
    try:
        contact = db.table("app_contact_base")
        names = {
            r[0] for r in db.autocommit_query(f"SELECT last_name FROM {contact} WHERE app_id = 2")
        }
        stored = {
            r[0] for r in db.autocommit_query(f"SELECT last_name FROM {contact} WHERE app_id = 1")
        }
    finally:
        db.close()
    assert log[1] == ("failed", "parse", "InvalidUTF8") and not stored, (log, stored)
    assert log[2][0] == "success" and log[3][0] == "success", log
    assert names and names <= {"Zoë", "ZOË"}, names  # the cp1252 row read as the text it is
