"""SQL Server driver errors, classified (issue 19: M2, M5, M11, section 3 of the first-contact
review). Every exception is a real pyodbc class built the way pyodbc raises it: the driver's
errors as ``(sqlstate, "[sqlstate] [Microsoft][ODBC Driver 18 for SQL Server]... (native)
(SQLDriverConnect)")`` (on Windows further records follow after "; ", on unixODBC only the first),
pyodbc's own as ``(message, sqlstate)`` (src/errors.cpp RaiseErrorV). Message texts are the
driver's and SQL Server's own (sys.messages, Microsoft's troubleshooting pages, public issue
threads quoting them)."""

from __future__ import annotations

import pytest
from conftest import cli

from xml_extractor.db.classify import connect_error, wrap_odbc
from xml_extractor.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    RowsRefused,
    SchemaMissing,
    TransientDatabaseError,
)

pyodbc = pytest.importorskip("pyodbc")

D18 = "[Microsoft][ODBC Driver 18 for SQL Server]"
D17 = "[Microsoft][ODBC Driver 17 for SQL Server]"
TRUSTED = (
    "Driver={ODBC Driver 18 for SQL Server};Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;"
    "Encrypt=yes;TrustServerCertificate=no;APP=xml-extractor;Trusted_Connection=yes"
)
SQL_LOGIN = (
    "Driver={ODBC Driver 18 for SQL Server};Server=sql01,1433;Database=XmlConversionDB;"
    "Encrypt=yes;TrustServerCertificate=no;APP=xml-extractor;UID=etl;PWD={s3cr;et}"
)


def driver_error(
    cls: str, state: str, *records: str, fn: str = "SQLDriverConnect"
) -> BaseException:
    """An error as pyodbc builds it from the driver's diagnostic records."""
    first, *more = records
    text = f"[{state}] {first} ({fn})" + "".join(f"; [{state}] {r}" for r in more)
    return getattr(pyodbc, cls)(state, text)


# -- connect-time errors: configuration (exit 2, naming the change) or environment (retried) -------

CONNECT_CASES = [
    # certificate not trusted (self-signed Express): Windows (SChannel) and unixODBC (OpenSSL 3 / 1.1)
    (
        "cert-windows",
        driver_error(
            "OperationalError",
            "08001",
            f"{D18}SSL Provider: The certificate chain was issued by an authority that is not "
            f"trusted.\r\n (-2146893019)",
            f"{D18}Client unable to establish connection (-2146893019)",
        ),
        TRUSTED,
        ConfigError,
        ["--trust-server-certificate", "network you trust", "trust_server_certificate=yes"],
    ),
    (
        "cert-openssl3",
        driver_error(
            "OperationalError",
            "08001",
            f"{D18}SSL Provider: [error:0A000086:SSL routines::certificate verify failed:"
            f"self-signed certificate] (-1)",
        ),
        TRUSTED,
        ConfigError,
        ["--trust-server-certificate", "XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE"],
    ),
    (
        "cert-openssl1",
        driver_error(
            "OperationalError",
            "08001",
            f"[unixODBC]{D17}SSL Provider: [error:1416F086:SSL routines:"
            f"tls_process_server_certificate:certificate verify failed:self signed certificate] (-1)",
        ),
        SQL_LOGIN,
        ConfigError,
        ["--trust-server-certificate"],
    ),
    # the certificate names another host (connected as localhost / an IP)
    (
        "principal",
        driver_error(
            "OperationalError",
            "08001",
            f"{D18}SSL Provider: The target principal name is incorrect.\r\n (-2146893022)",
            f"{D18}Client unable to establish connection (-2146893022)",
        ),
        TRUSTED,
        ConfigError,
        ["HostNameInCertificate", "--trust-server-certificate", "another name"],
    ),
    (
        "principal-openssl",
        driver_error(
            "OperationalError",
            "08001",
            f"[unixODBC]{D17}SSL Provider: [error:14090086:SSL routines:"
            f"ssl3_get_server_certificate:certificate verify failed:subject name does not "
            f"match host name] (-1)",
        ),
        SQL_LOGIN,
        ConfigError,
        ["HostNameInCertificate"],
    ),
    # named instance not resolved (SQL Browser stopped, UDP 1434 closed, wrong instance name)
    (
        "instance",
        driver_error(
            "OperationalError",
            "08001",
            f"{D17}SQL Server Network Interfaces: Error Locating Server/Instance Specified "
            f"[xFFFFFFFF].  (-1)",
            f"{D17}Login timeout expired (0)",
            f"{D17}A network-related or instance-specific error has occurred while establishing a "
            f"connection to SQL Server. Server is not found or not accessible. Check if instance name "
            f"is correct and if SQL Server is configured to allow remote connections. For more "
            f"information see SQL Server Books Online. (-1)",
        ),
        TRUSTED,
        ConfigError,
        ["SQL Server Browser", "UDP port 1434", "host\\instance,PORT"],
    ),
    # login refused: a SQL login, and Windows authentication
    (
        "login-sql",
        driver_error(
            "InterfaceError", "28000", f"{D18}[SQL Server]Login failed for user 'etl'. (18456)"
        ),
        SQL_LOGIN,
        ConfigError,
        ["--username", "XML_EXTRACTOR_DB_PASSWORD", "Windows authentication"],
    ),
    (
        "login-windows",
        driver_error(
            "InterfaceError",
            "28000",
            f"{D17}[SQL Server]Login failed for user 'CORP\\etl-svc'. (18456)",
        ),
        TRUSTED,
        ConfigError,
        ["Windows authentication (no --username) was refused", "--username"],
    ),
    (
        "untrusted-domain",
        driver_error(
            "InterfaceError",
            "28000",
            f"{D17}[SQL Server]Login failed. The login is from an untrusted domain and "
            f"cannot be used with Integrated authentication. (18452)",
        ),
        TRUSTED,
        ConfigError,
        ["Windows authentication"],
    ),
    # Windows authentication from Linux without a Kerberos ticket
    (
        "kerberos",
        driver_error(
            "Error",
            "HY000",
            f"{D17}SSPI Provider: No Kerberos credentials available (default cache: "
            f"FILE:/tmp/krb5cc_1000) (851968)",
            f"{D17}Cannot generate SSPI context (851968)",
        ),
        TRUSTED,
        ConfigError,
        ["kinit", "--username"],
    ),
    # the database (unixODBC: the 4060 record alone; Windows: with the 18456 record)
    (
        "database",
        driver_error(
            "ProgrammingError",
            "42000",
            f'{D17}[SQL Server]Cannot open database "XmlConversionDB" requested by the login. '
            f"The login failed. (4060)",
        ),
        SQL_LOGIN,
        ConfigError,
        ["--database"],
    ),
    (
        "database-windows",
        driver_error(
            "InterfaceError",
            "28000",
            f"{D17}[SQL Server]Login failed for user 'etl'. (18456)",
            f'{D17}[SQL Server]Cannot open database "XmlConversionDB" requested by the '
            f"login. The login failed. (4060)",
        ),
        SQL_LOGIN,
        ConfigError,
        ["--database"],
    ),
    # the server does not answer: the environment, retried
    (
        "login-timeout",
        driver_error("OperationalError", "HYT00", f"{D17}Login timeout expired (0)"),
        TRUSTED,
        ConnectionLost,
        ["cannot connect to the database"],
    ),
    (
        "tcp-timeout",
        driver_error(
            "OperationalError",
            "08001",
            f"{D18}TCP Provider: The wait operation timed out.\r\n (258)",
            f"{D18}Login timeout expired (258)",
        ),
        SQL_LOGIN,
        ConnectionLost,
        ["The wait operation timed out"],
    ),
    (
        "refused",
        driver_error(
            "OperationalError", "08001", f"{D18}TCP Provider: Error code 0x274D (10061) (-1)"
        ),
        SQL_LOGIN,
        ConnectionLost,
        ["0x274D"],
    ),
    (
        "named-pipes",
        driver_error(
            "OperationalError",
            "08001",
            f"{D17}Named Pipes Provider: Could not open a connection to SQL Server [53].  (53)",
        ),
        TRUSTED,
        ConnectionLost,
        ["Named Pipes Provider"],
    ),
    (
        "reset",
        driver_error("OperationalError", "08001", f"{D17}TCP Provider: Error code 0x2746 (10054)"),
        SQL_LOGIN,
        ConnectionLost,
        ["0x2746"],
    ),
    # the driver is not installed
    (
        "no-driver-unixodbc",
        pyodbc.Error(
            "01000",
            "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 "
            "for SQL Server' : file not found (0) (SQLDriverConnect)",
        ),
        TRUSTED,
        ConfigError,
        ["ODBC driver not found", "msodbcsql.msi", "msodbcsql18", "PostgreSQL Unicode"],
    ),
    (
        "no-driver-windows",
        driver_error(
            "InterfaceError",
            "IM002",
            "[Microsoft][ODBC Driver Manager] Data source name "
            "not found and no default driver specified (0)",
        ),
        TRUSTED,
        ConfigError,
        ["ODBC driver not found", "msodbcsql.msi"],
    ),
]


@pytest.mark.parametrize(
    "name, exc, conn_str, cls, words", CONNECT_CASES, ids=[c[0] for c in CONNECT_CASES]
)
def test_a_connect_error_names_what_to_change(name, exc, conn_str, cls, words):
    err = connect_error(
        exc, conn_str, "ODBC Driver 18 for SQL Server", installed=lambda: ["PostgreSQL Unicode"]
    )
    assert type(err) is cls, (name, err)
    text = str(err)
    for w in words:
        assert w in text, (name, w, text)
    assert "\n" not in text and "\r" not in text  # one line
    assert "s3cr" not in text  # never the password


def test_a_password_echoed_by_the_driver_is_redacted():
    exc = driver_error(
        "OperationalError",
        "08001",
        f"{D18}SSL Provider: certificate verify failed for Server=h;UID=etl;PWD={{s3cr;et}} (-1)",
    )
    err = connect_error(exc, SQL_LOGIN, "ODBC Driver 18 for SQL Server")
    assert isinstance(err, ConfigError) and "s3cr" not in str(err) and "PWD=***" in str(err)


def test_postgresql_connect_errors_keep_their_classes():
    refused = driver_error(
        "OperationalError",
        "08001",
        "could not connect to server: Connection refused\n\tIs the "
        'server running on host "127.0.0.1" and accepting (101)',
    )
    auth = driver_error(
        "OperationalError", "08001", 'FATAL:  password authentication failed for user "etl" (101)'
    )
    assert (
        type(connect_error(refused, "Driver={PostgreSQL Unicode};Server=h", "PostgreSQL Unicode"))
        is ConnectionLost
    )
    err = connect_error(auth, "Driver={PostgreSQL Unicode};Server=h", "PostgreSQL Unicode")
    assert type(err) is ConfigError and "--trust-server-certificate" not in str(err)


# -- the same through the real command line: exit codes ----------------------------------------


def _fail_connect(monkeypatch, exc: BaseException) -> list[str]:
    """pyodbc.connect raising ``exc`` (no SQL Server here: the driver's answer is what is given)."""
    calls: list[str] = []

    def connect(conn_str, **_kw):
        calls.append(conn_str)
        raise exc

    monkeypatch.setattr(pyodbc, "connect", connect)
    return calls


@pytest.mark.parametrize(
    "name", ["cert-windows", "principal", "instance", "login-sql", "database", "kerberos"]
)
def test_run_stops_at_once_with_exit_2_on_a_configuration_error(monkeypatch, tmp_path, name):
    from click.testing import CliRunner

    from xml_extractor.cli import cli as xe_cli

    _, exc, _, _, words = next(c for c in CONNECT_CASES if c[0] == name)
    calls = _fail_connect(monkeypatch, exc)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XML_EXTRACTOR_DB_PASSWORD", "s3cr;et")
    user = ["--username", "etl"] if name in ("login-sql", "database") else []
    r = CliRunner().invoke(
        xe_cli,
        [
            "run",
            "--server",
            "localhost\\SQLEXPRESS",
            "--database",
            "XmlConversionDB",
            *user,
            "--no-progress",
            "--reconnect-seconds",
            "30",
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 2, r.output
    assert len(calls) == 1  # not retried: a setting does not change by waiting
    assert words[0] in r.output and "s3cr" not in r.output


@pytest.mark.slow
def test_an_unreachable_server_is_retried_then_exit_3(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from xml_extractor.cli import cli as xe_cli

    _, exc, _, _, _ = next(c for c in CONNECT_CASES if c[0] == "login-timeout")
    calls = _fail_connect(monkeypatch, exc)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        xe_cli,
        [
            "run",
            "--server",
            "localhost\\SQLEXPRESS",
            "--database",
            "XmlConversionDB",
            "--no-progress",
            "--reconnect-seconds",
            "0.5",
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 3, r.output
    assert len(calls) > 1 and "Login timeout expired" in r.output


def test_status_exits_2_naming_the_flag(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from xml_extractor.cli import cli as xe_cli

    _, exc, _, _, _ = next(c for c in CONNECT_CASES if c[0] == "cert-openssl3")
    calls = _fail_connect(monkeypatch, exc)
    r = CliRunner().invoke(
        xe_cli, ["status", "--server", "localhost\\SQLEXPRESS", "--database", "XmlConversionDB"]
    )
    assert r.exit_code == 2 and "--trust-server-certificate" in r.output, r.output
    assert "TrustServerCertificate=no" in calls[0]
    r = CliRunner().invoke(
        xe_cli,
        [
            "status",
            "--server",
            "localhost\\SQLEXPRESS",
            "--database",
            "XmlConversionDB",
            "--trust-server-certificate",
        ],
    )
    assert "TrustServerCertificate=yes" in calls[1]  # the flag is what the driver is given next


# -- errors while working: the classification table of real SQL Server error tuples -------------


def E(cls: str, state: str, native: int, text: str, fn: str = "SQLExecute") -> BaseException:
    return driver_error(cls, state, f"{D18}[SQL Server]{text} ({native})", fn=fn)


WORK_CASES = [
    # pyodbc's own, raised while binding a fast_executemany array (SQLSTATE last): these rows' values
    (
        pyodbc.ProgrammingError("String data, right truncation: length 12 buffer 10", "HY000"),
        RowsRefused,
        "value",
    ),
    (pyodbc.ProgrammingError("Numeric overflow", "HY000"), RowsRefused, "value"),
    (pyodbc.ProgrammingError("Converting decimal loses precision", "HY000"), RowsRefused, "value"),
    # the server refuses these rows
    (
        E(
            "IntegrityError",
            "23000",
            2627,
            "Violation of PRIMARY KEY constraint 'pk_scores'. Cannot insert duplicate "
            "key in object 'sandbox.scores'. The duplicate key value is (1001, vantage_score_tu).",
        ),
        RowsRefused,
        "duplicate",
    ),
    (
        E(
            "IntegrityError",
            "23000",
            2601,
            "Cannot insert duplicate key row in object 'sandbox.app_enums' with unique "
            "index 'ux_app_enums_type_value'. The duplicate key value is (status, A).",
        ),
        RowsRefused,
        "duplicate",
    ),
    (
        E(
            "IntegrityError",
            "23000",
            547,
            "The INSERT statement conflicted with the FOREIGN KEY constraint "
            '"fk_scores_app". The conflict occurred in database "XmlConversionDB", table "sandbox.app_base", column '
            "'app_id'.",
        ),
        RowsRefused,
        "foreign_key",
    ),
    (
        E(
            "IntegrityError",
            "23000",
            515,
            "Cannot insert the value NULL into column 'score', table "
            "'XmlConversionDB.sandbox.scores'; column does not allow nulls. INSERT fails.",
        ),
        RowsRefused,
        "value",
    ),
    (
        E(
            "DataError",
            "22003",
            8115,
            "Arithmetic overflow error converting numeric to data type numeric.",
        ),
        RowsRefused,
        "value",
    ),
    (
        E(
            "DataError",
            "22001",
            2628,
            "String or binary data would be truncated in table "
            "'XmlConversionDB.sandbox.scores', column 'score_identifier'. Truncated value: 'abc'.",
        ),
        RowsRefused,
        "value",
    ),
    # the environment: retried with backoff
    (
        E(
            "OperationalError",
            "40001",
            1205,
            "Transaction (Process ID 57) was deadlocked on lock resources with another "
            "process and has been chosen as the deadlock victim. Rerun the transaction.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E("Error", "HY000", 1222, "Lock request time out period exceeded."),
        TransientDatabaseError,
        None,
    ),
    (
        driver_error(
            "OperationalError", "HYT00", f"{D18}Query timeout expired (0)", fn="SQLExecDirectW"
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "42000",
            9002,
            "The transaction log for database 'XmlConversionDB' is full due to 'LOG_BACKUP'.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "42000",
            1105,
            "Could not allocate space for object 'sandbox.processing_log'.'pk_processing_log' in "
            "database 'XmlConversionDB' because the 'PRIMARY' filegroup is full due to lack of storage space or database "
            "files reaching the maximum allowed size.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "42000",
            1101,
            "Could not allocate a new page for database 'XmlConversionDB' because of insufficient "
            "disk space in filegroup 'PRIMARY'. Create the necessary space by dropping objects in the filegroup, adding "
            "additional files to the filegroup, or setting autogrowth on for existing files in the filegroup.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "42000",
            701,
            "There is insufficient system memory in resource pool 'default' to run this query.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "42000",
            8645,
            "A timeout occurred while waiting for memory resources to execute the query in "
            "resource pool 'default' (2). Rerun the query.",
        ),
        TransientDatabaseError,
        None,
    ),
    (
        E(
            "Error",
            "HY000",
            1204,
            "The instance of the SQL Server Database Engine cannot obtain a LOCK resource at this "
            "time. Rerun your statement when there are fewer active users. Ask the database administrator to check the lock "
            "and memory configuration for this instance, or to check for long-running transactions.",
        ),
        TransientDatabaseError,
        None,
    ),
    # the connection: reconnect, then the transaction again
    (
        driver_error(
            "OperationalError",
            "08S01",
            f"{D18}TCP Provider: An existing connection was forcibly closed by the "
            f"remote host.\r\n (10054)",
            fn="SQLExecDirectW",
        ),
        ConnectionLost,
        None,
    ),
    (
        driver_error(
            "OperationalError",
            "08S02",
            f"{D17}SMux Provider: Physical connection is not usable [xFFFFFFFF]. (-1)",
            fn="SQLExecDirectW",
        ),
        ConnectionLost,
        None,
    ),
    (
        driver_error(
            "OperationalError",
            "08S01",
            f"{D18}Session Provider: Physical connection is not usable [xFFFFFFFF]. (-1)",
            fn="SQLExecDirectW",
        ),
        ConnectionLost,
        None,
    ),
    (
        E(
            "Error",
            "HY000",
            596,
            "Cannot continue the execution because the session is in the kill state.",
        ),
        ConnectionLost,
        None,
    ),
    (
        driver_error(
            "Error",
            "IMC06",
            f"{D17}The connection is broken and recovery is not possible. The connection is "
            f"marked by the client driver as unrecoverable. No attempt was made to restore the connection. (0)",
            fn="SQLExecDirectW",
        ),
        ConnectionLost,
        None,
    ),
    # the schema
    (
        E("ProgrammingError", "42S02", 208, "Invalid object name 'sandbox.scores'."),
        SchemaMissing,
        None,
    ),
    (E("ProgrammingError", "42S22", 207, "Invalid column name 'score_v2'."), SchemaMissing, None),
    # not known: stops the run, never retried, never an application's failure
    (
        E(
            "ProgrammingError",
            "42000",
            8116,
            "Argument data type text is invalid for argument 1 of charindex function.",
        ),
        DatabaseError,
        None,
    ),
]


@pytest.mark.parametrize(
    "exc, cls, kind",
    WORK_CASES,
    ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(WORK_CASES)],
)
def test_sql_server_errors_while_working(exc, cls, kind):
    err = wrap_odbc(exc)
    assert type(err) is cls, err
    if kind:
        assert err.kind == kind
    assert "\n" not in str(err)


def test_pyodbc_own_error_message_is_its_first_argument():
    err = wrap_odbc(
        pyodbc.ProgrammingError("String data, right truncation: length 12 buffer 10", "HY000")
    )
    assert str(err).startswith(
        "ProgrammingError: String data, right truncation: length 12 buffer 10"
    )


# -- a truncation pyodbc raises is one application's failure, not the run's -------------------------


@pytest.mark.slow
def test_a_pyodbc_truncation_bisects_and_fails_one_application(tmp_path):
    """The batch of six holds one application whose value pyodbc cannot bind (an NVARCHAR limit
    counted in UTF-16 units, M5): the batch is bisected, that application fails alone, the five
    others are written. Real SQLite; only the bulk insert of application 4 answers as pyodbc does."""
    from conftest import open_db

    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.db.classify import wrap_sqlite
    from xml_extractor.db.store import BatchWriter, RunIdentity
    from xml_extractor.mock import MockGenerator
    from xml_extractor.processing.worker import process_batch

    url = f"sqlite:///{tmp_path / 'm5.db'}"
    cli("init-db", "--db", url, check=True)
    db = open_db(url)
    gen = MockGenerator(seed=5, median_kb=3)
    ids = [1, 2, 3, 4, 5, 6]
    db.begin()
    cur = db.conn.cursor()
    n = db.names
    for i in ids:
        cur.execute(
            f"INSERT INTO {n['src']} ({n['src_id']}, {n['src_xml']}) VALUES (?, ?)",
            [i, gen.document(i).text],
        )
    cur.close()
    db.commit()
    real_insert = db.dialect.insert_rows
    log_table = db.names["log"]

    def insert_rows(cursor, qtable, columns, rows):
        if (
            qtable != log_table
            and "app_id" in columns
            and any(r[columns.index("app_id")] == 4 for r in rows)
        ):
            raise pyodbc.ProgrammingError(
                "String data, right truncation: length 12 buffer 10", "HY000"
            )
        return real_insert(cursor, qtable, columns, rows)

    db.dialect.insert_rows = insert_rows
    db.dialect.wrap = lambda exc: (
        wrap_odbc(exc) if type(exc).__module__ == "pyodbc" else wrap_sqlite(exc)
    )
    plan = compile_contract(db.contract, "sqlite")
    writer = BatchWriter(db, plan, RunIdentity("s-m5", 0, 1, db.contract.version_tag))
    res = process_batch(db, plan, writer, ids, retry=False)  # no faulty documents: all six map
    assert (res.success, res.failed, [f[0] for f in res.failures]) == (5, 1, [4])
    reason = db.autocommit_query(f"SELECT reason FROM {log_table} WHERE app_id = 4")[0][0]
    assert "String data, right truncation" in reason
    db.close()


def test_pyodbc_binding_an_int_beyond_64_bits_is_a_refusal_of_those_rows():
    """pyodbc raises the built-in OverflowError('int too big to convert') while binding (seen
    through psqlODBC here): the rows' value, bisected like any refusal, never a stop of the run;
    any other OverflowError is not the driver's and stays as it is."""
    err = wrap_odbc(OverflowError("int too big to convert"))
    assert isinstance(err, RowsRefused) and err.kind == "value"
    other = OverflowError("math range error")
    assert wrap_odbc(other) is other
