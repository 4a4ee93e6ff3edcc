"""A long-lived worker process: fetch a batch's documents, parse and map each, write them all.

Workers get application ids (not documents) from the coordinator and read the XML themselves,
so the 145 KB documents cross the process boundary once, from the database. Each worker keeps
its contract, compiled plan and database connection for its whole life.

A worker ignores the stop signals (supervision.stop_signals: Ctrl-C, Ctrl-Break, a service stop, a
closed terminal reach the whole process group), and the coordinator, not the signal, decides when
they stop (it lets in-flight batches commit, then sends "stop" through the pipe). A worker dies with
its run: it watches a lifeline from the run (supervision.ParentWatch); once the run is gone it
starts no batch, commits nothing (the check runs right before each commit) and prints nothing. A
worker configures no logging of its own: its records travel through the pipe to the coordinator,
whose process logs them with whatever handlers the application (the CLI) configured.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..contract.compiler import MappingPlan, compile_contract
from ..contract.loader import load_contract
from ..contract.model import Contract
from ..db.database import ConnectionLost, Database
from ..db.store import BatchWriter, Outcome
from ..errors import ConfigError, DocumentFailure, TransientDatabaseError
from ..mapping import map_document
from ..parsing import NeedFullDocument
from ..supervision import ParentGone, ParentWatch, ignore_stop_signals, memory_kb
from .context import RunContext, StopKind

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    success: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    fetch_ms: float = 0.0
    parse_ms: float = 0.0
    map_ms: float = 0.0
    write_ms: float = 0.0
    wait_ms: float = 0.0  # the worker idle before this batch: pipe round trip, dispatch, selection
    other_ms: float = 0.0  # the batch's own time outside the four stages (bookkeeping, queries)
    peak_rss_kb: int = 0
    rss_kb: int = 0


def map_outcome(
    plan: MappingPlan, app_id: int, xml: Any, attempt: int, min_length: int, tail: Any = None
) -> Outcome:
    """Parse + map one row; any failure becomes an Outcome with stage and reason, never an exception
    (except NeedFullDocument, when only the head was fetched: the caller fetches it whole)."""
    t0 = time.perf_counter()
    try:
        mapped = map_document(plan, xml, expected_app_id=app_id, min_length=min_length, tail=tail)
        return Outcome(app_id, attempt, mapped, parse_ms=mapped.parse_ms, map_ms=mapped.map_ms)
    except NeedFullDocument:
        raise
    except DocumentFailure as f:
        return Outcome(
            app_id,
            attempt,
            None,
            f.stage,
            f.error_class,
            f.reason,
            parse_ms=(time.perf_counter() - t0) * 1000,
            contract=f.contract,
        )
    except MemoryError:
        return Outcome(
            app_id,
            attempt,
            None,
            "parse",
            "MemoryError",
            "the document needs more memory than is available",
        )
    except Exception as exc:
        return Outcome(
            app_id,
            attempt,
            None,
            "map",
            type(exc).__name__,
            f"unexpected error while mapping: {exc!r}"[:4000],
        )


def process_batch(
    db: Database, plan: MappingPlan, writer: BatchWriter, ids: list[int], retry: bool
) -> BatchResult:
    res = BatchResult()
    t0 = time.perf_counter()
    attempts = dict(
        db.with_retry(lambda: db.autocommit_query(db.sql("last_attempts"), {"ids": ids}))
    )
    # an application with an open reprocess request is redone although it has log rows (H16)
    requested = {
        int(r[0])
        for r in db.with_retry(
            lambda: db.autocommit_query(db.sql("reprocess_existing"), {"ids": ids})
        )
    }
    # only the head of each document (up to the scope's end) and its last bytes: the server
    # dialects send them, SQLite reads them by blob; a whole document comes as its stored bytes
    docs = db.with_retry(
        lambda: db.fetch_documents(
            ids, f"</{plan.document.scope_steps[-1]}>", stored=True, blob_heads=True
        )
    )
    res.fetch_ms = (time.perf_counter() - t0) * 1000
    outcomes = []
    for app_id, xml, tail in sorted(docs, key=lambda r: r[0]):
        last = attempts.get(app_id)
        if last is not None and not retry and app_id not in requested:
            res.skipped += 1  # logged since it was selected (another instance): not ours to redo
            continue
        try:
            oc = map_outcome(
                plan, int(app_id), xml, (last or 0) + 1, db.contract.source_min_length, tail
            )
        except NeedFullDocument:
            whole = db.with_retry(lambda: db.fetch_documents([app_id], stored=True))
            if not whole:
                continue  # the row left the source since its head was read: not selected now
            oc = map_outcome(
                plan, int(app_id), whole[0][1], (last or 0) + 1, db.contract.source_min_length
            )
        res.parse_ms += oc.parse_ms or 0.0
        res.map_ms += oc.map_ms or 0.0
        outcomes.append(oc)
    del docs
    t1 = time.perf_counter()
    results = writer.write(outcomes)
    res.write_ms = (time.perf_counter() - t1) * 1000
    skipped = []
    for app_id, (status, stage, error_class) in results.items():
        if status == "success":
            res.success += 1
        elif status == "failed":
            res.failed += 1
            res.failures.append((app_id, stage or "", error_class or ""))
        else:
            skipped.append(app_id)
    res.skipped += _committed(db, skipped)
    res.peak_rss_kb, res.rss_kb = memory_kb()
    stages = res.fetch_ms + res.parse_ms + res.map_ms + res.write_ms
    res.other_ms = max(0.0, (time.perf_counter() - t0) * 1000 - stages)
    return res


def _committed(db: Database, app_ids: list[int]) -> int:
    """How many of these 'skipped' applications really have a committed log row (written by someone
    else). "Skipped (done elsewhere)" is never counted without one: an id without it stays pending,
    so its queue chunk is not finished and a later claim or run takes it."""
    if not app_ids:
        return 0
    logged = {
        int(r[0])
        for r in db.with_retry(
            lambda: db.autocommit_query(db.sql("last_attempts"), {"ids": app_ids})
        )
    }
    missing = sorted(set(app_ids) - logged)
    if missing:
        log.warning(
            "%d application(s) reported skipped have no committed log row; they stay pending: %s",
            len(missing),
            missing[:10],
        )
    return len(logged & set(app_ids))


class PipeLogHandler(logging.Handler):
    """Sends a worker's log records to the coordinator through the worker's pipe (the worker is
    single-threaded, so it never interleaves with a result message). Once the pipe is closed (the
    run is gone) records are dropped: nobody is left to read them, and an error printed for each
    would reach the operator's terminal."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.closed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.closed:
            return
        try:
            d = dict(record.__dict__)
            d["msg"] = record.getMessage()
            d["args"] = None
            if record.exc_info:
                d["exc_text"] = logging.Formatter().formatException(record.exc_info)
            d["exc_info"] = None
            self.conn.send(("log", d))
        except (OSError, EOFError):
            self.closed = True  # the run is gone
        except Exception:
            self.handleError(record)


def worker_main(conn: Connection, lifeline: Connection | None = None) -> None:
    """Entry point of a worker process. Messages in: ("start", RunContext, Contract | None) first,
    then ("batch", id, ids, retry) | ("stop",). Messages out: ("ready", pid) | ("done", id,
    BatchResult) | ("fatal", id, StopKind, message) | ("log", record dict). ``lifeline``: the run
    holds its other end (supervision.lifeline). The contract is the run's, loaded and checked
    (pickled: its schema validation, most of a worker's start-up, is not repeated); None loads
    it from the context's ``contract_path``. Neither is in the process's start data (see
    processor._WorkerPool.spawn)."""
    ignore_stop_signals()  # the coordinator decides when we stop
    watch = ParentWatch(lifeline) if lifeline is not None else None
    try:
        try:
            _, ctx, contract = conn.recv()  # ("start", ...): the pool sends it first, always
        except (EOFError, OSError):
            return  # the run is gone before it said what to do
        package = logging.getLogger("xml_extractor")
        handler = PipeLogHandler(conn)
        package.handlers = [handler]  # this process's records go to the coordinator's handlers
        package.setLevel(ctx.log_level)
        package.propagate = False
        _serve(conn, ctx, watch, handler, contract)
    except ParentGone:
        pass  # the run is gone: the open transaction was rolled back, nothing to report to
    finally:
        if watch is not None:
            watch.finished()


def _serve(
    conn: Connection,
    ctx: RunContext,
    watch: ParentWatch | None,
    handler: PipeLogHandler,
    contract: Contract | None = None,
) -> None:
    batch_id = None

    def parent_gone() -> bool:
        if watch is not None and watch.gone():
            handler.closed = True  # quiet from here on
            return True
        return False

    try:
        if contract is None:
            contract = load_contract(ctx.contract_path)
        plan = compile_contract(
            contract, ctx.database_url.dialect
        )  # string lengths in the target's unit
        db = Database(ctx.database_url, contract, ctx.reconnect_seconds, connect=False)
        db.connect_patiently()  # a (re)started worker waits for a restarting database like the run does
        writer = BatchWriter(db, plan, ctx.identity(contract.version_tag))
        if watch is not None:
            writer.before_commit = watch.check  # a batch is never committed after the run is gone
        conn.send(("ready", os.getpid()))
        while True:
            idle_from = time.perf_counter()
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # the coordinator is gone: nothing of ours is half-written
            if msg[0] == "stop" or parent_gone():
                break
            _, batch_id, ids, retry = msg
            waited = (time.perf_counter() - idle_from) * 1000
            result = process_batch(db, plan, writer, ids, retry)
            result.wait_ms = waited
            conn.send(("done", batch_id, result))
            batch_id = None
        db.close()
    except ParentGone:
        handler.closed = True
        raise
    except (OSError, EOFError) as exc:  # the pipe to the run broke: gone, or a real I/O error
        if parent_gone() or isinstance(exc, (BrokenPipeError, ConnectionResetError, EOFError)):
            handler.closed = True
            return
        log.exception(
            "worker stopped on an unexpected error (no application is marked failed for it)"
        )
        _send(conn, ("fatal", batch_id, StopKind.CRASH, f"{type(exc).__name__}: {exc}"))
    except (ConnectionLost, TransientDatabaseError) as exc:
        log.error("worker stopped: the database stayed unavailable: %s", exc)
        _send(conn, ("fatal", batch_id, StopKind.CONNECTION, str(exc)))
    except ConfigError as exc:
        _send(conn, ("fatal", batch_id, StopKind.CONFIG, str(exc)))
    except Exception as exc:
        if parent_gone():
            return
        log.exception(
            "worker stopped on an unexpected error (no application is marked failed for it)"
        )
        _send(conn, ("fatal", batch_id, StopKind.CRASH, f"{type(exc).__name__}: {exc}"))


def _send(conn: Connection, msg: tuple) -> None:
    try:
        conn.send(msg)
    except (OSError, EOFError):
        pass
