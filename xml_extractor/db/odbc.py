"""pyodbc plumbing shared by the server dialects: import on demand, error classification.

pyodbc is imported only when a server URL is used: the wheel needs unixODBC's libodbc.so.2, and
the SQLite path must work on a machine without it.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import ErrorKind

CONNECTION_STATES = {"08000", "08001", "08003", "08004", "08006", "08007", "08S01", "57P01", "57P02", "57P03", "HYT00", "HYT01"}
CONNECTION_WORDS = ("server closed the connection", "terminating connection", "no connection to the server",
                    "could not send data", "could not receive data", "connection is closed", "communication link failure",
                    "broken pipe", "connection reset", "connection not open", "ssl syscall error", "the connection is broken",
                    "transport-level error", "connection dead", "connection has been lost", "lost connection",
                    "connection was closed", "server has gone away")


def import_pyodbc() -> Any:
    try:
        import pyodbc  # noqa: PLC0415 - deliberate lazy import
    except ImportError as exc:
        text = str(exc)
        if "libodbc" in text:
            raise ConfigError("pyodbc cannot load the ODBC driver manager (libodbc.so.2): install unixODBC "
                              "(Debian/Ubuntu: apt-get install unixodbc)") from None
        raise ConfigError("pyodbc is not installed: pip install pyodbc (and the ODBC driver for your database)") from None
    return pyodbc


def odbc_connect(conn_str: str, driver_hint: str, autocommit: bool = False) -> Any:
    pyodbc = import_pyodbc()
    try:
        return pyodbc.connect(conn_str, autocommit=autocommit, timeout=30)
    except pyodbc.Error as exc:
        msg = str(exc)
        if "IM002" in msg or "Can't open lib" in msg or "file not found" in msg.lower():
            raise ConfigError(f"ODBC driver not found: {driver_hint}. Installed drivers: "
                              f"{', '.join(pyodbc.drivers()) or 'none'}") from None
        raise ConfigError(f"cannot connect: {redact(msg)}") from None


def redact(text: str) -> str:
    """Never print a password that a driver echoed back."""
    import re
    return re.sub(r"(?i)(pwd|password)=([^;]*)", r"\1=***", text)


def classify_odbc(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    state = str(args[0]) if args else ""
    msg = " ".join(str(a) for a in args).lower()
    if state in CONNECTION_STATES or any(w in msg for w in CONNECTION_WORDS):
        return ErrorKind.CONNECTION
    if state in ("40001", "40P01") or "deadlock" in msg:
        return ErrorKind.RETRY
    if state == "23505" or "duplicate key" in msg or "unique" in msg and "violat" in msg:
        return ErrorKind.DUPLICATE
    if state == "23503" or "foreign key" in msg:
        return ErrorKind.FOREIGN_KEY
    if state.startswith("23"):
        return ErrorKind.DUPLICATE if "primary key" in msg else ErrorKind.OTHER
    return ErrorKind.OTHER
