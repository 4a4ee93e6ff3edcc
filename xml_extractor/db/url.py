"""Database URLs -> dialect + connection parameters. Passwords come from the environment (or a
prompt in the CLI), may be given in a URL for PostgreSQL, and never appear in what we print."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ..errors import ConfigError

PASSWORD_ENV = "XML_EXTRACTOR_DB_PASSWORD"
DEFAULT_URL = "sqlite:///xml_extractor.db"
PG_DRIVER = "PostgreSQL Unicode"
MSSQL_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server")


@dataclass
class DatabaseURL:
    dialect: str  # sqlite | postgresql | mssql
    raw: str = field(repr=False)  # as given: may hold a password
    path: str = ""
    host: str = ""
    port: int | None = None
    database: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    driver: str = ""
    params: dict = field(default_factory=dict)
    odbc: str = field(default="", repr=False)

    def display(self) -> str:
        """The URL as it may be printed or logged: never a password."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        if self.odbc:
            from .odbc import redact
            return "odbc:" + redact(self.odbc)
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.dialect}://{who}{self.host}{port}/{self.database}"

    def odbc_connection_string(self) -> str:
        """The connection string handed to pyodbc: every value through odbc.quote_value."""
        from .odbc import connection_string
        if self.odbc:
            return self.odbc
        if self.dialect == "postgresql":
            parts = {"Driver": self.driver, "Server": self.host or "127.0.0.1", "Port": str(self.port or 5432),
                     "Database": self.database, "Uid": self.user, "Pwd": self.password,
                     # measured: no hidden per-statement SAVEPOINT, no per-process comm log file
                     "Protocol": "7.4-1", "CommLog": "0", "Debug": "0", "UseServerSidePrepare": "1",
                     "BoolsAsChar": "0", "MaxVarcharSize": "65535", "TextAsLongVarchar": "1"}
        else:
            server = self.host + (f",{self.port}" if self.port else "")
            parts = {"Driver": self.driver, "Server": server, "Database": self.database,
                     "Encrypt": self.params.get("encrypt", "yes"),
                     "TrustServerCertificate": self.params.get("trust_server_certificate", "no"),
                     "APP": "xml-extractor"}
            if self.user:
                parts.update(UID=self.user, PWD=self.password)
            else:
                parts["Trusted_Connection"] = "yes"
        for k, v in self.params.items():
            if k not in ("driver", "encrypt", "trust_server_certificate"):
                # a URL parameter replaces the attribute of the same name, whatever its case
                for same in [p for p in parts if p.lower() == k.lower()]:
                    del parts[same]
                parts[k] = str(v)
        return connection_string(parts.items())


def parse_url(url: str | None, password: str | None = None) -> DatabaseURL:
    url = (url or DEFAULT_URL).strip()
    env_pw = os.environ.get(PASSWORD_ENV, "") if password is None else password
    if url.startswith("odbc:"):
        return _odbc_url(url, env_pw)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return DatabaseURL(dialect="sqlite", raw=url, path=path)
    if scheme in ("postgresql", "postgres", "mssql", "sqlserver"):
        dialect = "postgresql" if scheme.startswith("postgres") else "mssql"
        params = dict(parse_qsl(parts.query))
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"bad port in database URL {DatabaseURL(dialect, url).display()}") from None
        db = unquote(parts.path.lstrip("/"))
        if not db:
            raise ConfigError(f"database URL needs a database name: {dialect}://host/DBNAME")
        pw = unquote(parts.password or "") or env_pw
        driver = params.pop("driver", "") or (PG_DRIVER if dialect == "postgresql" else _pick_mssql_driver())
        return DatabaseURL(dialect=dialect, raw=url, host=parts.hostname or "", port=port, database=db,
                           user=unquote(parts.username or ""), password=pw, driver=driver, params=params)
    raise ConfigError(f"unknown database URL scheme {scheme + ':' if scheme else repr(url)} "
                      "(use sqlite:///file.db, postgresql://user@host:port/db, mssql://host/db or odbc:<connection string>)")


def _odbc_url(url: str, password: str) -> DatabaseURL:
    """``odbc:<connection string>``: checked by the ODBC rules; a password from the environment
    is added (brace-quoted) only when the string has none."""
    from .odbc import SECRET_KEYS, connection_string, parse_connection_string
    cs = url[5:].strip()
    try:
        pairs = parse_connection_string(cs)
    except ValueError as exc:
        raise ConfigError(f"odbc: URL: not a valid connection string: {exc}") from None
    driver = next((v for k, v in pairs if k.lower() == "driver"), "").lower()
    if "sql server" in driver:
        dialect = "mssql"
    elif "postgres" in driver or "psqlodbc" in driver:
        dialect = "postgresql"
    else:
        raise ConfigError("odbc: URL: cannot tell the database from the DRIVER= part "
                          "(supported: SQL Server and PostgreSQL drivers)")
    if password and not any(k.lower() in SECRET_KEYS for k, _ in pairs):
        cs = cs.rstrip("; \t") + ";" + connection_string([("PWD", password)])
    return DatabaseURL(dialect=dialect, raw=url, odbc=cs, driver=next(v for k, v in pairs if k.lower() == "driver"))


def _pick_mssql_driver() -> str:
    try:
        from .odbc import import_pyodbc
        installed = import_pyodbc().drivers()
    except ConfigError:
        installed = []
    for d in MSSQL_DRIVERS:
        if d in installed:
            return d
    return MSSQL_DRIVERS[0]


def server_url(server: str, database: str, username: str | None) -> str:
    """The seed-style --server/--database/--username flags as an mssql URL."""
    host, _, port = server.partition(",")
    user = f"{quote(username, safe='')}@" if username else ""
    return f"mssql://{user}{host}{':' + port if port else ''}/{quote(database, safe='')}"
