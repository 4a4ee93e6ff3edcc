"""SQL Server: cannot run here. The SQL the dialect emits is checked statement by statement;
live tests run when XML_EXTRACTOR_TEST_MSSQL holds an odbc: URL or connection string."""
import json
import os
import re
import uuid

import pytest

from conftest import ROOT, cli
from xml_extractor.db.database import make_dialect
from xml_extractor.db.url import parse_url, server_url

MSSQL = os.environ.get("XML_EXTRACTOR_TEST_MSSQL")


@pytest.fixture(scope="module")
def ddl():
    p = cli("init-db", "--print", "--dialect", "mssql", check=True)
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
    s = stmt(ddl, r"CREATE TABLE \[dbo\]\.\[app_xml\]")
    assert "IF OBJECT_ID(N'[dbo].[app_xml]', N'U') IS NULL" in s
    assert "[app_id] INTEGER NOT NULL PRIMARY KEY" in s and "[xml] VARCHAR(MAX)" in s
    assert "TEXT" not in s.upper().replace("CONTEXT", "")


def test_core_tables_keys_fks_and_types(ddl):
    base = stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[app_base\]")
    assert "[receive_date] DATETIME2(3) NOT NULL" in base and "[app_type_enum] SMALLINT" in base
    assert "[ip_address] NVARCHAR(45)" in base and "[signature_flag] BIT" in base and "[special_offer] TINYINT" in base
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
    assert "[log_id] BIGINT IDENTITY(1,1) NOT NULL PRIMARY KEY" in log and "[reason] NVARCHAR(MAX)" in log
    assert "CHECK ([status] IN ('success', 'failed'))" in log
    ux = stmt(ddl, r"ux_processing_log_app_attempt")
    assert ux.startswith("IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_processing_log_app_attempt'")
    assert "CREATE UNIQUE INDEX [ux_processing_log_app_attempt] ON [sandbox].[processing_log] ([app_id], [attempt])" in ux
    stmt(ddl, r"CREATE INDEX \[ix_app_contact_base_app_id\] ON \[sandbox\]\.\[app_contact_base\] \(\[app_id\]\)")
    stmt(ddl, r"CREATE TABLE \[sandbox\]\.\[work_queue\]")
    seeds = [s for s in ddl if s.startswith("INSERT INTO [sandbox].[app_enums]")]
    from xml_extractor.contract.loader import load_contract
    assert len(seeds) == sum(len(v) for v in load_contract().enums.values())
    assert any("N'PR'" in s and "281" in s for s in seeds)


def test_claim_and_selection_queries():
    d = make_dialect("mssql")
    claim = d.queries["queue_claim"].template
    assert "WITH (UPDLOCK, READPAST, ROWLOCK)" in claim and "SELECT TOP (1)" in claim and "OUTPUT inserted.chunk_id" in claim
    assert "{lease_expr}" in claim and d.lease_sql() == "DATEADD(second, :lease_seconds, SYSUTCDATETIME())"
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
    sql, values = st.bind({"after_id": 10, "id_lo": 1, "id_hi": 99, "modulus": 3, "remainder": 2, "limit": 50})
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
    d.insert_rows(cur, "[sandbox].[scores]", ["app_id", "score_identifier", "score"], [(1, "a", 2)] * 2500)
    assert [c[1] for c in cur.calls] == [1000, 1000, 500] and all(c[2] for c in cur.calls)
    assert cur.calls[0][0] == "INSERT INTO [sandbox].[scores] ([app_id], [score_identifier], [score]) VALUES (?, ?, ?)"


def test_urls_and_identifier_quoting():
    u = parse_url("mssql://sa@db.example:1433/XmlConversionDB?driver=ODBC Driver 18 for SQL Server&trust_server_certificate=yes",
                  password="s3cret")
    cs = u.odbc_connection_string()
    assert "Server=db.example,1433" in cs and "Database=XmlConversionDB" in cs and "UID=sa" in cs and "PWD=s3cret" in cs
    assert "s3cret" not in u.display() and u.display() == "mssql://sa@db.example:1433/XmlConversionDB"
    t = parse_url("mssql://localhost/XmlConversionDB", password="")
    assert "Trusted_Connection=yes" in t.odbc_connection_string()
    assert server_url("localhost,1433", "X", None) == "mssql://localhost:1433/X"
    with pytest.raises(Exception, match="invalid identifier"):
        make_dialect("mssql").quote("a]; DROP TABLE x; --")


def test_server_flags_build_a_trusted_mssql_url(monkeypatch):
    from xml_extractor.cli.common import resolve_url
    u = resolve_url(None, "localhost\\SQLEXPRESS", "XmlConversionDB", None)
    assert u.dialect == "mssql" and u.host == "localhost\\SQLEXPRESS" and "Trusted_Connection=yes" in u.odbc_connection_string()
    monkeypatch.setenv("XML_EXTRACTOR_DB_PASSWORD", "pw")
    u = resolve_url(None, "db,1433", "X", "svc")
    assert u.port == 1433 and u.user == "svc" and "PWD=pw" in u.odbc_connection_string() and "pw" not in u.display()


def _scenario(url: str, contract: str, workdir) -> tuple[dict, dict]:
    """init-db, 100 mock documents (seeded, ~10% faulty), run twice, reconcile and status as JSON."""
    base = ["--db", url, "--contract", contract]
    cli("init-db", *base, check=True)
    cli("generate-mock", *base, "--count", "100", "--faulty-share", "0.1", "--seed", "12",
        "--start-id", "7000000", check=True)
    run = ["run", *base, "--no-progress", "--workers", "2", "--logs-dir", str(workdir / "logs"),
           "--metrics-dir", str(workdir / "metrics")]
    first = cli(*run)
    assert first.returncode == 1, first.stdout + first.stderr  # the faulty documents failed
    again = cli(*run)
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to do, nothing redone
    rec = cli("reconcile", *base, "--format", "json")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    st = cli("status", *base, "--format", "json", check=True)
    return json.loads(rec.stdout), json.loads(st.stdout)


@pytest.mark.mssql
@pytest.mark.skipif(not MSSQL, reason="SQL Server live tests need XML_EXTRACTOR_TEST_MSSQL=odbc:<connection string> "
                                      "(no SQL Server can run on this machine)")
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
    expected_rec, expected_status = _scenario(f"sqlite:///{tmp_path / 'ref.db'}", str(contract), tmp_path / "sqlite")
    try:
        rec, status = _scenario(url, str(contract), tmp_path / "mssql")
        assert rec == expected_rec
        assert rec["consistent"] is True and rec["gaps"] == {}
        failed = [c for c in rec["checks"] if c["check"].startswith("failed applications")]
        assert failed and failed[0]["count"] > 0
        for key in ("source_rows", "success", "failed", "pending", "contract_versions"):
            assert status[key] == expected_status[key], key
        assert status["pending"] == 0 and status["success"] + status["failed"] == status["source_rows"] == 100
    finally:
        ddl = cli("init-db", "--print", "--dialect", "mssql", "--contract", str(contract), check=True).stdout
        tables = re.findall(r"^CREATE TABLE (\[[^\]]+\]\.\[[^\]]+\])", ddl, re.M)
        conn = pyodbc.connect(url[len("odbc:"):] if url.startswith("odbc:") else parse_url(url).odbc_connection_string(),
                              autocommit=True)
        for qtable in reversed(tables):  # children first (FK order reversed)
            conn.execute("DROP TABLE IF EXISTS " + qtable)
        conn.execute("DROP SCHEMA IF EXISTS [" + schema + "]")
        conn.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_sql_scripts_for_dbas_are_current(dialect):
    from conftest import ROOT
    p = cli("init-db", "--print", "--dialect", dialect, check=True)
    assert (ROOT / "sql" / f"{dialect}.sql").read_text() == p.stdout, \
        f"sql/{dialect}.sql is stale: regenerate with xml-extractor init-db --print --dialect {dialect} > sql/{dialect}.sql"
