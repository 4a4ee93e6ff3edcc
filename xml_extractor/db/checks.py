"""Counting and sampling the app_ids a check query returns, without fetching them all.

``reconcile`` asks "how many, and show me ten" of queries that may match millions of rows
(pending applications at the start of a migration). Fetching every id to count it moved
millions of rows to the client (psqlODBC buffers a whole result set); here the count is a
``COUNT(*)`` over the query and the sample a row-limited read of it.
"""
from __future__ import annotations

from .base import Statement
from .database import Database


def count_and_sample(db: Database, name: str, *, sample: int = 10, **identifiers: str) -> tuple[int, list[int]]:
    """(how many rows, the first ``sample`` app_ids in id order) of the named check query, whose
    one column is ``app_id`` and which takes no parameters."""
    d = db.dialect
    body = d.queries[name].template.format(**db.names, **identifiers)
    count = Statement(f"SELECT COUNT(*) FROM ({body}) q", f"{name}:count")
    n = int(db.with_retry(lambda: db.autocommit_query(count, {}))[0][0])
    if not n or sample <= 0:
        return n, []
    first = Statement(f"SELECT {d.top_clause} q.app_id FROM ({body}) q ORDER BY q.app_id {d.limit_clause}",
                      f"{name}:sample")
    rows = db.with_retry(lambda: db.autocommit_query(first, {"limit": sample}))
    return n, [int(r[0]) for r in rows]
