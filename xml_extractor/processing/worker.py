"""A long-lived worker process: fetch a batch's documents, parse and map each, write them all.

Workers get application ids (not documents) from the coordinator and read the XML themselves,
so the 145 KB documents cross the process boundary once, from the database. Each worker keeps
its contract, compiled plan and database connection for its whole life.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ..contract.compiler import MappingPlan, compile_contract
from ..contract.loader import load_contract
from ..db.database import ConnectionLost, Database
from ..db.store import BatchWriter, Outcome, RunIdentity
from ..db.url import DatabaseURL
from ..errors import ConfigError, DocumentFailure
from ..mapping import map_document
from ..parsing import NeedFullDocument

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    url: DatabaseURL
    contract_path: str | None
    session_id: str
    instance_id: int
    instance_count: int
    reconnect_seconds: float
    log_file: str | None
    log_level: str


@dataclass
class BatchResult:
    success: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[int, str, str]] | None = None
    fetch_ms: float = 0.0
    parse_ms: float = 0.0
    map_ms: float = 0.0
    write_ms: float = 0.0
    peak_rss_kb: int = 0
    rss_kb: int = 0


def map_outcome(plan: MappingPlan, app_id: int, xml: Any, attempt: int, min_length: int, tail: Any = None) -> Outcome:
    """Parse + map one row; any failure becomes an Outcome with stage and reason, never an exception
    (except NeedFullDocument, when only the head was fetched: the caller fetches it whole)."""
    t0 = time.perf_counter()
    try:
        mapped = map_document(plan, xml, expected_app_id=app_id, min_length=min_length, tail=tail)
        return Outcome(app_id, attempt, mapped, parse_ms=mapped.parse_ms, map_ms=mapped.map_ms)
    except NeedFullDocument:
        raise
    except DocumentFailure as f:
        return Outcome(app_id, attempt, None, f.stage, f.error_class, f.reason,
                       parse_ms=(time.perf_counter() - t0) * 1000)
    except MemoryError:
        return Outcome(app_id, attempt, None, "parse", "MemoryError", "the document needs more memory than is available")
    except Exception as exc:  # noqa: BLE001 - one bad document must never stop the run
        return Outcome(app_id, attempt, None, "map", type(exc).__name__, f"unexpected error while mapping: {exc!r}"[:4000])


def process_batch(db: Database, plan: MappingPlan, writer: BatchWriter, ids: list[int], retry: bool) -> BatchResult:
    res = BatchResult(failures=[])
    t0 = time.perf_counter()
    attempts = dict(db.with_retry(lambda: db.autocommit_query(db.sql("last_attempts"), {"ids": ids})))
    heads = "fetch_heads" in db.dialect.queries
    if heads:  # server dialects: only the head of each document crosses the connection
        marker = f"</{plan.document.scope_steps[-1]}>"
        docs = db.with_retry(lambda: db.autocommit_query(db.sql("fetch_heads"), {
            "marker": marker, "marker_bytes": len(marker.encode()), "ids": ids}))
    else:
        docs = [(a, x, None) for a, x in db.with_retry(lambda: db.autocommit_query(db.sql("fetch_documents"), {"ids": ids}))]
    res.fetch_ms = (time.perf_counter() - t0) * 1000
    outcomes = []
    for app_id, xml, tail in sorted(docs, key=lambda r: r[0]):
        last = attempts.get(app_id)
        if last is not None and not retry:
            res.skipped += 1  # logged since it was selected (another instance): not ours to redo
            continue
        try:
            oc = map_outcome(plan, int(app_id), xml, (last or 0) + 1, db.contract.source_min_length, tail)
        except NeedFullDocument:
            whole = db.with_retry(lambda: db.autocommit_query(db.sql("fetch_documents"), {"ids": [app_id]}))
            oc = map_outcome(plan, int(app_id), whole[0][1] if whole else None, (last or 0) + 1,
                             db.contract.source_min_length)
        res.parse_ms += oc.parse_ms or 0.0
        res.map_ms += oc.map_ms or 0.0
        outcomes.append(oc)
    del docs
    t1 = time.perf_counter()
    results = writer.write(outcomes)
    res.write_ms = (time.perf_counter() - t1) * 1000
    for app_id, (status, stage, error_class) in results.items():
        if status == "success":
            res.success += 1
        elif status == "failed":
            res.failed += 1
            res.failures.append((app_id, stage or "", error_class or ""))
        else:
            res.skipped += 1
    res.peak_rss_kb, res.rss_kb = _rss_kb()
    return res


def _rss_kb() -> tuple[int, int]:
    """This process's own peak and current RSS (VmHWM, VmRSS); ru_maxrss would include the
    parent's memory at fork."""
    peak = cur = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
    except OSError:
        pass
    return peak, cur


def worker_main(conn: Connection, cfg: WorkerConfig) -> None:
    """Entry point of a worker process. Messages in: ("batch", id, ids, retry) | ("stop",).
    Messages out: ("ready", pid) | ("done", id, BatchResult) | ("fatal", id, kind, message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    if cfg.log_file:
        logging.basicConfig(filename=cfg.log_file, level=getattr(logging, cfg.log_level, logging.INFO),
                            format=f"%(asctime)s worker-{os.getpid()} %(levelname)s %(name)s: %(message)s")
    batch_id = None
    try:
        contract = load_contract(cfg.contract_path)
        plan = compile_contract(contract)
        db = Database(cfg.url, contract, cfg.reconnect_seconds)
        writer = BatchWriter(db, plan, RunIdentity(cfg.session_id, cfg.instance_id, cfg.instance_count,
                                                   contract.version_tag))
        conn.send(("ready", os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # the coordinator is gone: nothing of ours is half-written
            if msg[0] == "stop":
                break
            _, batch_id, ids, retry = msg
            result = process_batch(db, plan, writer, ids, retry)
            conn.send(("done", batch_id, result))
            batch_id = None
        db.close()
    except ConnectionLost as exc:
        _send(conn, ("fatal", batch_id, "connection", str(exc)))
    except ConfigError as exc:
        _send(conn, ("fatal", batch_id, "config", str(exc)))
    except Exception as exc:  # noqa: BLE001
        log.exception("worker crashed")
        _send(conn, ("fatal", batch_id, "crash", f"{type(exc).__name__}: {exc}"))


def _send(conn: Connection, msg: tuple) -> None:
    try:
        conn.send(msg)
    except (OSError, EOFError):
        pass
