"""The ParallelCoordinator alone: every path of a run's bookkeeping, driven by events, with no
process, no database and no sleep (the whole file runs in well under a second)."""

from __future__ import annotations

from xml_extractor.processing.context import RunContext, RunSummary, StopKind, StopReason
from xml_extractor.processing.coordinator import (
    Batch,
    Dispatch,
    FinishChunk,
    LogCrash,
    ParallelCoordinator,
    RenewLeases,
    Respawn,
    StopWorkers,
)
from xml_extractor.processing.worker import BatchResult


def Result(**kw: object) -> BatchResult:
    """A worker's real BatchResult, with non-zero stage timings so the summary's sums are visible."""
    base: dict = {
        "fetch_ms": 1.0,
        "parse_ms": 2.0,
        "map_ms": 3.0,
        "write_ms": 4.0,
        "peak_rss_kb": 2048,
        "rss_kb": 1024,
    }
    return BatchResult(**{**base, **kw})


def coordinator(
    workers: int = 2, lease: float | None = None, max_restarts: int = 50
) -> ParallelCoordinator:
    ctx = RunContext(url="sqlite:///x.db", workers=workers)
    s = RunSummary.start(ctx, "sqlite:///x.db", "c@1", "now")
    return ParallelCoordinator(s, workers, lease, max_restarts=max_restarts)


def ready(c: ParallelCoordinator) -> list:
    out = []
    for slot in c.slots:
        out += c.worker_ready(slot)
    return out


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def test_batches_go_to_idle_workers_and_the_run_ends_when_all_are_done():
    c = coordinator()
    assert ready(c) == []
    a1 = c.batch_selected(Batch(1, [1, 2]))
    a2 = c.batch_selected(Batch(2, [3]))
    a3 = c.batch_selected(Batch(3, [4]))  # both workers busy: it waits
    assert [d.slot for d in of(Dispatch, a1 + a2)] == [0, 1] and a3 == []
    assert c.summary.selected == 3
    assert c.selection_finished() == []
    nxt = c.batch_done(0, Result(success=2))
    assert of(Dispatch, nxt) == [Dispatch(0, Batch(3, [4]))]
    assert c.batch_done(1, Result(success=1)) == []
    end = c.batch_done(0, Result(failed=1, failures=[(4, "parse", "XMLSyntaxError")]))
    assert end == [StopWorkers(hard=False)]
    s = c.summary
    assert (s.selected, s.success, s.failed, s.failures_by_stage) == (4, 3, 1, {"parse": 1})
    assert c.stage_ms["write"] == 12.0 and s.peak_worker_rss_mb == 2.0


def test_nothing_to_do_ends_at_once():
    c = coordinator()
    assert c.selection_finished() == [StopWorkers(hard=False)]


def test_worker_died_retries_its_batch_then_isolates_then_logs_the_crash():
    c = coordinator(workers=1)
    ready(c)
    c.batch_selected(Batch(1, [10, 11]))
    c.selection_finished()
    acts = c.worker_died(0, -9)  # first death: the same batch once more, whole
    assert acts == [Respawn(0)] and c.summary.worker_restarts == 1
    assert of(Dispatch, c.worker_ready(0)) == [Dispatch(0, Batch(1, [10, 11], deaths=1))]
    acts = c.worker_died(0, -9)  # second death: one batch per application
    assert acts == [Respawn(0)]
    (d,) = of(Dispatch, c.worker_ready(0))
    assert d.batch.ids == [10]
    assert c.batch_done(0, Result(success=1)) == [Dispatch(0, Batch(100001, [11], deaths=1))]
    acts = c.worker_died(0, -11)  # [11] alone killed a worker twice: its crash is logged
    assert acts == [LogCrash(11, -11), Respawn(0)]
    assert c.crash_logged(11, "failed") == []
    assert c.summary.failures_by_class == {"WorkerCrashed": 1}
    assert c.worker_ready(0) == [StopWorkers(hard=False)]


def test_a_death_while_stopping_is_not_a_crash():
    c = coordinator()
    ready(c)
    c.batch_selected(Batch(1, [1], chunk_id=None))
    c.batch_selected(Batch(2, [2]))
    assert c.stop_requested() == []  # in-flight batches may commit
    assert c.interrupted and c.stopping
    assert c.worker_died(0, -15) == []  # no Respawn, no LogCrash, no restart counted
    assert c.summary.worker_restarts == 0 and c.retries == collections_empty()
    assert c.worker_died(1, -15) == [StopWorkers(hard=False)]
    assert c.summary.failed == 0 and c.summary.exit_code == 130


def collections_empty():
    import collections

    return collections.deque()


def test_the_death_of_the_last_worker_is_replaced_and_too_many_deaths_stop_the_run():
    c = coordinator(workers=1, max_restarts=2)
    ready(c)
    assert c.worker_died(0, 1) == [Respawn(0)]  # died idle: replaced, nothing retried
    assert c.worker_died(0, 1) == [Respawn(0)]
    acts = c.worker_died(0, 1)
    assert acts == [StopWorkers(hard=True)]
    assert c.summary.stop_reason.kind is StopKind.CRASH and c.summary.exit_code == 3
    assert str(c.summary.stop_reason).startswith("crash: workers keep dying")


def test_second_stop_request_stops_at_once():
    c = coordinator()
    ready(c)
    c.batch_selected(Batch(1, [1]))
    assert c.stop_requested() == []
    assert c.stop_requested() == [StopWorkers(hard=True)]
    assert c.batch_selected(Batch(2, [2])) == []  # nothing goes out any more


def test_worker_fatal_stops_the_run_with_its_reason():
    c = coordinator()
    ready(c)
    c.batch_selected(Batch(1, [1]))
    assert c.worker_fatal(0, StopKind.CRASH, "TypeError: boom") == [StopWorkers(hard=True)]
    assert str(c.summary.stop_reason) == "crash: TypeError: boom" and c.summary.exit_code == 3
    assert c.summary.failed == 0
    assert c.worker_died(0, 0) == []  # its exit afterwards is part of the stop


def test_chunk_is_finished_only_after_exhausted_and_every_batch_committed():
    c = coordinator()
    ready(c)
    c.chunk_claimed(7)
    c.batch_selected(Batch(1, [700, 701], chunk_id=7))
    c.batch_selected(Batch(2, [702], chunk_id=7))
    assert c.chunk_exhausted(7) == []  # two batches still at workers
    assert c.batch_done(0, Result(success=2)) == []
    assert c.batch_done(1, Result(success=1)) == [FinishChunk(7)]
    assert 7 not in c.chunks


def test_an_empty_exhausted_chunk_is_finished_at_once():
    c = coordinator()
    c.chunk_claimed(3)
    assert c.chunk_exhausted(3) == [FinishChunk(3)]


def test_a_chunk_waiting_for_a_retry_is_not_finished():
    c = coordinator(workers=1)
    ready(c)
    c.chunk_claimed(1)
    c.batch_selected(Batch(1, [1, 2], chunk_id=1))
    assert c.chunk_exhausted(1) == []
    assert c.worker_died(0, -9) == [Respawn(0)]  # its batch waits for a retry
    assert FinishChunk(1) not in c.chunks.values()
    c.worker_ready(0)
    c.worker_died(0, -9)  # split in two single batches
    c.worker_ready(0)
    assert c.batch_done(0, Result(success=1)) != [FinishChunk(1)]
    acts = c.batch_done(0, Result(success=1))
    assert FinishChunk(1) in acts


def test_a_crash_logged_alone_settles_its_chunk():
    c = coordinator(workers=1)
    ready(c)
    c.chunk_claimed(5)
    c.batch_selected(Batch(1, [50], chunk_id=5))
    c.chunk_exhausted(5)
    c.worker_died(0, -9)
    c.worker_ready(0)
    assert c.worker_died(0, -9) == [LogCrash(50, -9), FinishChunk(5), Respawn(0)]


def test_every_held_chunk_is_renewed_claimed_queued_or_dispatched():
    c = coordinator(workers=1, lease=6)
    ready(c)
    c.chunk_claimed(1)
    c.batch_selected(Batch(1, [1], chunk_id=1))  # dispatched
    c.chunk_claimed(2)
    c.batch_selected(Batch(2, [1001], chunk_id=2))  # queued inside the process
    c.chunk_claimed(3)  # claimed, nothing selected yet
    assert c.tick(100.0) == []  # the clock starts
    assert c.tick(101.0) == []
    assert c.tick(102.0) == [RenewLeases((1, 2, 3))]  # every lease/3 = 2 s
    assert c.tick(103.0) == []
    assert c.tick(104.5) == [RenewLeases((1, 2, 3))]


def test_no_renewal_without_a_queue_or_after_the_stop():
    c = coordinator(lease=None)
    c.chunk_claimed(1)
    assert c.tick(0.0) == [] and c.tick(1000.0) == []
    q = coordinator(lease=6)
    q.chunk_claimed(1)
    q.tick(0.0)
    q.stop_requested()
    q.stop_requested()
    assert q.tick(100.0) == []


def test_lease_lost_mid_chunk_drops_its_queued_batches_and_never_finishes_it():
    c = coordinator(workers=1, lease=6)
    ready(c)
    c.chunk_claimed(9)
    c.batch_selected(Batch(1, [900], chunk_id=9))  # at the worker
    c.batch_selected(Batch(2, [901], chunk_id=9))  # queued
    c.batch_selected(Batch(3, [5], chunk_id=None))  # another chunk's work stays
    assert c.lease_lost(9) == []
    assert [b.batch_id for b in c.queued] == [3]
    assert c.batch_selected(Batch(4, [902], chunk_id=9)) == []  # the new owner's now
    assert c.chunk_exhausted(9) == []
    acts = c.batch_done(0, Result(success=1))
    assert acts == [Dispatch(0, Batch(3, [5]))]  # no FinishChunk(9)
    c.tick(0.0)
    assert c.tick(10.0) == []  # not renewed any more
    assert c.chunk_claimed(9) == [] and 9 in c.chunks  # claimed again later: ours again


def test_stop_keeps_chunks_unfinished():
    c = coordinator(workers=1)
    ready(c)
    c.chunk_claimed(2)
    c.batch_selected(Batch(1, [20], chunk_id=2))
    c.chunk_exhausted(2)
    c.stop_requested()
    assert c.batch_done(0, Result(success=1)) == [
        StopWorkers(hard=False)
    ]  # released at the end, not finished


def test_read_ahead_is_bounded():
    c = coordinator(workers=1)
    for i in range(2):
        c.batch_selected(Batch(i, [i]))
    assert not c.wants_selection()
    ready(c)
    assert c.wants_selection()


def test_error_stops_hard_and_keeps_the_first_reason():
    c = coordinator()
    c.summary.stop_reason = StopReason(StopKind.CONFIG, "bad")
    assert c.error(StopReason(StopKind.ERROR, "later")) == [StopWorkers(hard=True)]
    assert str(c.summary.stop_reason) == "config: bad" and c.summary.exit_code == 2


def test_run_context_derives_every_view_of_the_run():
    ctx = RunContext(
        url="sqlite:///x.db",
        instance_id=1,
        instance_count=3,
        app_id_start=5,
        log_level="warning",
        only_ids=[3, 1],
    )
    assert (ctx.modulus, ctx.remainder, ctx.id_lo) == (3, 1, 5) and ctx.only_ids == (3, 1)
    assert ctx.log_level == 30 and ctx.session_id[:8] in ctx.owner
    ident = ctx.identity("c@1")
    assert (ident.session_id, ident.instance_id, ident.instance_count) == (ctx.session_id, 1, 3)
    s = RunSummary.start(ctx, "db", "c@1", "t")
    assert (s.session_id, s.instance_count, s.mode) == (ctx.session_id, 3, "partition")
    q = RunContext(url="sqlite:///x.db", mode="queue")
    assert (q.modulus, q.remainder) == (1, 0)


def test_the_last_batches_are_shared_so_the_workers_end_together():
    """After the selection, each batch handed out is the fair share of what remains: 200 ids at
    the end go out as 100, 50, 25, 25 instead of one worker doing all 200 while the other idles;
    every id goes out exactly once and the run still ends when all are done."""
    c = coordinator()
    ready(c)
    first = c.batch_selected(Batch(1, list(range(0, 200))))  # before the end of selection: whole
    assert [len(d.batch.ids) for d in of(Dispatch, first)] == [200]
    c.batch_selected(Batch(2, list(range(200, 400))))  # slot 1: whole
    c.batch_selected(Batch(3, list(range(400, 600))))  # queued
    assert c.selection_finished() == []
    sizes, sent = [], list(range(0, 400))
    slot, actions = 0, c.batch_done(0, Result(success=200))
    while True:
        d = of(Dispatch, actions)
        if not d:
            break
        assert len(d) == 1 and d[0].slot == slot
        sizes.append(len(d[0].batch.ids))
        sent += d[0].batch.ids
        slot = 1 - slot  # the other worker finishes next
        actions = c.batch_done(slot, Result(success=0))
    assert sizes == [100, 50, 25, 25]
    assert sorted(sent) == list(range(600)) and c.summary.selected == 600
    assert c.batch_done(1 - slot, Result()) == [StopWorkers(hard=False)]


def test_a_shared_queue_chunk_is_finished_after_all_of_its_pieces():
    c = coordinator()
    ready(c)
    c.chunk_claimed(7)
    c.batch_selected(Batch(1, list(range(100)), chunk_id=7))  # slot 0
    c.batch_selected(Batch(2, list(range(100, 200)), chunk_id=7))  # slot 1
    c.batch_selected(Batch(3, list(range(200, 300)), chunk_id=7))  # queued
    assert c.chunk_exhausted(7) == [] and c.selection_finished() == []
    a = c.batch_done(0, Result())  # slot 0 takes 50 of batch 3; 50 wait
    assert [len(d.batch.ids) for d in of(Dispatch, a)] == [50] and of(FinishChunk, a) == []
    a = c.batch_done(1, Result())  # slot 1 takes 25; 25 wait
    assert [len(d.batch.ids) for d in of(Dispatch, a)] == [25] and of(FinishChunk, a) == []
    a = c.batch_done(0, Result())  # the last 25
    assert [len(d.batch.ids) for d in of(Dispatch, a)] == [25] and of(FinishChunk, a) == []
    assert of(FinishChunk, c.batch_done(1, Result())) == []
    assert of(FinishChunk, c.batch_done(0, Result())) == [FinishChunk(7)]
