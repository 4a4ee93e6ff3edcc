"""The ``xml-extractor`` command line: a thin layer over the library.

Every option also reads an ``XML_EXTRACTOR_*`` environment variable (shown in --help). Exit codes:
0 done, 1 some applications failed (or an inconsistency was found), 2 usage or configuration
error, 130 interrupted.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click
from tabulate import tabulate

from . import __version__
from .errors import ConfigError

ENV = "XML_EXTRACTOR_"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except ConfigError as exc:
            _fail(str(exc), 2)
    return wrapper


def db_options(fn: Callable) -> Callable:
    fn = click.option("--contract", "contract_path", envvar=ENV + "CONTRACT", show_envvar=True, default=None,
                      help="Contract file (default: the packaged credit_card contract).")(fn)
    fn = click.option("--username", envvar=ENV + "USERNAME", show_envvar=True, default=None,
                      help="SQL Server user (password from XML_EXTRACTOR_DB_PASSWORD or a prompt).")(fn)
    fn = click.option("--database", envvar=ENV + "DATABASE", show_envvar=True, default=None,
                      help="SQL Server database (with --server).")(fn)
    fn = click.option("--server", envvar=ENV + "SERVER", show_envvar=True, default=None,
                      help="SQL Server host[\\instance][,port] (instead of --db).")(fn)
    fn = click.option("--db", "db_url", envvar=ENV + "DB", show_envvar=True, default=None,
                      help="Database URL: sqlite:///file.db (default sqlite:///xml_extractor.db), "
                           "postgresql://user@host:port/db, mssql://host/db, odbc:<connection string>.")(fn)
    return fn


def resolve_url(db_url: str | None, server: str | None, database: str | None, username: str | None) -> Any:
    from .db.url import PASSWORD_ENV, DatabaseURL, _pick_mssql_driver, parse_url
    if server:
        if db_url:
            raise ConfigError("give either --db or --server/--database, not both")
        if not database:
            raise ConfigError("--server needs --database")
        password = os.environ.get(PASSWORD_ENV, "")
        if username and not password:
            if sys.stdin.isatty():
                password = click.prompt(f"Password for {username}@{server}", hide_input=True)
            else:
                raise ConfigError(f"--username {username} needs a password in {PASSWORD_ENV} (no terminal to prompt on)")
        host, _, port = server.partition(",")
        return DatabaseURL(dialect="mssql", raw="", host=host, port=int(port) if port else None, database=database,
                           user=username or "", password=password, driver=_pick_mssql_driver())
    url = parse_url(db_url)
    if url.dialect == "mssql" and url.user and not url.password and sys.stdin.isatty():
        url.password = click.prompt(f"Password for {url.user}", hide_input=True)
    return url


def open_db(db_url: str | None, server: str | None, database: str | None, username: str | None,
            contract_path: str | None) -> Any:
    from .contract.loader import load_contract
    from .db.database import Database
    contract = load_contract(contract_path)
    return Database(resolve_url(db_url, server, database, username), contract)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="xml-extractor")
def cli() -> None:
    """Turn XML documents stored in a database table into rows of a normalized schema."""


# -- contract and mapping --------------------------------------------------------------------------

@cli.command("validate-contract")
@click.argument("path", required=False, envvar=ENV + "CONTRACT")
@handle_errors
def validate_contract(path: str | None) -> None:
    """Check a contract (default: the packaged one) and summarise it."""
    from .contract.loader import load_contract
    c = load_contract(path)
    ncols = sum(len(t.stored_columns) for t in c.tables)
    click.echo(f"ok: {c.name} {c.version_tag}: {len(c.tables)} tables, {ncols} columns, "
               f"{sum(len(v) for v in c.enums.values())} enum values in {len(c.enums)} enums")


@cli.command("map")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--contract", "contract_path", envvar=ENV + "CONTRACT", default=None, help="Contract file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--app-id", type=int, default=None, help="Expect this app_id (as a source row would).")
@handle_errors
def map_cmd(file: str, contract_path: str | None, fmt: str, app_id: int | None) -> None:
    """Show the rows and data-quality events one document produces."""
    from . import compile_contract, load_contract
    from .errors import DocumentFailure
    from .mapping import map_document
    plan = compile_contract(load_contract(contract_path))
    try:
        mapped = map_document(plan, Path(file).read_bytes(), expected_app_id=app_id)
    except DocumentFailure as f:
        if fmt == "json":
            click.echo(json.dumps({"status": "failed", "stage": f.stage, "error_class": f.error_class, "reason": f.reason}, indent=2))
        else:
            click.echo(f"failed at stage {f.stage} ({f.error_class}): {f.reason}")
        sys.exit(1)
    tables = mapped.as_dicts(plan)
    events = [dict(zip(("table", "column", "event_type", "raw_value", "reason", "locator"), e)) for e in mapped.events]
    if fmt == "json":
        click.echo(json.dumps({"status": "success", "app_id": mapped.app_id, "tables": tables, "events": events},
                              indent=2, default=str))
        return
    for name, rows in tables.items():
        click.echo(f"\n{name} ({len(rows)} row{'s' if len(rows) != 1 else ''})")
        shown = [{k: v for k, v in r.items() if v is not None} for r in rows]
        keys = list(dict.fromkeys(k for r in shown for k in r))
        if len(keys) > 12:  # wide 1:1 tables read better as name/value
            for r in shown:
                click.echo(tabulate(list(r.items()), headers=["column", "value"], tablefmt="simple"))
        else:
            click.echo(tabulate([[r.get(k) for k in keys] for r in shown], headers=keys, tablefmt="simple"))
    click.echo(f"\ndata-quality events ({len(events)})")
    if events:
        click.echo(tabulate([[e["table"], e["column"], e["event_type"], (e["raw_value"] or "")[:40], e["reason"][:70]]
                             for e in events], headers=["table", "column", "event", "raw", "reason"], tablefmt="simple"))


# -- database setup and loading --------------------------------------------------------------------

@cli.command("init-db")
@db_options
@click.option("--print", "print_only", is_flag=True, help="Print the SQL instead of running it.")
@click.option("--dialect", type=click.Choice(["sqlite", "postgresql", "mssql"]), default=None,
              help="With --print: the dialect to emit (default: the --db URL's).")
@handle_errors
def init_db_cmd(db_url: str | None, server: str | None, database: str | None, username: str | None,
                contract_path: str | None, print_only: bool, dialect: str | None) -> None:
    """Create source, target, log and event tables and seed app_enums (idempotent)."""
    from .contract.loader import load_contract
    if print_only:
        from .db.database import make_dialect
        from .db.url import parse_url
        contract = load_contract(contract_path)
        d = make_dialect(dialect or (parse_url(db_url).dialect if db_url else "sqlite"))
        click.echo(render_ddl(d, contract))
        return
    from .db.store import init_db
    db = open_db(db_url, server, database, username, contract_path)
    res = init_db(db)
    click.echo(f"initialised {db.url.display()}: {res['statements']} statements, "
               f"{res['enums_seeded']} enum rows seeded ({res['enums_total']} declared)")
    db.close()


def render_ddl(dialect: Any, contract: Any) -> str:
    sep = "\nGO\n" if dialect.name == "mssql" else ";\n"
    stmts = dialect.ddl(contract)
    sql, rows = dialect.enum_seed_sql(contract)
    head = (f"-- xml-extractor {__version__}: schema for contract {contract.version_tag} ({dialect.name})\n"
            "-- generated by: xml-extractor init-db --print --dialect " + dialect.name + "\n")
    seeds = []
    for r in rows:
        vals = ", ".join(str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'" for v in r)
        seeds.append(sql.replace("?, ?, ?, ?", vals))
    return head + sep.join(stmts + seeds) + sep.rstrip("\n") + "\n"


@cli.command("load-xml")
@click.argument("paths", nargs=-1, required=True)
@db_options
@click.option("--replace", is_flag=True, help="Overwrite rows whose app_id is already present.")
@handle_errors
def load_xml_cmd(paths: tuple[str, ...], db_url: str | None, server: str | None, database: str | None,
                 username: str | None, contract_path: str | None, replace: bool) -> None:
    """Load XML files (files, folders, globs) into the source table; app_id from Request/@ID."""
    from .loading import load_files
    db = open_db(db_url, server, database, username, contract_path)
    report = load_files(db, paths, replace=replace)
    click.echo(tabulate(sorted(report.counts.items()), headers=["outcome", "files"], tablefmt="simple"))
    for path, why in report.problems[:50]:
        click.echo(f"  skipped {path}: {why}", err=True)
    db.close()
    sys.exit(1 if report.problems else 0)


@cli.command("generate-mock")
@db_options
@click.option("--count", type=click.IntRange(min=1), required=True, envvar=ENV + "COUNT", help="How many documents.")
@click.option("--seed", type=int, default=42, show_default=True, envvar=ENV + "SEED")
@click.option("--faulty-share", type=click.FloatRange(0, 1), default=0.0, show_default=True, envvar=ENV + "FAULTY_SHARE",
              help="Share of documents broken in one of the real ways (malformed, truncated, wrong product line, ...).")
@click.option("--start-id", type=int, default=1, show_default=True, envvar=ENV + "START_ID")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write .xml files into this folder instead of the database.")
@handle_errors
def generate_mock_cmd(db_url: str | None, server: str | None, database: str | None, username: str | None,
                      contract_path: str | None, count: int, seed: int, faulty_share: float, start_id: int,
                      out_dir: str | None) -> None:
    """Generate realistic documents (sizes, formats, edge cases), deterministically for a seed."""
    from .loading import generate_into_db, generate_into_folder
    if out_dir:
        stats = generate_into_folder(out_dir, count, seed, faulty_share, start_id)
        where = out_dir
    else:
        db = open_db(db_url, server, database, username, contract_path)
        stats = generate_into_db(db, count, seed, faulty_share, start_id)
        where = db.url.display()
        db.close()
    click.echo(f"generated {stats['written']} documents into {where} in {stats['seconds']:.1f}s "
               f"({stats['written'] / max(stats['seconds'], 1e-9):.0f}/s), median {stats['median_kb']:.0f} KB; "
               f"faulty: {stats['faulty']} {json.dumps(stats['faults'])}; skipped (already present): {stats['skipped']}")


# -- running --------------------------------------------------------------------------------------

def run_options(fn: Callable) -> Callable:
    opts = [
        click.option("--workers", type=int, default=2, show_default=True, envvar=ENV + "WORKERS", show_envvar=True,
                     help="Worker processes (parse, map, insert)."),
        click.option("--batch-size", type=int, default=200, show_default=True, envvar=ENV + "BATCH_SIZE", show_envvar=True,
                     help="Applications per batch (and per transaction)."),
        click.option("--limit", type=int, default=None, envvar=ENV + "LIMIT", show_envvar=True,
                     help="Process at most this many applications in this run."),
        click.option("--instance-id", type=int, default=0, show_default=True, envvar=ENV + "INSTANCE_ID", show_envvar=True),
        click.option("--instance-count", type=int, default=1, show_default=True, envvar=ENV + "INSTANCE_COUNT", show_envvar=True,
                     help="Partition mode: this instance takes app_id % COUNT = ID."),
        click.option("--mode", type=click.Choice(["partition", "queue"]), default="partition", show_default=True,
                     envvar=ENV + "MODE", show_envvar=True, help="queue: claim chunks from a work table with a lease."),
        click.option("--lease-seconds", type=int, default=120, show_default=True, envvar=ENV + "LEASE_SECONDS"),
        click.option("--chunk-size", type=click.IntRange(min=1), default=1000, show_default=True, envvar=ENV + "CHUNK_SIZE",
                     help="Queue mode: app_id range width of one claim."),
        click.option("--app-id-start", type=int, default=None, envvar=ENV + "APP_ID_START"),
        click.option("--app-id-end", type=int, default=None, envvar=ENV + "APP_ID_END"),
        click.option("--retry-failed", is_flag=True, envvar=ENV + "RETRY_FAILED", help="Retry applications whose last attempt failed."),
        click.option("--max-attempts", type=int, default=3, show_default=True, envvar=ENV + "MAX_ATTEMPTS"),
        click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
                     default="INFO", show_default=True, envvar=ENV + "LOG_LEVEL"),
        click.option("--no-progress", is_flag=True, envvar=ENV + "NO_PROGRESS", help="No progress bar."),
        click.option("--logs-dir", default="logs", show_default=True, envvar=ENV + "LOGS_DIR"),
        click.option("--metrics-dir", default="metrics", show_default=True, envvar=ENV + "METRICS_DIR"),
        click.option("--reconnect-seconds", type=float, default=60, show_default=True, envvar=ENV + "RECONNECT_SECONDS",
                     help="How long to keep reconnecting after a lost connection."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return db_options(fn)


@cli.command("run")
@run_options
@handle_errors
def run_cmd(**kw: Any) -> None:
    """Process unprocessed applications (resumable: run the same command again after any stop)."""
    summary = execute_run(kw)
    sys.exit(summary.exit_code)


def execute_run(kw: dict) -> Any:
    from .processing.processor import ProductionProcessor, RunOptions
    url = resolve_url(kw.pop("db_url"), kw.pop("server"), kw.pop("database"), kw.pop("username"))
    progress = not kw.pop("no_progress") and sys.stderr.isatty()
    opts = RunOptions(url=url, progress=progress, log_level=kw.pop("log_level").upper(), **kw)
    bar = None
    if progress:
        total = _pending_count(opts)
        bar = click.progressbar(length=total or 0, label="applications", show_pos=True, show_eta=True, file=sys.stderr)
        bar.__enter__()
    proc = ProductionProcessor(opts, on_progress=(bar.update if bar else None))
    try:
        summary = proc.run()
    finally:
        if bar:
            bar.__exit__(None, None, None)
    print_summary(summary)
    if os.environ.get("XML_EXTRACTOR_LAUNCHED"):
        from .processing.processor import _public
        click.echo("SUMMARY " + json.dumps(_public(summary), default=str))
    return summary


def _pending_count(opts: Any) -> int | None:
    from .contract.loader import load_contract
    from .db.database import Database
    from .processing.selection import ID_MAX, ID_MIN
    if opts.only_ids is not None:
        return len(opts.only_ids)
    try:
        db = Database(opts.url, load_contract(opts.contract_path))
        modulus, rem = (opts.instance_count, opts.instance_id) if opts.mode == "partition" else (1, 0)
        params = [opts.app_id_start if opts.app_id_start is not None else ID_MIN,
                  opts.app_id_end if opts.app_id_end is not None else ID_MAX, modulus, rem]
        if opts.retry_failed:
            n = db.scalar(db.sql("count_retry"), params + [opts.max_attempts])
        else:
            n = db.scalar(db.sql("count_pending"), params)
        db.close()
        return min(int(n), opts.limit) if opts.limit is not None else int(n)
    except Exception:  # noqa: BLE001 - a progress bar is not worth failing for
        return None


def print_summary(s: Any) -> None:
    rows = [["session", s.session_id], ["instance", f"{s.instance_id}/{s.instance_count} ({s.mode})"],
            ["database", s.database], ["contract", s.contract_version], ["selected", s.selected],
            ["success", s.success], ["failed", s.failed], ["skipped (done elsewhere)", s.skipped],
            ["elapsed s", s.elapsed_s], ["apps/minute", s.apps_per_minute]]
    if s.failures_by_stage:
        rows.append(["failures by stage", ", ".join(f"{k}={v}" for k, v in sorted(s.failures_by_stage.items()))])
    if s.worker_restarts:
        rows.append(["worker restarts", s.worker_restarts])
    if s.interrupted:
        rows.append(["interrupted", "yes: run the same command again to resume"])
    if s.stop_reason:
        rows.append(["stopped", s.stop_reason])
    rows += [["log", s.log_file or "-"], ["metrics", s.metrics_file or "-"]]
    click.echo(tabulate(rows, tablefmt="simple"))


def main() -> None:
    # ops_cli registers the operator commands on the package module's group (which, when this
    # file runs as __main__, is not the ``cli`` object defined above in this copy)
    from . import ops_cli
    ops_cli.cli(prog_name="xml-extractor")


if __name__ == "__main__":
    main()
