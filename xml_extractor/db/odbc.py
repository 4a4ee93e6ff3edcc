"""ODBC connection strings shared by the server dialects: quoting, parsing, redaction, and what to
install when a driver is missing. Pure text functions: pyodbc itself is imported on demand by
:mod:`connect`."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import ConfigError


def driver_install_hint(driver: str) -> str:
    """What to install when an ODBC driver is missing: the package, by database and system."""
    if "postgres" in driver.lower() or "psqlodbc" in driver.lower():
        return "Install the PostgreSQL ODBC driver: Debian/Ubuntu package odbc-postgresql (apt-get install odbc-postgresql)."
    return (
        "Install Microsoft's ODBC Driver 18 or 17 for SQL Server (both are looked for, 18 first): on Windows "
        "the msodbcsql.msi installer from Microsoft's 'Download ODBC Driver for SQL Server' page; on Linux "
        "the package msodbcsql18 (or msodbcsql17) from Microsoft's repository packages.microsoft.com; "
        "on macOS brew install msodbcsql18 (tap microsoft/mssql-release)."
    )


# -- connection strings ---------------------------------------------------------------------------
# The ODBC rules (SQLDriverConnect): ``key=value`` pairs separated by ``;``. A value that contains
# ``;``, ``{``, ``}`` or ``=``, or starts or ends with a space, is written in braces, ``{...}``, with
# every ``}`` doubled. unixODBC and psqlODBC read it back that way (the live test in
# tests/test_secrets.py proves it with a password made of every one of those characters).

SECRET_KEYS = frozenset({"pwd", "password", "passwd"})
_NEEDS_BRACES = frozenset(";{}=")
_SECRET_KEY = re.compile(r"(?i)\b(pwd|password|passwd)(\s*=\s*)")


def quote_value(value: str, always: bool = False) -> str:
    """One value as it goes into a connection string: the only way values get there."""
    if (
        always
        or value[:1].isspace()
        or value[-1:].isspace()
        or any(c in _NEEDS_BRACES for c in value)
    ):
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(pairs: Iterable[tuple[str, str]]) -> str:
    """``key=value;...`` with every value quoted by :func:`quote_value` (the Driver name always
    in braces, as drivers expect); empty values are left out. Keys are plain words."""
    out = []
    for key, value in pairs:
        if not _KEY.fullmatch(key):
            raise ConfigError(f"not a valid connection string keyword: {key[:40]!r}")
        if value != "":
            out.append(f"{key}={quote_value(value, always=key.lower() == 'driver')}")
    return ";".join(out)


_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_ .-]*")


def parse_connection_string(text: str) -> list[tuple[str, str]]:
    """A connection string -> its ``(key, value)`` pairs, values unquoted, by the ODBC rules.
    Raises ValueError (without quoting the text: it may hold a password) when it is malformed."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in "; \t":
            i += 1
            continue
        eq = text.find("=", i)
        semi = text.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            raise ValueError(f"attribute {len(pairs) + 1} has no '='")
        key = text[i:eq].strip()
        if not key:
            raise ValueError(f"attribute {len(pairs) + 1} has an empty keyword")
        j = eq + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            value, j = _braced(text, j)
            if j < 0:
                raise ValueError(
                    f"the value of {_named(key, len(pairs))} opens a brace that is never closed"
                )
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] != ";":
                raise ValueError(f"text after the closing brace of {_named(key, len(pairs))}")
        else:
            end = text.find(";", j)
            end = n if end < 0 else end
            value, j = text[j:end].rstrip(" \t"), end
        pairs.append((key, value))
        i = j + 1
    return pairs


def _named(key: str, index: int) -> str:
    """An attribute as an error message may name it: its keyword when that is a plain keyword,
    else its position (a malformed keyword may be a password typed in the wrong place)."""
    return repr(key) if _KEY.fullmatch(key) and len(key) <= 40 else f"attribute {index + 1}"


def _braced(text: str, start: int) -> tuple[str, int]:
    """The value of ``{...}`` starting at ``start`` (``}}`` is one ``}``) and the index after it;
    index -1 when the brace is never closed."""
    out = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "}":
            if i + 1 < n and text[i + 1] == "}":
                out.append("}")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), -1


def connection_attribute(text: str, key: str) -> str | None:
    """The value of ``key`` (any case) in a connection string, or None."""
    for k, v in parse_connection_string(text):
        if k.lower() == key.lower():
            return v
    return None


def redact(text: str) -> str:
    """Text that may hold a connection string (or a driver message echoing one) with every
    password value replaced by ``***``: a braced value up to its real closing brace (``}}`` does
    not close it; an unclosed one to the end of the text), a plain value up to ``;``."""
    out = []
    pos = 0
    for m in _SECRET_KEY.finditer(text):
        if m.start() < pos:
            continue
        j = m.end()
        if j < len(text) and text[j] == "{":
            _, end = _braced(text, j)
            end = len(text) if end < 0 else end
        else:
            end = text.find(";", j)
            end = len(text) if end < 0 else end
        out.append(text[pos:j] + "***")
        pos = end
    out.append(text[pos:])
    return "".join(out)
