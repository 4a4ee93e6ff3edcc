"""Every statement the tool can emit, for every dialect, parsed by a real SQL parser.

No SQL Server runs here, so a statement that is wrong only in T-SQL would first fail on a
customer's server. sqlglot (a test-only dependency) parses each statement with the dialect's own
grammar: the DDL and seed INSERTs that ``init-db --print`` emits, the ALTERs schema evolution may
apply (for every column), the bulk INSERTs of every target table, statistics refreshes, every
named query after template substitution, and reconcile's count/sample wrappers of its checks. sqlglot's parsers
are lenient (its T-SQL parser reads LIMIT and ``||`` and converts them), so each statement is also
tokenized with the dialect's tokenizer and syntax the dialect does not have is refused by name.

Every query name the code uses must resolve for every dialect (or for exactly the dialects listed
in DIALECT_SPECIFIC), and every defined query must be used somewhere.
"""

from __future__ import annotations

import ast
import re
import string
from functools import cache
from pathlib import Path
from typing import Any

import pytest

sqlglot = pytest.importorskip("sqlglot")
from click.testing import CliRunner  # noqa: E402
from sqlglot.errors import ErrorLevel  # noqa: E402
from sqlglot.tokens import TokenType  # noqa: E402

from xml_extractor.cli import cli  # noqa: E402
from xml_extractor.contract.loader import load_contract  # noqa: E402
from xml_extractor.db.base import Statement, load_fragments, load_queries  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mssql": "tsql"}
URLS = {
    "sqlite": "sqlite:///unused.db",
    "postgresql": "postgresql://u@h/db",
    "mssql": "mssql://h/db",
}

# Queries that exist only where the code asks for them by dialect (selection.py's claim, worker.py's
# head-only fetch, statistics of the engines that keep them).
# Everything else must exist for every dialect, or say otherwise with a "-- dialects:" line.
DIALECT_SPECIFIC = {
    "queue_pick": {"sqlite"},
    "queue_take": {"sqlite"},
    "queue_claim": {"postgresql", "mssql"},
    "fetch_heads": {"postgresql", "mssql"},
    "stats_log_rows": {"sqlite", "postgresql"},
    # SQL Server reads its source column's type and fetches an nvarchar column's text (db/mssql.py)
    "source_column_type": {"mssql"},
    "fetch_heads_text": {"mssql"},
    "fetch_documents_text": {"mssql"},
    # SQLite fetches whole documents as their stored bytes (Database.fetch_documents stored=True)
    "fetch_documents_stored": {"sqlite"},
}

# Syntax a dialect does not have, found by the dialect's own tokenizer: (token type, or a word
# compared with the token's text, why). sqlglot would otherwise parse (and silently translate) it.
FOREIGN: dict[str, list[tuple[Any, str]]] = {
    "mssql": [
        ("LIMIT", "LIMIT (T-SQL has TOP)"),
        ("RETURNING", "RETURNING (T-SQL has OUTPUT)"),
        (TokenType.DCOLON, ":: cast"),
        (TokenType.DPIPE, "|| concatenation (T-SQL has +)"),
        ("CONFLICT", "ON CONFLICT"),
        ("ILIKE", "ILIKE"),
        ("SKIP", "SKIP LOCKED (T-SQL has READPAST)"),
        ("IGNORE", "INSERT OR IGNORE"),
    ],
    "postgresql": [
        ("TOP", "TOP"),
        ("OUTPUT", "OUTPUT (PostgreSQL has RETURNING)"),
        ("UPDLOCK", "table hints"),
        ("READPAST", "table hints"),
        ("IGNORE", "INSERT OR IGNORE"),
        ("GO", "GO batch separator"),
    ],
    "sqlite": [
        ("TOP", "TOP"),
        ("OUTPUT", "OUTPUT"),
        ("UPDLOCK", "table hints"),
        (TokenType.DCOLON, ":: cast"),
        ("SKIP", "SKIP LOCKED"),
        ("GO", "GO batch separator"),
    ],
}


@cache
def contract() -> Any:
    return load_contract()


@cache
def database(dialect: str) -> Database:
    return Database(URLS[dialect], contract(), connect=False)


def defined() -> dict[str, dict[str, Any]]:
    return {d: load_queries(d) for d in DIALECTS}


def preflight_names() -> set[str]:
    """The preflight command's own queries (preflight_*.sql, loaded by xml_extractor.preflight):
    a separate set, not the tool's named queries."""
    try:
        from xml_extractor.preflight import load_preflight_queries
    except ImportError:
        return set()
    return set().union(*(load_preflight_queries(d).keys() for d in DIALECTS))


def used_query_names() -> dict[str, set[str]]:
    """Query names the code uses: the first argument of ``.sql("x")``, and
    any other string constant in the code that names a defined query (names picked indirectly).
    Not: preflight's own queries, nor sqlglot's ``expression.sql("tsql")``."""
    known = set().union(*(q.keys() for q in defined().values()))
    other = preflight_names() | set(DIALECTS.values())
    out: dict[str, set[str]] = {}
    files = [
        *(ROOT / "xml_extractor").rglob("*.py"),
        *(ROOT / "scripts").glob("*.py"),
        *(ROOT / "tests").glob("*.py"),
    ]
    for path in files:
        if path.name == Path(__file__).name:
            continue  # this file names queries in DIALECT_SPECIFIC: not a use
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            name = None
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "sql"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                name = node.args[0].value
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in known
            ):
                name = node.value
            if name is not None and (name in known or name not in other):
                out.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return out


def optional_query_names() -> set[str]:
    """Names the code tests for (``"x" in db.dialect.queries``): a dialect may or may not have them."""
    out = set()
    files = [*(ROOT / "xml_extractor").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if (
                isinstance(node, ast.Compare)
                and len(node.ops) == 1
                and isinstance(node.ops[0], ast.In)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.comparators[0], ast.Attribute)
                and node.comparators[0].attr == "queries"
            ):
                out.add(node.left.value)
    return out


@pytest.mark.slow
def test_every_query_used_by_the_code_resolves_for_every_dialect() -> None:
    queries = defined()
    used = used_query_names()
    optional = optional_query_names()
    assert len(used) >= 20
    problems = []
    for name, where in sorted(used.items()):
        have = {d for d in DIALECTS if name in queries[d]}
        if name in optional and name not in DIALECT_SPECIFIC:
            if not have:
                problems.append(
                    f"{name} (tested for in {', '.join(sorted(where))}) is defined for no dialect"
                )
            continue
        declared = {
            d for q in (queries[x].get(name) for x in DIALECTS) if q is not None for d in q.dialects
        }
        want = DIALECT_SPECIFIC.get(name) or declared or set(DIALECTS)
        if have != want:
            problems.append(
                f"{name} (used in {', '.join(sorted(where))}) is defined for {sorted(have)}, "
                f"expected {sorted(want)}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_defined_query_is_used_and_described() -> None:
    used = used_query_names()
    for dialect, queries in defined().items():
        for name, q in queries.items():
            assert name in used, f"{q.source}: query {name} is defined but no code uses it"
            assert q.description, f"{q.source}: query {name} has no one-line description"


def test_every_fragment_is_used_and_described() -> None:
    """A fragment (a condition written once, e.g. "pending") is described and used by a query."""
    for dialect in DIALECTS:
        templates = " ".join(q.template for q in load_queries(dialect).values())
        for name, f in load_fragments(dialect).items():
            assert f.description, f"{f.source}: fragment {name} has no description"
            assert "{" + name + "}" in templates, f"{f.source}: fragment {name} is used by no query"


def test_a_dialect_file_overrides_only_what_differs() -> None:
    """An override identical to the common definition is a copy that will drift."""
    common = load_queries("common")  # common.sql read twice: no dialect file of that name
    for dialect in DIALECTS:
        for name, q in load_queries(dialect).items():
            if q.source != "common.sql" and name in common:
                assert q.template != common[name].template, f"{q.source} repeats {name} unchanged"


def render_named(dialect: str) -> list[tuple[str, Statement]]:
    """Every named query of the dialect, identifiers substituted exactly as Database.sql does."""
    db = database(dialect)
    out = []
    for name, q in sorted(db.dialect.queries.items()):
        fields = {f for _, f, _, _ in string.Formatter().parse(q.template) if f}
        extra = {f: db.dialect.quote(f) for f in fields - db.names.keys()}
        out.append((f"query {name}", db.sql(name, **extra)))
    return out


def render_init_db(dialect: str) -> list[tuple[str, str]]:
    """``init-db --print --dialect X``: tables, indexes, schemas, the enum seed INSERTs."""
    res = CliRunner().invoke(cli, ["init-db", "--print", "--dialect", dialect])
    assert res.exit_code == 0, res.output
    body = "\n".join(ln for ln in res.output.splitlines() if not ln.startswith("--"))
    sep = "\nGO\n" if dialect == "mssql" else ";\n"
    stmts = [s.strip().rstrip(";").strip() for s in (body + "\n").split(sep)]
    return [(f"init-db statement {i + 1}", s) for i, s in enumerate(stmts) if s and s != "GO"]


class RecordingCursor:
    """Records the statements a dialect's bulk insert sends (no database)."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.fast_executemany = False

    def execute(self, sql: str, params: Any = ()) -> None:
        self.sql.append(sql)

    def executemany(self, sql: str, rows: Any) -> None:
        self.sql.append(sql)


def render_inserts(dialect: str) -> list[tuple[str, str]]:
    """The bulk INSERT of every target table, the log and the event table, and the statistics
    refresh, as the dialect builds them for BatchWriter."""
    from xml_extractor.db.store import EVENT_COLUMNS, LOG_COLUMNS

    db = database(dialect)
    targets = [(db.table(t.name), [c.name for c in t.stored_columns]) for t in contract().tables]
    targets += [(db.names["events"], list(EVENT_COLUMNS)), (db.names["log"], list(LOG_COLUMNS))]
    out = []
    for qtable, cols in targets:
        cur = RecordingCursor()
        db.dialect.insert_rows(cur, qtable, cols, [tuple(range(len(cols)))])
        out += [(f"bulk insert into {qtable}", s) for s in cur.sql]
    out += [
        ("statistics refresh", s)
        for s in db.dialect.refresh_statistics_sql([t for t, _ in targets])
    ]
    return out


def render_migrations(dialect: str) -> list[tuple[str, str]]:
    """What init-db may apply to an existing database (db/migrate.py): ADD and widening ALTERs,
    for every stored column of every table."""
    from xml_extractor.db import migrate

    db = database(dialect)
    out = []
    for t in contract().tables:
        for col in t.stored_columns:
            out.append((f"add column {t.name}.{col.name}", migrate._add_column_sql(db, t, col)))
            out += [
                (f"widen column {t.name}.{col.name}", s) for s in migrate._widen_sql(db, t, col)
            ]
    return out


def render_checks(dialect: str) -> list[tuple[str, str]]:
    """reconcile's count and sample wrappers around each check query (db/checks.py)."""
    from xml_extractor.db.checks import check_statements

    db = database(dialect)
    out = []
    for name, q in sorted(db.dialect.queries.items()):
        if not name.startswith("reconcile_"):
            continue
        fields = {f for _, f, _, _ in string.Formatter().parse(q.template) if f}
        extra = {f: db.dialect.quote(f) for f in fields - db.names.keys()}
        body = sqlglot.parse_one(str(db.sql(name, **extra)), read=DIALECTS[dialect])
        if "app_id" in getattr(body, "named_selects", ()):  # a check: one app_id column
            out += [(f"check {name}", str(s)) for s in check_statements(db, name, extra)]
    return out


def emitted(dialect: str) -> list[tuple[str, str]]:
    return (
        render_init_db(dialect)
        + render_inserts(dialect)
        + render_migrations(dialect)
        + render_checks(dialect)
        + [(w, str(s)) for w, s in render_named(dialect)]
    )


def batch_statements(sql: str) -> list[str]:
    """A T-SQL batch (the applock batches: DECLARE ...; one statement a line, each ending in ;) ->
    its statements; any other text is one statement."""
    if not sql.startswith("DECLARE @"):
        return [sql]
    return [s.strip() for s in sql.split(";\n") if s.strip()]


def check_statement(dialect: str, what: str, sql: str) -> None:
    parts = batch_statements(sql) if dialect == "mssql" else [sql]
    if len(parts) > 1:
        for i, part in enumerate(parts):
            check_statement(dialect, f"{what} (statement {i + 1} of its batch)", part.rstrip(";"))
        return
    read = DIALECTS[dialect]
    try:
        parsed = sqlglot.parse(sql, read=read, error_level=ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        raise AssertionError(f"{dialect} {what} does not parse as {read}: {exc}\n{sql}") from None
    assert len([p for p in parsed if p is not None]) == 1, (
        f"{dialect} {what} is not one statement:\n{sql}"
    )
    tokens = sqlglot.Dialect.get_or_raise(read).tokenize(sql)
    for tok in tokens:
        if tok.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.IDENTIFIER):
            continue
        for bad, why in FOREIGN[dialect]:
            if (tok.text.upper() == bad) if isinstance(bad, str) else (tok.token_type == bad):
                raise AssertionError(
                    f"{dialect} {what} uses {why}, which {dialect} does not have:\n{sql}"
                )
    assert "{" not in sql and "}" not in sql, (
        f"{dialect} {what}: a template placeholder was left:\n{sql}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_every_emitted_statement_parses(dialect: str) -> None:
    statements = emitted(dialect)
    assert len(statements) > 100
    for what, sql in statements:
        check_statement(dialect, what, sql)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_named_queries_take_named_parameters(dialect: str) -> None:
    """Values are named (:name) in every query; none still uses bare ? markers."""
    for what, st in render_named(dialect):
        assert st.params or "?" not in st, f"{dialect} {what} uses positional ? parameters"


def test_seed_literals_are_rendered_by_the_dialect() -> None:
    mssql = dict(render_init_db("mssql"))
    seeds = [s for s in mssql.values() if s.startswith("INSERT INTO [sandbox].[app_enums]")]
    assert len(seeds) == sum(len(v) for v in contract().enums.values())
    assert all("N'" in s and ", '" not in s for s in seeds)
    pg = [
        s
        for s in dict(render_init_db("postgresql")).values()
        if s.startswith('INSERT INTO "sandbox"."app_enums"')
    ]
    assert pg and not any(re.search(r"(?<![\w'])N'", s) for s in pg)
    from xml_extractor.db.database import make_dialect

    assert make_dialect("mssql").literal("O'Brien ü") == "N'O''Brien ü'"
    assert make_dialect("sqlite").literal("O'Brien") == "'O''Brien'"
    assert (
        make_dialect("postgresql").literal(None) == "NULL"
        and make_dialect("postgresql").literal(7) == "7"
    )


def test_statement_binds_by_name() -> None:
    st = Statement(
        "SELECT a FROM t WHERE x = :x AND y::int = :y AND z = ':not_a_param' AND w IN (:ids) AND v = :x",
        "q",
    )
    assert st.params == ("x", "y", "ids", "x")
    assert (
        str(st)
        == "SELECT a FROM t WHERE x = ? AND y::int = ? AND z = ':not_a_param' AND w IN (?) AND v = ?"
    )
    assert st.bind({"x": 1, "y": 2, "ids": [3, 4, 5]}) == (
        "SELECT a FROM t WHERE x = ? AND y::int = ? AND z = ':not_a_param' AND w IN (?, ?, ?) AND v = ?",
        [1, 2, 3, 4, 5, 1],
    )
    with pytest.raises(TypeError, match="missing \\['y'\\]"):
        st.bind({"x": 1, "ids": [1]})
    with pytest.raises(TypeError, match="unexpected \\['q'\\]"):
        st.values({"x": 1, "y": 2, "ids": 3, "q": 4})


@pytest.mark.parametrize(
    "dialect, lock", [("mssql", "sp_getapplock"), ("postgresql", "pg_advisory_xact_lock")]
)
def test_init_db_takes_its_lock_before_any_ddl(
    dialect: str, lock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two init-db at once on a fresh server database: the second waits for the first's lock
    (PostgreSQL is exercised live in test_loading; SQL Server only here)."""
    from types import SimpleNamespace

    from xml_extractor.db import store

    class Cursor(RecordingCursor):
        def close(self) -> None:
            pass

    cur = Cursor()
    db = Database(URLS[dialect], contract(), connect=False)
    monkeypatch.setattr(db, "begin", lambda: cur.sql.append("BEGIN"))
    monkeypatch.setattr(db, "execute", lambda sql, params=None: (cur.sql.append(str(sql)), cur)[1])
    monkeypatch.setattr(db, "query", lambda sql, params=None: [])
    monkeypatch.setattr(db, "commit", lambda: cur.sql.append("COMMIT"))
    monkeypatch.setattr(db, "conn", SimpleNamespace(cursor=lambda: cur))
    store.init_db(db)
    assert cur.sql[0] == "BEGIN" and lock in cur.sql[1], cur.sql[:2]
    assert cur.sql[-1] == "COMMIT" and sum(lock in s for s in cur.sql) == 1
    assert any(s.startswith(("CREATE TABLE", "IF OBJECT_ID")) for s in cur.sql[2:])
    if dialect == "mssql":
        # the lock batch opens (or joins) the transaction before the applock, and a negative return
        # code raises (severity 16): a Transaction-owned applock outside a transaction is -999 and nothing
        batch = batch_statements(cur.sql[1])
        applock = next(i for i, s in enumerate(batch) if "sp_getapplock" in s)
        assert (
            batch[applock].startswith("EXEC @r = sp_getapplock")
            and "@LockOwner = 'Transaction'" in batch[applock]
        )
        assert "IF @@TRANCOUNT = 0 BEGIN TRANSACTION" in batch[:applock]
        assert (
            "IF @@TRANCOUNT > 1 COMMIT TRANSACTION" in batch[:applock]
        )  # implicit mode: BEGIN opened two levels
        assert re.match(
            r"IF @r < 0 RAISERROR\(N'lock request time out: .*', 16, 1, @r\)$", batch[applock + 1]
        )
