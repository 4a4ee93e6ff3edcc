"""Every named query of every query set (the main set, preflight's, report's, the test harness's) EXECUTED on each real
engine, not only parsed (tests/test_sql_dialects.py parses them with sqlglot): one item per query
and engine, run with plausible values inside a transaction that is rolled back afterwards, on one
database per engine that ``init-db``, ``generate-mock`` and ``run`` filled (tables exist and hold
rows). On SQL Server (XML_EXTRACTOR_TEST_MSSQL) this is the first time the T-SQL meets a server.

Accepted: the server ran it, or refused the values (a constraint violation, typed RowsRefused by the
dialect's wrap, as Database.with_retry types it). Anything else (syntax, unknown object or column,
wrong parameter count) fails naming the query and the error.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import cli, open_db

from xml_extractor.db.base import NamedQuery, Statement, _load_sections
from xml_extractor.db.checks import filled_count_sql
from xml_extractor.db.store import LOG_COLUMNS, utcnow
from xml_extractor.errors import RowsRefused
from xml_extractor.processing.partition import ID_MAX, ID_MIN

DIALECTS = ("sqlite", "postgresql", "mssql")
SETS = {
    "": "main",
    "preflight_": "preflight",
    "report_": "report",
    "testing_": "testing",
}  # file prefix -> query set
PACKAGES = {"testing_": "xml_extractor.testing"}  # whose sql/ folder (else xml_extractor.db)


def _all_queries() -> dict[str, dict[str, dict[str, NamedQuery]]]:
    """set -> dialect -> name -> query, read from the SQL files (no database)."""
    return {
        s: {d: _load_sections(d, "name", p, PACKAGES.get(p, "xml_extractor.db")) for d in DIALECTS}
        for p, s in SETS.items()
    }


QUERIES = _all_queries()
CASES = [
    (s, n) for s in SETS.values() for n in sorted({n for d in DIALECTS for n in QUERIES[s][d]})
]
assert len({n for _, n in CASES}) == len(CASES), "a query name in two sets: the ids would collide"

# Why a query is defined on some engines only (the skip reason on the others).
ONLY_ON = {
    "queue_pick": "queue_pick is SQLite's; the server dialects claim in one statement (queue_claim)",
    "queue_take": "queue_take is SQLite's; the server dialects claim in one statement (queue_claim)",
    "queue_claim": "queue_claim is the server dialects'; SQLite picks and takes inside BEGIN IMMEDIATE (queue_pick, queue_take)",
    "queue_lock": "SQLite serialises queue writers with BEGIN IMMEDIATE (no named lock)",
    "init_lock": "SQLite serialises init-db with BEGIN IMMEDIATE (no named lock)",
    "fetch_heads": "SQLite reads whole documents (fetch_documents); the server dialects send heads",
    "fetch_heads_text": "SQL Server's read of an nvarchar source column",
    "fetch_documents_text": "SQL Server's read of an nvarchar source column",
    "fetch_documents_stored": "SQLite's read of whole documents as stored bytes; the server dialects send heads",
    "source_column_type": "SQL Server reads its source column's type to pick the fetch (Database.source_kind)",
    "schema_index_columns": "SQL Server's catalogue read for schema widening (migrate.mssql_table_facts)",
    "schema_foreign_keys": "SQL Server's catalogue read for schema widening (migrate.mssql_table_facts)",
    "pf_encoding": "SQLite's text encoding check; the servers report theirs through pf_collation",
    "pf_ci_keys": "SQL Server's case-insensitive key check",
    "pf_rcsi": "SQL Server's read-committed-snapshot check",
    "pf_volume": "SQL Server's volume-space check",
    "pf_nondeterministic": "PostgreSQL's nondeterministic-collation check",
}
_FILE = "SQLite's preflight reads the file itself (os.access, disk usage)"
ONLY_ON.update(
    {
        "pf_connection": "a server connection's TLS and transport; SQLite is a file",
        "pf_database_permissions": _FILE,
        "pf_table_permissions": _FILE,
        "pf_space": _FILE,
        "pf_lock": "the servers' named lock (advisory lock, sp_getapplock); SQLite serialises with BEGIN IMMEDIATE",
        "pf_collation": "the servers' encoding and collation; SQLite's is pf_encoding (always BINARY)",
        "pf_source_rows": "the servers' catalogue row estimate; SQLite counts (pf_source_count)",
    }
)
_SYNTH = "synthetic operator-scale data (testing/synthetic.py: scripts/ops_bench.py) is built on SQLite and PostgreSQL only"
_STATS = (
    "the planner's belief of the log's size, for the engines the tool refreshes statistics on (db/statistics.py); "
    "SQL Server keeps its statistics itself"
)


def _reason(name: str, engine: str) -> str:
    if name in ONLY_ON:
        return f"{ONLY_ON[name]} (not defined for {engine})"
    if name.startswith("synth_"):
        return _SYNTH
    if name == "stats_log_rows":
        return _STATS + f" (not defined for {engine})"
    return f"{name} is not defined for {engine}"


SNAPSHOT: dict[str, dict[str, int]] = {}  # engine -> table -> rows, as the fixture left them


def _row_counts(db: Any) -> dict[str, int]:
    n = db.names
    tables = [db.table(t.name) for t in db.contract.tables] + [
        n[k]
        for k in ("src", "log", "events", "log_history", "queue", "progress", "requests", "enums")
    ]
    return {t: int(db.autocommit_query(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in tables}


@pytest.fixture(scope="module")
def live(module_db_url: str) -> Iterator[Any]:
    """One database per engine for the module: initialised, 30 mock applications (a fifth faulty)
    processed by a queue-mode run, three of them reprocessed: every table the queries read holds rows."""
    url = module_db_url
    cli("init-db", "--db", url, check=True)
    cli(
        "generate-mock",
        "--db",
        url,
        "--count",
        "30",
        "--faulty-share",
        "0.2",
        "--seed",
        "7",
        check=True,
    )
    # queue mode: the work queue holds chunks too (on an empty table a server never meets a value it
    # cannot convert: SQL Server raises those per row)
    p = cli(
        "run",
        "--db",
        url,
        "--workers",
        "1",
        "--no-progress",
        "--mode",
        "queue",
        "--chunk-size",
        "10",
    )
    assert p.returncode in (0, 1), p.stderr  # 1: some documents failed (the faulty share)
    # replaced attempts: processing_log_history holds rows
    p = cli("reprocess", "1", "2", "3", "--db", url, "--workers", "1", "--no-progress")
    assert p.returncode in (0, 1), p.stderr
    db = open_db(url)
    try:
        rows = SNAPSHOT[db.dialect.name] = _row_counts(db)
        n = db.names
        assert rows[n["src"]] == 30 and rows[n["log"]] >= 30 and rows[n["queue"]] > 0, rows
        assert rows[n["log_history"]] > 0 and rows[n["events"]] > 0 and rows[n["progress"]] > 0, (
            rows
        )
        yield db
    finally:
        db.close()


def _values(db: Any) -> dict[str, Any]:
    """A plausible value for every parameter name the SQL files use, of the type the code binds."""
    c = db.contract
    now = utcnow()  # naive UTC, as store/reprocess/ops bind it
    end = "</CustData>"  # the contract's scope end tag, as Database.fetch_documents binds it
    return {
        # ids, ranges, counts (ints)
        "app_id": 1,
        "ids": [1, 2, 3],
        "after_id": 0,
        "id_lo": 0,
        "id_hi": 1000,
        "lo": 1,
        "hi": 100,
        "modulus": 1,
        "remainder": 0,
        "max_attempts": 3,
        "point": 0,
        "first_id": 0,
        "limit": 10,
        "id_min": ID_MIN,
        "id_max": ID_MAX,
        "span": 999,  # selection.py's queue bounds (width 1000)
        "after_chunk": 0,
        "chunk_id": 1,
        "lease_seconds": 60,
        "count": 5,
        "apps": 5,
        "applications": 5,
        "span_ms": 60_000,
        "doc_bytes": 10,
        "head": 64,
        "success": 1,
        "failed": 1,
        "instance_id": 0,
        "instance_count": 1,
        "worker_pid": 123,
        "keys": [1, 2],  # contact_owners: app_contact_base.con_id values (bigint)
        "marker": end,
        "marker_bytes": len(end.encode()),
        "marker_chars": len(end.encode("utf-16-le")) // 2,
        # times
        "now": now,
        "since": now - _dt.timedelta(days=1),
        "receive_date": _dt.datetime(2024, 1, 15),
        # text
        "owner": "test-owner",
        "session_id": "live-test",
        "command": "reprocess",
        "stage": "parse",
        "event_type": "x",
        "column_name": "x",
        "table_name": c.tables[0].name,
        "value": "PR",
        "contract_name": c.name,
        "contract_version": c.version_tag,
        "index": "ix_none",
        "schema": c.target_schema,
        "table": c.source_table,
        "column": c.source_xml_column,
        "qsource": db.names["src"],
        "qtable": db.names["src"],
        "xml": db.source_value(
            "<x/>"
        ),  # as load-xml binds it (SQL Server: bytes for a varchar column)
    }


def _identifiers(db: Any, name: str) -> dict[str, str]:
    """The extra ``{braces}`` beyond Database.names, filled as the code fills them."""
    c, q = db.contract, db.dialect.quote
    base = c.tables[0]
    leaf = c.tables[-1]  # no table references it: deleting its rows is not refused by a foreign key
    cols = [col.name for col in base.columns][:3]
    text_col = next(
        col.name for col in base.columns if col.type == "string"
    )  # compared with a string value
    out = {
        "table": db.table(leaf.name),
        "app_col": q(leaf.app_id_column),  # store/reprocess/bench/ops: a target table
        "base": db.table(base.name),
        "base_key": q(base.app_id_column),  # ops.py, synthetic.py
        "child": db.table("app_operational_cc"),
        "contact": db.table("app_contact_base"),  # synthetic.build
        "address": db.table("app_contact_address"),
        "scores": db.table("scores"),
    }
    if name.startswith("quality_"):  # db/checks.py: a target table and some of its columns
        out.update(
            table=db.table(base.name),
            col=q(text_col),
            filled=filled_count_sql(db, cols),
            cols=", ".join(q(x) for x in cols),
        )
    if name == "log_to_history":  # store.py: the log's own columns
        out["cols"] = ", ".join(q(x) for x in ("log_id",) + LOG_COLUMNS)
    if name in (
        "contact_owners",
        "disputed_keys",
    ):  # store.py, disputes.py: a table whose single key can collide across applications
        t = next(
            t for t in c.tables if t.app_id_column not in t.primary_key and len(t.primary_key) == 1
        )
        out.update(key_col=q(t.primary_key[0]), contact_table=db.table(t.name))
    return out


# Per query: parameter values that differ from the table above (as the code binds them).
OVERRIDES: dict[str, dict[str, Any]] = {
    "stats_log_rows": {"table": "{log_table}"},  # statistics.planner_rows: the log table
}
# synthetic.build's order: each synth_* query reads what the ones before it wrote (synth_numbers'
# table synth_n first of all), into an initialised, EMPTY database.
SYNTH_ORDER = (
    "synth_numbers",
    "synth_source",
    "synth_log",
    "synth_log_retry",
    "synth_base",
    "synth_one_to_one",
    "synth_contact",
    "synth_address",
    "synth_scores",
    "synth_events",
    "synth_progress",
    "synth_drop",
)


def _setup(db: Any, name: str) -> list[str]:
    """What the code (or the test that owns the query) has done before the query runs, run first in
    the same rolled-back transaction."""
    if name == "stats_log_rows" and db.dialect.name == "sqlite":
        return [
            "ANALYZE"
        ]  # sqlite_stat1 exists once the statistics were refreshed (statistics.refresh)
    if (
        name == "test_campaign_columns"
    ):  # tests/test_schema_evolution.py: a contract version added the column
        return [f"ALTER TABLE {db.table(db.contract.tables[0].name)} ADD campaign_code VARCHAR(20)"]
    if (
        name in SYNTH_ORDER
    ):  # synthetic.build fills an empty database (bench.empty_targets' order, then the rest)
        n = db.names
        tables = [db.table(t.name) for t in reversed(db.contract.tables)] + [
            n[k] for k in ("events", "log", "log_history", "queue", "progress", "requests", "src")
        ]
        return [f"DELETE FROM {t}" for t in tables]
    return []


def _statement(db: Any, qset: str, query: NamedQuery) -> Statement:
    names = dict(db.names)
    if qset == "report":  # report.py: the dialect's fragments ({minute}) beside Database.names
        names.update(
            {
                k: f.template
                for k, f in _load_sections(db.dialect.name, "fragment", "report_").items()
            }
        )
    return Statement(query.template.format(**names, **_identifiers(db, query.name)), query.name)


def _params(db: Any, name: str, stmt: Statement) -> dict[str, Any]:
    values = _values(db)
    values.update(
        {
            k: db.contract.log_table if v == "{log_table}" else v
            for k, v in OVERRIDES.get(name, {}).items()
        }
    )
    if name in SYNTH_ORDER:  # synthetic.build binds its end time as text
        values["now"] = values["now"].isoformat(sep=" ", timespec="milliseconds")
    return {p: values[p] for p in dict.fromkeys(stmt.params)}


def _run(db: Any, stmt: Statement, params: dict[str, Any]) -> None:
    """Execute and read every result set (Database.run_batch's way: an error of a later statement
    of a T-SQL batch reaches pyodbc only when the results before it are consumed)."""
    cur = db.execute(stmt, params)
    try:
        while True:
            if cur.description is not None:
                cur.fetchall()
            nextset = getattr(cur, "nextset", None)
            if nextset is None or not nextset():
                break
    finally:
        cur.close()


@pytest.mark.slow
@pytest.mark.parametrize("qset,name", CASES, ids=[n for _, n in CASES])
def test_query_runs(live: Any, qset: str, name: str) -> None:
    """The server runs the query (or refuses only its values); rolled back, the database stays."""
    db = live
    engine = db.dialect.name
    queries = QUERIES[qset][engine]
    if name not in queries:
        pytest.skip(_reason(name, engine))
    # statements and values first: binding a source value may read the catalogue (SQL Server's
    # source_kind, an autocommit read) and must not commit inside the transaction below
    chain = SYNTH_ORDER[: SYNTH_ORDER.index(name) + 1] if name in SYNTH_ORDER else (name,)
    steps = [(n, s, _params(db, n, s)) for n in chain for s in [_statement(db, qset, queries[n])]]
    current = "(setup)"
    db.begin()
    try:
        for sql in _setup(db, name):
            db.execute(sql).close()
        for current, stmt, params in steps:
            _run(db, stmt, params)
    except Exception as exc:
        err = db.dialect.wrap(exc)
        if not isinstance(err, RowsRefused):
            where = "" if current == name else f" (while running {current} before it)"
            pytest.fail(
                f"{name} on {engine}{where}: {type(err).__name__}: {err}\n{queries[current].template if current in queries else ''}",
                pytrace=False,
            )
    finally:
        db.rollback()


def test_rolled_back(live: Any) -> None:
    """Every item above rolled back: each table holds the rows the fixture left (runs after them)."""
    assert _row_counts(live) == SNAPSHOT[live.dialect.name]
