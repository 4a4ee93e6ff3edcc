"""Database URLs -> dialect + connection parameters. Passwords come from the environment (or a
prompt in the CLI), may be given in a URL for PostgreSQL, and never appear in what we print."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from ..errors import ConfigError

PASSWORD_ENV = "XML_EXTRACTOR_DB_PASSWORD"
DEFAULT_URL = "sqlite:///xml_extractor.db"
PG_DRIVER = "PostgreSQL Unicode"
MSSQL_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server")
# Drivers that must not be used for SQL Server: the Windows built-in "SQL Server" driver (returns
# DATETIME2 as text, fast_executemany fails on it), SQL Server Native Client and the ODBC drivers
# before 17 (all out of support). Any other name (a driver registered under an alias) is allowed.
LEGACY_MSSQL_DRIVER = re.compile(
    r"(?i)\s*(sql server|sql native client|sql server native client\b.*|"
    r"odbc driver 1[13](\.\d+)? for sql server)\s*"
)
ENCRYPT_CHOICES = ("yes", "no", "strict", "mandatory", "optional")
# what the driver is sent: Mandatory is yes and Optional is no (Driver 18 documents them as the
# same values; Driver 17 knows only yes/no); strict (TDS 8.0) exists from Driver 18 on
_ENCRYPT = {
    "yes": "yes",
    "mandatory": "yes",
    "true": "yes",
    "no": "no",
    "optional": "no",
    "false": "no",
    "strict": "strict",
}
_YES_NO = {
    "yes": "yes",
    "true": "yes",
    "1": "yes",
    "on": "yes",
    "no": "no",
    "false": "no",
    "0": "no",
    "off": "no",
}
TRUST_FLAG = "--trust-server-certificate"
ENCRYPT_FLAG = "--encrypt"


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
    params: dict = field(default_factory=dict, repr=False)  # may hold ?password=
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
            parts = {
                "Driver": self.driver,
                "Server": self.host or "127.0.0.1",
                "Port": str(self.port or 5432),
                "Database": self.database,
                "Uid": self.user,
                "Pwd": self.password,
                # measured: no hidden per-statement SAVEPOINT, no per-process comm log file
                "Protocol": "7.4-1",
                "CommLog": "0",
                "Debug": "0",
                "UseServerSidePrepare": "1",
                "BoolsAsChar": "0",
                "MaxVarcharSize": "65535",
                "TextAsLongVarchar": "1",
            }
        else:
            server = self.host + (f",{self.port}" if self.port else "")
            # secure by default whichever driver is installed (Driver 17 alone would not encrypt):
            # --encrypt / --trust-server-certificate or the URL parameters change it
            parts = {
                "Driver": self.driver,
                "Server": server,
                "Database": self.database,
                "Encrypt": self.params.get("encrypt", "yes"),
                "TrustServerCertificate": self.params.get("trust_server_certificate", "no"),
                "APP": "xml-extractor",
            }
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


_SECRET_PARAM = re.compile(r"(?i)(pwd|password|passwd)\s*=")
_SCHEME_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9+.\- ]*)?:?/{0,2}")


def mask_url(text: str) -> str:
    """A database URL the tool could not parse, as it may be printed or logged: everything after
    a password parameter (``?password=``, ``&pwd=``, ``;PWD=``, any case) and everything before
    the last ``@`` except a scheme-like start (``postgresql//``, ``postgres ql://``, ``etl:``)
    become ``***``. Which part of a mistyped URL is the password cannot be known, so all of the
    user information goes, whatever slashes or colons a typo left in it."""
    m = _SECRET_PARAM.search(text)
    if m:
        text = text[: m.end()] + "***"
    at = text.rfind("@")
    if at >= 0:
        keep = _SCHEME_LIKE.match(text, 0, at)
        start = keep.end() if keep else 0
        text = text[:start] + "***" + text[at:]
    return text


def _refuse_odd_parts(dialect: str, netloc: str, raw_path: str) -> None:
    """A mistyped server URL is refused before anything echoes or sends its parts: with one slash
    (``postgresql:/u:PW@h/db``) or three, the user information lands in the database name (which
    is logged, and sent to a server on the default port); a space typed in the user or host part
    stands for a missing ``:``. Nothing of the URL is quoted: any part of it may be the password."""
    db = raw_path.lstrip("/")
    if "@" in db or ":" in db:
        raise ConfigError(
            f"database URL: the database name holds '@' or ':', so the URL is mistyped (not shown: "
            f"it may hold a password); write {dialect}://user@host:port/dbname (a name with such "
            "characters percent-encoded)"
        )
    if any(c.isspace() for c in netloc):
        raise ConfigError(
            f"database URL: a space in the user or host part (as typed: not percent-encoded), so the URL is mistyped (not shown: it "
            f"may hold a password); write {dialect}://user@host:port/dbname"
        )


def parse_url(url: str | None, password: str | None = None) -> DatabaseURL:
    url = (url or DEFAULT_URL).strip()
    env_pw = os.environ.get(PASSWORD_ENV, "") if password is None else password
    if url.startswith("odbc:"):
        return _odbc_url(url, env_pw)
    try:
        parts = urlsplit(url)
    except ValueError:  # its message quotes the host part, which may hold a password
        raise ConfigError(
            f"bad database URL {mask_url(url)!r}: its host part is not a name or an address "
            "(an IPv6 address goes in brackets: postgresql://user@[::1]:5432/db)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        return _sqlite_url(url)
    if scheme in ("postgresql", "postgres", "mssql", "sqlserver"):
        return _server_url(url, parts, env_pw)
    shown = (
        f"{scheme}:"
        if re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme) and "@" not in scheme
        else repr(mask_url(url))
    )
    raise ConfigError(
        f"unknown database URL scheme {shown} "
        "(use sqlite:///file.db, postgresql://user@host:port/db, mssql://host/db or odbc:<connection string>)"
    )


def _sqlite_url(url: str) -> DatabaseURL:
    """``sqlite:///path``: a path that reads as user:password@host is a mistyped server URL."""
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise ConfigError(
            f"bad SQLite URL {mask_url(url)!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    local = re.sub(
        r"^/?[A-Za-z]:[/\\]", "", path
    )  # a Windows drive letter's colon is not user information
    if ":" in local and "@" in local[local.index(":") :]:
        raise ConfigError(
            "bad SQLite URL: its path reads as user:password@host (not shown: it may hold a "
            "password), so the URL is mistyped; use sqlite:///relative/path.db or a server URL "
            "(postgresql://user@host:port/db)"
        )
    return DatabaseURL(dialect="sqlite", raw=url, path=path)


def _server_netloc(dialect: str, url: str, parts: SplitResult) -> tuple[str, int | None, str, str]:
    """Host, port, user and password of a server URL's network location."""
    if dialect == "mssql":
        return _mssql_netloc(parts.netloc)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"bad port in database URL {DatabaseURL(dialect, url).display()}"
        ) from None
    return (
        parts.hostname or "",
        port,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


def _server_url(url: str, parts: SplitResult, env_pw: str) -> DatabaseURL:
    """``postgresql://`` or ``mssql://``: the password from the URL, else the environment."""
    dialect = "postgresql" if parts.scheme.lower().startswith("postgres") else "mssql"
    params = dict(parse_qsl(parts.query))
    host, port, user, url_pw = _server_netloc(dialect, url, parts)
    _refuse_odd_parts(dialect, parts.netloc, parts.path)
    if not parts.netloc:  # 'postgresql:u:pw@h/db': no '//', the rest read as path and query
        raise ConfigError(
            f"database URL has no host part (not shown: it may hold a password); write "
            f"{dialect}://user@host:port/dbname"
        )
    db = unquote(parts.path.lstrip("/"))
    if not db:
        raise ConfigError(f"database URL needs a database name: {dialect}://host/DBNAME")
    driver = params.pop("driver", "") or (
        PG_DRIVER if dialect == "postgresql" else _pick_mssql_driver()
    )
    out = DatabaseURL(
        dialect=dialect,
        raw=url,
        host=host,
        port=port,
        database=db,
        user=user,
        password=url_pw or env_pw,
        driver=driver,
        params=params,
    )
    if dialect == "mssql":
        _normalise_mssql_params(out)
        check_mssql(out)
    return out


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
    if "sql server" in driver or "native client" in driver:
        dialect = "mssql"
    elif "postgres" in driver or "psqlodbc" in driver:
        dialect = "postgresql"
    else:
        raise ConfigError(
            "odbc: URL: cannot tell the database from the DRIVER= part "
            "(supported: SQL Server and PostgreSQL drivers)"
        )
    if password and not any(k.lower() in SECRET_KEYS for k, _ in pairs):
        cs = cs.rstrip("; \t") + ";" + connection_string([("PWD", password)])
    out = DatabaseURL(
        dialect=dialect, raw=url, odbc=cs, driver=next(v for k, v in pairs if k.lower() == "driver")
    )
    if dialect == "mssql":
        check_mssql(out)
    return out


def _pick_mssql_driver() -> str:
    try:
        from .connect import import_pyodbc

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


# -- SQL Server: server names, encryption options, drivers ---------------------------------------


def split_server(server: str, where: str = "--server") -> tuple[str, int | None]:
    """``host[\\instance][,port]`` as SQL Server tools take it (also ``tcp:host,port``, ``.\\SQLEXPRESS``,
    ``(localdb)\\MSSQLLocalDB``, ``np:...``) -> (server as typed, port). The instance name keeps its
    case; only a port that is not a number is refused."""
    text = server.strip()
    if not text:
        raise ConfigError(f"{where} is empty: give host[\\instance][,port]")
    host, sep, port = text.rpartition(",") if "," in text else (text, "", "")
    if not sep:
        return text, None
    if not port.strip().isdigit() or not 0 < int(port) < 65536 or not host.strip():
        raise ConfigError(
            f"{where} {server!r}: after the comma comes the TCP port number (host[\\instance][,port])"
        )
    return host.strip(), int(port)


def _mssql_netloc(netloc: str) -> tuple[str, int | None, str, str]:
    """An mssql:// URL's ``[user[:password]@]host[\\instance][:port]`` read as typed: urlsplit would
    lower-case the host and instance and cannot take a backslash or ``%5C`` with a port. The
    instance may be written ``host\\INST`` or ``host%5CINST``; ``host\\INST,port`` works too."""
    userinfo, at, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    hostport = unquote(hostport)
    if hostport.startswith("[") and "]" in hostport:  # [IPv6][:port]
        host, _, rest = hostport[1:].partition("]")
        m = re.fullmatch(r"()(?::(\d+))?", rest)
    else:
        m = re.fullmatch(r"(.+?)(?:[:,](\d+))?", hostport)
        host = m.group(1) if m else hostport
    port = (m.group(2) or "") if m else ""
    if ":" in host and not hostport.startswith("["):
        # "user:password" with its "@host" forgotten would be taken for a host name (and sent to DNS,
        # logged): refused without quoting it, since what is before the ':' may be a password
        raise ConfigError(
            "bad mssql URL: a ':' in the host part (a login without '@host'?): "
            "mssql://USER@host[\\instance][:port]/DB, the password in XML_EXTRACTOR_DB_PASSWORD"
        )
    if m is None or "," in host or host.endswith(":") or (port and not 0 < int(port) < 65536):
        raise ConfigError("bad host or port in database URL mssql://...: host[\\instance][:port]")
    return host, int(port) if port else None, unquote(user), unquote(password)


def _normalise_mssql_params(url: DatabaseURL) -> None:
    """URL parameters with the tool's names for encryption (``encrypt``, ``trust_server_certificate``,
    also spelled ``TrustServerCertificate``/``Encrypt``) under one key each, values as the driver
    takes them; anything else stays a connection attribute passed through."""
    out: dict = {}
    for key, value in url.params.items():
        k = key.lower().replace("_", "")
        if k == "encrypt":
            canon = _ENCRYPT.get(str(value).strip().lower())
            if canon is None:
                raise ConfigError(
                    f"mssql URL: encrypt={value!r}: use one of {', '.join(ENCRYPT_CHOICES)}"
                )
            _put(out, "encrypt", canon, f"?{key}=")
        elif k == "trustservercertificate":
            canon = _YES_NO.get(str(value).strip().lower())
            if canon is None:
                raise ConfigError(f"mssql URL: trust_server_certificate={value!r}: use yes or no")
            _put(out, "trust_server_certificate", canon, f"?{key}=")
        else:
            out[key] = value
    url.params = out


def _put(params: dict, key: str, value: str, how: str) -> None:
    if key in params and params[key] != value:
        raise ConfigError(
            f"{key} is given twice with different values ({params[key]} and {how}{value}): give it once"
        )
    params[key] = value


def check_mssql(url: DatabaseURL) -> None:
    """What no SQL Server connection may be opened with, refused before connecting (exit 2): a
    legacy driver, ``encrypt=strict`` on Driver 17, strict together with a trusted certificate."""
    if LEGACY_MSSQL_DRIVER.fullmatch(url.driver or ""):
        raise ConfigError(
            f"the ODBC driver {url.driver!r} cannot be used for SQL Server (legacy, out of support; the "
            "built-in 'SQL Server' driver returns DATETIME2 values as text): install Microsoft ODBC "
            "Driver 18 for SQL Server (Windows: msodbcsql.msi from Microsoft's download page; Linux: "
            "package msodbcsql18) or 17, and name it (or leave ?driver= out: 18, then 17, is picked)"
        )
    encrypt = url.params.get("encrypt")
    if encrypt == "strict" and "17" in (url.driver or ""):
        raise ConfigError(
            f"{ENCRYPT_FLAG} strict (TDS 8.0) needs ODBC Driver 18 for SQL Server; {url.driver!r} "
            "knows only yes and no: install Driver 18 (package msodbcsql18) or use --encrypt yes"
        )
    if encrypt == "strict" and url.params.get("trust_server_certificate") == "yes":
        raise ConfigError(
            f"{ENCRYPT_FLAG} strict always checks the server's certificate, so "
            f"{TRUST_FLAG} would be ignored: give one of them"
        )


@dataclass(frozen=True)
class TLSOptions:
    """``--encrypt`` / ``--trust-server-certificate`` (or XML_EXTRACTOR_ENCRYPT /
    XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE) as the user gave them: None = not given. ``typed``
    names the ones given on the command line (the others came from the environment)."""

    encrypt: str | None = None
    trust_server_certificate: bool | None = None
    typed: frozenset = frozenset()

    def given(self) -> list[str]:
        return [
            n
            for n, v in ((ENCRYPT_FLAG, self.encrypt), (TRUST_FLAG, self.trust_server_certificate))
            if v is not None
        ]

    def apply(self, url: DatabaseURL) -> DatabaseURL:
        """Put the options into ``url`` (SQL Server only). Typed with a SQLite or PostgreSQL
        database they are an error; from the environment they are ignored there (the environment
        may serve several databases). A URL parameter saying otherwise is an error, not overridden."""
        given = self.given()
        if not given:
            return url
        if url.dialect != "mssql":
            typed = [n for n in given if n in self.typed]
            if typed:
                raise ConfigError(
                    f"{' and '.join(typed)} {'apply' if len(typed) > 1 else 'applies'} to SQL Server "
                    f"only, not to this {url.dialect} "
                    f"database {url.display()}: leave {'them' if len(typed) > 1 else 'it'} out"
                )
            return url
        if url.odbc:
            raise ConfigError(
                f"with an odbc: connection string write Encrypt=/TrustServerCertificate= in the "
                f"string itself instead of {' and '.join(given)} (or XML_EXTRACTOR_ENCRYPT/"
                f"XML_EXTRACTOR_TRUST_SERVER_CERTIFICATE)"
            )
        if self.encrypt is not None:
            _put(url.params, "encrypt", _ENCRYPT[self.encrypt.lower()], f"{ENCRYPT_FLAG} ")
        if self.trust_server_certificate is not None:
            _put(
                url.params,
                "trust_server_certificate",
                "yes" if self.trust_server_certificate else "no",
                f"{TRUST_FLAG}=",
            )
        check_mssql(url)
        return url


def server_database_url(
    server: str, database: str, username: str | None, password: str = "", driver: str | None = None
) -> DatabaseURL:
    """The seed-style ``--server/--database/--username`` flags as a SQL Server DatabaseURL: the
    server exactly as typed (named instance, port, protocol prefix); no username = Windows
    authentication (Trusted_Connection=yes)."""
    host, port = split_server(server)
    if not database.strip():
        raise ConfigError("--database is empty: give the SQL Server database name")
    url = DatabaseURL(
        dialect="mssql",
        raw="",
        host=host,
        port=port,
        database=database,
        user=username or "",
        password=password,
        driver=driver or _pick_mssql_driver(),
    )
    check_mssql(url)
    return url
