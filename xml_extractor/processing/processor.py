"""ProductionProcessor: the I/O of a run around the ParallelCoordinator.

A selector thread pages ahead (selection overlaps processing) and reports what it selects; long-
lived worker processes fetch, parse, map and write batches. Every decision (which batch goes where,
what a worker's death means, when a queue chunk is finished, when to renew leases, when the run is
over) is the coordinator's (processing/coordinator.py, no I/O); this module only turns events into
calls of the coordinator and carries out the actions it returns.

Stopping: a stop signal (supervision.stop_signals: Ctrl-C, a service stop, a closed terminal,
Ctrl-Break; to the process or its whole group) asks the coordinator to stop: in-flight batches
commit, then the workers are told to stop through their pipes (they ignore the signals themselves);
a second signal stops at once (open transactions roll back). Each worker holds a lifeline from this
process and dies with it (supervision.ParentWatch); when launch's lifeline of this process breaks,
the workers are ended at once and the run stops. The metrics file is rewritten (atomically) at
every timeline sample while the run goes, so a killed run leaves it with what was committed.
Logging: this module only logs; the application (the CLI) decides where records go.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .. import supervision
from ..contract.compiler import compile_contract
from ..contract.loader import load_contract
from ..db.database import Database, make_dialect
from ..db.migrate import require_current, require_exists
from ..db.statistics import refresh_statistics
from ..db.store import BatchWriter, Outcome
from ..errors import ConfigError
from ..hooks import hold
from ..progress import (
    IDLE_AFTER_S,
    RATE_WINDOW_MINUTES,
    ProgressListener,
    Rates,
    measure,
)
from .context import (
    RunContext,
    RunOptions,
    RunSummary,
    StopKind,
    StopReason,
    exit_code_of,
    outcome_of,
)
from .coordinator import (
    Action,
    Batch,
    Dispatch,
    FinishChunk,
    LogCrash,
    ParallelCoordinator,
    RenewLeases,
    Respawn,
    StopWorkers,
)
from .identity import check_contract_identity, other_version_started
from .selection import WorkQueue, partition_batches, queue_batches
from .worker import worker_main

log = logging.getLogger("xml_extractor.run")

__all__ = ["ProductionProcessor", "RunContext", "RunOptions", "RunSummary", "run"]

WORKER_PRELOAD = ["xml_extractor.processing.worker", "xml_extractor.contract.compiler"]


class _WorkerPool:
    """The worker processes by slot: start, send, stop; nothing else. Each worker gets a lifeline
    whose other end only this pool holds (closed when the worker is reaped or this process dies)."""

    def __init__(self, ctx: RunContext, size: int, contract: Any = None) -> None:
        self.ctx = ctx
        self.contract = contract  # the run's own, checked: a worker does not load it again
        self.mp = supervision.worker_context(WORKER_PRELOAD)
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Connection] = {}
        self.lifelines: dict[int, Connection] = {}
        self.stopped = False
        supervision.start_helpers(self.mp, hold)
        for slot in range(size):
            self.spawn(slot)

    def spawn(self, slot: int) -> None:
        """A new worker in ``slot``. The forkserver is checked first and started again (stop
        signals blocked) if it died: its death makes every worker it forked look dead at once."""
        if supervision.parent_gone():
            return  # the launcher is gone: this run stops now, nobody new is started
        supervision.start_helpers(self.mp)
        parent, child = self.mp.Pipe()
        child_life, parent_life = supervision.lifeline(self.mp)
        # the start data (a process object, its connections) stays small: spawn writes it to the
        # new process's pipe in one blocking write, which never returns if the process died
        # before reading it (a stop that reached it as it started) and the data did not fit in
        # the pipe; the run's context and contract (a pickled contract is ~90 KB; a reprocess
        # context lists its ids) follow on the worker's connection, whose write fails then
        proc = self.mp.Process(target=worker_main, args=(child, child_life), daemon=True)
        supervision.start_process(proc)
        supervision.register_child(proc)
        child.close()
        child_life.close()
        self.procs[slot], self.conns[slot], self.lifelines[slot] = proc, parent, parent_life
        self.send(slot, ("start", self.ctx, self.contract))

    def send(self, slot: int, msg: tuple) -> None:
        conn = self.conns.get(slot)
        if conn is None:
            return  # reaped: the coordinator knows of the death and retries what it was sent
        try:
            conn.send(msg)
        except (OSError, EOFError):
            # dead already, or unreachable and so of no use: ended either way, its sentinel
            # reports it (a worker left without its start or its batch would never answer)
            supervision.kill(self.procs[slot])

    def reap(self, slot: int) -> Any:
        """Forget a dead worker (a Respawn puts a new one in its slot). A killed forkserver makes
        the sentinels of the workers it forked fire while they still run: each is ended here, so
        nothing of a reaped slot commits behind the coordinator's back."""
        proc = self.procs.pop(slot)
        supervision.kill(proc)  # nothing when it is gone; its return code is not read yet
        self.conns.pop(slot).close()
        self.lifelines.pop(slot).close()
        proc.join(timeout=1)
        supervision.unregister_child(proc)
        return proc

    def waitables(self) -> list[Any]:
        return list(self.conns.values()) + [p.sentinel for p in self.procs.values()]

    def stop(self, hard: bool) -> None:
        if self.stopped:
            return
        self.stopped = True
        for slot in self.procs:
            if not hard:
                self.send(slot, ("stop",))
        for p in self.procs.values():
            if not hard:
                p.join(timeout=5)
            if p.is_alive():
                supervision.kill(
                    p
                )  # workers ignore the stop signals; an open transaction is rolled back
                p.join(timeout=5)
            supervision.unregister_child(p)
        for c in list(self.conns.values()) + list(self.lifelines.values()):
            c.close()


class ProductionProcessor:
    """One instance of a run. ``run()`` returns a RunSummary; the CLI maps it to an exit code.
    ``log_file`` is only reported (the CLI attached it to the ``xml_extractor`` logger)."""

    def __init__(
        self,
        options: RunContext,
        on_progress: Callable[[int], None] | None = None,
        log_file: str | None = None,
        listener: ProgressListener | None = None,
    ) -> None:
        self.ctx = options.resolved()
        url = self.ctx.database_url
        limit = make_dialect(url.dialect).max_params - 8
        if options.batch_size > limit:  # a batch's ids are bound parameters of one IN (...) list
            raise ConfigError(
                f"--batch-size {options.batch_size} is too large for {url.dialect}: at most {limit}"
            )
        self.contract = load_contract(options.contract_path)
        self.plan = compile_contract(self.contract)
        self.on_progress = on_progress
        self.listener = listener  # the progress bar: what the run is doing, counts and rates
        self.log_file = log_file
        self._started = time.time()
        self._first_result_at: float | None = None
        self._last_result_at: float | None = None
        self._stop = threading.Event()  # tells the selector to stop
        self._events: queue.Queue = queue.Queue(
            maxsize=max(2, options.workers * 2)
        )  # batches, exhausted, end
        self._claims: queue.SimpleQueue = (
            queue.SimpleQueue()
        )  # claims reach the coordinator at once
        self._lost: set[int] = (
            set()
        )  # chunks taken over by another owner (the selector stops paging them)
        self._signals: list[int] = []
        self._signal_seen: dict[int, float] = {}
        self._metrics_path: Path | None = None
        self._ready: set[int] = set()

    # -- selection thread -----------------------------------------------------------------------
    def _selector(self) -> None:
        db = None
        try:
            db = Database(
                self.ctx.database_url, self.contract, self.ctx.reconnect_seconds, connect=False
            )
            db.connect_patiently()  # a database restarting as the run starts: waited for, like the main connection
            if self.ctx.mode == "queue":
                source = queue_batches(
                    db,
                    self.ctx,
                    self._stop,
                    self._claimed,
                    lambda cid: self._put(("exhausted", cid)),
                    self._lost.__contains__,
                )
            else:
                source = partition_batches(db, self.ctx, self._stop)
            for n, (ids, chunk_id) in enumerate(source, 1):
                self._put(("batch", Batch(n, ids, chunk_id)))
            self._put(("end", None))
        except BaseException as exc:
            self._put(("end", exc))
        finally:
            if db is not None:
                db.close()

    def _claimed(self, chunk_id: int) -> None:
        self._lost.discard(chunk_id)
        self._claims.put(chunk_id)

    def _put(self, item: tuple) -> None:
        while True:
            try:
                self._events.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._stop.is_set() and item[0] == "batch":
                    return

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Connect, check, process until the coordinator says the run is over, then check the
        session's counts; the log's last line is the outcome and exit code
        (:meth:`_finish_summary`)."""
        ctx = self.ctx
        started = self._started = time.time()
        summary = self._start_summary()
        coord = ParallelCoordinator(
            summary,
            ctx.workers,
            ctx.lease_seconds if ctx.mode == "queue" else None,
            ctx.retry_failed,
        )
        self._connect()
        pool: _WorkerPool | None = None
        hold(
            "run_start"
        )  # test hook (gated): until here a signal is the CLI's (cli.main: exit 130)
        self._metrics_path = self._metrics_file_path()
        self._write_metrics(summary, coord, started, "running")  # a killed run leaves its metrics
        old_handlers = supervision.install_stop_handlers(self._on_signal)
        try:
            self._check_start()
            self._pool_started = time.monotonic()
            pool = _WorkerPool(ctx, ctx.workers, self.contract)
            self._start_method = pool.mp.get_start_method()
            threading.Thread(target=self._selector, name="selector", daemon=True).start()
            self._loop(coord, pool, started)
        except BaseException as exc:
            log.error("run stopped: %s", exc, exc_info=not isinstance(exc, ConfigError))
            coord.error(StopReason.of(exc))
        finally:
            self._wind_down(coord, pool)
            supervision.restore_handlers(old_handlers)
        return self._finish_summary(summary, coord, started)

    def _start_summary(self) -> RunSummary:
        """The summary the run fills in, and the log's first line."""
        ctx = self.ctx
        summary = RunSummary.start(
            ctx,
            ctx.database_url.display(),
            self.contract.version_tag,
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        summary.log_file = self.log_file
        log.info(
            "run %s: %s, contract %s, instance %d/%d (%s), %d workers, batch %d",
            ctx.session_id,
            summary.database,
            summary.contract_version,
            ctx.instance_id,
            ctx.instance_count,
            ctx.mode,
            ctx.workers,
            ctx.batch_size,
        )
        return summary

    def _connect(self) -> None:
        """Folders, the database file, the connection: each failure ends the run before any work
        (ConfigError: exit 2; a server that keeps refusing for --reconnect-seconds: exit 3)."""
        ctx = self.ctx
        self._starting("connecting to the database")
        ctx.prepare_folders()  # --logs-dir/--metrics-dir take a file, or exit 2 before any work
        require_exists(ctx.database_url)  # a missing SQLite file: exit 2, never a new database
        self._db = Database(ctx.database_url, self.contract, ctx.reconnect_seconds, connect=False)
        self._db.connect_patiently()
        self._wq = WorkQueue(self._db, ctx) if ctx.mode == "queue" else None

    def _check_start(self) -> None:
        """The schema matches the contract (db/migrate.py, else exit 2 with the plan) and no other
        version of the contract has results here (the version is part of the run's identity)."""
        self._starting("checking the schema and the contract version")
        require_current(self._db)
        for member in self.contract.extra.get("members") or [self.contract]:
            check_contract_identity(
                self._db, member.version_tag, member.name, self.ctx.allow_contract_change
            )
        hold("identity_checked")  # test hook (gated): the start check passed, nothing written yet
        self._starting(f"starting {self.ctx.workers} worker(s)")

    def _starting(self, step: str) -> None:
        """What the run is doing before its first result: logged, and shown by the progress bar."""
        log.info("starting: %s", step)
        if self.listener is not None:
            self.listener.starting(step)

    def _wind_down(self, coord: ParallelCoordinator, pool: _WorkerPool | None) -> None:
        """Stop the workers, release the chunks, check the session against the database."""
        self._stop.set()
        if pool is not None:
            pool.stop(hard=coord.hard or not coord.stopped)
        hold("loop_done")  # test hook (gated): a signal after the loop's last look
        self._release_chunks()
        self._final_identity_check(coord.summary)
        self._check_session(coord.summary)
        self._db.close()
        if self._signals and not (coord.summary.interrupted or coord.summary.stop_reason):
            log.warning(  # received after the loop's last look
                "received %s while finishing: the run reports it was interrupted",
                supervision.signal_name(self._signals[0]),
            )
            coord.stop_requested()

    def _loop(self, coord: ParallelCoordinator, pool: _WorkerPool, started: float) -> None:
        """Events in, actions out, until the coordinator says the run is over."""
        self._last_sample = self._last_log = time.monotonic()
        self._result_sampled = False
        self._identity_at: float | None = None
        self._analyze_at = [1000, 10000, 100000]  # refresh planner statistics as the tables grow
        while not coord.stopped:
            actions: list[Action] = []
            if supervision.parent_gone() and not coord.hard:  # launch is gone: workers ended
                log.warning("the launcher is gone: stopping now")
                self._signals.clear()
                actions += coord.stop_requested()
                actions += coord.stop_requested()  # the second request: stop now
            actions += self._take_signals(coord)
            while not self._claims.empty():
                actions += coord.chunk_claimed(self._claims.get())
            actions += self._take_selection(coord)
            self._execute(coord, pool, actions)
            if coord.stopping:
                self._stop.set()
            if coord.stopped:
                break
            self._take_worker_events(coord, pool)
            self._execute(coord, pool, coord.tick(time.monotonic()))
            self._housekeeping(coord, started)

    def _take_selection(self, coord: ParallelCoordinator) -> list[Action]:
        """What the selector has selected, as far as the coordinator wants it now."""
        actions: list[Action] = []
        while coord.wants_selection() and not coord.selection_done:
            try:
                kind, item = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "batch":
                actions += coord.batch_selected(item)
            elif kind == "exhausted":
                actions += coord.chunk_exhausted(item)
            elif item is not None:
                log.error("selection failed", exc_info=item)
                actions += coord.error(StopReason.of(item))
            else:
                actions += coord.selection_finished()
        return actions

    def _take_worker_events(self, coord: ParallelCoordinator, pool: _WorkerPool) -> None:
        """Messages and deaths of the workers, waiting at most 0.2 s for one. The actions of each
        event are carried out before the next event is taken: a batch dispatched to a worker
        whose death comes next is sent (in vain) before the slot is reaped, and retried by the
        coordinator; several workers can die at once (their forkserver killed)."""
        for ready in wait(pool.waitables(), timeout=0.2):
            for slot, conn in list(pool.conns.items()):
                if coord.stopped:
                    return
                if ready is conn:
                    self._execute(coord, pool, self._on_message(coord, slot, _recv(conn)))
                elif ready == pool.procs[slot].sentinel:
                    self._execute(coord, pool, self._on_death(coord, pool, slot))

    def _on_death(self, coord: ParallelCoordinator, pool: _WorkerPool, slot: int) -> list[Action]:
        """A worker's sentinel fired: its last messages, then the death, to the coordinator."""
        # a stop signal to the group can end a worker that is still starting (spawn: before it
        # ignores the signal): with the stop taken first, it is no crash
        actions = self._take_signals(coord)
        for msg in _drain(pool.conns[slot]):  # a result sent just before dying still counts
            actions += self._on_message(coord, slot, msg)
        proc = pool.reap(slot)
        log.warning("worker %s died (exit code %s)", proc.pid, proc.exitcode)
        return actions + coord.worker_died(slot, proc.exitcode)

    def _housekeeping(self, coord: ParallelCoordinator, started: float) -> None:
        """Statistics as the tables grow, the metrics sample every 5 s, the contract version
        re-read every second once results come in, a progress line in the log every 10 s."""
        now, done = time.monotonic(), coord.done
        if self._analyze_at and done >= self._analyze_at[0]:
            self._analyze_at.pop(0)
            refresh_statistics(self._db)
        first_result = done > 0 and not self._result_sampled  # the first committed results
        if now - self._last_sample >= 5 or first_result:  # show at once, not 5 s later
            self._result_sampled = self._result_sampled or done > 0
            self._sample(coord, started)
            coord.rss_window_kb = 0
            self._last_sample = now
            self._write_metrics(coord.summary, coord, started, "running")  # committed so far
        if (
            done
            and not self.ctx.allow_contract_change
            and (self._identity_at is None or now - self._identity_at >= 1)
        ):
            self._recheck_contract_identity()  # ConfigError stops the run
            self._identity_at = now
        if now - self._last_log > 10:
            s = coord.summary
            log.info(
                "progress: %d done (%d ok, %d failed, %d skipped), %s",
                done,
                s.success,
                s.failed,
                s.skipped,
                self._rates(coord, time.time()).describe(),
            )
            self._last_log = now

    def _sample(self, coord: ParallelCoordinator, started: float, at: float | None = None) -> None:
        """One point of the metrics timeline, with named fields."""
        s, at = coord.summary, time.time() if at is None else at
        s.timeline.append(
            {
                "elapsed_s": round(at - started, 1),
                "done": coord.done,
                "success": s.success,
                "failed": s.failed,
                "max_worker_rss_mb": round(coord.rss_window_kb / 1024, 1),
            }
        )

    def _rates(self, coord: ParallelCoordinator, now: float) -> Rates:
        """progress.py's two rates of this run at ``now`` (seconds): the windowed one from the
        timeline's samples, the average since the first result."""
        first, last = self._first_result_at, self._last_result_at
        done = coord.summary.success + coord.summary.failed
        window = RATE_WINDOW_MINUTES * 60.0
        end = now if last is not None and now - last <= IDLE_AFTER_S else (last or now)
        since = max(end - window, first or end)
        before = next(  # the newest sample at or before the window's start (a few from the end)
            (
                p
                for p in reversed(coord.summary.timeline)
                if self._started + p["elapsed_s"] <= since
            ),
            None,
        )
        done_before = int(before["success"] + before["failed"]) if before else 0
        return measure(
            done,
            _moment(first),
            _moment(last),
            done - done_before,
            _moment(since if first is not None else None),
            _moment(last),
            _dt.datetime.fromtimestamp(now, _dt.timezone.utc),
        )

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Record a stop signal for the loop (which stops the run); a console's Ctrl-Break that
        also arrives forwarded by launch is one stop (supervision.repeats)."""
        if not supervision.repeats(signum, self._signal_seen, time.monotonic()):
            self._signals.append(signum)

    def _take_signals(self, coord: ParallelCoordinator) -> list[Action]:
        actions: list[Action] = []
        while self._signals:
            name = supervision.signal_name(self._signals.pop(0))
            log.warning(
                "received %s: %s",
                name,
                "stopping now"
                if coord.stopping
                else "finishing in-flight batches, then stopping (again to stop at once)",
            )
            actions += coord.stop_requested()
        return actions

    def _recheck_contract_identity(self) -> None:
        """The start check (check_contract_identity) cannot see an instance of another contract
        version started at the same moment: neither has written yet. Its first commits show up
        here, and this run stops (exit 2) naming it; so does the other when it re-reads."""
        for member in self.contract.extra.get("members") or [self.contract]:
            others = other_version_started(self._db, member.version_tag, member.name)
            if others:
                raise ConfigError(
                    f"another instance is writing results of {', '.join(others)} into this database while "
                    f"this run uses {member.version_tag}: stopped, so that applications are not mapped two "
                    "ways. Run every instance with one contract "
                    "(see docs/operations.md, 'Re-running after a contract change')."
                )

    def _final_identity_check(self, summary: RunSummary) -> None:
        """The re-read once more after the last commit: a share finished before the other version's
        first results arrived is not reported as a clean run (exit 2 naming the other version)."""
        if (
            self.ctx.allow_contract_change
            or summary.stop_reason
            or summary.interrupted
            or not (summary.success + summary.failed)
        ):
            return
        try:
            self._recheck_contract_identity()
        except ConfigError as exc:
            log.error("run finished, but: %s", exc)
            summary.stop_reason = StopReason.of(exc)
        except Exception as exc:
            log.warning("could not re-read the contract versions at the end of the run: %s", exc)

    def _on_message(self, coord: ParallelCoordinator, slot: int, msg: tuple | None) -> list[Action]:
        if msg is None:
            return []  # the pipe is closed: the death is handled through the sentinel
        if msg[0] == "log":
            record = logging.makeLogRecord(msg[1])
            logging.getLogger(record.name).handle(record)
            return []
        if msg[0] == "ready":
            self._note_ready(coord, msg[1])
            return coord.worker_ready(slot)
        if msg[0] == "done":
            return self._on_result(coord, slot, msg[2])
        if msg[0] == "fatal":
            log.error("a worker stopped the run: %s", msg[3])
            return coord.worker_fatal(slot, msg[2], msg[3])
        return []

    def _on_result(self, coord: ParallelCoordinator, slot: int, res: Any) -> list[Action]:
        """A committed batch: counted by the coordinator, then shown."""
        now = self._last_result_at = time.time()
        if self._first_result_at is None:
            self._first_result_at = now
        if self.on_progress:
            self.on_progress(res.success + res.failed + res.skipped)
        actions = coord.batch_done(slot, res)
        if self.listener is not None:
            s = coord.summary
            self.listener.advanced(s.success, s.failed, s.skipped, self._rates(coord, now))
        return actions

    def _execute(
        self, coord: ParallelCoordinator, pool: _WorkerPool, actions: list[Action]
    ) -> None:
        todo = list(actions)
        while todo:
            a = todo.pop(0)
            if isinstance(a, Dispatch):
                pool.send(a.slot, ("batch", a.batch.batch_id, a.batch.ids, self.ctx.retry_failed))
            elif isinstance(a, Respawn):
                todo += self._respawn(coord, pool, a.slot)
            elif isinstance(a, LogCrash):
                todo += coord.crash_logged(a.app_id, self._log_worker_crash(a.app_id, a.exit_code))
            elif isinstance(a, FinishChunk):
                assert self._wq is not None
                self._wq.finish(a.chunk_id)
            elif isinstance(a, RenewLeases):
                assert self._wq is not None
                for cid in sorted(self._wq.renew(list(a.chunk_ids))):
                    log.warning(
                        "the lease of chunk %d was lost (taken over): dropping its queued batches",
                        cid,
                    )
                    self._lost.add(cid)
                    todo += coord.lease_lost(cid)
            elif isinstance(a, StopWorkers):
                self._stop.set()
                pool.stop(a.hard)

    def _respawn(self, coord: ParallelCoordinator, pool: _WorkerPool, slot: int) -> list[Action]:
        """A new worker in a dead one's slot; when none can be started (the forkserver cannot be
        started again, no memory, no processes left) the run stops now: exit 3, its reason in
        the log, nothing committed is lost."""
        try:
            pool.spawn(slot)
        except Exception as exc:  # any failure to start a process stops the run
            text = f"could not start a new worker ({type(exc).__name__}: {exc})"
            log.error("%s: stopping the run", text)
            return coord.error(StopReason(StopKind.CRASH, text))
        return []

    def _log_worker_crash(self, app_id: int, code: Any) -> str:
        db = self._db
        writer = BatchWriter(db, self.plan, self.ctx.identity(self.contract.version_tag))
        last = db.autocommit_query(db.sql("last_attempts"), {"ids": [app_id]})
        attempt = (last[0][1] if last else 0) + 1
        res = writer.write(
            [
                Outcome(
                    app_id,
                    attempt,
                    None,
                    "parse",
                    "WorkerCrashed",
                    f"the worker process died twice while processing this application (exit code {code})",
                )
            ]
        )
        return res.get(app_id, ("skipped",))[0]

    def _release_chunks(self) -> None:
        if self._wq is None:
            return
        try:
            self._wq.release_all()
        except Exception as exc:
            log.warning("could not release this run's chunks (their leases run out): %s", exc)

    def _check_session(self, summary: RunSummary) -> None:
        """What the run reports as done is what the database holds: once every worker is stopped,
        count this session's log rows. A difference is said loudly and the summary takes the
        database's figures: applications counted but absent (a commit that did not happen) stay
        pending and the run ends with exit 3 (run it again); rows the run did not count (batches
        committed while it stopped at once) are added."""
        db = self._db
        read = db.sql("session_outcomes")
        try:
            if (
                summary.stop_reason
            ):  # stopped on an error: one look on a fresh connection, no second wait
                db.close()
                db.connect()
                rows = db.with_retry(
                    lambda: db.autocommit_query(read, {"session_id": summary.session_id}),
                    attempts=1,
                )
            else:
                rows = db.autocommit_query(read, {"session_id": summary.session_id})
        except Exception as exc:
            summary.database_check = f"unavailable: {exc}"
            log.error(
                "could not check this run's counts against the database (%s): success %d, failed %d as the "
                "workers reported them",
                exc,
                summary.success,
                summary.failed,
            )
            return
        have = {str(st): int(n) for st, n in rows}
        ok, bad = have.get("success", 0), have.get("failed", 0)
        if (ok, bad) == (summary.success, summary.failed):
            summary.database_check = "match"
            return
        text = (
            f"the run counted success {summary.success}, failed {summary.failed}; the database holds success {ok}, "
            f"failed {bad} for this run (session {summary.session_id})"
        )
        summary.database_check = f"differs: {text}"
        missing = max(0, summary.success - ok) + max(0, summary.failed - bad)
        summary.success, summary.failed = ok, bad
        if missing:
            log.error(
                "%s: %d application(s) reported done are not in the database; they stay pending",
                text,
                missing,
            )
            if not summary.stop_reason and not summary.interrupted:
                summary.stop_reason = StopReason(
                    StopKind.ERROR,
                    f"{missing} application(s) the run counted as done are not in the database "
                    f"({text}); they stay pending: run the same command again",
                )
        else:
            log.warning("%s: the summary gives the database's figures", text)

    def _finish_summary(
        self, summary: RunSummary, coord: ParallelCoordinator, started: float
    ) -> RunSummary:
        """Elapsed time, the last timeline point (when the last result arrived: shutdown is not
        processing time), the rates, the metrics file; the log's last line: the outcome."""
        now = time.time()
        summary.elapsed_s = round(now - started, 3)
        self._sample(coord, started, self._last_result_at or now)
        rates = self._rates(coord, now)
        summary.rate_per_min, summary.average_per_min = rates.recent_per_min, rates.average_per_min
        last = self._last_result_at
        summary.first_result_at = self._first_result_at
        summary.rates_end_at = now if rates.running or last is None else last
        summary.stage_ms = {k: round(v, 1) for k, v in coord.stage_ms.items()}
        summary.metrics_file = self._write_metrics(
            summary,
            coord,
            started,
            "interrupted"
            if summary.interrupted
            else "stopped"
            if summary.stop_reason
            else "finished",
        )
        log.info(
            "run %s summary: %s", summary.session_id, json.dumps(summary.public(), default=str)
        )
        log_outcome(summary.session_id, summary.outcome, summary.exit_code, summary.stop_reason)
        return summary

    # -- workers, metrics ------------------------------------------------------------------------
    def _note_ready(self, coord: ParallelCoordinator, pid: int) -> None:
        """The first time every worker has reported ready: how long their start took (pool created
        to all ready), in the log and the summary."""
        self._ready.add(pid)
        pool_started = getattr(self, "_pool_started", None)
        if (
            coord.summary.worker_startup_s is None
            and pool_started is not None
            and len(self._ready) >= self.ctx.workers
        ):
            coord.summary.worker_startup_s = round(time.monotonic() - pool_started, 3)
            log.info(
                "%d workers ready in %.2f s (start method %s)",
                self.ctx.workers,
                coord.summary.worker_startup_s,
                self._start_method,
            )

    def _metrics_file_path(self) -> Path | None:
        ctx = self.ctx
        if not ctx.metrics_dir:
            return None
        return Path(ctx.metrics_dir) / (
            f"run-{time.strftime('%Y%m%d-%H%M%S')}-i{ctx.instance_id}of{ctx.instance_count}"
            f"-{ctx.session_id[:8]}.json"
        )

    def _write_metrics(
        self, summary: RunSummary, coord: ParallelCoordinator, started: float, status: str
    ) -> str | None:
        """Write the metrics file whole, through a temporary file and os.replace: a reader (or a
        kill) never sees half a file. ``status``: running (rewritten at every timeline sample),
        then finished, interrupted or stopped. While running, ``outcome`` and ``exit_code`` are
        null: a killed run's file shows a run that never ended, not a guessed end."""
        path = self._metrics_path
        if path is None:
            return None
        summary.status = status
        summary.metrics_file = str(path)
        if status == "running":
            summary.elapsed_s = round(time.time() - started, 3)
            summary.stage_ms = {k: round(v, 1) for k, v in coord.stage_ms.items()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:  # the folder was proven at start (prepare_folders); a disk that fills up since must not
            path.parent.mkdir(parents=True, exist_ok=True)  # turn a finished run into a crash
            data = summary.public()
            if status == "running":
                data["outcome"] = data["exit_code"] = None
            tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.error("metrics not written to %s: %s", path, exc)
            try:
                tmp.unlink()
            except OSError:
                pass
            return None
        return str(path)


def log_outcome(
    session_id: str, outcome: str, exit_code: int, reason: StopReason | str | None = None
) -> None:
    """The last line of every run's log: how it ended and the exit code, whatever stopped it,
    and the first line of the reason (logged whole before)."""
    why = f": {str(reason).splitlines()[0]}" if reason else ""
    log.log(
        logging.INFO if exit_code in (0, 1) else logging.ERROR,
        "run %s ended: %s, exit code %d%s",
        session_id,
        outcome,
        exit_code,
        why,
    )


def log_stopped_early(session_id: str, exc: BaseException) -> int:
    """A run that ended with an exception before it had a summary (a missing contract file, a
    database that never answered, a signal while starting, a bug): the reason (with the traceback
    for a bug) and the same last line as a summarised run. Returns the exit code it means."""
    code = exit_code_of(exc)
    if code == 130:
        log_outcome(session_id, outcome_of(code), code, "a stop signal arrived while starting")
        return code
    reason = StopReason.of(exc)
    crash = reason.kind is StopKind.CRASH
    log.error("run stopped before it started: %s", reason, exc_info=exc if crash else None)
    log_outcome(session_id, outcome_of(code, reason), code, reason)
    return code


def _moment(t: float | None) -> _dt.datetime | None:
    """A time.time() moment as the aware datetime progress.py measures with."""
    return None if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc)


def _recv(conn: Connection) -> tuple | None:
    """One message, or None at the end of the pipe."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _drain(conn: Connection) -> list[tuple]:
    """Every message still in the pipe of a worker that died (a closed pipe polls as readable
    forever, so this stops at the first end-of-file)."""
    out: list[tuple] = []
    try:
        while conn.poll():
            out.append(conn.recv())
    except (EOFError, OSError):
        pass
    return out


def run(options: RunContext, on_progress: Callable[[int], None] | None = None) -> RunSummary:
    """Run one instance with the library's defaults (no progress bar)."""
    return ProductionProcessor(options, on_progress).run()
