"""Disputed con_ids: which applications claimed a con_id another application holds, and who kept it.

The rule is "first to commit": a con_id belongs to the application whose rows committed first;
every later application carrying it fails at ``insert`` (``KeyCollision``, naming the owner) and
nothing of it is written. Which one commits first depends on timing (workers, instances, engine),
so ``failures`` lists every disputed pair for a person to decide on (fix a document, then
``reprocess`` the application that should own it after the other).
"""

from __future__ import annotations

from typing import Any


def disputed(db: Any) -> list[dict]:
    """Every (con_id, application refused for it) with the application holding the con_id now
    (None when none does: the owner was reprocessed without it), oldest dispute first."""
    out: list[dict] = []
    for table, key in _keyed_tables(db):
        sql = db.sql("disputed_keys", key_col=db.dialect.quote(key), contact_table=db.table(table))
        rows = db.with_retry(
            lambda sql=sql, table=table: db.autocommit_query(sql, {"table_name": table})
        )
        out += [
            {
                "table": table,
                key: raw,
                "refused_app_id": int(app),
                "first_refused_at": at,
                "kept_by": None if owner is None else int(owner),
            }
            for raw, app, at, owner in rows
        ]
    return out


def _keyed_tables(db: Any) -> list[tuple[str, str]]:
    """The tables whose single key can collide across applications (store.py's cross_app_keys),
    of every member of a contract set."""
    seen: dict[str, str] = {}
    for t in db.contract.tables:
        if t.app_id_column not in t.primary_key and len(t.primary_key) == 1:
            seen.setdefault(t.name, t.primary_key[0])
    return [(t, k) for t, k in seen.items() if k == "con_id"]
