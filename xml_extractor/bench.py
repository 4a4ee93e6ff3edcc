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
    """One process: load its share (not timed), then decode + scoped parse + map each document."""
    from .errors import DocumentFailure
    from .mapping import map_document

    plan = compile_contract(load_contract(args[1]))
    docs = _share(*args)
    t = time.perf_counter()
    for app_id, text in docs:
        try:
            map_document(plan, text, app_id)
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
        db.begin()
        for t in tables:
            db.execute(db.sql("delete_all_rows", table=t)).close()
        db.commit()

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
    from .mock_rl import generator_for

    if contract_path is None and product != "cc":
        contract_path = "rec_lending" if product == "rl" else "credit_card,rec_lending"
    u = url if isinstance(url, DatabaseURL) else parse_url(url)
    contract = load_contract(contract_path)
    db = Database(u, contract)
    init_db(db)
    have = int(db.scalar(db.sql("bench_corpus_size"), {"count": count}))
    if have < count:
        echo(f"generating the corpus: {count - have} documents (seed {seed}), once")
        generate_into_db(
            db, count, seed, 0.0, 1, generator=generator_for(product, seed, 0.0, rl_share)
        )
    sizes = sorted(len(x) for _, x in _load_corpus(db, count))
    res = BenchResult(
        database=u.display(),
        documents=len(sizes),
        workers=workers,
        batch_size=batch_size,
        runs=runs,
        median_kb=round(sizes[len(sizes) // 2] / 1024, 1),
        machine=_machine(),
    )
    del sizes
    res.ceiling_docs_per_s = round(
        _parallel_rate(_timed_parse, u, contract_path, count, workers), 1
    )
    echo(
        f"full-parse ceiling: {res.ceiling_docs_per_s:.0f} docs/s with {workers} processes "
        f"({res.ceiling_docs_per_s * 60:.0f}/min)"
    )
    res.map_only_docs_per_s = round(_parallel_rate(_timed_map, u, contract_path, count, workers), 1)
    echo(
        f"map only (decode + scoped parse + map, no database): {res.map_only_docs_per_s:.0f} docs/s"
    )
    stage_total: dict[str, float] = {}
    for r in range(runs):
        empty_targets(db)
        s = run(
            RunOptions(
                url=u,
                contract_path=contract_path,
                workers=workers,
                batch_size=batch_size,
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
        for k, v in s.stage_ms.items():
            stage_total[k] = stage_total.get(k, 0.0) + v
        echo(
            f"end to end run {r + 1}/{runs}: {s.success + s.failed} apps in {s.elapsed_s:.1f}s = {rate:.0f}/min"
        )
    db.close()
    e = res.e2e_apps_per_min
    res.e2e_median, res.e2e_min, res.e2e_max = round(statistics.median(e), 1), min(e), max(e)
    res.ratio_e2e_to_ceiling = round(res.e2e_median / 60 / res.ceiling_docs_per_s, 3)
    res.ratio_map_to_ceiling = round(res.map_only_docs_per_s / res.ceiling_docs_per_s, 3)
    apps = max(1, count * runs)
    res.stage_ms_per_app = {k: round(v / apps, 3) for k, v in stage_total.items()}
    if metrics_dir:
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        p = Path(metrics_dir) / f"bench-{u.dialect}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        p.write_text(json.dumps(asdict(res), indent=2), encoding="utf-8")
        echo(f"written: {p}")
    return res


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
