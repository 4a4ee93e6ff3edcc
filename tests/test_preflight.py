"""``xml-extractor preflight``: its SQL Server checks on a recording fake connection (the exact
statements sent, each parsed as T-SQL, and the statuses they lead to), and the whole command on
real SQLite and PostgreSQL databases: healthy, a login missing permissions, undecodable rows, a
source table whose name differs by case, a non-deterministic collation, no server at all."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import PG_URL, SAMPLES, _pg_admin_exec, cli_in_process

from xml_extractor.contract.loader import load_contract
from xml_extractor.db.database import Database
from xml_extractor.preflight import (
    CHECKS,
    Preflight,
    check_rcsi,
    exit_code,
    load_preflight_queries,
    run_checks,
)

sqlglot = pytest.importorskip("sqlglot")
from sqlglot.errors import ErrorLevel  # noqa: E402

NAMES = [n for n, _ in CHECKS]
URLS = {
    "sqlite": "sqlite:///unused.db",
    "postgresql": "postgresql://u@h/db",
    "mssql": "mssql://h/XmlConversionDB",
}
READ = {"sqlite": "sqlite", "postgresql": "postgres", "mssql": "tsql"}


def parses(dialect: str, sql: str) -> None:
    """One statement (a T-SQL batch: one per line ending in ;), each parsed by sqlglot's grammar
    of the dialect, none a bare Command (what sqlglot returns for text it does not understand)."""
    parts = (
        [p.strip().rstrip(";") for p in sql.split(";\n")] if sql.startswith("DECLARE @") else [sql]
    )
    for part in parts:
        parsed = [
            p
            for p in sqlglot.parse(part, read=READ[dialect], error_level=ErrorLevel.RAISE)
            if p is not None
        ]
        assert len(parsed) == 1 and type(parsed[0]).__name__ != "Command", f"{dialect}: {part}"
        if dialect == "mssql":
            for bad in ("LIMIT", "::", "||", "RETURNING"):
                assert bad not in part, f"{bad} in T-SQL: {part}"


@pytest.mark.parametrize("dialect", list(URLS))
def test_every_preflight_query_parses_and_is_described(dialect: str) -> None:
    db = Database(URLS[dialect], load_contract(None), connect=False)
    pf = Preflight(db)
    assert pf.queries == load_preflight_queries(dialect)
    for name, q in pf.queries.items():
        assert q.description, f"{q.source}: {name} has no description"
        parses(dialect, str(pf.sql(name)))


# -- SQL Server on a recording fake connection -----------------------------------------------------


class PyodbcError(Exception):
    """Shaped as pyodbc raises: (SQLSTATE, message)."""


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn, self.description, self._rows = conn, None, []

    def execute(self, sql: str, params: Any = ()) -> FakeCursor:
        self.conn.sent.append(sql)
        answer = self.conn.answer(sql, list(params))
        if isinstance(answer, Exception):
            raise answer
        self._rows = answer
        self.description = [("c",)]
        return self

    def fetchall(self) -> list[tuple]:
        return self._rows

    def close(self) -> None:
        pass


class FakeConnection:
    """Answers each statement by the first key it contains (any case): rows, an exception, or a function of
    the parameters. A statement no key matches is an error (the check then fails)."""

    def __init__(self, answers: dict[str, Any], driver: str = "libmsodbcsql-18.3.so.2.1") -> None:
        self.answers, self.sent, self.rollbacks, self.driver = answers, [], 0, driver

    def answer(self, sql: str, params: list) -> Any:
        for key, a in self.answers.items():
            if key.lower() in sql.lower():
                return a(params) if callable(a) else a
        return PyodbcError("42000", f"[42000] no canned answer for: {sql[:80]}")

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        pass

    def getinfo(self, what: int) -> str:
        return {6: self.driver, 7: "18.03.0002"}[what]


DOC = (
    SAMPLES / "app-1001.xml"
).read_bytes()  # starts with a UTF-8 byte-order mark, holds non-ASCII UTF-8
assert DOC.startswith(b"\xef\xbb\xbf") and not DOC.isascii()


def heads_as(decode: Callable[[bytes], str]) -> Callable[[list], list[tuple]]:
    """fetch_heads' answer for app 1001 with the document decoded by ``decode`` (as the driver does)."""

    def answer(params: list) -> list[tuple]:
        text = decode(DOC)
        end = text.index("</CustData>") + len("</CustData>")
        return [(1001, text[:end], DOC[-200:])]

    return answer


def heads_bytes(params: list) -> list[tuple]:
    end = DOC.index(b"</CustData>") + len(b"</CustData>")
    return [(1001, DOC[:end], DOC[-200:])]


def healthy(**over: Any) -> dict[str, Any]:
    """A SQL Server as a migration wants it: Standard, RCSI on, CS collation, tables not yet created."""
    answers: dict[str, Any] = {
        "sys.dm_exec_connections": [("TRUE", "TCP", "NTLM")],
        "SERVERPROPERTY": [("16.0.4135.4", "Standard Edition (64-bit)", 2, "XmlConversionDB")],
        "HAS_PERMS_BY_NAME(DB_NAME()": [(1, 1, 0, None)],
        "'OBJECT', 'SELECT'": lambda p: (
            [(1, 1, 1, 1, 1)] if "app_xml" in p[0] else [(0, None, None, None, None)]
        ),
        "sp_getapplock": [(0, 2)],
        "DATABASEPROPERTYEX": [("Latin1_General_100_CS_AS_SC_UTF8", 65001)],
        "sys.databases": [(1, "OFF")],
        "SELECT c.name, t.name": [
            ("app_id", "int", 4, None),
            ("xml", "varchar", -1, "Latin1_General_100_CS_AS_SC_UTF8"),
        ],
        "SELECT t.name, c.max_length": [
            ("varchar", -1, "Latin1_General_100_CS_AS_SC_UTF8")
        ],  # the run's source_kind
        "sys.index_columns": [],
        "sys.partitions": [(11_000_000,)],
        "MIN(s.[app_id])": [(1001, 1001)],
        "s.[app_id] >= ?": [(1001,)],
        "SUBSTRING(CAST(s.[xml] AS VARBINARY(MAX))": [(1001, DOC)],
        "CHARINDEX": heads_bytes,  # the run's fetch of a varchar column: bytes
        "CAST(s.[xml] AS VARBINARY(MAX)) FROM": [(1001, DOC)],
        "FILEPROPERTY": [("XmlConversionDB", 64_000, -1, 60_000)],
        "dm_os_volume_stats": PyodbcError(
            "42000", "[42000] VIEW SERVER STATE permission was denied (300)"
        ),
        "information_schema.columns": [],
    }
    answers.update(over)
    return answers


def mssql_preflight(
    answers: dict[str, Any], driver: str = "libmsodbcsql-18.3.so.2.1"
) -> tuple[Preflight, FakeConnection]:
    db = Database(URLS["mssql"], load_contract(None), connect=False)
    db.conn = FakeConnection(answers, driver)
    return Preflight(db, sample=10), db.conn


def statuses(checks: list) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_mssql_healthy_server_every_statement_parses_as_tsql() -> None:
    pf, conn = mssql_preflight(healthy())
    checks = run_checks(pf)
    assert [c.name for c in checks] == NAMES
    assert statuses(checks) == dict.fromkeys(NAMES, "ok"), [
        c.as_dict() for c in checks if c.status != "ok"
    ]
    assert exit_code(checks) == 0
    assert len(conn.sent) > 20
    for sql in set(conn.sent):
        parses("mssql", sql)
    by = {c.name: c for c in checks}
    assert (
        "Standard Edition" in by["server"].detail
        and "11,000,000 rows (partition metadata)" in by["source_table"].detail
    )
    assert (
        "1 documents sampled: 1 ascii; 1 start with a byte-order mark"
        in by["sample_encoding"].detail
    )
    assert by["schema"].detail.startswith("20 table(s) to create")
    assert not any("COUNT(" in s for s in conn.sent)  # the 11M-row table is never counted


def test_mssql_rcsi_off_warns_with_the_alter_database_fix() -> None:
    pf, conn = mssql_preflight(healthy(**{"sys.databases": [(0, "OFF")]}))
    c = check_rcsi(pf)
    assert conn.sent == [
        "SELECT is_read_committed_snapshot_on, snapshot_isolation_state_desc FROM sys.databases "
        "WHERE database_id = DB_ID()"
    ]
    assert (c.status, c.fix.split(" (")[0]) == (
        "warn",
        "ALTER DATABASE [XmlConversionDB] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE",
    )


def test_mssql_case_insensitive_collation_is_said() -> None:
    pf, conn = mssql_preflight(healthy(DATABASEPROPERTYEX=[("SQL_Latin1_General_CP1_CI_AS", 1252)]))
    (c,) = run_checks(pf, ["collation"])
    assert conn.sent[0] == (
        "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS NVARCHAR(128)),\n"
        "       CAST(COLLATIONPROPERTY(CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS NVARCHAR(128)), "
        "'CodePage') AS INT)"
    )
    assert c.status == "ok" and "case-insensitive" in c.detail and "code page 1252" in c.detail
    assert "differ only by case" in c.detail and "binary collation" in c.detail
    assert conn.sent[1].startswith(
        "SELECT DISTINCT o.name, c.name, c.collation_name FROM sys.columns c"
    )
    parses("mssql", conn.sent[1])


def test_mssql_case_insensitive_existing_key_columns_warn() -> None:
    pf, _ = mssql_preflight(
        healthy(
            DATABASEPROPERTYEX=[("SQL_Latin1_General_CP1_CI_AS", 1252)],
            **{
                "sys.index_columns": [
                    ("scores", "score_identifier", "SQL_Latin1_General_CP1_CI_AS")
                ]
            },
        )
    )
    (c,) = run_checks(pf, ["collation"])
    assert (
        c.status == "warn"
        and "sandbox.scores.score_identifier (SQL_Latin1_General_CP1_CI_AS)" in c.detail
    )


@pytest.mark.parametrize(
    "rows, status", [(1_500_000, "warn"), (9_000_000, "fail"), (100_000, "ok")]
)
def test_mssql_express_size_against_10_gb(rows: int, status: str) -> None:
    pf, conn = mssql_preflight(
        healthy(
            **{
                "SERVERPROPERTY": [
                    ("16.0.1000.6", "Express Edition (64-bit)", 4, "XmlConversionDB")
                ],
                "sys.partitions": [(rows,)],
                "FILEPROPERTY": [("XmlConversionDB", 64_000, 1_280_000, 64_000)],
            }
        )
    )
    checks = {c.name: c for c in run_checks(pf, ["server", "source_table", "size"])}
    assert "Express" in checks["server"].detail
    c = checks["size"]
    assert c.status == status, c.detail
    assert "Express's 10 GB" in c.detail and "500.0 MB" in c.detail  # 64,000 pages used
    assert any("FILEPROPERTY(f.name, 'SpaceUsed')" in s for s in conn.sent)
    # the volume query is refused without VIEW SERVER STATE: the size check still answers
    assert status != "ok" or any("dm_os_volume_stats" in s for s in conn.sent)


def test_mssql_size_uses_what_the_sample_measured() -> None:
    pf, _ = mssql_preflight(
        healthy(
            **{
                "SERVERPROPERTY": [("16.0.1000.6", "Express Edition (64-bit)", 4, "db")],
                "sys.partitions": [(9_000_000,)],
            }
        )
    )
    checks = {
        c.name: c for c in run_checks(pf, ["server", "source_table", "sample_mapping", "size"])
    }
    assert checks["sample_mapping"].status == "ok"
    assert "measured on the sample" in checks["size"].detail
    assert pf.facts["bytes_per_app"] > 1000  # app-1001 maps to about 19 rows


@pytest.mark.parametrize(
    "legacy, to", [("text", "VARCHAR(MAX)"), ("ntext", "NVARCHAR(MAX)"), ("xml", "NVARCHAR(MAX)")]
)
def test_mssql_legacy_source_column_type_fails_with_the_alter(legacy: str, to: str) -> None:
    pf, conn = mssql_preflight(
        healthy(
            **{"SELECT c.name, t.name": [("app_id", "int", 4, None), ("xml", legacy, 16, None)]}
        )
    )
    checks = {
        c.name: c for c in run_checks(pf, ["source_table", "sample_encoding", "sample_mapping"])
    }
    c = checks["source_table"]
    assert c.status == "fail" and f"is {legacy}" in c.detail
    assert c.fix.startswith(f"ALTER TABLE [dbo].[app_xml] ALTER COLUMN [xml] {to}")
    assert conn.sent[0] == (
        "SELECT c.name, t.name, c.max_length, c.collation_name FROM sys.columns c\n"
        "JOIN sys.types t ON t.user_type_id = c.system_type_id\n"
        "WHERE c.object_id = OBJECT_ID(?) ORDER BY c.column_id"
    )
    assert (
        checks["sample_encoding"].status == checks["sample_mapping"].status == "skip"
    )  # nothing fetched
    assert len(conn.sent) == 1


def test_mssql_applock_minus_999_fails_and_is_rolled_back() -> None:
    pf, conn = mssql_preflight(healthy(sp_getapplock=[(-999, 0)]))
    (c,) = run_checks(pf, ["lock"])
    assert c.status == "fail" and "returned -999" in c.detail and "@@TRANCOUNT 0" in c.detail
    assert conn.sent == [
        "DECLARE @r INT;\nSET NOCOUNT ON;\nBEGIN TRANSACTION;\n"
        "EXEC @r = sp_getapplock @Resource = N'xml_extractor:preflight', @LockMode = 'Exclusive', "
        "@LockOwner = 'Transaction', @LockTimeout = 10000;\nSELECT @r, @@TRANCOUNT"
    ]
    assert conn.rollbacks >= 1  # the lock is released by the rollback


def test_mssql_applock_granted_is_ok() -> None:
    pf, conn = mssql_preflight(healthy(sp_getapplock=[(0, 2)]))
    (c,) = run_checks(pf, ["lock"])
    assert c.status == "ok" and conn.rollbacks == 1


def test_mssql_bom_decoded_through_the_code_page_fails_the_sample() -> None:
    """A fetch that hands over text decoded through code page 1252 (M1: what pyodbc does with a
    varchar(max) read as text): the byte-order mark arrives as 'ï»¿' and non-ASCII UTF-8 as
    mojibake. The sample compares it with the stored bytes and names the application."""
    pf, _ = mssql_preflight(
        healthy(
            DATABASEPROPERTYEX=[("SQL_Latin1_General_CP1_CI_AS", 1252)],
            CHARINDEX=heads_as(lambda b: b.decode("cp1252", errors="replace")),
            **{
                "CAST(s.[xml] AS VARBINARY(MAX)) FROM": [
                    (1001, DOC.decode("cp1252", errors="replace"))
                ]
            },
        )
    )
    checks = {c.name: c for c in run_checks(pf, ["source_table", "sample_encoding"])}
    c = checks["sample_encoding"]
    assert c.status == "fail", c.detail
    assert "app_id 1001" in c.detail and "ï»¿" in c.detail


def test_mssql_mixed_bytes_in_a_varchar_fail_the_sample() -> None:
    """UTF-8 characters beside a byte that is not UTF-8 (a cp1252 'é' pasted into a UTF-8 document):
    the run's bytes fetch refuses to guess (InvalidUTF8): the sample names the application."""
    mixed = DOC.replace(
        b"<CustData>",
        "<CustData><!-- Zoë \xe9 -->".encode().replace(b"\xc3\xa9 ", b"\xe9 "),
        1,
    )
    end = mixed.index(b"</CustData>") + len(b"</CustData>")
    pf, _ = mssql_preflight(
        healthy(
            **{
                "SUBSTRING(CAST(s.[xml] AS VARBINARY(MAX))": [(1001, mixed)],
                "CHARINDEX": [(1001, mixed[:end], mixed[-200:])],
                "CAST(s.[xml] AS VARBINARY(MAX)) FROM": [(1001, mixed)],
            }
        )
    )
    checks = {
        c.name: c for c in run_checks(pf, ["source_table", "sample_encoding", "sample_mapping"])
    }
    assert checks["sample_encoding"].status == "fail", checks["sample_encoding"].detail
    assert (
        "1 mixed" in checks["sample_encoding"].detail
        and "app_id 1001" in checks["sample_encoding"].detail
    )
    assert "parse/InvalidUTF8: 1 (app_id 1001" in checks["sample_mapping"].detail


def test_mssql_missing_permissions_are_named() -> None:
    pf, conn = mssql_preflight(
        healthy(
            **{
                "HAS_PERMS_BY_NAME(DB_NAME()": [(0, 0, 1, 0)],
                "'OBJECT', 'SELECT'": lambda p: (
                    [(1, 1, 0, 1, 0)] if "processing_log" in p[0] else [(0, None, None, None, None)]
                ),
            }
        )
    )
    (c,) = run_checks(pf, ["permissions"])
    assert c.status == "fail"
    assert "CREATE TABLE in the database" in c.detail and "ALTER on schema sandbox" in c.detail
    assert (
        "INSERT on sandbox.processing_log" in c.detail
        and "DELETE on sandbox.processing_log" in c.detail
    )
    assert conn.sent[0].startswith(
        "SELECT HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE')"
    )
    for sql in set(conn.sent):
        parses("mssql", sql)


def test_mssql_nvarchar_source_is_read_as_text_and_compared() -> None:
    """An nvarchar column: stored as UTF-16LE, fetched as text (the run's fetch_heads_text)."""
    text = DOC.decode("utf-8")  # keeps the byte-order mark as U+FEFF
    end = text.index("</CustData>") + len("</CustData>")
    pf, conn = mssql_preflight(
        healthy(
            **{
                "SELECT c.name, t.name": [
                    ("app_id", "int", 4, None),
                    ("xml", "nvarchar", -1, "SQL_Latin1_General_CP1_CI_AS"),
                ],
                "SELECT t.name, c.max_length": [("nvarchar", -1, "SQL_Latin1_General_CP1_CI_AS")],
                "SUBSTRING(CAST(s.[xml] AS VARBINARY(MAX))": [(1001, text.encode("utf-16-le"))],
                "CHARINDEX": [(1001, text[:end], text[-200:])],
            }
        )
    )
    checks = {
        c.name: c for c in run_checks(pf, ["source_table", "sample_encoding", "sample_mapping"])
    }
    assert "xml nvarchar(max)" in checks["source_table"].detail
    assert checks["sample_encoding"].status == "ok", checks["sample_encoding"].detail
    assert "1 utf-16; 1 start with a byte-order mark" in checks["sample_encoding"].detail
    assert checks["sample_mapping"].status == "ok"
    assert any("NVARCHAR(100)" in s for s in conn.sent)  # the text fetch, not the bytes one


def test_mssql_connection_without_view_server_state_still_answers() -> None:
    pf, _ = mssql_preflight(
        healthy(
            **{
                "sys.dm_exec_connections": PyodbcError(
                    "42000",
                    "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]VIEW SERVER STATE permission was denied "
                    "on object 'server', database 'master'. (300)",
                )
            }
        )
    )
    (c,) = run_checks(pf, ["connection"])
    assert c.status == "ok" and "VIEW SERVER STATE" in c.detail


def test_mssql_legacy_driver_fails() -> None:
    pf, _ = mssql_preflight(healthy(), driver="SQLSRV32.DLL")
    (c,) = run_checks(pf, ["driver"])
    assert c.status == "fail" and "ODBC Driver 18" in c.fix


def test_one_failing_query_fails_its_check_and_the_others_run() -> None:
    pf, conn = mssql_preflight(
        healthy(
            **{
                "sys.databases": PyodbcError(
                    "42000",
                    "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The SELECT permission was denied (229)",
                )
            }
        )
    )
    checks = {c.name: c for c in run_checks(pf)}
    bad = checks["read_committed_snapshot"]
    assert (
        bad.status == "fail"
        and "could not run" in bad.detail
        and "SELECT permission was denied" in bad.detail
    )
    assert all(c.status == "ok" for n, c in checks.items() if n != "read_committed_snapshot"), [
        c.as_dict() for c in checks.values() if c.status != "ok"
    ]
    assert conn.rollbacks >= 1


# -- real engines ----------------------------------------------------------------------------------


def preflight(url: str, *args: str) -> tuple[int, list[dict], str]:
    p = cli_in_process("preflight", "--db", url, "--format", "json", *args)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else [], p.stderr


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


@pytest.mark.slow
def test_a_healthy_database_passes(db_url: str) -> None:
    cli_in_process("generate-mock", "--db", db_url, "--count", "300", check=True)
    code, checks, err = preflight(db_url, "--sample", "50")
    assert code == 0, json.dumps(checks, indent=1) + err
    assert [c["name"] for c in checks] == NAMES
    for c in checks:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in ("ok", "skip")
        assert all(isinstance(v, str) for v in c.values())
    got = by_name(checks)
    assert "300 rows" in got["source_table"]["detail"]
    assert got["sample_mapping"]["detail"] == "all 50 sampled documents parse and map"
    assert got["schema"]["detail"] == "up to date with the contract"
    skipped = {c["name"] for c in checks if c["status"] == "skip"}
    assert skipped == (
        {"server", "lock", "read_committed_snapshot"}
        if db_url.startswith("sqlite")
        else {"read_committed_snapshot"}
    )
    p = cli_in_process("preflight", "--db", db_url, "--sample", "20")  # the table for people
    assert p.returncode == 0 and "all checks passed" in p.stdout and "sample_encoding" in p.stdout


def test_an_empty_database_says_what_to_do(db_url: str) -> None:
    cli_in_process("init-db", "--db", db_url, check=True)
    code, checks, _ = preflight(db_url)
    got = by_name(checks)
    assert code == 1
    assert (
        got["source_table"]["status"] == "warn"
        and "nothing to migrate" in got["source_table"]["detail"]
    )


@pytest.fixture
def pg_db() -> Any:
    """A fresh PostgreSQL database (the checks that are PostgreSQL's own)."""
    if not PG_URL:
        pytest.skip("PostgreSQL not available (run the suite with scripts/test.sh to start one)")
    name = "xe_" + uuid.uuid4().hex[:12]
    _pg_admin_exec(f"CREATE DATABASE {name}")
    yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    _pg_admin_exec(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def pg_role() -> Any:
    if not PG_URL:
        pytest.skip("PostgreSQL not available")
    name = "xe_pf_" + uuid.uuid4().hex[:8]
    _pg_admin_exec(f"CREATE ROLE {name} LOGIN")
    yield name  # the test drops its database first, and the role's grants with it
    _pg_admin_exec(f"DROP ROLE IF EXISTS {name}")


def _admin(url: str, *sql: str) -> None:
    import pyodbc

    from xml_extractor.db.url import parse_url

    conn = pyodbc.connect(parse_url(url).odbc_connection_string(), autocommit=True)
    for s in sql:
        conn.execute(s)
    conn.close()


@pytest.mark.postgres
def test_postgresql_login_without_insert_or_create_fails_permissions(
    pg_role: str, pg_db: str
) -> None:
    """The role is dropped after the database (fixture order): its grants go with the database."""
    url = pg_db
    cli_in_process("generate-mock", "--db", url, "--count", "40", check=True)
    _admin(
        url,
        f"GRANT USAGE ON SCHEMA sandbox TO {pg_role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA sandbox TO {pg_role}",
        f"GRANT SELECT ON app_xml TO {pg_role}",
    )
    limited = url.replace("//postgres@", f"//{pg_role}@")
    code, checks, err = preflight(limited)
    assert code == 1, err
    got = by_name(checks)
    perm = got["permissions"]
    assert perm["status"] == "fail"
    assert "CREATE on schema sandbox" in perm["detail"]
    assert "INSERT on sandbox." in perm["detail"] and "DELETE on sandbox." in perm["detail"]
    assert "SELECT on" not in perm["detail"]  # granted
    assert "GRANT" in perm["fix"]
    # everything that reads still works as that login
    assert got["sample_mapping"]["status"] == "ok" and got["source_table"]["status"] == "ok"


@pytest.fixture
def ascii_url(db_url: str) -> Any:
    """SQLite's TEXT holds any bytes; PostgreSQL only in a SQL_ASCII database (as test_hostile_input)."""
    if db_url.startswith("sqlite"):
        yield db_url
        return
    name = "xe_ascii_" + uuid.uuid4().hex[:12]
    try:
        _pg_admin_exec(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    except Exception as exc:
        pytest.skip(f"the PostgreSQL server cannot create a SQL_ASCII database: {exc}")
    yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"  # type: ignore[union-attr]
    _pg_admin_exec(f"DROP DATABASE {name} WITH (FORCE)")


def _put_bytes(url: str, app_id: int, raw: bytes) -> None:
    """A document's stored bytes replaced below the tool (the column stays a text column)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.execute("UPDATE app_xml SET xml = CAST(? AS TEXT) WHERE app_id = ?", (raw, app_id))
        conn.commit()
        conn.close()
    else:
        import pyodbc

        from xml_extractor.db.url import parse_url

        conn = pyodbc.connect(parse_url(url).odbc_connection_string())
        conn.execute(
            "UPDATE app_xml SET xml = convert_from(?, 'SQL_ASCII') WHERE app_id = ?", (raw, app_id)
        )
        conn.commit()
        conn.close()


@pytest.mark.slow
def test_undecodable_rows_fail_the_sample_naming_them(ascii_url: str) -> None:
    cli_in_process("generate-mock", "--db", ascii_url, "--count", "30", check=True)
    _put_bytes(
        ascii_url, 7, b"<?xml version='1.0'?><Provenir>Zo\xff</Provenir>"
    )  # cp1252 in a text column
    _put_bytes(
        ascii_url, 23, b"<?xml version='1.0'?>\xc3\x28<Provenir/>"
    )  # a broken UTF-8 sequence
    _put_bytes(ascii_url, 11, b"   ")  # empty: the document's problem, not an encoding one
    code, checks, err = preflight(ascii_url, "--sample", "200")
    assert code == 1, err
    got = by_name(checks)
    enc = got["sample_encoding"]
    assert enc["status"] == "fail", enc
    assert (
        "app_id 7, 23" in enc["detail"]
        and "not valid UTF-8" in enc["detail"]
        and "0xff" in enc["detail"]
    )
    assert "30 documents sampled" in enc["detail"]
    mapping = got["sample_mapping"]
    assert mapping["status"] == "warn" and "parse/InvalidUTF8: 2 (app_id 7, 23" in mapping["detail"]
    assert "read/EmptyDocument: 1 (app_id 11" in mapping["detail"]
    if not ascii_url.startswith("sqlite"):
        assert got["collation"]["status"] == "warn" and "SQL_ASCII" in got["collation"]["detail"]


@pytest.mark.postgres
def test_postgresql_source_table_named_in_another_case_is_named(pg_db: str) -> None:
    """SQLite matches table names without regard to case; PostgreSQL's quoted names do not."""
    db_url = pg_db
    cli_in_process("generate-mock", "--db", db_url, "--count", "20", check=True)
    _admin(db_url, 'ALTER TABLE app_xml RENAME TO "APP_XML"')
    code, checks, err = preflight(db_url)
    assert code == 1, err
    got = by_name(checks)
    src = got["source_table"]
    assert src["status"] == "fail" and "found public.APP_XML" in src["detail"]
    assert '"table": "APP_XML"' in src["fix"]
    assert got["sample_encoding"]["status"] == got["sample_mapping"]["status"] == "skip"
    assert (
        got["schema"]["status"] == "ok"
    )  # the target tables are fine: only the source is not found


@pytest.mark.postgres
def test_postgresql_non_deterministic_collation_on_a_key_fails(pg_db: str) -> None:
    db_url = pg_db
    cli_in_process("generate-mock", "--db", db_url, "--count", "10", check=True)
    try:
        _admin(
            db_url,
            "CREATE COLLATION ci_test (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
        )
    except Exception as exc:
        pytest.skip(f"no ICU collations on this server: {exc}")
    _admin(
        db_url, "ALTER TABLE sandbox.app_enums ALTER COLUMN value TYPE varchar(50) COLLATE ci_test"
    )
    code, checks, _ = preflight(db_url, "--sample", "5")
    got = by_name(checks)
    assert code == 1
    assert got["collation"]["status"] == "fail"
    assert "sandbox.app_enums.value (ci_test)" in got["collation"]["detail"]


def test_no_server_or_a_bad_url_exits_2_with_one_line() -> None:
    for url, says in (
        (
            "postgresql://someone:s3cret@127.0.0.1:1/nodb",
            "cannot connect to postgresql://someone@127.0.0.1:1/nodb",
        ),
        ("mysql://h/db", "unknown database URL scheme"),
        ("sqlite:///does/not/exist.db", "no database at does/not/exist.db"),
    ):
        p = cli_in_process("preflight", "--db", url)
        assert p.returncode == 2, (url, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], p.stderr
        assert "s3cret" not in p.stderr + p.stdout and p.stdout == ""
