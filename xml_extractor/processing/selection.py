"""Which applications this instance processes next.

Partition mode: keyset pages (never OFFSET) of this instance's pending rows (``pending_ids``:
never logged, or with an open reprocess request; ``retry_ids`` with ``--retry-failed``).

Queue mode: the id space is cut into fixed chunks ``[k*w, k*w + w - 1]``, claimed through the
database's own row locking with a lease; a dead instance's chunks are taken over when its lease
runs out. The width ``w`` belongs to the queue, not to a run: the run that finds the queue empty
fixes it at its ``--chunk-size`` (seeding its first chunk under the queue lock), every later or
concurrent run adopts it (chunk ids are ``app_id // w``: two widths would name different ranges by
the same id and leave work unclaimed). Each queue run first *prepares* the chunks it has work in,
found by keyset jumps over the work actually present (one index seek per chunk that holds work, so a sparse
range costs what its rows cost): missing chunks are seeded, chunks marked done that hold pending
work again (rows loaded later, a reprocess request, a run cut short by ``--app-id-end``) are
reopened. A chunk is finished only when none of its applications is pending, checked by
``pending_ids`` itself inside the finishing transaction; otherwise it is released for a later
claim. So queue mode supports what partition mode does: ``--retry-failed``, reprocess (an id
list), ``--app-id-start/--app-id-end``, ``--limit`` and rows that arrive later. No claim keeps a
transaction open while documents are processed.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

from ..db.database import Database
from ..hooks import hold
from .context import RunContext
from .partition import ID_MAX, ID_MIN, mine

log = logging.getLogger(__name__)

__all__ = [
    "ID_MAX",
    "ID_MIN",
    "Budget",
    "WorkQueue",
    "keyset_pages",
    "page_ids",
    "partition_batches",
    "queue_batches",
]


def _params(
    ctx: RunContext, after: int, lo: int, hi: int, size: int, everything: bool = False
) -> dict[str, object]:
    modulus, remainder = (1, 0) if everything else (ctx.modulus, ctx.remainder)
    p: dict[str, object] = {
        "after_id": after,
        "id_lo": lo,
        "id_hi": hi,
        "modulus": modulus,
        "remainder": remainder,
        "limit": size,
    }
    if ctx.retry_failed:
        p["max_attempts"] = ctx.max_attempts
    return p


def _read(db: Database, sql: str, params: dict[str, object], in_tx: bool) -> list[tuple]:
    """A read on its own (retried, no transaction left open) or inside the caller's transaction
    (``in_tx``: neither committed nor retried alone, the caller's with_retry redoes the whole)."""
    return (
        db.query(sql, params) if in_tx else db.with_retry(lambda: db.autocommit_query(sql, params))
    )


def page_ids(
    db: Database, ctx: RunContext, after: int, lo: int, hi: int, size: int, in_tx: bool = False
) -> list[int]:
    """Up to ``size`` ids of this run's work in [lo, hi] after ``after``, ascending."""
    name = "retry_ids" if ctx.retry_failed else "pending_ids"
    return [int(r[0]) for r in _read(db, db.sql(name), _params(ctx, after, lo, hi, size), in_tx)]


def _first_work_id(
    db: Database, ctx: RunContext, lo: int, hi: int, in_tx: bool = False
) -> int | None:
    """The lowest id of this run's work in [lo, hi] (ID_MIN itself included)."""
    if lo == ID_MIN:  # 'id > lo - 1' cannot be bound for the lowest 64-bit id: ask for it alone
        if page_ids_between(db, ctx, ID_MIN, ID_MIN, in_tx):
            return ID_MIN
        if hi == ID_MIN:
            return None
        got = page_ids(db, ctx, ID_MIN, ID_MIN, hi, 1, in_tx)
    else:
        got = page_ids(db, ctx, lo - 1, lo, hi, 1, in_tx)
    return got[0] if got else None


def page_ids_between(db: Database, ctx: RunContext, lo: int, hi: int, in_tx: bool = False) -> bool:
    name = "count_retry" if ctx.retry_failed else "count_pending"
    params = _params(ctx, 0, lo, hi, 1)
    params.pop("after_id")
    params.pop("limit")
    return int(_read(db, db.sql(name), params, in_tx)[0][0]) > 0


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


def keyset_pages(
    db: Database,
    ctx: RunContext,
    lo: int,
    hi: int,
    budget: Budget,
    stop: threading.Event,
    only: frozenset[int] | None = None,
) -> Iterator[list[int]]:
    """Pages of this run's work in [lo, hi], each starting after the last id of the one before
    (``only``: restricted to these ids, for reprocess)."""
    if lo > hi:
        return
    if lo > ID_MIN:
        after = lo - 1
    else:  # 'id > lo - 1' cannot be bound for the lowest 64-bit id: ask for that id alone
        after = ID_MIN
        if (
            page_ids_between(db, ctx, ID_MIN, ID_MIN)
            and (only is None or ID_MIN in only)
            and budget.next_size(1) > 0
        ):
            budget.take(1)
            yield [ID_MIN]
    while not stop.is_set() and after < hi:
        size = budget.next_size(ctx.batch_size)
        if size <= 0:
            return
        ids = page_ids(db, ctx, after, lo, hi, size)
        if not ids:
            return
        after = ids[-1]
        if only is not None:
            ids = [i for i in ids if i in only]
            if not ids:
                continue
        budget.take(len(ids))
        yield ids


def partition_batches(
    db: Database, ctx: RunContext, stop: threading.Event
) -> Iterator[tuple[list[int], int | None]]:
    if ctx.only_ids is not None:
        ids = [
            i
            for i in mine(list(ctx.only_ids), ctx.instance_id, ctx.instance_count)
            if ctx.id_lo <= i <= ctx.id_hi
        ][: ctx.limit]
        for i in range(0, len(ids), ctx.batch_size):
            if stop.is_set():
                return
            yield ids[i : i + ctx.batch_size], None
        return
    for ids in keyset_pages(db, ctx, ctx.id_lo, ctx.id_hi, Budget(ctx.limit), stop):
        yield ids, None


def chunk_bounds(app_id: int, width: int) -> tuple[int, int, int]:
    """(chunk_id, lo, hi) of the fixed chunk holding ``app_id`` (clamped to the 64-bit range)."""
    k = app_id // width
    return k, max(ID_MIN, k * width), min(ID_MAX, k * width + width - 1)


SEED_PART = 500  # queue chunks seeded per transaction (WorkQueue.prepare)
WIDEST = (
    ID_MAX + 1
)  # every width from 2**63 on cuts the 64-bit range the same way: [ID_MIN, -1], [0, ID_MAX]


def chunk_width(chunk_id: int, lo: int, hi: int) -> int:
    """The width of the grid a stored chunk belongs to (the inverse of :func:`chunk_bounds`, also
    for a chunk clamped at an end of the 64-bit range)."""
    if lo > ID_MIN and hi < ID_MAX:
        return hi - lo + 1
    if lo > ID_MIN:  # cut at ID_MAX: lo = k*w
        return lo // chunk_id if chunk_id else WIDEST
    if chunk_id != -1:  # cut at ID_MIN: hi = (k+1)*w - 1
        return (hi + 1) // (chunk_id + 1)
    return WIDEST


class WorkQueue:
    """The chunk table: prepare (seed + reopen), claim, renew, finish-or-release."""

    def __init__(self, db: Database, ctx: RunContext) -> None:
        self.db = db
        self.ctx = ctx
        self.width = ctx.chunk_size  # the queue's own width once adopt_width() has run

    def adopt_width(self) -> int:
        """Fix or adopt the queue's chunk width, in one transaction under the queue lock (PostgreSQL
        an advisory lock, SQL Server an application lock, SQLite BEGIN IMMEDIATE), so two runs
        started at once with different ``--chunk-size`` values take turns and the second adopts
        the first's: the width of the chunks already there (the lowest one's), or, in an empty
        queue, this run's, fixed by seeding the chunk of its first pending id. Chunks of another
        width (left by a version that cut the space per run) that nobody holds are removed; their
        work is seeded again at the queue's width. Says once (log and stderr) when the run's
        ``--chunk-size`` is not the queue's."""
        db, ctx = self.db, self.ctx

        def tx() -> tuple[int, int, bool]:
            with db.transaction():
                if "queue_lock" in db.dialect.queries:
                    db.run_batch(db.sql("queue_lock"), {})  # held until commit, or raised
                row = db.query(db.sql("queue_first_chunk"), {"limit": 1})
                if row:
                    width = chunk_width(int(row[0][0]), int(row[0][1]), int(row[0][2]))
                    dropped = self._drop_other_widths(width)
                    fixed_now = False
                else:
                    width, dropped, fixed_now = ctx.chunk_size, 0, True
                    first = (
                        min((i for i in ctx.only_ids if ctx.id_lo <= i <= ctx.id_hi), default=None)
                        if ctx.only_ids is not None
                        else _first_work_id(db, ctx, ctx.id_lo, ctx.id_hi, in_tx=True)
                    )
                    if first is not None:
                        k, lo, hi = chunk_bounds(first, width)
                        db.execute(
                            db.sql("queue_seed"), {"chunk_id": k, "lo": lo, "hi": hi}
                        ).close()
                hold(
                    "queue_width_locked"
                )  # test hook (gated): the lock is held, the width not committed
            return width, dropped, fixed_now

        width, dropped, fixed_now = db.with_retry(tx)
        if dropped:
            self.notice(
                f"work queue: removed {dropped} chunk(s) of another width than {width} (left by an earlier "
                f"version); their pending work is queued again at width {width}"
            )
        if not fixed_now and width != ctx.chunk_size:
            self.notice(
                f"work queue: its chunks are {_width_text(width)} ids wide (fixed by the run that first "
                f"filled it); this run uses that width, not --chunk-size {ctx.chunk_size}"
            )
        self.width = width
        return width

    def _drop_other_widths(self, width: int) -> int:
        """Inside adopt_width's transaction: remove the chunks of another grid than ``width``'s
        that nobody holds; how many were removed."""
        db = self.db
        bounds = {"id_min": ID_MIN, "id_max": ID_MAX, "span": min(width - 1, ID_MAX)}
        n = int(db.query(db.sql("queue_other_width"), bounds)[0][0])
        if n:
            db.execute(db.sql("queue_drop_other_width"), bounds).close()
        for k, lo, hi in db.query(
            db.sql("queue_edge_chunks"), {"id_min": ID_MIN, "id_max": ID_MAX}
        ):
            k, lo, hi = int(k), int(lo), int(hi)
            if chunk_bounds(lo, width) != (k, lo, hi):
                db.execute(db.sql("queue_drop_chunk"), {"chunk_id": k}).close()
                n += 1
        return n

    def notice(self, message: str) -> None:
        """A note the operator should see: the run's log and stderr."""
        log.warning("%s", message)
        print(message, file=sys.stderr, flush=True)

    def work_chunks(self, stop: threading.Event | None = None) -> list[tuple[int, int, int]]:
        """The chunks holding this run's work at the queue's width, by keyset jumps over the work
        present: one query per chunk with work (reprocess: the chunks of its ids)."""
        ctx, w = self.ctx, self.width
        if ctx.only_ids is not None:
            ks = {chunk_bounds(i, w) for i in ctx.only_ids if ctx.id_lo <= i <= ctx.id_hi}
            return sorted(ks)
        out: list[tuple[int, int, int]] = []
        lo = ctx.id_lo
        while lo <= ctx.id_hi and not (stop is not None and stop.is_set()):
            first = _first_work_id(self.db, ctx, lo, ctx.id_hi)
            if first is None:
                break
            out.append(chunk_bounds(first, w))
            if out[-1][2] >= ctx.id_hi:
                break
            lo = out[-1][2] + 1
        return out

    def prepare(self, stop: threading.Event | None = None) -> int:
        """Seed the chunks this run has work in and reopen those of them marked done that still
        hold its work (checked again inside the transaction: another instance may have finished
        the chunk since it was found). One transaction per SEED_PART chunks: seeding is idempotent,
        and one transaction over all of them (11,000 chunks at 11 M ids) would hold every seeded row
        locked until its end, so another instance's claims (SKIP LOCKED / READPAST) would skip them
        all, find nothing free and nothing leased, and end early with work pending."""
        db, ctx = self.db, self.ctx
        self.adopt_width()
        chunks = self.work_chunks(stop)
        seed = db.sql("queue_seed")

        def tx(part: list[tuple[int, int, int]]) -> None:
            with db.transaction():
                cur = db.conn.cursor()
                cur.executemany(
                    seed, [seed.values({"chunk_id": k, "lo": a, "hi": b}) for k, a, b in part]
                )
                for k, lo, hi in db.query(
                    db.sql("queue_done_among"), {"ids": [k for k, _, _ in part]}
                ):
                    lo, hi = max(int(lo), ctx.id_lo), min(int(hi), ctx.id_hi)
                    has_work = (
                        _pending_in(db, lo, hi)
                        if ctx.only_ids is not None
                        else _first_work_id(db, ctx, lo, hi, in_tx=True) is not None
                    )
                    if has_work:
                        cur.execute(*db.sql("queue_reopen").bind({"chunk_id": int(k)}))
                cur.close()

        for i in range(0, len(chunks), SEED_PART):
            part = chunks[i : i + SEED_PART]
            db.with_retry(lambda: tx(part))
        return len(chunks)

    def claim(
        self, after_chunk: int, among: Iterable[int] | None = None
    ) -> tuple[int, int, int] | None:
        """The first free (or lease-expired) unfinished chunk after ``after_chunk`` overlapping
        the run's range, taken with a lease. ``among`` (reprocess: its ids not yet handed out):
        only a chunk holding one of them that is still pending, never another run's chunk."""
        db, ctx = self.db, self.ctx
        params = {
            "owner": ctx.owner,
            "lease_seconds": ctx.lease_seconds,
            "after_chunk": after_chunk,
            "id_lo": ctx.id_lo,
            "id_hi": ctx.id_hi,
        }
        if among is None:
            return db.with_retry(
                lambda: db.claim_chunk(params)
            )  # how a dialect claims: Database.claim_chunk
        for k, lo, hi in self._chunks_of_pending(among):
            if k > after_chunk:
                one = {
                    **params,
                    "after_chunk": k - 1,
                    "id_lo": max(lo, ctx.id_lo),
                    "id_hi": min(hi, ctx.id_hi),
                }
                got = db.with_retry(lambda: db.claim_chunk(one))
                if got is not None:
                    return got
        return None

    def held_elsewhere(self, among: Iterable[int] | None = None) -> int:
        """Unfinished chunks of the run's range under another owner's live lease; with ``among``
        (reprocess) only those holding one of these ids that is still pending: a reprocess beside a
        long queue run waits for the chunks of its own ids, not for the whole run."""
        db, ctx = self.db, self.ctx
        ranges = (
            [(ctx.id_lo, ctx.id_hi)]
            if among is None
            else [
                (max(lo, ctx.id_lo), min(hi, ctx.id_hi))
                for _, lo, hi in self._chunks_of_pending(among)
            ]
        )
        return sum(
            int(
                db.with_retry(
                    lambda: db.autocommit_query(
                        db.sql("queue_held_elsewhere"),
                        {"owner": ctx.owner, "id_lo": lo, "id_hi": hi},
                    )
                )[0][0]
            )
            for lo, hi in ranges
        )

    def _chunks_of_pending(self, ids: Iterable[int]) -> list[tuple[int, int, int]]:
        """The chunks (at the queue's width) of those of ``ids`` that are still pending."""
        db, ctx = self.db, self.ctx
        todo = sorted(i for i in set(ids) if ctx.id_lo <= i <= ctx.id_hi)
        left: list[int] = []
        for i in range(0, len(todo), 500):
            part = todo[i : i + 500]
            left += [
                int(r[0])
                for r in db.with_retry(
                    lambda: db.autocommit_query(db.sql("pending_among"), {"ids": part})
                )
            ]
        return sorted({chunk_bounds(i, self.width) for i in left})

    def renew(self, chunk_ids: list[int]) -> set[int]:
        """Extend the leases of these chunks in one transaction (one lock wait, however many are
        held); returns those that are no longer ours (taken over after an expired lease)."""
        db, ctx = self.db, self.ctx

        def tx() -> set[int]:
            with db.transaction():
                mine: set[int] = set()
                for i in range(0, len(chunk_ids), 500):
                    part = chunk_ids[i : i + 500]
                    db.execute(
                        db.sql("queue_renew"),
                        {"lease_seconds": ctx.lease_seconds, "ids": part, "owner": ctx.owner},
                    ).close()
                    mine |= {
                        int(r[0])
                        for r in db.query(
                            db.sql("queue_held_by"), {"ids": part, "owner": ctx.owner}
                        )
                    }
            return set(chunk_ids) - mine

        return db.with_retry(tx) if chunk_ids else set()

    def finish(self, chunk_id: int) -> bool:
        """Mark the chunk done if none of its applications is pending (asked with ``pending_ids``
        inside the same transaction); otherwise release it. True when it was marked done."""
        db, ctx = self.db, self.ctx

        def tx() -> bool:
            with db.transaction():
                row = db.query(
                    db.sql("queue_bounds_of"), {"chunk_id": chunk_id, "owner": ctx.owner}
                )
                if not row:
                    return False  # not ours any more
                lo, hi = int(row[0][0]), int(row[0][1])
                left = _pending_in(db, lo, hi)
                db.execute(
                    db.sql("queue_release_one" if left else "queue_done"),
                    {"chunk_id": chunk_id, "owner": ctx.owner},
                ).close()
                return not left

        done = db.with_retry(tx)
        if not done:
            log.info("chunk %d still holds pending applications: released, not finished", chunk_id)
        else:
            log.debug("finished chunk %d", chunk_id)
        return done

    def release_all(self) -> None:
        """On any stop, hand unfinished claims back at once instead of waiting for the lease."""
        db = self.db

        def tx() -> None:
            with db.transaction():
                db.execute(db.sql("queue_release"), {"owner": self.ctx.owner}).close()

        db.with_retry(tx)


def _width_text(width: int) -> str:
    return "2**63 or more" if width >= WIDEST else str(width)


def _pending_in(db: Database, lo: int, hi: int) -> bool:
    """Whether any application in [lo, hi] is pending, whatever instance or run it belongs to
    (the one definition: ``pending_ids`` with modulus 1)."""
    if lo == ID_MIN:
        params = {"id_lo": lo, "id_hi": lo, "modulus": 1, "remainder": 0}
        if int(db.query(db.sql("count_pending"), params)[0][0]):
            return True
        lo_after = lo
    else:
        lo_after = lo - 1
    return bool(
        db.query(
            db.sql("pending_ids"),
            {
                "after_id": lo_after,
                "id_lo": lo,
                "id_hi": hi,
                "modulus": 1,
                "remainder": 0,
                "limit": 1,
            },
        )
    )


def queue_batches(
    db: Database,
    ctx: RunContext,
    stop: threading.Event,
    chunk_claimed: Callable[[int], None],
    chunk_exhausted: Callable[[int], None],
    lost: Callable[[int], bool] = lambda cid: False,
) -> Iterator[tuple[list[int], int | None]]:
    """Yield batches chunk by chunk. ``chunk_claimed`` is called when a chunk is taken (from then on
    the coordinator renews its lease), ``chunk_exhausted`` when all its work was handed out (the
    coordinator finishes it once its batches are committed). Passes over the chunks repeat while
    other owners hold chunks of the range, or while the last pass found work (what it released
    may hold rows that arrived meanwhile)."""
    wq = WorkQueue(db, ctx)
    wq.prepare(stop)
    budget = Budget(ctx.limit)
    only = frozenset(ctx.only_ids) if ctx.only_ids is not None else None
    seen: set[int] = set()  # a --retry-failed/reprocess run takes each application at most once
    after, found = ID_MIN, False
    waiting_for = 0  # chunks others held when this run last looked (0: it has not waited yet)
    while not stop.is_set() and not budget.exhausted:
        among = None if only is None else only - seen  # reprocess: its own ids, not yet handed out
        claim = wq.claim(after, among)
        if claim is None:
            held = wq.held_elsewhere(among)
            if held:
                # others hold leases: wait, and take over whatever they leave behind when it expires
                if (
                    not waiting_for
                ):  # a stopped instance's chunks wait out their lease: say so, once
                    wq.notice(
                        f"work queue: waiting for {held} chunk(s) other instances hold; a chunk whose "
                        f"instance stopped is taken over when its lease ends (at most --lease-seconds "
                        f"{ctx.lease_seconds} after its last renewal)"
                    )
                elif held != waiting_for:
                    log.info("work queue: waiting for %d chunk(s) other instances hold", held)
                waiting_for = held
                stop.wait(min(5.0, max(0.5, ctx.lease_seconds / 4)))
            elif not found:
                return
            after, found = ID_MIN, False
            continue
        chunk_id, lo, hi = claim
        log.debug("claimed chunk %d [%d, %d]", chunk_id, lo, hi)
        after = chunk_id
        chunk_claimed(chunk_id)
        if only is not None and not any(lo <= i <= hi for i in only):
            chunk_exhausted(chunk_id)
            continue
        for ids in keyset_pages(
            db, ctx, max(lo, ctx.id_lo), min(hi, ctx.id_hi), budget, stop, only
        ):
            if lost(chunk_id):
                break
            if ctx.retry_failed or only is not None:
                ids = [i for i in ids if i not in seen]
                seen.update(ids)
                if not ids:
                    continue
            found = True
            yield ids, chunk_id
        if not stop.is_set():
            chunk_exhausted(chunk_id)  # finished (or released) once its batches are committed
