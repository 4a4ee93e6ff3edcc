"""bench: throughput against the full-parse ceiling."""

from __future__ import annotations

import os

import click
from tabulate import tabulate

from .common import CONTRACT_OPTION, ENV, FORMAT, _json, handle_errors


@click.command("bench")
@click.option(
    "--db",
    "db_url",
    envvar=ENV + "BENCH_DB",
    show_envvar=True,
    default=None,
    help="Where the corpus and the runs live (its target tables are emptied between runs); default "
    "sqlite:///.cache/bench.db, .cache/bench-rl.db, .cache/bench-mixed.db by --product.",
)
@CONTRACT_OPTION
@click.option(
    "--product",
    type=click.Choice(["cc", "rl", "mixed"]),
    default="cc",
    show_default=True,
    help="The corpus: credit card, rec lending, or both (contracts default to the corpus's lines).",
)
@click.option(
    "--rl-share",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="With --product mixed: the share of rec-lending documents.",
)
@click.option(
    "--count",
    type=click.IntRange(min=10),
    default=5000,
    show_default=True,
    help="Documents in the corpus.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="End-to-end runs (median, min, max).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Applications per batch (and per transaction).",
)
@click.option(
    "--seed", type=int, default=20261122, show_default=True, help="Seed of the generated corpus."
)
@click.option(
    "--metrics-dir",
    default="metrics",
    show_default=True,
    help="Folder of the bench-*.json results.",
)
@FORMAT
@handle_errors
def bench_cmd(
    db_url: str | None,
    contract_path: str | None,
    product: str,
    rl_share: float,
    count: int,
    runs: int,
    workers: int,
    batch_size: int,
    seed: int,
    metrics_dir: str,
    fmt: str,
) -> None:
    """Full-parse ceiling, map-only rate and end-to-end apps/minute on one corpus, in one run."""
    from dataclasses import asdict

    from ..bench import bench

    db_url = db_url or (
        "sqlite:///.cache/bench.db" if product == "cc" else f"sqlite:///.cache/bench-{product}.db"
    )
    if db_url.startswith("sqlite:///.cache/"):
        os.makedirs(".cache", exist_ok=True)
    r = bench(
        db_url,
        count,
        runs,
        workers,
        batch_size,
        contract_path,
        seed,
        metrics_dir,
        echo=(lambda m: click.echo(m, err=True)),
        product=product,
        rl_share=rl_share,
    )
    if fmt == "json":
        _json(asdict(r))
        return
    click.echo(
        tabulate(
            [
                ["database", r.database],
                ["documents (median KB)", f"{r.documents} ({r.median_kb})"],
                ["processes", r.workers],
                [
                    "full-parse ceiling",
                    f"{r.ceiling_docs_per_s:.0f} docs/s = {r.ceiling_docs_per_s * 60:.0f}/min",
                ],
                [
                    "map only",
                    f"{r.map_only_docs_per_s:.0f} docs/s ({r.ratio_map_to_ceiling:.2f} x ceiling)",
                ],
                [
                    "end to end (median)",
                    f"{r.e2e_median:.0f} apps/min ({r.ratio_e2e_to_ceiling:.2f} x ceiling)",
                ],
                [
                    "end to end (min..max)",
                    f"{r.e2e_min:.0f} .. {r.e2e_max:.0f} apps/min over {r.runs} runs",
                ],
                [
                    "time per app by stage (ms, summed over workers)",
                    ", ".join(f"{k} {v}" for k, v in r.stage_ms_per_app.items()),
                ],
                [
                    "outside the stages (ms per app, summed over workers)",
                    ", ".join(f"{k} {v}" for k, v in r.outside_ms_per_app.items())
                    + f" (of {r.worker_ms_per_app} in all)",
                ],
                ["peak worker memory", f"{r.peak_worker_rss_mb} MB"],
                [
                    "load average before, after",
                    f"{' '.join(map(str, r.load_average))}, "
                    f"{' '.join(map(str, r.load_average_after))}",
                ],
            ],
            tablefmt="simple",
        )
    )
