"""Which applications this instance processes next.

Partition mode: keyset pages (never OFFSET) of unprocessed rows with ``app_id % N = I``.
Queue mode: chunks of the app_id range are claimed from a work table through the database's own
row locking, with a lease; a dead instance's chunks are taken over when the lease runs out. No
claim keeps a transaction open while documents are processed.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Iterator

from ..db.database import Database

log = logging.getLogger(__name__)

ID_MIN, ID_MAX = -(2 ** 31) + 1, 2 ** 31 - 1


@dataclass
class SelectionSpec:
    batch_size: int
    limit: int | None
    instance_id: int
    instance_count: int
    id_lo: int = ID_MIN
    id_hi: int = ID_MAX
    retry_failed: bool = False
    max_attempts: int = 3
    mode: str = "partition"
    lease_seconds: int = 120
    chunk_size: int = 1000
    owner: str = ""
    only_ids: list[int] | None = None  # reprocess: exactly these applications


def page_ids(db: Database, spec: SelectionSpec, after: int, lo: int, hi: int, size: int) -> list[int]:
    modulus, remainder = (spec.instance_count, spec.instance_id) if spec.mode == "partition" else (1, 0)
    params = {"after_id": after, "id_lo": lo, "id_hi": hi, "modulus": modulus, "remainder": remainder, "limit": size}
    if spec.retry_failed:
        name, params = "retry_ids", {**params, "max_attempts": spec.max_attempts}
    else:
        name = "pending_ids"
    return [int(r[0]) for r in db.with_retry(lambda: db.autocommit_query(db.sql(name), params))]


class Budget:
    """How many applications this run may still take (``--limit``); None = no limit."""

    def __init__(self, limit: int | None) -> None:
        self.remaining = limit

    def next_size(self, batch_size: int) -> int:
        return batch_size if self.remaining is None else min(batch_size, self.remaining)

    def take(self, n: int) -> None:
        if self.remaining is not None:
            self.remaining -= n

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


def keyset_pages(db: Database, spec: SelectionSpec, lo: int, hi: int, budget: Budget,
                 stop: threading.Event) -> Iterator[list[int]]:
    """Pages of pending ids in [lo, hi], each starting after the last id of the one before."""
    after = lo - 1
    while not stop.is_set():
        size = budget.next_size(spec.batch_size)
        if size <= 0:
            return
        ids = page_ids(db, spec, after, lo, hi, size)
        if not ids:
            return
        after = ids[-1]
        budget.take(len(ids))
        yield ids


def partition_batches(db: Database, spec: SelectionSpec, stop: threading.Event) -> Iterator[tuple[list[int], int | None]]:
    if spec.only_ids is not None:
        mine = [i for i in sorted(set(spec.only_ids)) if i % spec.instance_count == spec.instance_id][:spec.limit]
        for i in range(0, len(mine), spec.batch_size):
            if stop.is_set():
                return
            yield mine[i:i + spec.batch_size], None
        return
    for ids in keyset_pages(db, spec, spec.id_lo, spec.id_hi, Budget(spec.limit), stop):
        yield ids, None


class WorkQueue:
    """The chunk table: seed, claim, renew, finish."""

    def __init__(self, db: Database, spec: SelectionSpec) -> None:
        self.db = db
        self.spec = spec

    def seed(self) -> int:
        db, spec = self.db, self.spec
        lo, hi = db.with_retry(lambda: db.autocommit_query(db.sql("queue_bounds"), {"id_lo": spec.id_lo, "id_hi": spec.id_hi}))[0]
        if lo is None:
            return 0
        lo, hi = int(lo), int(hi)
        w = spec.chunk_size
        rows = []
        for k in range(lo // w, hi // w + 1):
            rows.append((k, max(k * w, spec.id_lo), min(k * w + w - 1, spec.id_hi)))
        sql = db.sql("queue_seed")

        def tx() -> None:
            db.begin()
            cur = db.conn.cursor()
            for i in range(0, len(rows), 500):
                part = rows[i:i + 500]
                cur.executemany(sql, [sql.values({"chunk_id": k, "lo": a, "hi": b}) for k, a, b in part])
            cur.close()
            db.commit()
        db.with_retry(tx)
        return len(rows)

    def claim(self) -> tuple[int, int, int] | None:
        db, spec = self.db, self.spec

        def tx() -> tuple[int, int, int] | None:
            if db.dialect.name == "sqlite":
                db.begin()  # BEGIN IMMEDIATE: a short write lock for pick + take
                row = db.query(db.sql("queue_pick"))
                if row:
                    db.execute(db.sql("queue_take"), {"owner": spec.owner, "lease_seconds": spec.lease_seconds,
                                                      "chunk_id": row[0][0]}).close()
                db.commit()
            else:
                row = db.query(db.sql("queue_claim"), {"owner": spec.owner, "lease_seconds": spec.lease_seconds})
                db.commit()
            return (int(row[0][0]), int(row[0][1]), int(row[0][2])) if row else None
        return db.with_retry(tx)

    def unfinished(self) -> int:
        db = self.db
        return int(db.with_retry(lambda: db.autocommit_query(db.sql("queue_unfinished")))[0][0])

    def _update(self, name: str, params: dict[str, object]) -> None:
        db = self.db

        def tx() -> None:
            db.begin()
            db.execute(db.sql(name), params).close()
            db.commit()
        db.with_retry(tx)

    def renew(self, chunk_id: int) -> None:
        self._update("queue_renew", {"lease_seconds": self.spec.lease_seconds, "chunk_id": chunk_id, "owner": self.spec.owner})

    def finish(self, chunk_id: int) -> None:
        self._update("queue_done", {"chunk_id": chunk_id, "owner": self.spec.owner})

    def release_all(self) -> None:
        """On a clean stop, hand unfinished claims back at once instead of waiting for the lease."""
        self._update("queue_release", {"owner": self.spec.owner})


def queue_batches(db: Database, spec: SelectionSpec, stop: threading.Event, chunk_done: "callable") -> Iterator[tuple[list[int], int | None]]:
    """Yield batches chunk by chunk; ``chunk_done(chunk_id)`` is called when a chunk is fully
    dispatched (the coordinator finishes it once its batches are committed)."""
    wq = WorkQueue(db, spec)
    wq.seed()
    budget = Budget(spec.limit)
    while not stop.is_set() and not budget.exhausted:
        claim = wq.claim()
        if claim is None:
            if wq.unfinished() == 0:
                return
            # others hold leases: wait, and take over whatever they leave behind when it expires
            stop.wait(min(5.0, max(0.5, spec.lease_seconds / 4)))
            continue
        chunk_id, lo, hi = claim
        for ids in keyset_pages(db, spec, lo, hi, budget, stop):
            yield ids, chunk_id
        if not stop.is_set() and not budget.exhausted:
            chunk_done(chunk_id)  # a chunk cut short by --limit stays open and is released at the end
