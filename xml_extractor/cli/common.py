"""Options and helpers shared by every command: database options, run options, error handling."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import ConfigError, DatabaseError

ENV = "XML_EXTRACTOR_"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {with_user_flags(message)}", err=True)
    sys.exit(code)


# The connection and contract options a hint's command repeats, in the order they are shown.
_HINT_FLAGS = (
    ("db_url", "--db"),
    ("server", "--server"),
    ("database", "--database"),
    ("username", "--username"),
    ("encrypt", "--encrypt"),
    ("trust_server_certificate", "--trust-server-certificate"),
    ("contract_path", "--contract"),
)
# "xml-extractor init-db" and the flags a message already gives it ("--dry-run", "--db URL")
_HINT = re.compile(r"xml-extractor (init-db)((?: --[\w-]+(?:[ =](?!--)[^\s`'\")]+)?)*)")


# The command line a hint repeats when it is not this process's own: launch's, for its instances
HINT_ARGV = "XML_EXTRACTOR__HINT_ARGV"
# "run with --contract a --contract b": the contracts a command should have been given
_RUN_WITH = re.compile(r"run with ((?:--contract [\w.\-/]+ ?)+)")


def _same_command_with(contract_words: list[str]) -> str:
    """The command the user typed (its argv, a --db password left out) with its --contract flags
    replaced by ``contract_words``: the hint to copy."""
    argv = json.loads(os.environ[HINT_ARGV]) if os.environ.get(HINT_ARGV) else sys.argv[1:]
    kept: list[str] = []
    skip = False
    for i, w in enumerate(argv):
        if skip:
            skip = False
        elif w == "--contract":
            skip = True
        elif not w.startswith("--contract="):
            before = argv[i - 1] if i else ""
            kept.append(_no_password(w) if before == "--db" or w.startswith("--db=") else w)
    words = ["xml-extractor", *kept, *contract_words]
    return "run `" + " ".join(shlex.quote(w) for w in words) + "`"


def user_flags(ctx: click.Context | None = None) -> list[tuple[str, str | None]]:
    """The connection and contract flags the user typed on this command line (not those read from
    the environment: they are still set for the next command) as (flag, shell-quoted value or
    None), never a password: what a hint's command repeats to reach the same database with the
    same contracts."""
    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    if ctx is None:
        return []
    params = {**ctx.params, **{k: v for k, (v, _) in ctx.meta.get(TLS_META, {}).items()}}
    flags: list[tuple[str, str | None]] = []
    for name, flag in _HINT_FLAGS:
        value = params.get(name)
        if value in (None, False, "") or not _typed(name, ctx):
            continue
        if value is True:
            flags.append((flag, None))
        elif name == "contract_path":
            flags += [(flag, shlex.quote(part)) for part in str(value).split(",")]
        else:
            shown = _no_password(str(value)) if name == "db_url" else str(value)
            flags.append((flag, shlex.quote(shown)))
    return flags


def _no_password(db_url: str) -> str:
    """A --db value as it may be shown: a URL's password left out, an ODBC string's redacted."""
    if db_url.startswith("odbc:"):
        from ..db.odbc import redact

        return redact(db_url)
    return re.sub(r"^([a-z+]+://[^:/@]*):[^@/]*@", r"\1@", db_url)


def with_user_flags(message: str, ctx: click.Context | None = None) -> str:
    """Every `xml-extractor init-db` a message tells the user to type, with the flags of the
    command they typed added (those the message gives stay): following the hint literally reaches
    the same database with the same contracts."""
    message = _RUN_WITH.sub(lambda m: _same_command_with(m.group(1).split()), message)
    flags = user_flags(ctx)
    if not flags:
        return message

    def complete(m: re.Match[str]) -> str:
        given = m.group(2)
        added = [
            f" {flag}" + (f" {value}" if value is not None else "")
            for flag, value in flags
            if not re.search(rf"{flag}(?=[ =]|$)", given)
        ]
        return f"xml-extractor {m.group(1)}{given}" + "".join(added)

    return _HINT.sub(complete, message)


def handle_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except DatabaseError as exc:  # typed at the driver boundary: the environment, not the input
            _fail(f"stopped on a database error: {exc}", 3)
        except (
            KeyboardInterrupt,
            click.Abort,
        ):  # Ctrl-C / SIGINT: committed work stays; 130 for every command
            _fail("interrupted (what was committed stays; run the command again to go on)", 130)

    return wrapper


def _contracts_option(ctx: Any, param: Any, value: tuple[str, ...]) -> str | None:
    from ..contract.merge import join_contract_specs

    try:
        return join_contract_specs(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


# Repeatable: several contracts over one source table are a contract set (each document goes to the
# contract whose record it has); the commands receive them as one "a,b" string (contract/merge.py).
CONTRACT_OPTION = click.option(
    "--contract",
    "contract_path",
    envvar=ENV + "CONTRACT",
    show_envvar=True,
    multiple=True,
    callback=_contracts_option,
    help="Contract: a packaged name (credit_card, rec_lending) or a file path; repeat it for a source "
    "table holding several product lines (default: credit_card).",
)


# --encrypt / --trust-server-certificate reach resolve_url through the click context (ctx.meta), not
# as keyword arguments: every command taking db_options gets them without a new parameter, and
# run's options (RunOptions(**kw)) stay as they are.
TLS_META = "xml_extractor.tls"


def _tls_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(TLS_META, {})[param.name] = (value, ctx)
    return value


def tls_options(ctx: click.Context | None = None) -> Any:
    """The --encrypt / --trust-server-certificate values of ``ctx`` (default: the current command)
    as a db.url.TLSOptions; nothing given -> TLSOptions() (the secure defaults)."""
    from ..db.url import ENCRYPT_FLAG, TRUST_FLAG, TLSOptions

    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    got = ctx.meta.get(TLS_META, {}) if ctx is not None else {}
    encrypt, _ = got.get("encrypt", (None, None))
    trust, _ = got.get("trust_server_certificate", (None, None))
    # typed on the command line or read from the environment (known once parsing is done)
    typed = frozenset(
        flag
        for flag, name in ((ENCRYPT_FLAG, "encrypt"), (TRUST_FLAG, "trust_server_certificate"))
        if name in got
        and got[name][1].get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    )
    return TLSOptions(encrypt=encrypt, trust_server_certificate=trust, typed=typed)


def db_options(fn: Callable) -> Callable:
    from ..db.url import ENCRYPT_CHOICES

    fn = CONTRACT_OPTION(fn)
    fn = click.option(
        "--encrypt",
        type=click.Choice(ENCRYPT_CHOICES, case_sensitive=False),
        default=None,
        envvar=ENV + "ENCRYPT",
        show_envvar=True,
        expose_value=False,
        callback=_tls_option,
        help="SQL Server connection encryption (default yes; strict = TDS 8.0, Driver 18; "
        "mandatory = yes, optional = no).",
    )(fn)
    fn = click.option(
        "--trust-server-certificate",
        is_flag=True,
        default=None,
        envvar=ENV + "TRUST_SERVER_CERTIFICATE",
        show_envvar=True,
        expose_value=False,
        callback=_tls_option,
        help="SQL Server: accept the server's certificate without checking it (a self-signed "
        "Express install); only on a network you trust.",
    )(fn)
    fn = click.option(
        "--username",
        envvar=ENV + "USERNAME",
        show_envvar=True,
        default=None,
        help="SQL Server user (password from XML_EXTRACTOR_DB_PASSWORD or a prompt).",
    )(fn)
    fn = click.option(
        "--database",
        envvar=ENV + "DATABASE",
        show_envvar=True,
        default=None,
        help="SQL Server database (with --server).",
    )(fn)
    fn = click.option(
        "--server",
        envvar=ENV + "SERVER",
        show_envvar=True,
        default=None,
        help="SQL Server host[\\instance][,port] (instead of --db).",
    )(fn)
    fn = click.option(
        "--db",
        "db_url",
        envvar=ENV + "DB",
        show_envvar=True,
        default=None,
        help="Database URL: sqlite:///file.db (default sqlite:///xml_extractor.db), "
        "postgresql://user@host:port/db, mssql://host/db, odbc:<connection string>.",
    )(fn)
    return fn


def resolve_url(
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    create: bool = False,
    tls: Any = None,
) -> Any:
    """The database URL from the options. A SQLite file must exist unless ``create`` (init-db,
    load-xml, generate-mock): a mistyped path never silently becomes a new empty database.
    ``tls`` (a db.url.TLSOptions) defaults to the current command's --encrypt /
    --trust-server-certificate."""
    tls = tls if tls is not None else tls_options()
    db_url, server, database, username = _typed_wins(db_url, server, database, username)
    _check_server_flags(server, database, username)
    if server:
        if db_url:
            raise ConfigError("give either --db or --server/--database, not both")
        return _server_url(server, database, username, tls)
    return _db_url(db_url, create, tls)


def _typed_wins(
    db_url: str | None, server: str | None, database: str | None, username: str | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """--db and --server both given: an option typed on the command line wins over one from the
    environment (which may serve several databases)."""
    if not (server and db_url):
        return db_url, server, database, username
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return db_url, server, database, username
    env = click.core.ParameterSource.ENVIRONMENT
    db_env = ctx.get_parameter_source("db_url") == env
    server_env = ctx.get_parameter_source("server") == env
    if db_env and not server_env:
        return None, server, database, username
    if server_env and not db_env:
        return db_url, None, None, None
    return db_url, server, database, username


def _check_server_flags(server: str | None, database: str | None, username: str | None) -> None:
    """An empty --server, or --database/--username without --server: refused (they belong to
    --server; typed without it they would be ignored and the command would quietly use another
    database, the default SQLite file or a Windows login)."""
    if server is not None and not server.strip():
        raise ConfigError(
            "--server is empty (an unset variable?): give the SQL Server as host[\\instance][,port]"
        )
    if server:
        return
    for name, value, fix in (
        (
            "database",
            database,
            "--server HOST --database DB, or the database in the --db URL: mssql://host/DB",
        ),
        (
            "username",
            username,
            "--server HOST --username U, or the login in the --db URL: mssql://U@host/db",
        ),
    ):
        if value and _typed(name):
            raise ConfigError(f"--{name} is only used with --server: {fix}")


def _server_url(server: str, database: str | None, username: str | None, tls: Any) -> Any:
    """The URL of --server/--database/--username, its password from the environment or a prompt
    (refused before any prompt when the flags are wrong)."""
    from ..db.url import PASSWORD_ENV, server_database_url

    if not database:
        raise ConfigError("--server needs --database")
    url = tls.apply(server_database_url(server, database, username))
    password = os.environ.get(PASSWORD_ENV, "")
    if username and not password:
        password = _prompt_password(f"{username}@{server}", f"--username {username}")
    url.password = password
    return url


def _prompt_password(login: str, who: str) -> str:
    """The password of ``login`` typed at a prompt; refused (exit 2) with no terminal to prompt
    on, or when the input ends (Ctrl-D) instead of a password: nothing was interrupted."""
    from ..db.url import PASSWORD_ENV

    if not sys.stdin.isatty():
        raise ConfigError(f"{who} needs a password in {PASSWORD_ENV} (no terminal to prompt on)")
    try:
        return str(click.prompt(f"Password for {login}", hide_input=True))
    except click.Abort as exc:  # click's prompt turns EOFError and KeyboardInterrupt into Abort
        if isinstance(exc.__context__, EOFError):
            raise ConfigError(
                f"{who} needs a password: the input ended at the prompt (or set {PASSWORD_ENV})"
            ) from None
        raise


def _db_url(db_url: str | None, create: bool, tls: Any) -> Any:
    """The URL of --db: a SQLite file must exist unless ``create``; a SQL Server login without a
    password gets a prompt (or a refusal with no terminal)."""
    from ..db.url import parse_url

    url = tls.apply(parse_url(db_url))
    if not create:
        from ..db.migrate import require_exists

        require_exists(url)
    if url.dialect == "mssql" and url.user and not url.password:
        url.password = _prompt_password(url.user, f"the SQL Server login {url.user}")
    return url


def _typed(param: str, ctx: click.Context | None = None) -> bool:
    """Whether the current command's option was typed on the command line (not read from the
    environment, which may serve several databases)."""
    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    if ctx is None:
        return True
    try:
        return ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE
    except (KeyError, TypeError):
        return True


def open_db(
    db_url: str | None,
    server: str | None,
    database: str | None,
    username: str | None,
    contract_path: str | None,
    create: bool = False,
) -> Any:
    from ..contract.loader import load_contract
    from ..db.database import Database

    contract = load_contract(contract_path)
    return Database(resolve_url(db_url, server, database, username, create), contract)


def _work_options() -> list[Callable]:
    """How much work and how: workers, batches, partition or queue."""
    return [
        click.option(
            "--workers",
            type=int,
            default=2,
            show_default=True,
            envvar=ENV + "WORKERS",
            show_envvar=True,
            help="Worker processes (parse, map, insert).",
        ),
        click.option(
            "--batch-size",
            type=int,
            default=200,
            show_default=True,
            envvar=ENV + "BATCH_SIZE",
            show_envvar=True,
            help="Applications per batch (and per transaction).",
        ),
        click.option(
            "--limit",
            type=int,
            default=None,
            envvar=ENV + "LIMIT",
            show_envvar=True,
            help="Process at most this many applications in this run.",
        ),
        click.option(
            "--instance-id",
            type=int,
            default=0,
            show_default=True,
            envvar=ENV + "INSTANCE_ID",
            show_envvar=True,
            help="Partition mode: this instance's number, 0 .. COUNT-1 (it takes app_id % COUNT = ID).",
        ),
        click.option(
            "--instance-count",
            type=int,
            default=1,
            show_default=True,
            envvar=ENV + "INSTANCE_COUNT",
            show_envvar=True,
            help="Partition mode: this instance takes app_id % COUNT = ID.",
        ),
        click.option(
            "--mode",
            type=click.Choice(["partition", "queue"]),
            default="partition",
            show_default=True,
            envvar=ENV + "MODE",
            show_envvar=True,
            help="queue: claim chunks from a work table with a lease.",
        ),
        click.option(
            "--lease-seconds",
            type=int,
            default=120,
            show_default=True,
            envvar=ENV + "LEASE_SECONDS",
            help="Queue mode: how long a claimed chunk stays this instance's without renewal; a dead "
            "instance's chunk is taken over after this.",
        ),
        click.option(
            "--chunk-size",
            type=click.IntRange(min=1),
            default=1000,
            show_default=True,
            envvar=ENV + "CHUNK_SIZE",
            help="Queue mode: app_id range width of one claim, for a new queue; a queue that "
            "has chunks keeps its width (the run says so).",
        ),
    ]


def _selection_options() -> list[Callable]:
    """Which applications: an app_id range, retries, a changed contract."""
    return [
        click.option(
            "--app-id-start",
            type=int,
            default=None,
            envvar=ENV + "APP_ID_START",
            help="Only applications with app_id >= this (inclusive).",
        ),
        click.option(
            "--app-id-end",
            type=int,
            default=None,
            envvar=ENV + "APP_ID_END",
            help="Only applications with app_id <= this (inclusive).",
        ),
        click.option(
            "--retry-failed",
            is_flag=True,
            envvar=ENV + "RETRY_FAILED",
            help="Retry applications whose last attempt failed.",
        ),
        click.option(
            "--max-attempts",
            type=int,
            default=3,
            show_default=True,
            envvar=ENV + "MAX_ATTEMPTS",
            help="With --retry-failed: retry an application only while it has had fewer attempts than this.",
        ),
        click.option(
            "--allow-contract-change",
            is_flag=True,
            envvar=ENV + "ALLOW_CONTRACT_CHANGE",
            help="Run although the database holds results of another version of this contract "
            "(see docs/operations.md, 'Re-running after a contract change').",
        ),
    ]


def _output_options() -> list[Callable]:
    """Where the run reports: log, progress, metrics; how long it reconnects."""
    return [
        click.option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default="INFO",
            show_default=True,
            envvar=ENV + "LOG_LEVEL",
            help="Detail of the run's log file.",
        ),
        click.option(
            "--no-progress", is_flag=True, envvar=ENV + "NO_PROGRESS", help="No progress bar."
        ),
        click.option(
            "--logs-dir",
            default="logs",
            show_default=True,
            envvar=ENV + "LOGS_DIR",
            help="Folder of the per-run log files (run-*.log).",
        ),
        click.option(
            "--metrics-dir",
            default="metrics",
            show_default=True,
            envvar=ENV + "METRICS_DIR",
            help="Folder of the per-run metrics (run-*.json: counts, stages, timeline).",
        ),
        click.option(
            "--reconnect-seconds",
            type=float,
            default=60,
            show_default=True,
            envvar=ENV + "RECONNECT_SECONDS",
            help="How long to keep reconnecting after a lost connection.",
        ),
    ]


def run_options(fn: Callable) -> Callable:
    """The options of run (and launch, which hands them on to its instances)."""
    for o in reversed(_work_options() + _selection_options() + _output_options()):
        fn = o(fn)
    return db_options(fn)


FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    envvar=ENV + "FORMAT",
    help="table for people, json for scripts and dashboards.",
)


def show_envvars(group: click.Group) -> None:
    """Every option of every command reads an XML_EXTRACTOR_* environment variable and shows it in
    --help: the ones declared with their own name keep it, the others get ENV + the option's name
    (--sample-rows: XML_EXTRACTOR_SAMPLE_ROWS). One place, so no option can be left out."""
    for command in group.commands.values():
        for param in command.params:
            if (
                not isinstance(param, click.Option)
                or param.hidden
                or param.name in ("help", "version")
            ):
                continue
            if not param.envvar:
                long = max(param.opts, key=len).lstrip("-")
                param.envvar = ENV + long.upper().replace("-", "_")
            param.show_envvar = True


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _db(kw: dict) -> Any:
    """An operator command's database, its planner statistics refreshed first if they are stale
    (db/statistics.py: without them SQLite plans reconcile quadratically)."""
    from ..db.statistics import refresh_if_stale

    db = open_db(
        kw.pop("db_url"),
        kw.pop("server"),
        kw.pop("database"),
        kw.pop("username"),
        kw.pop("contract_path"),
    )
    refresh_if_stale(db)
    return db


def _query(kw: dict, fn: Any) -> Any:
    """Open the database from the common options, answer one ops question, close."""
    db = _db(kw)
    try:
        return fn(db)
    finally:
        db.close()
