"""ParallelCoordinator: the run's bookkeeping as one object with no I/O.

It exists so that the accounting of a run (which batch is where, which worker holds what, when a
queue chunk may be finished, what a worker's death means, when the run is over) can be tested
without processes, sleeps or a database. :class:`~.processor.ProductionProcessor` owns the I/O
(selector thread, worker processes, database) and is a thin loop around it, in the way
procrastinate's ``Worker`` is a loop around its ``JobManager``:

    events in  -> ``batch_selected``, ``chunk_claimed``, ``chunk_exhausted``, ``selection_finished``,
                  ``worker_ready``, ``batch_done``, ``worker_died``, ``worker_fatal``, ``stop_requested``,
                  ``lease_lost``, ``crash_logged``, ``tick``
    actions out -> :class:`Dispatch`, :class:`Respawn`, :class:`LogCrash`, :class:`FinishChunk`,
                  :class:`RenewLeases`, :class:`StopWorkers`

Every event method returns the actions the loop must carry out, in order. The coordinator never
reads a clock itself: ``tick(now)`` gives it the time, so lease renewal is testable without sleeping.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Union

from .context import RunSummary, StopKind, StopReason

MAX_WORKER_RESTARTS = 50
# Once the selection is over, a batch handed out holds the remaining applications' fair share
# (remaining / workers, at least this many): the last batches end together instead of one worker
# finishing a whole batch while the others are idle.
MIN_TAIL_SHARE = 20


@dataclass
class Batch:
    """Application ids handed to one worker at a time; ``chunk_id`` is the queue chunk they came
    from (None in partition mode); ``deaths`` counts the workers that died holding it."""

    batch_id: int
    ids: list[int]
    chunk_id: int | None = None
    deaths: int = 0


# -- actions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    """Send ``batch`` to the worker in ``slot``."""

    slot: int
    batch: Batch


@dataclass(frozen=True)
class Respawn:
    """Start a new worker process in ``slot`` (the old one died)."""

    slot: int


@dataclass(frozen=True)
class LogCrash:
    """Write a failed ``WorkerCrashed`` row for an application that killed two workers alone;
    report the written status back with ``crash_logged``."""

    app_id: int
    exit_code: Any


@dataclass(frozen=True)
class FinishChunk:
    """Every batch of this queue chunk is committed: finish it (the database checks that none of
    its applications is still pending; otherwise it is released for a later claim)."""

    chunk_id: int


@dataclass(frozen=True)
class RenewLeases:
    """Extend the lease of every chunk this process holds (claimed, queued or dispatched); report
    each one whose lease was lost with ``lease_lost``."""

    chunk_ids: tuple[int, ...]


@dataclass(frozen=True)
class StopWorkers:
    """The run is over: stop the workers (``hard``: kill them now, open transactions roll back)."""

    hard: bool


Action = Union[Dispatch, Respawn, LogCrash, FinishChunk, RenewLeases, StopWorkers]


@dataclass
class _Chunk:
    outstanding: int = 0  # batches of this chunk queued, waiting for a retry or at a worker
    exhausted: bool = False  # the selector has paged the whole chunk


@dataclass
class _Worker:
    ready: bool = False
    batch: Batch | None = None


@dataclass
class ParallelCoordinator:
    """The run's state machine. ``summary`` is filled as results come in."""

    summary: RunSummary
    workers: int
    lease_seconds: float | None = None  # queue mode: renew every lease/3
    retry_failed: bool = False
    max_restarts: int = MAX_WORKER_RESTARTS
    slots: dict[int, _Worker] = field(default_factory=dict)
    queued: collections.deque[Batch] = field(default_factory=collections.deque)
    retries: collections.deque[Batch] = field(default_factory=collections.deque)
    chunks: dict[int, _Chunk] = field(default_factory=dict)
    lost: set[int] = field(
        default_factory=set
    )  # chunks another owner took over: never finished by us
    stage_ms: collections.Counter[str] = field(default_factory=collections.Counter)
    selection_done: bool = False
    stopping: bool = False
    hard: bool = False
    interrupted: bool = False
    stopped: bool = False  # StopWorkers was emitted
    last_renew: float | None = None
    rss_window_kb: int = 0
    split_batches: int = 0  # batches cut by _tail_share (their rests have ids -1, -2, ...)

    def __post_init__(self) -> None:
        for slot in range(self.workers):
            self.slots[slot] = _Worker()

    # -- selection events -------------------------------------------------------------------------
    def chunk_claimed(self, chunk_id: int) -> list[Action]:
        """From now on the chunk's lease is renewed, until it is finished or released."""
        self.lost.discard(chunk_id)  # claimed (again): ours
        self.chunks.setdefault(chunk_id, _Chunk())
        return []

    def batch_selected(self, batch: Batch) -> list[Action]:
        if batch.chunk_id is not None:
            if batch.chunk_id in self.lost:
                return []  # the chunk's new owner processes it
            self.chunks.setdefault(batch.chunk_id, _Chunk()).outstanding += 1
        self.queued.append(batch)
        return self._dispatch()

    def chunk_exhausted(self, chunk_id: int) -> list[Action]:
        if chunk_id in self.lost:
            return []
        self.chunks.setdefault(chunk_id, _Chunk()).exhausted = True
        return self._maybe_finish(chunk_id) + self._dispatch()

    def selection_finished(self) -> list[Action]:
        self.selection_done = True
        return self._dispatch()

    def lease_lost(self, chunk_id: int) -> list[Action]:
        """Another owner took the chunk over: drop what of it waits here; batches already at a
        worker commit (the log's unique key keeps them single) but the chunk is never finished."""
        self.lost.add(chunk_id)
        ch = self.chunks.pop(chunk_id, None)
        if ch is None:
            return []
        for dq in (self.queued, self.retries):
            keep = [b for b in dq if b.chunk_id != chunk_id]
            dq.clear()
            dq.extend(keep)
        return self._dispatch()

    # -- worker events ----------------------------------------------------------------------------
    def worker_ready(self, slot: int) -> list[Action]:
        self.slots[slot].ready = True
        return self._dispatch()

    def batch_done(self, slot: int, result: Any) -> list[Action]:
        w = self.slots[slot]
        b, w.batch = w.batch, None
        s = self.summary
        s.success += result.success
        s.failed += result.failed
        s.skipped += result.skipped
        for _, stage, ecls in result.failures or []:
            s.failures_by_stage[stage] = s.failures_by_stage.get(stage, 0) + 1
            s.failures_by_class[ecls] = s.failures_by_class.get(ecls, 0) + 1
        for k in ("fetch", "parse", "map", "write"):
            self.stage_ms[k] += getattr(result, k + "_ms")
        for k in ("wait", "other"):  # the workers' time outside the stages (bench's breakdown)
            self.stage_ms[k] += getattr(result, k + "_ms", 0)
        s.peak_worker_rss_mb = max(s.peak_worker_rss_mb, round(result.peak_rss_kb / 1024, 1))
        self.rss_window_kb = max(self.rss_window_kb, result.rss_kb)
        out: list[Action] = []
        if b is not None and b.chunk_id is not None:
            out += self._settle(b.chunk_id)
        return out + self._dispatch()

    def worker_died(self, slot: int, exit_code: Any) -> list[Action]:
        """A worker process is gone. While the run stops this is the stop, not a crash: its batch is
        dropped (uncommitted, so still pending) and nobody is restarted."""
        w = self.slots[slot]
        b, w.batch, w.ready = w.batch, None, False
        if self.stopping:
            out: list[Action] = []
            if b is not None and b.chunk_id is not None:
                out += self._settle(b.chunk_id, finish=False)
            return out + self._maybe_end()
        s = self.summary
        s.worker_restarts += 1
        out = []
        if b is not None:
            b.deaths += 1
            if b.deaths == 1:
                self.retries.appendleft(
                    b
                )  # once more, whole: the death may have been the machine's
            elif len(b.ids) > 1:
                ch = self.chunks.get(b.chunk_id) if b.chunk_id is not None else None
                if ch is not None:
                    ch.outstanding += len(b.ids) - 1
                for i, app_id in enumerate(b.ids):  # isolate the application that kills workers
                    self.retries.append(
                        Batch(b.batch_id * 100000 + i, [app_id], b.chunk_id, deaths=1)
                    )
            else:
                out.append(LogCrash(b.ids[0], exit_code))
                if b.chunk_id is not None:
                    out += self._settle(b.chunk_id)
        if s.worker_restarts > self.max_restarts:
            s.stop_reason = StopReason(
                StopKind.CRASH,
                f"workers keep dying (more than {self.max_restarts} restarts); see the log",
            )
            return out + self._stop(hard=True)
        return out + [Respawn(slot)]

    def crash_logged(self, app_id: int, status: str) -> list[Action]:
        if status == "failed":
            s = self.summary
            s.failed += 1
            s.failures_by_stage["parse"] = s.failures_by_stage.get("parse", 0) + 1
            s.failures_by_class["WorkerCrashed"] = s.failures_by_class.get("WorkerCrashed", 0) + 1
        return []

    def worker_fatal(self, slot: int, kind: StopKind, text: str) -> list[Action]:
        """A worker hit what the run cannot go on with (database gone, configuration, a bug)."""
        self.summary.stop_reason = StopReason(kind, text)
        return self._stop(hard=True)

    # -- control ----------------------------------------------------------------------------------
    def stop_requested(self) -> list[Action]:
        """A stop signal (Ctrl-C, a service stop, a closed terminal): the first lets in-flight batches commit, the second stops now."""
        self.interrupted = self.summary.interrupted = True
        return self._stop(hard=self.stopping)

    def error(self, reason: StopReason) -> list[Action]:
        """The loop itself failed (selection, the database of the coordinator): stop now."""
        if not self.summary.stop_reason:
            self.summary.stop_reason = reason
        return self._stop(hard=True)

    def tick(self, now: float) -> list[Action]:
        """Time passes: renew the leases of every chunk held, every lease/3 seconds."""
        if self.lease_seconds is None or self.stopped:
            return []
        if self.last_renew is None:
            self.last_renew = now
        if now - self.last_renew < self.lease_seconds / 3:
            return []
        self.last_renew = now
        held = tuple(sorted(self.chunks))
        return [RenewLeases(held)] if held else []

    @property
    def done(self) -> int:
        """Applications accounted for so far."""
        s = self.summary
        return s.success + s.failed + s.skipped

    @property
    def busy(self) -> bool:
        return any(w.batch is not None for w in self.slots.values())

    def wants_selection(self) -> bool:
        """Whether the selector may add another batch (bounded read-ahead)."""
        return not self.stopping and len(self.queued) < max(2, 2 * self.workers)

    # -- internals --------------------------------------------------------------------------------
    def _dispatch(self) -> list[Action]:
        out: list[Action] = []
        if not self.stopping:
            for slot, w in self.slots.items():
                if not w.ready or w.batch is not None:
                    continue
                if self.retries:
                    b = self.retries.popleft()
                elif self.queued:
                    b = self._tail_share(self.queued.popleft())
                    self.summary.selected += len(b.ids)
                else:
                    break
                w.batch = b
                out.append(Dispatch(slot, b))
        return out + self._maybe_end()

    def _tail_share(self, b: Batch) -> Batch:
        """Guided self-scheduling at the end of the selection: hand out the fair share of what
        remains (at least MIN_TAIL_SHARE) and queue the rest of the batch first, as a batch of its
        own (of the same queue chunk, which then waits for one more batch)."""
        if not self.selection_done or len(b.ids) < 2 * MIN_TAIL_SHARE:
            return b
        remaining = len(b.ids) + sum(len(q.ids) for q in self.queued)
        share = max(MIN_TAIL_SHARE, -(-remaining // self.workers))
        if len(b.ids) - share < MIN_TAIL_SHARE:
            return b
        self.split_batches += 1
        self.queued.appendleft(Batch(-self.split_batches, b.ids[share:], b.chunk_id))
        ch = self.chunks.get(b.chunk_id) if b.chunk_id is not None else None
        if ch is not None:
            ch.outstanding += 1
        return Batch(b.batch_id, b.ids[:share], b.chunk_id, b.deaths)

    def _settle(self, chunk_id: int, finish: bool = True) -> list[Action]:
        ch = self.chunks.get(chunk_id)
        if ch is None:
            return []
        ch.outstanding -= 1
        return self._maybe_finish(chunk_id) if finish else []

    def _maybe_finish(self, chunk_id: int) -> list[Action]:
        ch = self.chunks.get(chunk_id)
        if ch is None or not ch.exhausted or ch.outstanding > 0 or self.stopping:
            return []
        del self.chunks[chunk_id]
        return [FinishChunk(chunk_id)]

    def _stop(self, hard: bool) -> list[Action]:
        self.stopping = True
        self.hard = self.hard or hard
        if self.hard and not self.stopped:
            self.stopped = True
            return [StopWorkers(hard=True)]
        return self._maybe_end()

    def _maybe_end(self) -> list[Action]:
        if self.stopped or self.busy:
            return []
        if self.stopping or (self.selection_done and not self.queued and not self.retries):
            self.stopped = True
            return [StopWorkers(hard=False)]
        return []
