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

import sqlite3

from ..errors import ConnectionLost, DatabaseError, RowsRefused, SchemaMissing, TransientDatabaseError

# SQLSTATE classes and codes (PostgreSQL through psqlODBC reports the server's own; SQL Server's
# driver reports ODBC ones: 23000 for every integrity violation, HYT00 for a timeout)
CONNECTION_STATES = {"08000", "08001", "08003", "08004", "08006", "08007", "08S01", "57P01", "57P02", "57P03",
                     "HYT01", "25P03"}
TRANSIENT_STATES = {"40001", "40P01", "57014", "55P03", "55006", "25006", "HYT00", "58030", "53000", "53100",
                    "53200", "53300", "53400", "57P05"}
SCHEMA_STATES = {"42P01", "42703", "42S02", "42S22", "3F000"}
CONNECTION_WORDS = ("server closed the connection", "terminating connection", "no connection to the server",
                    "could not send data", "could not receive data", "connection is closed", "communication link failure",
                    "broken pipe", "connection reset", "connection not open", "ssl syscall error", "the connection is broken",
                    "transport-level error", "connection dead", "connection has been lost", "lost connection",
                    "connection was closed", "server has gone away")
TRANSIENT_WORDS = ("deadlock", "lock request time out", "timeout expired", "query timeout", "statement timeout",
                   "could not obtain lock", "canceling statement", "is full", "could not allocate space",
                   "no space left", "disk full", "read-only", "read only", "out of memory", "too many connections")


def _state_and_text(exc: BaseException) -> tuple[str, str]:
    args = getattr(exc, "args", ())
    state = str(args[0]) if args and isinstance(args[0], str) and len(str(args[0])) == 5 else ""
    return state, " ".join(str(a) for a in args).lower() or str(exc).lower()


def wrap_odbc(exc: BaseException) -> Exception:
    """A pyodbc exception (PostgreSQL or SQL Server) as a typed error; any other exception is
    returned unchanged (it is not the driver's: a bug, or already typed)."""
    if type(exc).__module__ != "pyodbc":
        return exc  # type: ignore[return-value]
    state, text = _state_and_text(exc)
    msg = f"{type(exc).__name__}: {_first_line(exc)}"
    if state in CONNECTION_STATES or any(w in text for w in CONNECTION_WORDS):
        return ConnectionLost(msg, original=exc)
    if state in TRANSIENT_STATES or state.startswith("53") or any(w in text for w in TRANSIENT_WORDS):
        return TransientDatabaseError(msg, original=exc)
    if state in SCHEMA_STATES or "invalid object name" in text or "invalid column name" in text:
        return SchemaMissing(f"the database schema is missing or different from the contract "
                             f"(run xml-extractor init-db): {_first_line(exc)}")
    if state == "23505" or "duplicate key" in text or ("unique" in text and "violat" in text) or "primary key" in text:
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
    if isinstance(exc, sqlite3.IntegrityError):
        if "foreign key" in text:
            return RowsRefused(msg, "foreign_key", exc)
        if "unique" in text or "primary key" in text:
            return RowsRefused(msg, "duplicate", exc)
        return RowsRefused(msg, "value", exc)  # NOT NULL, CHECK
    if isinstance(exc, sqlite3.DataError) or isinstance(exc, OverflowError):
        return RowsRefused(msg, "value", exc)  # string or blob too big; int beyond 64 bits
    if isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError)) and "binding parameter" in text:
        return RowsRefused(msg, "value", exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return ConnectionLost(msg, original=exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in text or "no such column" in text or "has no column" in text:
            return SchemaMissing(f"the database schema is missing or different from the contract "
                                 f"(run xml-extractor init-db): {_first_line(exc)}")
        if any(w in text for w in ("locked", "busy", "disk is full", "database or disk is full", "readonly",
                                   "read-only", "disk i/o error", "unable to open database file", "out of memory",
                                   "interrupted")):
            return TransientDatabaseError(msg, original=exc)
    return DatabaseError(msg, original=exc)


def _first_line(exc: BaseException) -> str:
    from .odbc import redact
    args: tuple = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 and isinstance(args[0], str) and len(args[0]) == 5 else str(exc)
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:1000]
