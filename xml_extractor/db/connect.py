"""pyodbc for the server dialects: imported on demand, connections opened with typed failures.

pyodbc is imported only when a server URL is used: the wheel needs unixODBC's libodbc.so.2, and
the SQLite path must work on a machine without it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .classify import connect_error


def import_pyodbc() -> Any:
    try:
        import pyodbc
    except ImportError as exc:
        text = str(exc)
        if "libodbc" in text:
            raise ConfigError(
                "pyodbc cannot load the ODBC driver manager (libodbc.so.2): install unixODBC "
                "(Debian/Ubuntu: apt-get install unixodbc)"
            ) from None
        raise ConfigError(
            "pyodbc is not installed: pip install pyodbc (and the ODBC driver for your database)"
        ) from None
    return pyodbc


def odbc_connect(conn_str: str, driver_hint: str, autocommit: bool = False) -> Any:
    """pyodbc.connect, a failure typed by :func:`classify.connect_error`: ConfigError (exit 2, one
    line naming what to change) or ConnectionLost (the server cannot be reached: retried)."""
    pyodbc = import_pyodbc()
    try:
        return pyodbc.connect(conn_str, autocommit=autocommit, timeout=30)
    except pyodbc.Error as exc:
        raise connect_error(exc, conn_str, driver_hint, installed=pyodbc.drivers) from None
