"""SQL Server: cannot run here. The SQL the dialect emits is checked statement by statement;
live tests run when XML_EXTRACTOR_TEST_MSSQL holds an odbc: URL or connection string."""

import json
import os
import re
import uuid

import pytest
from conftest import ROOT, cli_in_process

from xml_extractor.db.database import make_dialect
from xml_extractor.db.url import parse_url, server_url

MSSQL = os.environ.get("XML_EXTRACTOR_TEST_MSSQL")


@pytest.fixture(scope="module")
def ddl():
    p = cli_in_process("init-db", "--print", "--dialect", "mssql", check=True)
    body = "\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith("--"))
    return [s.strip() for s in body.split("\nGO\n") if s.strip()]


def stmt(ddl, pattern):
    hits = [s for s in ddl if re.search(pattern, s, re.S)]
    assert hits, f"no statement matches {pattern}"
    return hits[0]


def test_schema_is_created_when_missing(ddl):
    s = stmt(ddl, r"CREATE SCHEMA")
    assert s == "IF SCHEMA_ID(N'sandbox') IS NULL EXEC(N'CREATE SCHEMA [sandbox]')"


def test_source_table_is_dbo_varchar_max(ddl):
    """The tool's own source table mirrors the users' (varchar(max)): load-xml/generate-mock store
    UTF-8 bytes in it (source_value), so the tool's rows take the users' rows' fetch path."""
    s = stmt(ddl, r"CREATE TABLE \[dbo\]\.\[app_xml\]")
    assert "IF OBJECT_ID(N'[dbo].[app_xml]', N'U') IS NULL" in s
    assert "[app_id] INTEGER NOT NULL PRIMARY KEY" in s and "[xml] VARCHAR(MAX)" in s
    assert "TEXT" not in s.upper().replace("CONTEXT", "")


def test_core_tables_keys_fks_and_types(ddl):
    base = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[app_base\]")
    assert "[receive_date] DATETIME2(3) NOT NULL" in base and "[app_type_enum] SMALLINT" in base
    assert (
        "[ip_address] NVARCHAR(45)" in base
        and "[signature_flag] BIT" in base
        and "[special_offer] TINYINT" in base
    )
    assert "CONSTRAINT [pk_app_base] PRIMARY KEY ([app_id])" in base
    con = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[app_contact_base\]")
    assert "CONSTRAINT [pk_app_contact_base] PRIMARY KEY ([con_id])" in con
    assert "FOREIGN KEY ([app_id]) REFERENCES [sandbox].[app_base] ([app_id])" in con
    assert "[birth_date] DATE" in con
    addr = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[app_contact_address\]")
    assert "PRIMARY KEY ([con_id], [address_type_enum])" in addr
    assert "FOREIGN KEY ([con_id]) REFERENCES [sandbox].[app_contact_base] ([con_id])" in addr
    assert "[residence_monthly_pymnt] DECIMAL(14,4)" in addr
    emp = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[app_contact_employment\]")
    assert "[monthly_salary] DECIMAL(14,4)" in emp and "[self_employed_flag] BIT" in emp
    for s in ddl:
        assert not re.search(r"\b(N?TEXT|NTEXT|TIMESTAMP)\b", s), s  # no text/ntext, no rowversion


def test_processing_log_and_indexes(ddl):
    log = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[processing_log\]")
    assert (
        "[log_id] BIGINT IDENTITY(1,1) NOT NULL PRIMARY KEY" in log
        and "[reason] NVARCHAR(MAX)" in log
    )
    assert "CHECK ([status] IN ('success', 'failed'))" in log
    ux = stmt(ddl, r"ux_processing_log_app_attempt")
    assert ux.startswith(
        "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_processing_log_app_attempt'"
    )
    assert (
        "CREATE UNIQUE INDEX [ux_processing_log_app_attempt] ON [sandbox].[processing_log] ([app_id], [attempt])"
        in ux
    )
    stmt(
        ddl,
        r"CREATE INDEX \[ix_app_contact_base_app_id\] ON \[sandbox\]\.\[app_contact_base\] \(\[app_id\]\)",
    )
    stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[work_queue\]")
    seeds = [s for s in ddl if s.startswith("INSERT INTO [sandbox].[app_enums]")]
    from xml_extractor.contract.loader import load_contract

    assert len(seeds) == sum(len(v) for v in load_contract().enums.values())
    assert any("N'PR'" in s and "281" in s for s in seeds)


def test_claim_and_selection_queries():
    d = make_dialect("mssql")
    claim = d.queries["queue_claim"].template
    assert (
        "WITH (UPDLOCK, READPAST, ROWLOCK)" in claim
        and "SELECT TOP (1)" in claim
        and "OUTPUT inserted.chunk_id" in claim
    )
    assert (
        "{lease_expr}" in claim
        and d.lease_sql() == "DATEADD(second, :lease_seconds, SYSUTCDATETIME())"
    )
    assert "WITH (UPDLOCK, HOLDLOCK)" in d.queries["queue_seed"].template


def test_pending_page_is_top_with_named_parameters():
    """One definition of pending_ids for every dialect: TOP (?) on SQL Server, LIMIT ? elsewhere,
    and the values bound by name land in the right places whatever the order of the markers."""
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.db.database import Database

    d = make_dialect("mssql")
    assert d.queries["pending_ids"].source == "common.sql"
    st = Database("mssql://h/db", load_contract(), connect=False).sql("pending_ids")
    assert st.startswith("SELECT TOP (?) s.[app_id] FROM [dbo].[app_xml] s")
    assert "LIMIT" not in st and "OFFSET" not in st
    sql, values = st.bind(
        {"after_id": 10, "id_lo": 1, "id_hi": 99, "modulus": 3, "remainder": 2, "limit": 50}
    )
    assert values == [50, 10, 1, 99, 3, 3, 3, 2]


class RecordingCursor:
    """Records what the dialect sends; a unit test of emitted SQL, not a stand-in database."""

    def __init__(self):
        self.calls = []
        self.fast_executemany = False

    def executemany(self, sql, rows):
        self.calls.append((sql, len(rows), self.fast_executemany))


def test_bulk_insert_uses_bounded_fast_executemany():
    d = make_dialect("mssql")
    cur = RecordingCursor()
    d.insert_rows(
        cur, "[sandbox].[scores]", ["app_id", "score_identifier", "score"], [(1, "a", 2)] * 2500
    )
    assert [c[1] for c in cur.calls] == [1000, 1000, 500] and all(c[2] for c in cur.calls)
    assert (
        cur.calls[0][0]
        == "INSERT INTO [sandbox].[scores] ([app_id], [score_identifier], [score]) VALUES (?, ?, ?)"
    )


def test_urls_and_identifier_quoting():
    u = parse_url(
        "mssql://sa@db.example:1433/XmlConversionDB?driver=ODBC Driver 18 for SQL Server&trust_server_certificate=yes",
        password="s3cret",
    )
    cs = u.odbc_connection_string()
    assert (
        "Server=db.example,1433" in cs
        and "Database=XmlConversionDB" in cs
        and "UID=sa" in cs
        and "PWD=s3cret" in cs
    )
    assert (
        "s3cret" not in u.display() and u.display() == "mssql://sa@db.example:1433/XmlConversionDB"
    )
    t = parse_url("mssql://localhost/XmlConversionDB", password="")
    assert "Trusted_Connection=yes" in t.odbc_connection_string()
    assert server_url("localhost,1433", "X", None) == "mssql://localhost:1433/X"
    with pytest.raises(Exception, match="invalid identifier"):
        make_dialect("mssql").quote("a]; DROP TABLE x; --")


def test_server_flags_build_a_trusted_mssql_url(monkeypatch):
    from xml_extractor.cli.common import resolve_url

    u = resolve_url(None, "localhost\\SQLEXPRESS", "XmlConversionDB", None)
    assert (
        u.dialect == "mssql"
        and u.host == "localhost\\SQLEXPRESS"
        and "Trusted_Connection=yes" in u.odbc_connection_string()
    )
    monkeypatch.setenv("XML_EXTRACTOR_DB_PASSWORD", "pw")
    u = resolve_url(None, "db,1433", "X", "svc")
    assert (
        u.port == 1433
        and u.user == "svc"
        and "PWD=pw" in u.odbc_connection_string()
        and "pw" not in u.display()
    )


# -- the source column: its type decides the fetch (M1, M13, M17) and the load (M6) -----------------


def _db(kind: str | None = None):
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.db.database import Database

    db = Database("mssql://h/db", load_contract(), connect=False)
    if kind is not None:
        db._source_kind = kind  # what source_column_type would have told this Database
    return db


@pytest.mark.parametrize(
    "type_name, max_length, kind",
    [
        ("varchar", -1, "bytes"),
        ("varchar", 8000, "bytes"),
        ("char", 100, "bytes"),
        ("varbinary", -1, "bytes"),
        ("nvarchar", -1, "text"),
        ("nchar", 200, "text"),
    ],
)
def test_source_kinds_the_dialect_reads(type_name, max_length, kind):
    from xml_extractor.db.mssql import SourceColumn

    d = make_dialect("mssql")
    assert (
        d.source_kind(
            SourceColumn(type_name, max_length, "SQL_Latin1_General_CP1_CI_AS"),
            "[dbo].[app_xml].[xml]",
        )
        == kind
    )
    # a *_UTF8 collation's varchar holds UTF-8 bytes: the bytes path is right for it too
    assert (
        d.source_kind(
            SourceColumn(type_name, max_length, "Latin1_General_100_CI_AS_SC_UTF8"),
            "[dbo].[app_xml].[xml]",
        )
        == kind
    )


@pytest.mark.parametrize(
    "type_name, to, why",
    [
        ("text", "VARCHAR(MAX)", "deprecated"),
        ("ntext", "NVARCHAR(MAX)", "deprecated"),
        (
            "xml",
            "NVARCHAR(MAX)",
            "re-serialised, without the document's encoding declaration and byte-order mark",
        ),
        ("image", "VARBINARY(MAX)", "deprecated"),
        ("sql_variant", "VARCHAR(MAX)", "reads varchar, nvarchar or varbinary"),
    ],
)
def test_a_legacy_source_type_is_refused_with_the_alter_that_fixes_it(type_name, to, why):
    from xml_extractor.db.mssql import SourceColumn
    from xml_extractor.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        make_dialect("mssql").source_kind(
            SourceColumn(type_name, 16, None), "[dbo].[app_xml].[xml]"
        )
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(
        f"the source column [dbo].[app_xml].[xml] is {type_name}"
    )
    assert why in msg and msg.endswith(f"ALTER TABLE [dbo].[app_xml] ALTER COLUMN [xml] {to}")


def test_the_source_type_is_read_once_and_checked_before_any_fetch(monkeypatch):
    """Database.source_kind reads sys.columns once per Database (source_column_type, bound by
    name); an ntext column stops the command with the one-line ConfigError before a fetch runs."""
    from xml_extractor.errors import ConfigError

    db = _db()
    sent = []

    def query(sql, params=()):
        sent.append((str(sql), dict(params)))
        return [("ntext", 16, "SQL_Latin1_General_CP1_CI_AS")] if "sys.columns" in str(sql) else []

    monkeypatch.setattr(db, "autocommit_query", query)
    with pytest.raises(ConfigError, match=r"is ntext: .*ALTER COLUMN \[xml\] NVARCHAR\(MAX\)$"):
        db.check_source()
    with pytest.raises(ConfigError, match="is ntext"):
        db.fetch_documents([1, 2], "</CustData>")
    assert all("sys.columns" in q for q, _ in sent)  # nothing but the type was asked
    assert sent[0][1] == {"qtable": "[dbo].[app_xml]", "column": "xml"}
    assert (
        "JOIN sys.types t ON t.user_type_id = c.system_type_id" in sent[0][0]
    )  # the base type of an alias type
    db2 = _db()
    asked = []
    monkeypatch.setattr(
        db2, "autocommit_query", lambda sql, params=(): asked.append(1) or [("varchar", -1, None)]
    )
    assert db2.source_kind() == "bytes" and db2.source_kind() == "bytes" and len(asked) == 1


def test_bytes_fetch_statements_never_convert_the_document_to_nvarchar():
    db = _db("bytes")
    heads, whole = str(db.sql("fetch_heads")), str(db.sql("fetch_documents"))
    assert "CAST(s.[xml] AS VARBINARY(MAX)) AS b" in heads
    assert (
        "CHARINDEX(CAST(CAST(? AS VARCHAR(100)) AS VARBINARY(100)), y.b)" in heads
    )  # bytes in bytes, no collation
    assert (
        "SUBSTRING(x.b, 1, x.p + x.m - 1)" in heads and "DATALENGTH(x.b) - 199" in heads
    )  # bytes, as PostgreSQL's
    assert "LEFT(" not in heads and "RIGHT(" not in heads and "NVARCHAR" not in heads
    assert (
        whole
        == "SELECT s.[app_id], CAST(s.[xml] AS VARBINARY(MAX)) FROM [dbo].[app_xml] s WHERE s.[app_id] IN (?)"
    )
    text = str(db.sql("fetch_heads_text"))
    assert "CHARINDEX(CAST(? AS NVARCHAR(100)), s.[xml])" in text and "RIGHT(x.doc, 200)" in text


def _as_sql_server_sends_heads(raw: bytes, marker: bytes = b"</CustData>") -> tuple:
    """fetch_heads' bytes result for one document, computed as its SQL does (1-based CHARINDEX)."""
    p = raw.find(marker) + 1
    if p == 0:
        return raw, None
    return raw[: p + len(marker) - 1], raw[max(1, len(raw) - 199) - 1 :]


def _fetch(db, monkeypatch, docs: dict[int, bytes], heads: bool = True):
    sent = []

    def query(sql, params=()):
        sent.append((str(sql), dict(params)))
        if "fetch" not in getattr(sql, "name", ""):
            raise AssertionError(sql)
        if heads:
            return [(i, *_as_sql_server_sends_heads(raw)) for i, raw in docs.items()]
        return list(docs.items())

    monkeypatch.setattr(db, "autocommit_query", query)
    out = db.fetch_documents(list(docs), "</CustData>" if heads else None)
    return out, sent


def test_bom_cp1252_and_mixed_documents_decode_as_on_every_engine(monkeypatch):
    """The bytes SQL Server returns for a varchar column go through the same decoding as every
    engine's: a UTF-8 document with its BOM maps to exactly what it maps to from a file; a cp1252
    row reads its 'é' as 'é'; a row mixing UTF-8 and a cp1252 byte fails at parse (InvalidUTF8)."""
    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.errors import ParseFailure
    from xml_extractor.mapping import map_document

    plan = compile_contract(load_contract())
    original = (ROOT / "tests" / "data" / "app-1001.xml").read_bytes()
    assert original.startswith(b"\xef\xbb\xbf")
    utf8 = original.replace(b'first_name="JANE"', 'first_name="Zoë"'.encode(), 1)
    cp1252 = original[3:].replace(b'first_name="JANE"', 'first_name="Zoé"'.encode("cp1252"), 1)
    mixed = utf8.replace(b'first_name="JOHN"', b'first_name="Ren\xe9"', 1)
    db = _db("bytes")
    got, sent = _fetch(db, monkeypatch, {1001: utf8, 1002: cp1252, 1003: mixed})
    assert sent[0][1]["marker_bytes"] == len(b"</CustData>") and "marker_chars" not in sent[0][1]
    by_id = {a: (x, t) for a, x, t in got}
    assert all(isinstance(t, str) and t.rstrip().endswith("</Provenir>") for _, t in by_id.values())
    reference = map_document(plan, original, 1001)
    rows = map_document(plan, by_id[1001][0], 1001, tail=by_id[1001][1])
    names = {r for t in rows.rows.values() for row in t for r in row if isinstance(r, str)}
    assert "Zoë" in names and "ZoÃ«" not in names
    assert sum(len(v) for v in rows.rows.values()) == sum(len(v) for v in reference.rows.values())
    cp = map_document(plan, by_id[1002][0], 1001, tail=by_id[1002][1])
    assert "Zoé" in {r for t in cp.rows.values() for row in t for r in row if isinstance(r, str)}
    with pytest.raises(ParseFailure) as e:
        map_document(plan, by_id[1003][0], 1001, tail=by_id[1003][1])
    assert e.value.error_class == "InvalidUTF8" and "0xe9" in e.value.reason


def test_a_cp1252_tail_is_read_like_its_document(monkeypatch):
    """The last 200 bytes of a cp1252 row are cp1252 (not a parse failure); a tail mixing UTF-8
    with a bad byte fails like the whole document would."""
    from xml_extractor.errors import ParseFailure
    from xml_extractor.parsing import decode_tail_bytes

    assert decode_tail_bytes("<x a='é'/></Provenir>".encode("cp1252")).endswith("é'/></Provenir>")
    assert (
        decode_tail_bytes(b"\xa9\xc3\xa9</Provenir>") == "é</Provenir>"
    )  # a character cut by the byte count
    with pytest.raises(ParseFailure, match="0xe9"):
        decode_tail_bytes("ë".encode() + b"\xe9</Provenir>")


def test_whole_documents_and_nvarchar_text(monkeypatch):
    db = _db("bytes")
    got, sent = _fetch(db, monkeypatch, {7: b"\xef\xbb\xbf<a/>"}, heads=False)
    assert got == [(7, b"\xef\xbb\xbf<a/>", None)] and "VARBINARY(MAX)" in sent[0][0]
    db = _db("text")
    monkeypatch.setattr(
        db,
        "autocommit_query",
        lambda sql, params=(): (sent.append((str(sql), dict(params))), [(7, "\ufeff<a>", "</a>")])[
            1
        ],
    )
    assert db.fetch_documents([7], "</CustDätä>") == [(7, "\ufeff<a>", "</a>")]
    assert db.dialect.fetch_query("text", "fetch_heads") == "fetch_heads_text"
    assert sent[-1][1]["marker_chars"] == len("</CustDätä>") and "marker_bytes" not in sent[-1][1]


def test_load_binds_utf8_bytes_for_varchar_and_text_for_nvarchar():
    """load-xml/generate-mock: a varchar column gets the document's UTF-8 bytes (converted to
    varchar byte for byte: no '?' for a character its code page lacks, the BOM kept as EF BB BF
    like the users' rows), an nvarchar column the text."""
    doc = "\ufeff<Provenir a='Zoë 中'/>"
    assert _db("bytes").source_value(doc) == doc.encode("utf-8")
    assert _db("text").source_value(doc) == doc
    insert = str(_db("bytes").sql("source_insert_new"))
    assert (
        "WITH (UPDLOCK, HOLDLOCK)" in insert and "CAST" not in insert
    )  # implicit varbinary -> column type


def test_same_text_reads_stored_bytes_as_the_run_does():
    from xml_extractor.loading import _same_text

    assert _same_text(b"\xef\xbb\xbf<a>Zo\xc3\xab</a>", "<a>Zoë</a>")
    assert _same_text("<a>Zo\xe9</a>".encode("cp1252"), "<a>Zoé</a>")
    assert not _same_text(b"\xc3\xab\xe9", "ë") and not _same_text(b"", "")


# -- per connection settings (M10, M15) --------------------------------------------------------------


def test_every_connection_sets_lock_timeout_nocount_and_a_query_timeout(monkeypatch):
    from xml_extractor.db import mssql
    from xml_extractor.errors import ConfigError

    class Conn:
        def __init__(self):
            self.sent, self.timeout = [], 0

        def cursor(self):
            conn = self

            class C:
                def execute(self, sql):
                    conn.sent.append(sql)

                def close(self):
                    pass

            return C()

    conn = Conn()
    monkeypatch.setattr(mssql, "odbc_connect", lambda cs, driver: conn)
    make_dialect("mssql").connect(parse_url("mssql://h/db"))
    assert conn.sent == ["SET LOCK_TIMEOUT 30000; SET NOCOUNT OFF"] and conn.timeout == 3600
    import sqlglot

    assert [type(x).__name__ for x in sqlglot.parse(conn.sent[0], read="tsql")] == ["Set", "Set"]
    monkeypatch.setenv("XML_EXTRACTOR_LOCK_TIMEOUT", "5")
    monkeypatch.setenv("XML_EXTRACTOR_QUERY_TIMEOUT", "0")
    assert mssql.session_settings() == ("SET LOCK_TIMEOUT 5000; SET NOCOUNT OFF", 0)
    monkeypatch.setenv("XML_EXTRACTOR_LOCK_TIMEOUT", "0")
    assert mssql.session_settings()[0].startswith(
        "SET LOCK_TIMEOUT -1;"
    )  # 0: wait as long as it takes
    monkeypatch.setenv("XML_EXTRACTOR_LOCK_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="XML_EXTRACTOR_LOCK_TIMEOUT='soon'"):
        mssql.session_settings()


# -- locks (M3) --------------------------------------------------------------------------------------


def _run_lock_batch(
    batch: list[str], trancount: int, begin_adds: int
) -> tuple[int, int, list[str]]:
    """The lock batch as SQL Server runs it under the driver's implicit transactions: BEGIN
    TRANSACTION at @@TRANCOUNT 0 adds ``begin_adds`` levels (2 as SET IMPLICIT_TRANSACTIONS
    documents, 1 as a plain explicit BEGIN would), a nested COMMIT removes one, sp_getapplock
    with @LockOwner='Transaction' returns -999 outside a transaction. Returns (@@TRANCOUNT after,
    the return code, errors raised)."""
    r, errors = 0, []
    for st in batch:
        if st == "IF @@TRANCOUNT = 0 BEGIN TRANSACTION":
            trancount += begin_adds if trancount == 0 else 0
        elif st == "IF @@TRANCOUNT > 1 COMMIT TRANSACTION":
            trancount -= 1 if trancount > 1 else 0
        elif st.startswith("EXEC @r = sp_getapplock"):
            r = 0 if trancount > 0 else -999
        elif st.startswith("IF @r < 0 RAISERROR(") and r < 0:
            errors.append(st)
        elif not st.startswith(("DECLARE @r int", "IF @r < 0")):
            raise AssertionError(f"statement not modelled: {st}")
    return trancount, r, errors


@pytest.mark.parametrize("name", ["init_lock", "queue_lock"])
@pytest.mark.parametrize("begin_adds", [2, 1])
@pytest.mark.parametrize("already", [0, 1])
def test_lock_batch_holds_the_lock_in_exactly_the_transaction_the_driver_ends(
    name, begin_adds, already
):
    """Whether the caller's transaction is already open or not, the applock is taken inside a
    transaction (return code 0) and exactly one level is open afterwards: the driver's commit
    (one COMMIT) ends it, releasing the lock with the DDL committed. The old batch (a bare EXEC)
    got -999 and went on; a bare 'IF @@TRANCOUNT = 0 BEGIN TRANSACTION' would leave a second level
    open after the commit (the DDL uncommitted, the lock held until the connection closes)."""
    from test_sql_dialects import batch_statements

    batch = [s.rstrip(";") for s in batch_statements(str(_db().sql(name)))]
    trancount, r, errors = _run_lock_batch(batch, already, begin_adds)
    assert r == 0 and not errors and trancount == 1
    assert trancount - 1 == 0  # the driver's one COMMIT ends it
    assert "@LockOwner = 'Transaction'" in batch[-2] and "@LockTimeout = 120000" in batch[-2]
    old = ["EXEC @r = sp_getapplock @Resource = N'x'", "IF @r < 0 RAISERROR(N'x', 16, 1, @r)"]
    assert _run_lock_batch(old, 0, begin_adds)[1] == -999  # the silent no-op the batch replaces
    naive = ["IF @@TRANCOUNT = 0 BEGIN TRANSACTION", *old]
    if begin_adds == 2 and already == 0:
        assert _run_lock_batch(naive, 0, 2)[0] == 2  # one COMMIT would leave a transaction open


def test_run_batch_reads_every_result_so_a_late_error_is_raised():
    """pyodbc raises an error of a later statement of a batch only when the results before it are
    read (nextset): Database.run_batch reads them all."""

    class Cur:
        def __init__(self):
            self.results = [
                None,
                None,
                RuntimeError("lock request time out: sp_getapplock returned -1"),
            ]
            self.closed = False

        def nextset(self):
            item = self.results.pop(0)
            if isinstance(item, Exception):
                raise item
            return bool(self.results)

        def close(self):
            self.closed = True

    db = _db()
    cur = Cur()
    db.execute = lambda sql, params=(): cur
    with pytest.raises(RuntimeError, match="lock request time out"):
        db.run_batch(db.sql("init_lock"), {})
    assert cur.closed


# -- catalog and log queries (M8, M14, M16) -----------------------------------------------------------


def test_contract_versions_are_a_loose_index_scan():
    q = str(_db().sql("log_contract_version_list"))
    assert "DISTINCT" not in q and q.startswith("WITH v(cv) AS (") and "RECURSIVE" not in q
    assert "SELECT MIN(contract_version) FROM [sandbox].[processing_log]" in q  # anchor: one seek
    assert (
        "ROW_NUMBER() OVER (ORDER BY l.contract_version) AS rn" in q
        and "l.contract_version > v.cv" in q
    )
    assert "WHERE n.rn = 1" in q and q.endswith("OPTION (MAXRECURSION 0)")


@pytest.mark.parametrize("dialect", ["mssql", "postgresql"])
def test_catalog_queries_use_upper_case_information_schema(dialect):
    """A case-sensitive SQL Server database knows INFORMATION_SCHEMA only in upper case;
    PostgreSQL folds the same unquoted names to its own."""
    from xml_extractor.db.base import load_queries

    for name in ("schema_columns", "schema_primary_key"):
        q = load_queries(dialect)[name].template
        assert "information_schema" not in q and "INFORMATION_SCHEMA." in q
        assert not re.search(
            r"\b(column_name|table_schema|table_name|ordinal_position|constraint_type)\b", q
        )


def _scenario(url: str, contract: str, workdir) -> tuple[dict, dict]:
    """init-db, 100 mock documents (seeded, ~10% faulty), run twice, reconcile and status as JSON."""
    base = ["--db", url, "--contract", contract]
    cli_in_process("init-db", *base, check=True)
    cli_in_process(
        "generate-mock",
        *base,
        "--count",
        "100",
        "--faulty-share",
        "0.1",
        "--seed",
        "12",
        "--start-id",
        "7000000",
        check=True,
    )
    run = [
        "run",
        *base,
        "--no-progress",
        "--workers",
        "2",
        "--logs-dir",
        str(workdir / "logs"),
        "--metrics-dir",
        str(workdir / "metrics"),
    ]
    first = cli_in_process(*run)
    assert first.returncode == 1, first.stdout + first.stderr  # the faulty documents failed
    again = cli_in_process(*run)
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to do, nothing redone
    rec = cli_in_process("reconcile", *base, "--format", "json")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    st = cli_in_process("status", *base, "--format", "json", check=True)
    return json.loads(rec.stdout), json.loads(st.stdout)


@pytest.mark.mssql
@pytest.mark.skipif(
    not MSSQL,
    reason="SQL Server live tests need XML_EXTRACTOR_TEST_MSSQL=odbc:<connection string> "
    "(no SQL Server can run on this machine)",
)
def test_live_sql_server_end_to_end(tmp_path):
    """The same seeded scenario on SQL Server and on SQLite gives exactly the same reconcile
    result: consistent, the same failed applications, nothing pending, nothing doubled. The SQL
    Server side uses a fresh schema of its own (dropped afterwards), so earlier data cannot blur it."""
    import pyodbc

    url = MSSQL if MSSQL.startswith(("odbc:", "mssql:")) else "odbc:" + MSSQL
    schema = "xe_test_" + uuid.uuid4().hex[:10]
    raw = json.loads((ROOT / "xml_extractor" / "contracts" / "credit_card.json").read_text())
    raw["target_schema"] = schema
    raw["source"]["schema"] = schema
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps(raw))
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "mssql").mkdir()
    expected_rec, expected_status = _scenario(
        f"sqlite:///{tmp_path / 'ref.db'}", str(contract), tmp_path / "sqlite"
    )
    try:
        rec, status = _scenario(url, str(contract), tmp_path / "mssql")
        assert rec == expected_rec
        assert rec["consistent"] is True and rec["gaps"] == {}
        failed = [c for c in rec["checks"] if c["check"].startswith("failed applications")]
        assert failed and failed[0]["count"] > 0
        for key in ("source_rows", "success", "failed", "pending", "contract_versions"):
            assert status[key] == expected_status[key], key
        assert (
            status["pending"] == 0
            and status["success"] + status["failed"] == status["source_rows"] == 100
        )
    finally:
        ddl = cli_in_process(
            "init-db", "--print", "--dialect", "mssql", "--contract", str(contract), check=True
        ).stdout
        tables = re.findall(r"^CREATE TABLE (\[[^\]]+\]\.\[[^\]]+\])", ddl, re.M)
        conn = pyodbc.connect(
            url[len("odbc:") :]
            if url.startswith("odbc:")
            else parse_url(url).odbc_connection_string(),
            autocommit=True,
        )
        for qtable in reversed(tables):  # children first (FK order reversed)
            conn.execute("DROP TABLE IF EXISTS " + qtable)
        conn.execute("DROP SCHEMA IF EXISTS [" + schema + "]")
        conn.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_sql_scripts_for_dbas_are_current(dialect):
    from conftest import ROOT

    p = cli_in_process("init-db", "--print", "--dialect", dialect, check=True)
    assert (ROOT / "sql" / f"{dialect}.sql").read_text() == p.stdout, (
        f"sql/{dialect}.sql is stale: regenerate with xml-extractor init-db --print --dialect {dialect} > sql/{dialect}.sql"
    )


# -- live (XML_EXTRACTOR_TEST_MSSQL) ---------------------------------------------------------------

live = pytest.mark.skipif(
    not MSSQL,
    reason="SQL Server live tests need XML_EXTRACTOR_TEST_MSSQL=odbc:<connection string> "
    "(no SQL Server can run on this machine)",
)


def _live_url() -> str:
    assert MSSQL
    return MSSQL if MSSQL.startswith(("odbc:", "mssql:")) else "odbc:" + MSSQL


def _raw_connection(autocommit: bool = True):
    import pyodbc

    url = _live_url()
    return pyodbc.connect(
        url[len("odbc:") :] if url.startswith("odbc:") else parse_url(url).odbc_connection_string(),
        autocommit=autocommit,
    )


def _fresh_contract(tmp_path):
    schema = "xe_test_" + uuid.uuid4().hex[:10]
    raw = json.loads((ROOT / "xml_extractor" / "contracts" / "credit_card.json").read_text())
    raw["target_schema"] = schema
    raw["source"]["schema"] = schema
    path = tmp_path / "contract.json"
    path.write_text(json.dumps(raw))
    return schema, path


def _drop_schema(schema: str, contract) -> None:
    ddl = cli_in_process(
        "init-db", "--print", "--dialect", "mssql", "--contract", str(contract), check=True
    ).stdout
    tables = re.findall(r"^CREATE TABLE (\[[^\]]+\]\.\[[^\]]+\])", ddl, re.M)
    conn = _raw_connection()
    for qtable in reversed(tables):  # children first (FK order reversed)
        conn.execute("DROP TABLE IF EXISTS " + qtable)
    conn.execute("DROP SCHEMA IF EXISTS [" + schema + "]")
    conn.close()


@pytest.mark.mssql
@live
def test_live_init_lock_is_held_until_the_commit_and_no_longer():
    """The lock batch on a connection the tool opened (manual commit: implicit transactions) holds
    the applock in one open transaction, seen from a second session; the tool's commit ends that
    transaction and releases it (no nested level left open)."""
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.db.database import Database

    db = Database(_live_url(), load_contract())
    other = _raw_connection()
    resource = "N'xml_extractor:init-db'"
    try:
        db.commit()
        db.begin()
        db.run_batch(db.sql("init_lock"), {})
        assert db.scalar("SELECT @@TRANCOUNT") == 1
        assert db.scalar(f"SELECT APPLOCK_MODE('public', {resource}, 'Transaction')") == "Exclusive"
        # another session cannot have it (APPLOCK_TEST: 0 = would not be granted)
        assert (
            other.execute(
                f"SELECT APPLOCK_TEST('public', {resource}, 'Exclusive', 'Session')"
            ).fetchone()[0]
            == 0
        )
        db.commit()
        assert (
            db.scalar("SELECT @@TRANCOUNT") == 0
        )  # no nested level left open (a SELECT of no table opens none)
        assert (
            other.execute(
                f"SELECT APPLOCK_TEST('public', {resource}, 'Exclusive', 'Session')"
            ).fetchone()[0]
            == 1
        )
        db.rollback()
        # joining a transaction the caller already opened takes the lock in it, still one level
        db.begin()
        db.query("SELECT COUNT(*) FROM sys.objects")
        db.run_batch(db.sql("queue_lock"), {})
        assert db.scalar("SELECT @@TRANCOUNT") == 1
        db.rollback()
        assert (
            other.execute(
                "SELECT APPLOCK_TEST('public', N'xml_extractor:work-queue', 'Exclusive', 'Session')"
            ).fetchone()[0]
            == 1
        )
    finally:
        other.close()
        db.close()


@pytest.mark.mssql
@live
def test_live_varchar_rows_with_bom_utf8_and_cp1252_round_trip_through_run(tmp_path):
    """Rows written into a varchar(max) column as the users' application writes them (UTF-8 with a
    byte-order mark; an older cp1252 row; one mixing both) go through `run`: 'Zoë' and 'Zoé' arrive
    as written, the mixed row fails at stage parse with InvalidUTF8, nothing else fails."""
    import pyodbc

    schema, contract = _fresh_contract(tmp_path)
    url = _live_url()
    base = ["--db", url, "--contract", str(contract)]
    original = (ROOT / "tests" / "data" / "app-1001.xml").read_bytes()

    def doc(app_id: int, name: bytes, bom: bool = True) -> bytes:
        raw = original.replace(b'<Request ID="1001"', b'<Request ID="%d"' % app_id, 1)
        raw = raw.replace(b'con_id="900', b'con_id="9%d0' % (app_id % 10), 3)
        raw = raw.replace(b'first_name="JANE"', b'first_name="' + name + b'"', 1)
        return raw if bom else raw[3:]

    rows = {
        5001: doc(5001, "Zoë".encode()),
        5002: doc(5002, "Zoé".encode("cp1252"), bom=False),
        5003: doc(5003, "Zoë".encode()).replace(b'first_name="JOHN"', b'first_name="Ren\xe9"', 1),
    }
    try:
        cli_in_process("init-db", *base, check=True)
        conn = _raw_connection()
        cur = conn.cursor()
        cur.setinputsizes([(pyodbc.SQL_INTEGER, 0, 0), (pyodbc.SQL_VARBINARY, 0, 0)])
        for app_id, raw in rows.items():  # bytes into varchar: stored byte for byte
            cur.execute(
                f"INSERT INTO [{schema}].[app_xml] ([app_id], [xml]) VALUES (?, ?)", app_id, raw
            )
        stored = conn.execute(
            f"SELECT CAST(LEFT([xml], 3) AS VARBINARY(3)) FROM [{schema}].[app_xml] WHERE [app_id] = 5001"
        ).fetchone()[0]
        assert bytes(stored) == b"\xef\xbb\xbf"
        run = cli_in_process(
            "run",
            *base,
            "--no-progress",
            "--workers",
            "1",
            "--logs-dir",
            str(tmp_path / "logs"),
            "--metrics-dir",
            str(tmp_path / "metrics"),
        )
        assert run.returncode == 1, run.stdout + run.stderr  # the mixed row failed, alone
        log = dict(
            conn.execute(
                f"SELECT app_id, COALESCE(error_class, status) FROM [{schema}].[processing_log]"
            ).fetchall()
        )
        assert log == {5001: "success", 5002: "success", 5003: "InvalidUTF8"}
        names = {
            r[0]: r[1]
            for r in conn.execute(
                f"SELECT app_id, first_name FROM [{schema}].[app_contact_base] WHERE first_name LIKE N'Zo%'"
            ).fetchall()
        }
        assert names == {5001: "Zoë", 5002: "Zoé"}
        conn.close()
    finally:
        _drop_schema(schema, contract)


@pytest.mark.slow
def test_queue_seeding_commits_in_parts(tmp_path, monkeypatch):
    """WorkQueue.prepare (shared by every engine) commits its seeds every SEED_PART chunks: one
    transaction over all 11,000 chunks of a large run would keep them locked, and another
    instance's claims (READPAST / SKIP LOCKED) would skip them all and end early with work pending.
    Seen from a second connection, the queue grows part by part (real SQLite)."""
    import threading

    from conftest import open_db

    from xml_extractor.processing import selection
    from xml_extractor.processing.context import RunContext

    url = f"sqlite:///{tmp_path / 'q.db'}"
    cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        "30",
        "--start-id",
        "1",
        "--faulty-share",
        "0",
        check=True,
    )
    monkeypatch.setattr(selection, "SEED_PART", 2)
    db, watcher = open_db(url), open_db(url)
    seen = []
    real_commit = db.commit

    def commit():
        real_commit()
        seen.append(
            int(watcher.autocommit_query(f"SELECT COUNT(*) FROM {watcher.names['queue']}")[0][0])
        )

    monkeypatch.setattr(db, "commit", commit)
    try:
        wq = selection.WorkQueue(db, RunContext(url=url, mode="queue", chunk_size=5))
        assert wq.prepare(threading.Event()) == 7  # ids 1..30 at width 5: chunks 0..6
        assert seen[-1] == 7 and len(seen) >= 5  # adopt_width's commit, then 4 parts of at most 2
        assert all(b - a <= 2 for a, b in zip(seen, seen[1:]))
    finally:
        db.close()
        watcher.close()


def test_a_lock_not_granted_is_a_transient_error_not_a_traceback(monkeypatch):
    """The lock batch's RAISERROR reaches pyodbc as SQL Server sends it (msg 50000, severity 16):
    init-db rolls back and raises it typed as transient (exit 3 after retries), never untyped."""
    pyodbc = pytest.importorskip("pyodbc")
    from xml_extractor.db import store
    from xml_extractor.errors import TransientDatabaseError

    batch = str(_db().sql("init_lock"))
    text = re.search(r"RAISERROR\(N'([^']*)'", batch).group(1).replace("%d", "-1")
    err = pyodbc.ProgrammingError(
        "42000",
        f"[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} (50000) "
        "(SQLExecDirectW)",
    )
    db = _db()
    rolled = []
    monkeypatch.setattr(db, "begin", lambda: None)
    monkeypatch.setattr(db, "rollback", lambda: rolled.append(1))

    def refuse(sql, params=()):
        raise err

    monkeypatch.setattr(db, "run_batch", refuse)
    with pytest.raises(TransientDatabaseError, match="lock request time out: sp_getapplock"):
        store.init_db(db)
    assert rolled


def test_a_tail_that_cannot_be_read_fails_its_document_alone_not_the_fetch(monkeypatch):
    """A varchar row whose last 200 bytes mix UTF-8 with a byte that is not: the batch's fetch
    returns (raised there, the failure stopped the batch and its worker over one document); that
    document is sent to be read whole (NeedFullDocument), where it fails at parse (InvalidUTF8,
    at the byte's offset); the others map."""
    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.errors import ParseFailure
    from xml_extractor.mapping import map_document
    from xml_extractor.parsing import NeedFullDocument

    plan = compile_contract(load_contract())
    original = (ROOT / "tests" / "data" / "app-1001.xml").read_bytes()
    end = original.rindex(b"</Provenir>")
    mixed = original[:end] + "<x a='Zo\u00eb'/>".encode() + b"<y b='\xe9'/>" + original[end:]
    got, _ = _fetch(_db("bytes"), monkeypatch, {1001: original, 1002: mixed})
    by_id = {a: (x, t) for a, x, t in got}
    assert map_document(plan, by_id[1001][0], 1001, tail=by_id[1001][1]).rows
    with pytest.raises(NeedFullDocument):
        map_document(plan, by_id[1002][0], 1002, tail=by_id[1002][1])
    with pytest.raises(ParseFailure) as e:
        map_document(plan, mixed, 1002)  # what the worker does next: the whole document
    assert e.value.error_class == "InvalidUTF8" and "0xe9 at byte offset" in e.value.reason
