"""Driver exceptions -> the typed errors of :mod:`xml_extractor.errors` (the driver boundary).

The one question that matters for every database error: is it *these rows* the database refuses
(a constraint, a type, a value out of range: the application fails, alone, after bisecting), or
is it the *environment* (a timeout, a lock wait, a deadlock, a full disk, a read-only database, a
lost connection: the run's problem, retried with backoff and then a stop with exit 3, the
applications still pending)? Modelled on procrastinate's ``wrap_exceptions``: each dialect's
``wrap`` calls one of the functions below, and nothing above the dialects looks at a driver
exception again. Anything not recognised stays a plain :class:`DatabaseError`: never a data
failure (it is not known to be the rows' fault), never retried (it is not known to pass).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence

from ..errors import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    RowsRefused,
    SchemaMissing,
    TransientDatabaseError,
)
from .odbc import connection_attribute, driver_install_hint, redact

# SQLSTATE classes and codes (PostgreSQL through psqlODBC reports the server's own; SQL Server's
# driver reports ODBC ones: 23000 for every integrity violation, HYT00 for a timeout)
CONNECTION_STATES = {
    "08000",
    "08001",
    "08003",
    "08004",
    "08006",
    "08007",
    "08S01",
    "08S02",
    "57P01",
    "57P02",
    "57P03",
    "HYT01",
    "25P03",
}
TRANSIENT_STATES = {
    "40001",
    "40P01",
    "57014",
    "55P03",
    "55006",
    "25006",
    "HYT00",
    "58030",
    "53000",
    "53100",
    "53200",
    "53300",
    "53400",
    "57P05",
}
SCHEMA_STATES = {"42P01", "42703", "42S02", "42S22", "3F000"}
CONNECTION_WORDS = (
    "server closed the connection",
    "terminating connection",
    "no connection to the server",
    "could not send data",
    "could not receive data",
    "connection is closed",
    "communication link failure",
    "broken pipe",
    "connection reset",
    "connection not open",
    "ssl syscall error",
    "the connection is broken",
    "transport-level error",
    "connection dead",
    "connection has been lost",
    "lost connection",
    "connection was closed",
    "server has gone away",
    # SQL Server: 08S02/08S01 "SMux|Session Provider: Physical connection is not usable
    # [xFFFFFFFF]"; msg 596 "Cannot continue the execution because the session is in
    # the kill state." (a KILL or a server shutting down: a new connection works)
    "physical connection is not usable",
    "session is in the kill state",
)
TRANSIENT_WORDS = (
    "deadlock",
    "lock request time out",
    "timeout expired",
    "query timeout",
    "statement timeout",
    "could not obtain lock",
    "canceling statement",
    "is full",
    "could not allocate space",
    "no space left",
    "disk full",
    "read-only",
    "read only",
    "out of memory",
    "too many connections",
    # SQL Server: 1101 "Could not allocate a new page for database ... because the ...
    # filegroup is full"; 701 "There is insufficient system memory in resource pool ... to
    # run this query."; 8645 "A timeout occurred while waiting for memory resources to
    # execute the query in resource pool ..."; 1204 "The instance of the SQL Server
    # Database Engine cannot obtain a LOCK resource at this time."
    "could not allocate a new page",
    "insufficient system memory",
    "waiting for memory resources",
    "cannot obtain a lock resource",
)
# pyodbc's OWN errors, raised while binding parameters (fast_executemany) before the server sees
# the rows: ProgrammingError('String data, right truncation: length 12 buffer 10', 'HY000'),
# 'Numeric overflow', 'Converting decimal loses precision' (pyodbc src/params.cpp; RaiseErrorV puts
# the message first and the SQLSTATE last). A value of these rows: RowsRefused("value").
VALUE_WORDS = (
    "string data, right truncation",
    "numeric overflow",
    "converting decimal loses precision",
)
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


def _sqlstate_index(args: tuple) -> int | None:
    """Where pyodbc put the SQLSTATE: first for the driver's errors ``(state, message)``, last for
    pyodbc's own ``(message, state)``; None when neither argument is one."""
    if len(args) >= 2:
        for i in (0, len(args) - 1):
            if isinstance(args[i], str) and _SQLSTATE.fullmatch(args[i]):
                return i
    return None


def _state_and_text(exc: BaseException) -> tuple[str, str]:
    args = tuple(getattr(exc, "args", ()))
    i = _sqlstate_index(args)
    state = args[i] if i is not None else ""
    return state, " ".join(str(a) for a in args).lower() or str(exc).lower()


def wrap_odbc(exc: BaseException) -> Exception:
    """A pyodbc exception (PostgreSQL or SQL Server) as a typed error; any other exception is
    returned unchanged (it is not the driver's: a bug, or already typed). pyodbc binding an int
    beyond 64 bits raises the built-in OverflowError: a value of those rows, as for sqlite3."""
    if isinstance(exc, OverflowError) and "int too big" in str(exc).lower():
        return RowsRefused(f"OverflowError: {exc}", "value", exc)
    if type(exc).__module__ != "pyodbc":
        return exc  # type: ignore[return-value]
    state, text = _state_and_text(exc)
    msg = f"{type(exc).__name__}: {_first_line(exc)}"
    if state in CONNECTION_STATES or any(w in text for w in CONNECTION_WORDS):
        return ConnectionLost(msg, original=exc)
    if (
        state in TRANSIENT_STATES
        or state.startswith("53")
        or any(w in text for w in TRANSIENT_WORDS)
    ):
        return TransientDatabaseError(msg, original=exc)
    if any(w in text for w in VALUE_WORDS):  # checked before the states: pyodbc says HY000 for them
        return RowsRefused(msg, "value", exc)
    if state in SCHEMA_STATES or "invalid object name" in text or "invalid column name" in text:
        return SchemaMissing(
            f"the database schema is missing or different from the contract "
            f"(run xml-extractor init-db): {_first_line(exc)}"
        )
    if (
        state == "23505"
        or "duplicate key" in text
        or ("unique" in text and "violat" in text)
        or "primary key" in text
    ):
        return RowsRefused(msg, "duplicate", exc)
    if state == "23503" or "foreign key" in text:
        return RowsRefused(msg, "foreign_key", exc)
    if state.startswith("23") or state.startswith("22"):
        return RowsRefused(msg, "value", exc)
    return DatabaseError(msg, original=exc)


def wrap_sqlite(exc: BaseException) -> Exception:
    """A sqlite3 exception (or the driver's OverflowError binding an int beyond 64 bits) as a
    typed error; any other exception is returned unchanged."""
    if not isinstance(exc, (sqlite3.Error, OverflowError)):
        return exc  # type: ignore[return-value]
    text = str(exc).lower()
    msg = f"{type(exc).__name__}: {_first_line(exc)}"
    if (
        "could not decode to utf-8" in text
    ):  # sqlite3 quotes the whole value: never a document's text
        msg = f"{type(exc).__name__}: {str(exc).split(' with text ', 1)[0]}"
    if isinstance(exc, sqlite3.IntegrityError):
        if "foreign key" in text:
            return RowsRefused(msg, "foreign_key", exc)
        if "unique" in text or "primary key" in text:
            return RowsRefused(msg, "duplicate", exc)
        return RowsRefused(msg, "value", exc)  # NOT NULL, CHECK
    if isinstance(exc, (sqlite3.DataError, OverflowError)):
        return RowsRefused(msg, "value", exc)  # string or blob too big; int beyond 64 bits
    if (
        isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError))
        and "binding parameter" in text
    ):
        return RowsRefused(msg, "value", exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return ConnectionLost(msg, original=exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in text or "no such column" in text or "has no column" in text:
            return SchemaMissing(
                f"the database schema is missing or different from the contract "
                f"(run xml-extractor init-db): {_first_line(exc)}"
            )
        if any(
            w in text
            for w in (
                "locked",
                "busy",
                "disk is full",
                "database or disk is full",
                "readonly",
                "read-only",
                "disk i/o error",
                "unable to open database file",
                "out of memory",
                "interrupted",
            )
        ):
            return TransientDatabaseError(msg, original=exc)
    return DatabaseError(msg, original=exc)


def _first_line(exc: BaseException) -> str:
    """The message's first line (the driver's has ``\n\t``/``\r\n`` in it), password redacted."""
    args: tuple = tuple(getattr(exc, "args", ()))
    i = _sqlstate_index(args)
    text = str(args[1] if i == 0 else args[0]) if i is not None else str(exc)
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:1000]


# -- errors while connecting ------------------------------------------------------------------------
# The Microsoft ODBC driver's texts (first diagnostic record; pyodbc on Windows joins all records
# with "; ", on unixODBC it reads only the first): certificate and TLS trust (08001 "SSL Provider:
# The certificate chain was issued by an authority that is not trusted." on Windows, "SSL Provider:
# [error:0A000086:SSL routines::certificate verify failed:self-signed certificate]" through OpenSSL,
# "SSL Provider: The target principal name is incorrect."), a named instance the SQL Server Browser
# did not resolve (08001 "SQL Server Network Interfaces: Error Locating Server/Instance Specified
# [xFFFFFFFF]."), a refused login (28000, 18456 "Login failed for user '...'."; 18452 "... untrusted
# domain ..."), Kerberos on Linux/macOS (HY000 "SSPI Provider: No Kerberos credentials available
# ..." / "Cannot generate SSPI context"), a database the login cannot open (4060 'Cannot open
# database "X" requested by the login. The login failed.'). Each is the configuration (exit 2, one
# line naming what to change); a server that does not answer stays ConnectionLost (retried, exit 3).
_CERT_WORDS = ("certificate", "target principal name is incorrect")
_INSTANCE_WORDS = ("error locating server/instance specified",)
_KERBEROS_WORDS = ("sspi provider", "cannot generate sspi context", "kerberos", "gss failure")
_LOGIN_WORDS = ("login failed", "untrusted domain")
_PG_REFUSED = (
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "password authentication",
)
_UNREACHABLE_WORDS = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "timeout expired",
    "tcp provider",
    "named pipes provider",
    "server is not found or not accessible",
    "network-related",
    "no route to host",
    "network is unreachable",
    "timed out",
)


def connect_error(
    exc: BaseException,
    conn_str: str,
    driver: str,
    installed: Callable[[], Sequence[str]] = lambda: (),
) -> Exception:
    """What a failed ``pyodbc.connect`` means (a pure function of the exception and the connection
    string): ConfigError (exit 2) with one line naming what to change, or ConnectionLost when the
    server cannot be reached (retried for --reconnect-seconds, then exit 3). ``installed`` lists the
    ODBC drivers (asked only when the driver is missing)."""
    state, text = _state_and_text(exc)
    reason = _first_line(exc)  # one line, password redacted (the driver's tuple has \n\t in it)
    if (
        state == "IM002"
        or "can't open lib" in text
        or ("file not found" in text and state in ("01000", "HY000"))
    ):
        return ConfigError(
            f"ODBC driver not found: {driver}. Installed drivers: {', '.join(installed()) or 'none'}. "
            f"{driver_install_hint(driver)}"
        )
    mssql = "sql server" in driver.lower() or "[sql server]" in text or "for sql server]" in text
    if not mssql:
        if any(
            w in text for w in ("cannot open database",) + _PG_REFUSED
        ):  # the server answered: exit 2
            return ConfigError(f"cannot connect: {reason}")
        if state in CONNECTION_STATES or any(w in text for w in _UNREACHABLE_WORDS):
            return ConnectionLost(f"cannot connect to the database: {reason}", original=exc)
        return ConfigError(f"cannot connect: {reason}")
    return _mssql_connect_error(exc, conn_str, state, text, reason)


def _mssql_connect_error(
    exc: BaseException, conn_str: str, state: str, text: str, reason: str
) -> Exception:
    """A failed connect to SQL Server (the Microsoft driver's texts above), naming the server."""
    try:
        server = connection_attribute(conn_str, "Server") or "(local)"
        trusted = (connection_attribute(conn_str, "Trusted_Connection") or "").lower() == "yes"
    except ValueError:
        server, trusted = "(the server in the connection string)", False
    where = f"cannot connect to SQL Server {server}"
    if "target principal name is incorrect" in text or "does not match host name" in text:
        return ConfigError(
            f"{where}: its certificate is issued to another name ({reason}). Connect by the name "
            f"in the certificate, or name it with ?HostNameInCertificate=<name> in an mssql:// URL "
            f"(Driver 18), or, only on a network you trust, add --trust-server-certificate "
            f"(URL: ?trust_server_certificate=yes): it skips checking that you reach the real server"
        )
    if any(w in text for w in _CERT_WORDS):
        return ConfigError(
            f"{where}: its TLS certificate is not trusted by this machine ({reason}). Only on a "
            f"network you trust, add --trust-server-certificate (XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE"
            f"=yes; URL: ?trust_server_certificate=yes): the connection stays encrypted but the "
            f"server's identity is not checked; otherwise install a certificate this machine trusts "
            f"on the server"
        )
    if any(w in text for w in _INSTANCE_WORDS):
        return ConfigError(
            f"{where}: the named instance was not found ({reason}). Check the instance name after "
            f"the backslash, that the SQL Server Browser service runs on the server (UDP port 1434 "
            f"open), or give the instance's TCP port: --server host\\instance,PORT (TCP/IP enabled "
            f"for the instance in SQL Server Configuration Manager)"
        )
    if "cannot open database" in text or "(4060)" in text:
        return ConfigError(
            f"{where}: the database cannot be opened ({reason}). Check the name given to --database "
            f"(the URL's path) and that this login has access to it"
        )
    if any(w in text for w in _KERBEROS_WORDS) and trusted:
        return ConfigError(
            f"{where}: Windows authentication (no --username) failed ({reason}). On Linux or macOS "
            f"it needs a Kerberos ticket (kinit) and a server SPN; or give --username with the "
            f"password in XML_EXTRACTOR_DB_PASSWORD"
        )
    if any(w in text for w in _LOGIN_WORDS) or state == "28000" or "(18456)" in text:
        if trusted:
            return ConfigError(
                f"{where}: Windows authentication (no --username) was refused ({reason}). Give the "
                f"Windows user running the tool a login on the server, or give --username with the "
                f"password in XML_EXTRACTOR_DB_PASSWORD"
            )
        return ConfigError(
            f"{where}: the login was refused ({reason}). Check --username and the password in "
            f"XML_EXTRACTOR_DB_PASSWORD (SQL Server authentication must be enabled on the server), "
            f"or leave --username out to log in with Windows authentication"
        )
    if state in CONNECTION_STATES or state == "HYT00" or any(w in text for w in _UNREACHABLE_WORDS):
        # the server refuses or cannot be reached: the environment (exit 3), not the configuration
        return ConnectionLost(f"cannot connect to the database: {reason}", original=exc)
    return ConfigError(f"{where}: {reason}")
