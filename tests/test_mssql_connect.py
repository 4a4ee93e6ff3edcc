"""How the tool connects to SQL Server (issue 19, M2, M23, section 3 of the first-contact review):
the exact connection strings the users' spellings produce (named instances, Windows
authentication, encryption options), the options' plumbing through the real command line, and
what is refused before any connection is tried (exit 2, one line). No SQL Server runs here: what
reaches pyodbc.connect is the connection string, asserted whole."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import cli_in_process

from xml_extractor.cli import cli as xe_cli
from xml_extractor.cli.common import db_options, handle_errors, resolve_url
from xml_extractor.db.odbc import parse_connection_string
from xml_extractor.db.url import PASSWORD_ENV, TLSOptions, parse_url, server_database_url

D18 = "ODBC Driver 18 for SQL Server"
D17 = "ODBC Driver 17 for SQL Server"
HEAD = "Driver={ODBC Driver 18 for SQL Server};"
TAIL_TRUSTED = "APP=xml-extractor;Trusted_Connection=yes"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _driver_18(monkeypatch):
    """The driver the tool picks is whichever is installed (18 first): fixed to 18 here so the
    strings below are the same on every machine."""
    monkeypatch.setattr("xml_extractor.db.url._pick_mssql_driver", lambda: D18)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    for name in (
        "XML_EXTRACTOR_ENCRYPT",
        "XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE",
        "XML_EXTRACTOR_DB",
        "XML_EXTRACTOR_SERVER",
        "XML_EXTRACTOR_DATABASE",
        "XML_EXTRACTOR_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)


# -- the connection-string matrix ----------------------------------------------------------------


@pytest.mark.parametrize(
    "server, tls, expected",
    [
        # the users' exact spelling: named instance, Windows authentication, secure defaults
        (
            "localhost\\SQLEXPRESS",
            TLSOptions(),
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;",
        ),
        (
            ".\\SQLEXPRESS",
            TLSOptions(),
            "Server=.\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;",
        ),
        (
            "(localdb)\\MSSQLLocalDB",
            TLSOptions(),
            "Server=(localdb)\\MSSQLLocalDB;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;",
        ),
        (
            "sql01\\Inst_A,1433",
            TLSOptions(),
            "Server=sql01\\Inst_A,1433;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;",
        ),
        (
            "tcp:sql01.corp.example,50123",
            TLSOptions(),
            "Server=tcp:sql01.corp.example,50123;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;",
        ),
        (
            "localhost\\SQLEXPRESS",
            TLSOptions(trust_server_certificate=True),
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=yes;",
        ),
        (
            "localhost\\SQLEXPRESS",
            TLSOptions(encrypt="optional"),
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=no;TrustServerCertificate=no;",
        ),
        (
            "localhost\\SQLEXPRESS",
            TLSOptions(encrypt="mandatory", trust_server_certificate=True),
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=yes;",
        ),
        (
            "sql01",
            TLSOptions(encrypt="strict"),
            "Server=sql01;Database=XmlConversionDB;Encrypt=strict;TrustServerCertificate=no;",
        ),
        (
            "sql01",
            TLSOptions(encrypt="NO"),
            "Server=sql01;Database=XmlConversionDB;Encrypt=no;TrustServerCertificate=no;",
        ),
    ],
)
def test_server_flags_give_exactly_this_connection_string(server, tls, expected):
    u = resolve_url(None, server, "XmlConversionDB", None, tls=tls)
    assert u.odbc_connection_string() == HEAD + expected + TAIL_TRUSTED


def test_a_sql_login_gets_uid_and_a_quoted_password_and_no_trusted_connection(monkeypatch):
    secret = "p;w}d=Zoë"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    u = resolve_url(
        None,
        "localhost\\SQLEXPRESS",
        "XmlConversionDB",
        "etl",
        tls=TLSOptions(trust_server_certificate=True),
    )
    assert u.odbc_connection_string() == (
        HEAD
        + "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=yes;"
        "APP=xml-extractor;UID=etl;PWD={p;w}}d=Zoë}"
    )
    assert {k.lower(): v for k, v in parse_connection_string(u.odbc_connection_string())}[
        "pwd"
    ] == secret
    for shown in (u.display(), repr(u)):
        assert "p;w" not in shown and "Zoë" not in shown
    assert u.display() == "mssql://etl@localhost\\SQLEXPRESS/XmlConversionDB"


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "mssql://localhost\\SQLEXPRESS/XmlConversionDB",
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;"
            + TAIL_TRUSTED,
        ),
        (
            "mssql://localhost%5CSQLEXPRESS/XmlConversionDB",
            "Server=localhost\\SQLEXPRESS;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;"
            + TAIL_TRUSTED,
        ),
        (
            "mssql://SQL01%5cInst_A:1433/XmlConversionDB?trust_server_certificate=yes",
            "Server=SQL01\\Inst_A,1433;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=yes;"
            + TAIL_TRUSTED,
        ),
        (
            "mssql://SQL01\\Inst_A,1433/XmlConversionDB?encrypt=optional",
            "Server=SQL01\\Inst_A,1433;Database=XmlConversionDB;Encrypt=no;TrustServerCertificate=no;"
            + TAIL_TRUSTED,
        ),
        (
            "mssql://etl@sql01:1433/Xml%20DB?TrustServerCertificate=yes&Encrypt=Mandatory",
            "Server=sql01,1433;Database=Xml DB;Encrypt=yes;TrustServerCertificate=yes;APP=xml-extractor;UID=etl;PWD=pw",
        ),
        (
            "mssql://sql01/XmlConversionDB?HostNameInCertificate=sql01.corp.example",
            "Server=sql01;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;"
            + TAIL_TRUSTED
            + ";HostNameInCertificate=sql01.corp.example",
        ),
        (
            "mssql://[::1]:1433/XmlConversionDB",
            "Server=::1,1433;Database=XmlConversionDB;Encrypt=yes;TrustServerCertificate=no;"
            + TAIL_TRUSTED,
        ),
    ],
)
def test_mssql_urls_keep_the_instance_as_typed(url, expected):
    """urlsplit would lower-case the host and instance and reject %5C with a port; the tool
    reads the host part itself."""
    assert parse_url(url, password="pw").odbc_connection_string() == HEAD + expected


def test_the_driver_17_string_is_as_secure_as_18():
    """Driver 17 alone does not encrypt (Encrypt=no is its default): the tool asks for it."""
    u = server_database_url("localhost\\SQLEXPRESS", "X", None, driver=D17)
    assert u.odbc_connection_string().startswith(
        "Driver={ODBC Driver 17 for SQL Server};Server=localhost\\SQLEXPRESS;"
        "Database=X;Encrypt=yes;TrustServerCertificate=no;"
    )


# -- refused before connecting (exit 2, one line) ------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: parse_url("mssql://h/db?driver=SQL Server"), "install Microsoft ODBC Driver 18"),
        (lambda: parse_url("mssql://h/db?driver=SQL Server Native Client 11.0"), "msodbcsql.msi"),
        (lambda: parse_url("odbc:Driver={SQL Native Client};Server=h;Database=d"), "msodbcsql18"),
        (
            lambda: parse_url("odbc:DRIVER={SQL Server};SERVER=h;DATABASE=d"),
            "cannot be used for SQL Server",
        ),
        (
            lambda: parse_url("mssql://h/db?driver=ODBC Driver 13 for SQL Server"),
            "cannot be used for SQL Server",
        ),
        (lambda: parse_url(f"mssql://h/db?driver={D17}&encrypt=strict"), "needs ODBC Driver 18"),
        (
            lambda: parse_url("mssql://h/db?encrypt=strict&trust_server_certificate=yes"),
            "give one of them",
        ),
        (
            lambda: parse_url("mssql://h/db?encrypt=sometimes"),
            "yes, no, strict, mandatory, optional",
        ),
        (lambda: parse_url("mssql://h/db?trust_server_certificate=maybe"), "use yes or no"),
        (lambda: parse_url("mssql://h/db?encrypt=yes&Encrypt=no"), "given twice"),
        (lambda: parse_url("mssql://h:99999/db"), "bad host or port"),
        (lambda: resolve_url(None, "sql01,14x3", "d", None, tls=TLSOptions()), "TCP port number"),
        (
            lambda: resolve_url(
                None,
                "sql01",
                "d",
                None,
                tls=TLSOptions(encrypt="strict", trust_server_certificate=True),
            ),
            "give one of them",
        ),
        (
            lambda: resolve_url(
                "mssql://h/db?trust_server_certificate=no",
                None,
                None,
                None,
                tls=TLSOptions(trust_server_certificate=True),
            ),
            "different values",
        ),
        (
            lambda: resolve_url(
                "odbc:Driver={ODBC Driver 18 for SQL Server};Server=h;Database=d",
                None,
                None,
                None,
                tls=TLSOptions(encrypt="no"),
            ),
            "in the string itself",
        ),
        (
            lambda: resolve_url(
                "postgresql://u@h/d",
                None,
                None,
                None,
                tls=TLSOptions(
                    trust_server_certificate=True, typed=frozenset({"--trust-server-certificate"})
                ),
            ),
            "applies to SQL Server only",
        ),
    ],
)
def test_refused_before_connecting(make, message):
    from xml_extractor.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as info:
        make()
    assert "\n" not in str(info.value)


def test_options_from_the_environment_are_ignored_for_another_engine():
    u = resolve_url(
        "postgresql://u@h/d", None, None, None, tls=TLSOptions(trust_server_certificate=True)
    )
    assert u.dialect == "postgresql" and "TrustServerCertificate" not in u.odbc_connection_string()


# -- the options through click (the same decorator every database command has) -------------------


@click.command()
@db_options
@handle_errors
def _show(db_url, server, database, username, contract_path):
    """Echo the connection string the command's options give (no password is set here)."""
    click.echo(
        resolve_url(db_url, server, database, username, create=True).odbc_connection_string()
    )


@pytest.mark.parametrize(
    "args, env, want, exit_code",
    [
        (
            ["--server", "localhost\\SQLEXPRESS", "--database", "D", "--trust-server-certificate"],
            {},
            "TrustServerCertificate=yes",
            0,
        ),
        (
            ["--server", "localhost\\SQLEXPRESS", "--database", "D"],
            {"XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE": "yes"},
            "TrustServerCertificate=yes",
            0,
        ),
        (
            ["--server", "localhost\\SQLEXPRESS", "--database", "D"],
            {"XML_EXTRACTOR_ENCRYPT": "optional"},
            "Encrypt=no;",
            0,
        ),
        (["--server", "h", "--database", "D", "--encrypt", "Strict"], {}, "Encrypt=strict;", 0),
        (
            ["--db", "mssql://h/D", "--trust-server-certificate", "--encrypt", "no"],
            {},
            "Encrypt=no;TrustServerCertificate=yes",
            0,
        ),
        (["--server", "h", "--database", "D"], {}, "Encrypt=yes;TrustServerCertificate=no", 0),
        (
            ["--db", "sqlite:///x.db", "--trust-server-certificate"],
            {},
            "applies to SQL Server only",
            2,
        ),
        (
            ["--db", "sqlite:///x.db", "--encrypt", "no", "--trust-server-certificate"],
            {},
            "apply to SQL Server only",
            2,
        ),
        (
            ["--db", "sqlite:///x.db"],
            {"XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE": "yes"},
            "",
            0,
        ),  # environment: ignored
        (
            ["--server", "h", "--database", "D", "--encrypt", "sometimes"],
            {},
            "Invalid value for '--encrypt'",
            2,
        ),
    ],
)
def test_the_options_reach_the_connection_string(tmp_path, monkeypatch, args, env, want, exit_code):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(_show, args, env=env)
    assert r.exit_code == exit_code, r.output
    assert want in r.output


def test_every_database_command_takes_the_options():
    """Every command with --db/--server (bench takes only a URL, whose parameters say the same)."""
    missing = [
        name
        for name, cmd in xe_cli.commands.items()
        if any(p.name == "server" for p in cmd.params)
        and not {"encrypt", "trust_server_certificate"} <= {p.name for p in cmd.params}
    ]
    assert not missing


# -- the real command line ------------------------------------------------------------------------


def _no_ms_driver() -> bool:
    pyodbc = pytest.importorskip("pyodbc")
    return not any("for SQL Server" in d for d in pyodbc.drivers())


@pytest.mark.slow
def test_the_users_exact_command_without_the_driver_names_both_installers(tmp_path):
    """``python production_processor.py --server "localhost\\SQLEXPRESS" ...`` (the legacy notes'
    command, unchanged): on a machine without Microsoft's driver, exit 2 and one line naming the
    Windows installer and the Linux package."""
    if not _no_ms_driver():
        pytest.skip("a Microsoft ODBC driver is installed here")
    import subprocess

    from conftest import _child_env

    for extra in ([], ["--trust-server-certificate"]):
        p = subprocess.run(
            [
                sys.executable,
                str(ROOT / "production_processor.py"),
                "--server",
                "localhost\\SQLEXPRESS",
                "--database",
                "XmlConversionDB",
                "--workers",
                "4",
                "--instance-id",
                "0",
                "--instance-count",
                "3",
                "--log-level",
                "INFO",
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_child_env(None),
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "ODBC driver not found" in lines[0], p.stderr
        assert "msodbcsql.msi" in lines[0] and "msodbcsql18" in lines[0] and "18 or 17" in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["status", "--db", "sqlite:///x.db", "--trust-server-certificate"],
            "applies to SQL Server only",
        ),
        (["status", "--db", "mssql://h/XmlConversionDB?driver=SQL Server"], "msodbcsql.msi"),
        (
            ["status", "--server", "localhost\\SQLEXPRESS,port", "--database", "X"],
            "TCP port number",
        ),
        (
            [
                "run",
                "--server",
                "h",
                "--database",
                "X",
                "--encrypt",
                "strict",
                "--trust-server-certificate",
            ],
            "give one of them",
        ),
        # options that belong to --server are never ignored (the default SQLite file or a Windows login
        # would quietly take their place), an empty --server (an unset variable) is named, and a SQL
        # login of a URL without a password and no terminal is refused as the --server path refuses it
        (["init-db", "--database", "XmlConversionDB"], "--database is only used with --server"),
        (
            ["status", "--db", "mssql://h/db", "--username", "sa"],
            "--username is only used with --server",
        ),
        (["init-db", "--server", "", "--database", "X"], "--server is empty"),
        (
            ["status", "--db", "mssql://sa@127.0.0.1/db"],
            "needs a password in XML_EXTRACTOR_DB_PASSWORD",
        ),
    ],
)
def test_the_cli_refuses_a_wrong_setting_with_exit_2_and_one_line(args, message):
    p = cli_in_process(*args)
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_environment_options_do_not_break_a_sqlite_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cli_in_process("init-db", "--db", url, check=True)
    p = cli_in_process(
        "status",
        "--db",
        url,
        env={
            "XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE": "yes",
            "XML_EXTRACTOR_ENCRYPT": "no",
            "XML_EXTRACTOR_DATABASE": "XmlConversionDB",
            "XML_EXTRACTOR_USERNAME": "etl",
        },
    )
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "xml_extractor.db").exists() and not list(
        Path.cwd().glob("xml_extractor.db")
    )


@pytest.mark.parametrize(
    "url", ["mssql://sa:S3cretPw/db", "mssql://sa:S3cretPw:1433/db", "mssql://sa:S3cretPw,1433/db"]
)
def test_a_login_without_its_host_is_refused_without_echo(url, tmp_path):
    """'user:password' with '@host' forgotten was taken for a host name: sent to DNS, printed in
    the connect error and logged on every retry. Refused (exit 2) before connecting, never quoted."""
    p = cli_in_process(
        "run",
        "--db",
        url,
        "--no-progress",
        "--logs-dir",
        str(tmp_path / "logs"),
        "--metrics-dir",
        str(tmp_path / "metrics"),
    )
    assert p.returncode == 2 and "a ':' in the host part" in p.stderr, p.stderr
    said = p.stdout + p.stderr + "".join(f.read_text() for f in tmp_path.rglob("*") if f.is_file())
    assert "S3c" not in said and "cret" not in said
