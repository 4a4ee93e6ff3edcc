"""The throughput benchmark: in one run, on the same documents and the same number of processes,
the full-parse ceiling (plain ``lxml.etree.fromstring`` of whole documents), the map-only rate and
end-to-end applications/minute over R runs (target tables emptied between runs)."""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .contract.compiler import compile_contract
from .contract.loader import load_contract
from .db.database import Database
from .db.store import init_db
from .db.url import DatabaseURL, parse_url
from .loading import generate_into_db
from .processing.processor import RunOptions, run


@dataclass
class BenchResult:
    database: str
    documents: int
    workers: int
    batch_size: int
    runs: int
    median_kb: float
    ceiling_docs_per_s: float = 0.0
    map_only_docs_per_s: float = 0.0
    e2e_apps_per_min: list[float] = field(default_factory=list)
    e2e_median: float = 0.0
    e2e_min: float = 0.0
    e2e_max: float = 0.0
    ratio_e2e_to_ceiling: float = 0.0
    ratio_map_to_ceiling: float = 0.0
    stage_ms_per_app: dict = field(default_factory=dict)
    # the workers' whole time per application (W x wall clock) and its part outside the stages
    worker_ms_per_app: float = 0.0
    outside_ms_per_app: dict = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)
    load_average_after: list[float] = field(default_factory=list)
    peak_worker_rss_mb: float = 0.0
    worker_startup_s: list[float] = field(
        default_factory=list
    )  # each run: starting its workers until all are ready
    machine: dict = field(default_factory=dict)


def _load_corpus(db: Database, count: int) -> list[tuple[int, str]]:
    rows = db.autocommit_query(db.sql("bench_corpus"), {"count": count})
    return [(int(a), x) for a, x in rows]


def _share(
    url: DatabaseURL, contract_path: str | None, count: int, k: int, n: int
) -> list[tuple[int, str]]:
    db = Database(url, load_contract(contract_path))
    try:
        rows = db.autocommit_query(
            db.sql("bench_corpus_share"),  # only this process's share
            {"count": count, "modulus": n, "remainder": k},
        )
        return [(int(a), x) for a, x in rows]
    finally:
        db.close()


def _timed_parse(args: tuple) -> tuple[int, float]:
    """One process: load its share of the corpus (not timed), then parse every document whole."""
    from lxml import etree

    docs = [x.lstrip("\ufeff").encode("utf-8") for _, x in _share(*args)]
    t = time.perf_counter()
    for d in docs:
        etree.fromstring(d)
    return len(docs), time.perf_counter() - t


def _timed_map(args: tuple) -> tuple[int, float]:
    """One process: load its share (not timed), then decode + scoped parse + map each document,
    each in the form the run's fetch gives it (SQLite: the stored bytes of its head and its
    decoded last bytes, as SQLiteDialect.read_heads reads them by blob)."""
    from .db.sqlite import head_and_tail
    from .errors import DocumentFailure
    from .mapping import map_document
    from .parsing import NeedFullDocument, StoredBytes, decoded_tail

    plan = compile_contract(load_contract(args[1]))
    marker = f"</{plan.document.scope_steps[-1]}>".encode()
    stored = args[0].dialect == "sqlite"
    docs: list[tuple[int, Any, Any, Any]] = []  # (app_id, what the fetch gives, tail, whole)
    for a, x in _share(*args):
        if stored and isinstance(x, str):
            whole = StoredBytes(x.encode("utf-8"), True)
            head, tail = head_and_tail(whole.raw, marker)
            if tail is None:
                docs.append((a, whole, None, whole))
            else:
                docs.append((a, StoredBytes(head, True), decoded_tail(tail, True), whole))
        else:
            docs.append((a, x, None, x))
    t = time.perf_counter()
    for app_id, value, tail, whole in docs:
        try:
            try:
                map_document(plan, value, app_id, tail=tail)
            except NeedFullDocument:  # the run fetches it whole
                map_document(plan, whole, app_id)
        except DocumentFailure:
            pass
    return len(docs), time.perf_counter() - t


def _parallel_rate(
    fn: Any, url: DatabaseURL, contract_path: str | None, count: int, workers: int
) -> float:
    """Documents/second of ``workers`` processes running at once; loading is not timed."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.map(
            fn, [(url, contract_path, count, k, workers) for k in range(workers)], chunksize=1
        )
    return sum(n for n, _ in results) / max(t for _, t in results)


def empty_targets(db: Database) -> None:
    c = db.contract
    tables = [db.table(t.name) for t in reversed(c.tables)] + [
        db.names["events"],
        db.names["log"],
        db.names["queue"],
        db.names["progress"],
    ]

    def tx() -> None:
        with db.transaction():
            for t in tables:
                db.execute(db.sql("delete_all_rows", table=t)).close()

    db.with_retry(tx)
    db.execute_outside_transaction(db.dialect.reclaim_space_sql(tables))


def bench(
    url: DatabaseURL | str | None,
    count: int,
    runs: int,
    workers: int,
    batch_size: int,
    contract_path: str | None = None,
    seed: int = 20261122,
    metrics_dir: str | None = "metrics",
    echo: Any = print,
    product: str = "cc",
    rl_share: float = 0.3,
) -> BenchResult:
    """``product``: the corpus, cc | rl | mixed (mock_rl.py); the contract(s) default to its line(s)."""
    if contract_path is None and product != "cc":
        contract_path = "rec_lending" if product == "rl" else "credit_card,rec_lending"
    u = url if isinstance(url, DatabaseURL) else parse_url(url)
    db = Database(u, load_contract(contract_path))
    try:
        init_db(db)
        _ensure_corpus(db, count, seed, product, rl_share, echo)
        res = BenchResult(
            database=u.display(),
            documents=0,
            workers=workers,
            batch_size=batch_size,
            runs=runs,
            median_kb=0.0,
            machine=_machine(),
            load_average=_load_average(),
        )
        res.documents, res.median_kb = _corpus_size(db, count)
        _measure_rates(res, u, contract_path, count, echo)
        totals = _end_to_end(res, db, u, contract_path, count, echo)
    finally:
        db.close()
    _summarise(res, totals, count)
    res.load_average_after = _load_average()
    _write_result(res, u, metrics_dir, echo)
    return res


def _ensure_corpus(
    db: Database, count: int, seed: int, product: str, rl_share: float, echo: Any
) -> None:
    """Generate the documents the corpus lacks (once per database and count)."""
    from .mock_rl import generator_for

    have = int(db.scalar(db.sql("bench_corpus_size"), {"count": count}))
    if have < count:
        echo(f"generating the corpus: {count - have} documents (seed {seed}), once")
        generate_into_db(
            db, count, seed, 0.0, 1, generator=generator_for(product, seed, 0.0, rl_share)
        )


def _corpus_size(db: Database, count: int) -> tuple[int, float]:
    """(documents, median KB) of the corpus."""
    sizes = sorted(len(x) for _, x in _load_corpus(db, count))
    return len(sizes), round(sizes[len(sizes) // 2] / 1024, 1)


def _measure_rates(
    res: BenchResult, u: DatabaseURL, contract_path: str | None, count: int, echo: Any
) -> None:
    """The full-parse ceiling and the map-only rate, with the same processes and documents."""
    w = res.workers
    res.ceiling_docs_per_s = round(_parallel_rate(_timed_parse, u, contract_path, count, w), 1)
    echo(
        f"full-parse ceiling: {res.ceiling_docs_per_s:.0f} docs/s with {w} processes "
        f"({res.ceiling_docs_per_s * 60:.0f}/min)"
    )
    res.map_only_docs_per_s = round(_parallel_rate(_timed_map, u, contract_path, count, w), 1)
    echo(
        f"map only (decode + scoped parse + map, no database): {res.map_only_docs_per_s:.0f} docs/s"
    )


def _end_to_end(
    res: BenchResult,
    db: Database,
    u: DatabaseURL,
    contract_path: str | None,
    count: int,
    echo: Any,
) -> dict[str, float]:
    """R whole runs on emptied targets; returns the ms summed over the runs: each stage, the
    workers' waiting and bookkeeping, their start-up and the workers' whole time (W x wall)."""
    totals: dict[str, float] = {}
    for r in range(res.runs):
        empty_targets(db)
        s = run(
            RunOptions(
                url=u,
                contract_path=contract_path,
                workers=res.workers,
                batch_size=res.batch_size,
                progress=False,
                app_id_start=1,
                app_id_end=count,
                logs_dir=None,
                metrics_dir=None,
                log_level="WARNING",
            )
        )
        if s.stop_reason:
            raise RuntimeError(f"benchmark run stopped: {s.stop_reason}")
        rate = (s.success + s.failed) / max(s.elapsed_s, 1.0) * 60  # end to end, start-up included
        res.e2e_apps_per_min.append(rate)
        res.peak_worker_rss_mb = max(res.peak_worker_rss_mb, s.peak_worker_rss_mb)
        if s.worker_startup_s is not None:
            res.worker_startup_s.append(s.worker_startup_s)
            totals["start-up"] = (
                totals.get("start-up", 0.0) + s.worker_startup_s * 1000 * res.workers
            )
        for k, v in s.stage_ms.items():
            totals[k] = totals.get(k, 0.0) + v
        totals["workers x wall"] = (
            totals.get("workers x wall", 0.0) + s.elapsed_s * 1000 * res.workers
        )
        echo(
            f"end to end run {r + 1}/{res.runs}: {s.success + s.failed} apps in {s.elapsed_s:.1f}s "
            f"= {rate:.0f}/min"
        )
    return totals


STAGES = ("fetch", "parse", "map", "write")
# the workers' time outside the stages, as bench names it (RunSummary.stage_ms keys, start-up)
OUTSIDE = {
    "start-up": "worker start-up",
    "wait": "waiting for a batch",
    "other": "batch bookkeeping",
}


def _summarise(res: BenchResult, totals: dict[str, float], count: int) -> None:
    """Medians, ratios, and the time per application: by stage, and outside the stages (the
    workers' whole time, W x wall clock, less the stages: start-up, waiting for a batch, the
    batch's bookkeeping, and the unexplained rest: the coordinator's start before the pool, the
    last batches' imbalance, shutdown)."""
    e = res.e2e_apps_per_min
    res.e2e_median, res.e2e_min, res.e2e_max = round(statistics.median(e), 1), min(e), max(e)
    res.ratio_e2e_to_ceiling = round(res.e2e_median / 60 / res.ceiling_docs_per_s, 3)
    res.ratio_map_to_ceiling = round(res.map_only_docs_per_s / res.ceiling_docs_per_s, 3)
    apps = max(1, count * res.runs)
    res.stage_ms_per_app = {k: round(totals.get(k, 0.0) / apps, 3) for k in STAGES}
    whole = totals.get("workers x wall", 0.0)
    res.worker_ms_per_app = round(whole / apps, 3)
    outside = {label: totals.get(k, 0.0) for k, label in OUTSIDE.items()}
    explained = sum(totals.get(k, 0.0) for k in STAGES) + sum(outside.values())
    outside["unexplained"] = whole - explained
    res.outside_ms_per_app = {k: round(v / apps, 3) for k, v in outside.items()}


def _write_result(res: BenchResult, u: DatabaseURL, metrics_dir: str | None, echo: Any) -> None:
    if metrics_dir:
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        p = Path(metrics_dir) / f"bench-{u.dialect}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        p.write_text(json.dumps(asdict(res), indent=2), encoding="utf-8")
        echo(f"written: {p}")


def _load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: beside every figure)."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # not on Windows
        return []


def _machine() -> dict:
    import os
    import platform
    import sqlite3

    import lxml.etree

    from .processing.processor import WORKER_PRELOAD
    from .supervision import worker_context

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "start_method": worker_context(WORKER_PRELOAD).get_start_method(),
        "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, lxml.etree.LIBXML_VERSION)),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }
