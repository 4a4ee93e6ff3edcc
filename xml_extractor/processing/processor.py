"""ProductionProcessor: select this instance's share, feed long-lived workers, account for every
application, stop cleanly on Ctrl-C/SIGTERM.

A selector thread pages ahead (selection overlaps processing) into a bounded queue; the main
thread hands batches to idle workers (the ParallelCoordinator part), collects their results,
renews queue leases, and replaces a worker that dies: its batch is retried, then split, and an
application that kills a worker twice is logged as failed instead of looping forever.
"""
from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

from ..contract.compiler import compile_contract
from ..contract.loader import load_contract
from ..db.database import Database, make_dialect
from ..db.store import BatchWriter, Outcome, RunIdentity
from ..db.url import DatabaseURL, parse_url
from ..errors import ConfigError
from .selection import ID_MAX, ID_MIN, SelectionSpec, WorkQueue, partition_batches, queue_batches
from .worker import BatchResult, WorkerConfig, worker_main

log = logging.getLogger("xml_extractor.run")


@dataclass
class RunOptions:
    url: DatabaseURL | str | None = None
    contract_path: str | None = None
    workers: int = 2
    batch_size: int = 200
    limit: int | None = None
    instance_id: int = 0
    instance_count: int = 1
    app_id_start: int | None = None
    app_id_end: int | None = None
    retry_failed: bool = False
    max_attempts: int = 3
    mode: str = "partition"
    lease_seconds: int = 120
    chunk_size: int = 1000
    progress: bool = True
    log_level: str = "INFO"
    logs_dir: str | None = "logs"
    metrics_dir: str | None = "metrics"
    reconnect_seconds: float = 60.0
    only_ids: list[int] | None = None
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def validate(self) -> None:
        if self.instance_count < 1:
            raise ConfigError(f"--instance-count must be at least 1 (got {self.instance_count})")
        if not 0 <= self.instance_id < self.instance_count:
            raise ConfigError(f"--instance-id must be between 0 and {self.instance_count - 1} for "
                              f"--instance-count {self.instance_count} (got {self.instance_id})")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {self.workers})")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit cannot be negative (got {self.limit})")
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1 (got {self.max_attempts})")
        if self.mode not in ("partition", "queue"):
            raise ConfigError(f"--mode must be partition or queue (got {self.mode})")
        if self.mode == "queue" and self.instance_count > 1:
            raise ConfigError("--mode queue shares work through the database: do not combine it with --instance-count")
        if self.app_id_start is not None and self.app_id_end is not None and self.app_id_start > self.app_id_end:
            raise ConfigError(f"--app-id-start {self.app_id_start} is after --app-id-end {self.app_id_end}")
        if self.lease_seconds < 5:
            raise ConfigError("--lease-seconds must be at least 5")


@dataclass
class RunSummary:
    session_id: str
    instance_id: int
    instance_count: int
    mode: str
    database: str
    contract_version: str
    workers: int
    batch_size: int
    started_at: str = ""
    elapsed_s: float = 0.0
    selected: int = 0
    success: int = 0
    failed: int = 0
    skipped: int = 0
    failures_by_stage: dict = field(default_factory=dict)
    failures_by_class: dict = field(default_factory=dict)
    apps_per_minute: float = 0.0
    stage_ms: dict = field(default_factory=dict)
    peak_worker_rss_mb: float = 0.0
    worker_restarts: int = 0
    timeline: list = field(default_factory=list)  # [elapsed s, applications done, max worker RSS MB] every ~5 s
    interrupted: bool = False
    stop_reason: str | None = None
    log_file: str | None = None
    metrics_file: str | None = None

    @property
    def exit_code(self) -> int:
        if self.stop_reason and self.stop_reason.startswith("config"):
            return 2
        if self.interrupted:
            return 130
        if self.stop_reason:
            return 3
        return 1 if self.failed else 0


@dataclass
class _Batch:
    batch_id: int
    ids: list[int]
    chunk_id: int | None
    deaths: int = 0


class _WorkerHandle:
    def __init__(self, ctx: Any, cfg: WorkerConfig) -> None:
        parent, child = ctx.Pipe()
        self.conn = parent
        self.proc = ctx.Process(target=worker_main, args=(child, cfg), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.batch: _Batch | None = None


class ProductionProcessor:
    """One instance of a run. ``run()`` returns a RunSummary; the CLI maps it to an exit code."""

    def __init__(self, options: RunOptions, on_progress: Callable[[int], None] | None = None) -> None:
        options.validate()
        self.opt = options
        self.url = options.url if isinstance(options.url, DatabaseURL) else parse_url(options.url)
        limit = make_dialect(self.url.dialect).max_params - 8
        if options.batch_size > limit:  # a batch's ids are bound parameters of one IN (...) list
            raise ConfigError(f"--batch-size {options.batch_size} is too large for {self.url.dialect}: at most {limit}")
        self.contract = load_contract(options.contract_path)
        self.plan = compile_contract(self.contract)
        self.on_progress = on_progress
        self._stop = threading.Event()
        self._hard_stop = False
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, options.workers * 2))
        self._selector_error: BaseException | None = None
        self._chunks_dispatched: set[int] = set()
        self._chunk_outstanding: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._retry_q: collections.deque[_Batch] = collections.deque()  # batches whose worker died
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{options.session_id[:8]}"

    # -- selection thread -----------------------------------------------------------------------
    def _spec(self) -> SelectionSpec:
        o = self.opt
        return SelectionSpec(batch_size=o.batch_size, limit=o.limit, instance_id=o.instance_id,
                             instance_count=o.instance_count,
                             id_lo=o.app_id_start if o.app_id_start is not None else ID_MIN,
                             id_hi=o.app_id_end if o.app_id_end is not None else ID_MAX,
                             retry_failed=o.retry_failed, max_attempts=o.max_attempts, mode=o.mode,
                             lease_seconds=o.lease_seconds, chunk_size=o.chunk_size, owner=self.owner,
                             only_ids=o.only_ids)

    def _selector(self) -> None:
        db = None
        try:
            db = Database(self.url, self.contract, self.opt.reconnect_seconds)
            spec = self._spec()
            if spec.mode == "queue":
                def chunk_done(cid: int) -> None:
                    self._put(("chunk_end", cid))
                source = queue_batches(db, spec, self._stop, chunk_done)
            else:
                source = partition_batches(db, spec, self._stop)
            n = 0
            for ids, chunk_id in source:
                n += 1
                self._put(("batch", _Batch(n, ids, chunk_id)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self._selector_error = exc
        finally:
            self._put(("end", None))
            if db is not None:
                db.close()

    def _put(self, item: tuple) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._stop.is_set() and item[0] == "batch":
                    return

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        o = self.opt
        started = time.time()
        summary = RunSummary(session_id=o.session_id, instance_id=o.instance_id, instance_count=o.instance_count,
                             mode=o.mode, database=self.url.display(), contract_version=self.contract.version_tag,
                             workers=o.workers, batch_size=o.batch_size,
                             started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        log_file = self._setup_logging()
        summary.log_file = log_file
        log.info("run %s: %s, contract %s, instance %d/%d (%s), %d workers, batch %d", o.session_id, self.url.display(),
                 self.contract.version_tag, o.instance_id, o.instance_count, o.mode, o.workers, o.batch_size)
        main_db = Database(self.url, self.contract, o.reconnect_seconds)
        wq = WorkQueue(main_db, self._spec()) if o.mode == "queue" else None
        ctx = _worker_context()
        cfg = WorkerConfig(self.url, o.contract_path, o.session_id, o.instance_id, o.instance_count,
                           o.reconnect_seconds, log_file, o.log_level)
        workers = [_WorkerHandle(ctx, cfg) for _ in range(o.workers)]
        selector = threading.Thread(target=self._selector, name="selector", daemon=True)
        old_handlers = self._install_signals()
        selector.start()
        retry_q: collections.deque[_Batch] = self._retry_q
        selection_done = False
        stage_ms = collections.Counter()
        last_renew = time.monotonic()
        last_log = last_sample = time.monotonic()
        self._rss_window = 0
        self._analyze_at = [1000, 10000, 100000]  # refresh planner statistics as the tables grow
        try:
            while True:
                if self._hard_stop:
                    break
                # hand out work
                for w in workers:
                    if not (w.ready and w.batch is None) or self._stop.is_set():
                        continue
                    b = retry_q.popleft() if retry_q else None
                    while b is None and not selection_done:
                        try:
                            kind, item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if kind == "batch":
                            b = item
                        elif kind == "chunk_end":
                            with self._lock:
                                self._chunks_dispatched.add(item)
                            self._maybe_finish_chunk(wq, item)
                        else:
                            selection_done = True
                    if b is None:
                        break
                    w.batch = b
                    if b.chunk_id is not None:
                        self._chunk_outstanding[b.chunk_id] += 1
                    summary.selected += len(b.ids) if b.deaths == 0 else 0
                    w.conn.send(("batch", b.batch_id, b.ids, o.retry_failed))
                if self._selector_error is not None and selection_done:
                    raise self._selector_error
                busy = [w for w in workers if w.batch is not None or not w.ready]
                if not busy and (selection_done or self._stop.is_set()) and not retry_q:
                    break
                # wait for results or deaths
                waitables = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
                for ready in wait(waitables, timeout=0.2):
                    for i, w in enumerate(workers):
                        if ready is w.conn:
                            self._on_message(w, summary, stage_ms, wq)
                        elif ready == w.proc.sentinel and not w.proc.is_alive():
                            workers[i] = self._on_death(ctx, cfg, w, retry_q, summary, main_db)
                # pull any remaining control markers even when all workers are busy
                if not selection_done:
                    try:
                        while True:
                            kind, item = self._queue.queue[0]
                            if kind == "chunk_end":
                                self._queue.get_nowait()
                                with self._lock:
                                    self._chunks_dispatched.add(item)
                                self._maybe_finish_chunk(wq, item)
                            else:
                                break
                    except (IndexError, queue.Empty):
                        pass
                now = time.monotonic()
                if wq is not None and now - last_renew > o.lease_seconds / 3:
                    for cid in list(self._chunk_outstanding):
                        wq.renew(cid)
                    last_renew = now
                done_now = summary.success + summary.failed + summary.skipped
                if self._analyze_at and done_now >= self._analyze_at[0]:
                    self._analyze_at.pop(0)
                    self._refresh_statistics(main_db)
                if now - last_sample >= 5:
                    done = summary.success + summary.failed + summary.skipped
                    summary.timeline.append([round(time.time() - started, 1), done, round(self._rss_window / 1024, 1)])
                    self._rss_window = 0
                    last_sample = now
                if now - last_log > 10:
                    done = summary.success + summary.failed + summary.skipped
                    log.info("progress: %d done (%d ok, %d failed, %d skipped), %.0f apps/min", done, summary.success,
                             summary.failed, summary.skipped, done / max(1e-9, time.time() - started) * 60)
                    last_log = now
        except BaseException as exc:  # noqa: BLE001
            kind = "config" if isinstance(exc, ConfigError) else "error"
            summary.stop_reason = f"{kind}: {exc}"
            log.error("run stopped: %s", exc)
            self._stop.set()
        finally:
            self._stop.set()
            self._shutdown(workers, summary, stage_ms, wq)
            self._restore_signals(old_handlers)
            if wq is not None:
                try:
                    wq.release_all()
                except Exception:  # noqa: BLE001
                    pass
            main_db.close()
        summary.elapsed_s = round(time.time() - started, 3)
        # the last point is when the last result arrived (shutdown is not processing time)
        last_at = getattr(self, "_last_result_at", time.time())
        summary.timeline.append([round(last_at - started, 1), summary.success + summary.failed + summary.skipped,
                                 round(getattr(self, "_rss_window", 0) / 1024, 1)])
        done = summary.success + summary.failed
        summary.apps_per_minute = round(done / max(1e-9, summary.elapsed_s) * 60, 1)
        summary.stage_ms = {k: round(v, 1) for k, v in stage_ms.items()}
        summary.metrics_file = self._write_metrics(summary)
        log.info("run %s finished: %s", o.session_id, json.dumps(_public(summary)))
        return summary

    def _refresh_statistics(self, db: Database) -> None:
        c = self.contract
        tables = [db.table(t.name) for t in c.tables] + [db.names["log"], db.names["events"]]
        stmts = db.dialect.refresh_statistics_sql(tables)
        if not stmts:
            return
        t0 = time.perf_counter()
        try:
            db.conn.autocommit = True
            for s in stmts:
                db.execute(s).close()
        except Exception as exc:  # noqa: BLE001 - statistics are an optimisation, never a reason to stop
            log.warning("could not refresh statistics: %s", exc)
        finally:
            try:
                db.conn.autocommit = False
            except Exception:  # noqa: BLE001
                pass
        log.info("refreshed planner statistics of %d tables in %.2fs", len(stmts), time.perf_counter() - t0)

    def _maybe_finish_chunk(self, wq: WorkQueue | None, cid: int) -> None:
        if wq is None:
            return
        with self._lock:
            waiting = any(b.chunk_id == cid for b in self._retry_q)
            if cid in self._chunks_dispatched and self._chunk_outstanding.get(cid, 0) == 0 and not waiting:
                self._chunks_dispatched.discard(cid)
                self._chunk_outstanding.pop(cid, None)
                wq.finish(cid)

    def _on_message(self, w: _WorkerHandle, summary: RunSummary, stage_ms: collections.Counter, wq: WorkQueue | None) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            return  # death is handled through the sentinel
        if msg[0] == "ready":
            w.ready = True
            return
        if msg[0] == "done":
            res: BatchResult = msg[2]
            b = w.batch
            w.batch = None
            summary.success += res.success
            summary.failed += res.failed
            summary.skipped += res.skipped
            for _, stage, ecls in res.failures or []:
                summary.failures_by_stage[stage] = summary.failures_by_stage.get(stage, 0) + 1
                summary.failures_by_class[ecls] = summary.failures_by_class.get(ecls, 0) + 1
            stage_ms["fetch"] += res.fetch_ms
            stage_ms["parse"] += res.parse_ms
            stage_ms["map"] += res.map_ms
            stage_ms["write"] += res.write_ms
            summary.peak_worker_rss_mb = max(summary.peak_worker_rss_mb, round(res.peak_rss_kb / 1024, 1))
            self._rss_window = max(getattr(self, "_rss_window", 0), res.rss_kb)
            self._last_result_at = time.time()
            if self.on_progress:
                self.on_progress(res.success + res.failed + res.skipped)
            if b is not None and b.chunk_id is not None:
                with self._lock:
                    self._chunk_outstanding[b.chunk_id] -= 1
                self._maybe_finish_chunk(wq, b.chunk_id)
            return
        if msg[0] == "fatal":
            _, _, kind, text = msg
            summary.stop_reason = f"{'config' if kind == 'config' else kind}: {text}"
            log.error("worker %s stopped the run: %s", w.proc.pid, text)
            self._stop.set()
            self._hard_stop = True

    def _on_death(self, ctx: Any, cfg: WorkerConfig, w: _WorkerHandle, retry_q: collections.deque,
                  summary: RunSummary, main_db: Database) -> _WorkerHandle:
        code = w.proc.exitcode
        b = w.batch
        log.warning("worker %s died (exit code %s)%s", w.proc.pid, code, f" holding batch {b.batch_id}" if b else "")
        summary.worker_restarts += 1
        if summary.worker_restarts > 50:
            summary.stop_reason = "error: workers keep dying (more than 50 restarts); see the log"
            self._stop.set()
            self._hard_stop = True
        if b is not None:
            b.deaths += 1
            if b.chunk_id is not None:
                self._chunk_outstanding[b.chunk_id] -= 1  # counted again when it goes back out
            if b.deaths == 1:
                retry_q.appendleft(b)
            elif len(b.ids) > 1:
                for i, app_id in enumerate(b.ids):  # isolate the application that kills workers
                    retry_q.append(_Batch(b.batch_id * 100000 + i, [app_id], b.chunk_id, deaths=1))
            else:
                self._log_worker_crash(main_db, b.ids[0], code, summary)
        if self._stop.is_set():
            return w
        return _WorkerHandle(ctx, cfg)

    def _log_worker_crash(self, db: Database, app_id: int, code: Any, summary: RunSummary) -> None:
        writer = BatchWriter(db, self.plan, RunIdentity(self.opt.session_id, self.opt.instance_id,
                                                        self.opt.instance_count, self.contract.version_tag))
        last = db.autocommit_query(db.sql("last_attempts"), {"ids": [app_id]})
        attempt = (last[0][1] if last else 0) + 1
        res = writer.write([Outcome(app_id, attempt, None, "parse", "WorkerCrashed",
                                    f"the worker process died twice while processing this application (exit code {code})")])
        st = res.get(app_id, ("skipped",))[0]
        if st == "failed":
            summary.failed += 1
            summary.failures_by_stage["parse"] = summary.failures_by_stage.get("parse", 0) + 1
            summary.failures_by_class["WorkerCrashed"] = summary.failures_by_class.get("WorkerCrashed", 0) + 1

    def _shutdown(self, workers: list[_WorkerHandle], summary: RunSummary, stage_ms: collections.Counter,
                  wq: WorkQueue | None) -> None:
        """Let in-flight batches commit (unless told to stop hard), then stop the workers."""
        deadline = time.monotonic() + (0 if self._hard_stop else 600)
        while any(w.batch is not None and w.proc.is_alive() for w in workers) and time.monotonic() < deadline:
            if self._hard_stop:
                break
            conns = [w.conn for w in workers if w.batch is not None and w.proc.is_alive()]
            for ready in wait(conns + [w.proc.sentinel for w in workers if w.batch is not None], timeout=0.5):
                for w in workers:
                    if ready is w.conn:
                        self._on_message(w, summary, stage_ms, wq)
                    elif ready == w.proc.sentinel:
                        w.batch = None
        for w in workers:
            try:
                w.conn.send(("stop",))
            except (OSError, EOFError, BrokenPipeError):
                pass
        for w in workers:
            w.proc.join(timeout=2 if not self._hard_stop else 0.5)
            if w.proc.is_alive():
                w.proc.terminate()  # an open transaction is rolled back by the database
                w.proc.join(timeout=5)

    # -- signals, logs, metrics -----------------------------------------------------------------
    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        handlers = {}

        def on_signal(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                self._hard_stop = True  # second Ctrl-C: stop now, open transactions roll back
                return
            log.warning("received %s: finishing in-flight batches, then stopping (again to stop at once)",
                        signal.Signals(signum).name)
            self._interrupted = True
            self._stop.set()
        for s in (signal.SIGINT, signal.SIGTERM):
            handlers[s] = signal.signal(s, on_signal)
        return handlers

    def _restore_signals(self, handlers: dict) -> None:
        for s, h in handlers.items():
            signal.signal(s, h)

    @property
    def interrupted(self) -> bool:
        return getattr(self, "_interrupted", False)

    def _setup_logging(self) -> str | None:
        o = self.opt
        root = logging.getLogger("xml_extractor")
        root.setLevel(getattr(logging, o.log_level.upper(), logging.INFO))
        if not o.logs_dir:
            return None
        Path(o.logs_dir).mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = str(Path(o.logs_dir) / f"run-{stamp}-i{o.instance_id}of{o.instance_count}-{o.session_id[:8]}.log")
        h = logging.FileHandler(path, encoding="utf-8")
        h.setFormatter(logging.Formatter("%(asctime)s main %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
        self._log_handler = h
        return path

    def _write_metrics(self, summary: RunSummary) -> str | None:
        summary.interrupted = summary.interrupted or self.interrupted
        o = self.opt
        h = getattr(self, "_log_handler", None)
        if h is not None:
            logging.getLogger("xml_extractor").removeHandler(h)
            h.close()
        if not o.metrics_dir:
            return None
        Path(o.metrics_dir).mkdir(parents=True, exist_ok=True)
        path = Path(o.metrics_dir) / f"run-{time.strftime('%Y%m%d-%H%M%S')}-i{o.instance_id}of{o.instance_count}-{o.session_id[:8]}.json"
        summary.metrics_file = str(path)
        path.write_text(json.dumps(_public(summary), indent=2, default=str), encoding="utf-8")
        return str(path)


def _worker_context() -> Any:
    """forkserver with the worker module preloaded: a new worker is a cheap fork of a clean,
    single-threaded server (never of this multi-threaded coordinator), with lxml and the mapping
    code already imported. Falls back to spawn where forkserver does not exist."""
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(["xml_extractor.processing.worker", "xml_extractor.contract.compiler"])
    return ctx


def _public(summary: RunSummary) -> dict:
    d = asdict(summary)
    d["exit_code"] = summary.exit_code
    return d


def run(options: RunOptions, on_progress: Callable[[int], None] | None = None) -> RunSummary:
    return ProductionProcessor(options, on_progress).run()
