"""bench: throughput against the full-parse ceiling."""
from __future__ import annotations

import os

import click
from tabulate import tabulate

from .common import ENV, FORMAT, _json, handle_errors

@click.command("bench")
@click.option("--db", "db_url", envvar=ENV + "BENCH_DB", show_envvar=True, default="sqlite:///.cache/bench.db",
              show_default=True, help="Where the corpus and the runs live (its target tables are emptied between runs).")
@click.option("--contract", "contract_path", envvar=ENV + "CONTRACT", default=None)
@click.option("--count", type=click.IntRange(min=10), default=5000, show_default=True, help="Documents in the corpus.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="End-to-end runs (median, min, max).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=20261122, show_default=True)
@click.option("--metrics-dir", default="metrics", show_default=True)
@FORMAT
@handle_errors
def bench_cmd(db_url: str, contract_path: str | None, count: int, runs: int, workers: int, batch_size: int, seed: int,
              metrics_dir: str, fmt: str) -> None:
    """Full-parse ceiling, map-only rate and end-to-end apps/minute on one corpus, in one run."""
    from dataclasses import asdict

    from ..bench import bench
    if db_url.startswith("sqlite:///.cache/"):
        os.makedirs(".cache", exist_ok=True)
    r = bench(db_url, count, runs, workers, batch_size, contract_path, seed, metrics_dir,
              echo=(lambda m: click.echo(m, err=True)))
    if fmt == "json":
        _json(asdict(r))
        return
    click.echo(tabulate([
        ["database", r.database], ["documents (median KB)", f"{r.documents} ({r.median_kb})"],
        ["processes", r.workers], ["full-parse ceiling", f"{r.ceiling_docs_per_s:.0f} docs/s = {r.ceiling_docs_per_s * 60:.0f}/min"],
        ["map only", f"{r.map_only_docs_per_s:.0f} docs/s ({r.ratio_map_to_ceiling:.2f} x ceiling)"],
        ["end to end (median)", f"{r.e2e_median:.0f} apps/min ({r.ratio_e2e_to_ceiling:.2f} x ceiling)"],
        ["end to end (min..max)", f"{r.e2e_min:.0f} .. {r.e2e_max:.0f} apps/min over {r.runs} runs"],
        ["time per app by stage (ms, summed over workers)", ", ".join(f"{k} {v}" for k, v in r.stage_ms_per_app.items())],
        ["peak worker memory", f"{r.peak_worker_rss_mb} MB"],
    ], tablefmt="simple"))
