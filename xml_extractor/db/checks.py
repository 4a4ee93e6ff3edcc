"""Counting and sampling the app_ids a check query returns, without fetching them all.

``reconcile`` asks "how many, and show me ten" of queries that may match millions of rows
(pending applications at the start of a migration). Fetching every id to count it moved
millions of rows to the client (psqlODBC buffers a whole result set); here the count is a
``COUNT(*)`` over the query and the sample a row-limited read of it.
"""

from __future__ import annotations

from typing import Any

from .base import Statement
from .database import Database


def count_and_sample(
    db: Database, name: str, identifiers: dict[str, str] | None = None, sample: int = 10
) -> tuple[int, list[int]]:
    """(how many rows, the first ``sample`` app_ids in id order) of the named check query, whose
    one column is ``app_id`` and which takes no parameters."""
    count, first = check_statements(db, name, identifiers)
    n = int(db.with_retry(lambda: db.autocommit_query(count, {}))[0][0])
    if not n or sample <= 0:
        return n, []
    rows = db.with_retry(lambda: db.autocommit_query(first, {"limit": sample}))
    return n, [int(r[0]) for r in rows]


def check_statements(
    db: Database, name: str, identifiers: dict[str, str] | None = None
) -> tuple[Statement, Statement]:
    """The count and the first-rows statements over a check query (tests/test_sql_dialects.py
    parses them for every dialect)."""
    d = db.dialect
    body = d.queries[name].template.format(**db.names, **(identifiers or {}))
    count = Statement(f"SELECT COUNT(*) FROM ({body}) q", f"{name}:count")
    first = Statement(
        f"SELECT {d.top_clause} q.app_id FROM ({body}) q ORDER BY q.app_id {d.limit_clause}",
        f"{name}:sample",
    )
    return count, first


def filled_count_sql(db: Database, columns: list[str]) -> str:
    """An expression counting how many of these (contract) columns are not NULL in a row."""
    q = db.dialect.quote
    return " + ".join(f"CASE WHEN {q(c)} IS NULL THEN 0 ELSE 1 END" for c in columns)


def sparse_rows(
    db: Database, table: str, columns: list[str], sample: int | None
) -> tuple[int, int]:
    """(rows read, rows with at most one of ``columns`` filled) of a target table; ``sample``
    bounds the read to the first rows the table yields (None: the whole table)."""
    ids = {
        "table": db.table(table),
        "filled": filled_count_sql(db, columns),
        "cols": ", ".join(db.dialect.quote(c) for c in columns),
    }
    if sample:
        rows = db.autocommit_query(db.sql("quality_sparse_sample", **ids), {"limit": sample})
    else:
        rows = db.autocommit_query(
            db.sql("quality_sparse", table=ids["table"], filled=ids["filled"]), {}
        )
    total, few = rows[0]
    return int(total or 0), int(few or 0)


def default_rows(
    db: Database, table: str, column: str, value: object, sample: int | None
) -> tuple[int, int]:
    """(rows read, rows holding ``value`` in ``column``), bounded like :func:`sparse_rows`."""
    ids = {"table": db.table(table), "col": db.dialect.quote(column)}
    if sample:
        rows = db.autocommit_query(
            db.sql("quality_default_rows_sample", **ids), {"value": value, "limit": sample}
        )
    else:
        rows = db.autocommit_query(db.sql("quality_default_rows", **ids), {"value": value})
    total, hits = rows[0]
    return int(total or 0), int(hits or 0)


_EXPLAIN = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN (FORMAT JSON) "}


def explain(
    db: Database, name: str, params: dict | None = None, identifiers: dict[str, str] | None = None
) -> Any:
    """The engine's plan of a named query: SQLite's EXPLAIN QUERY PLAN lines (``detail`` column),
    PostgreSQL's JSON plan tree (for tests/test_ops_scale.py and for an operator's curiosity)."""
    stmt = db.sql(name, **(identifiers or {}))
    known = dict(params or {})
    text, values = stmt.bind({k: known.get(k) for k in stmt.params})
    rows = db.autocommit_query(_EXPLAIN[db.dialect.name] + text, values)
    if db.dialect.name == "sqlite":
        return [str(r[3]) for r in rows]
    import json

    doc = rows[0][0]
    return json.loads(doc)[0]["Plan"] if isinstance(doc, str) else doc[0]["Plan"]
