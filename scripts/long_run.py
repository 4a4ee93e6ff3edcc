#!/usr/bin/env python3
"""Long-run check: does a run of N applications keep its rate and its memory?

Generates N realistic documents (once; kept in the database), empties the target tables, runs
`xml-extractor run`, then reads the run's 5-second timeline from metrics/ and prints the rate over
the first and the last 10% of the applications and the workers' resident memory over time:

    python scripts/long_run.py --count 100000 [--db sqlite:///.cache/long.db] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xml_extractor import load_contract  # noqa: E402
from xml_extractor.bench import empty_targets  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402
from xml_extractor.db.store import init_db  # noqa: E402
from xml_extractor.loading import generate_into_db  # noqa: E402


def window_rate(timeline: list, lo: float, hi: float) -> float:
    """Applications/minute between the moments `lo` and `hi` applications were done."""

    def when(n: float) -> float:
        prev = [0.0, 0]
        for point in timeline:
            t, done = point["elapsed_s"], point["done"]
            if done >= n:
                # linear interpolation inside the sample interval
                return prev[0] + (t - prev[0]) * ((n - prev[1]) / max(1, done - prev[1]))
            prev = [t, done]
        return timeline[-1]["elapsed_s"]

    t0, t1 = when(lo), when(hi)
    return (hi - lo) / max(1e-9, t1 - t0) * 60


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", default="sqlite:///.cache/long.db")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=99)
    a = ap.parse_args()
    (ROOT / ".cache").mkdir(exist_ok=True)
    db = Database(a.db, load_contract())
    init_db(db)
    have = int(db.scalar(db.sql("ops_count_source")))
    if have < a.count:
        print(f"generating {a.count - have} documents ...", flush=True)
        generate_into_db(db, a.count - have, a.seed, 0.0, have + 1)
    empty_targets(db)
    db.close()
    metrics = ROOT / ".cache" / "long-run-metrics"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "xml_extractor",
            "run",
            "--db",
            a.db,
            "--no-progress",
            "--workers",
            str(a.workers),
            "--batch-size",
            str(a.batch_size),
            "--metrics-dir",
            str(metrics),
            "--logs-dir",
            str(ROOT / ".cache" / "long-run-logs"),
        ],
        cwd=str(ROOT),
    )
    if p.returncode not in (0, 1):
        print(f"run failed with exit code {p.returncode}", file=sys.stderr)
        return 2
    m = json.loads(max(metrics.glob("run-*.json"), key=lambda f: f.stat().st_mtime).read_text())
    tl = m["timeline"]
    n = m["success"] + m["failed"]
    first, last = window_rate(tl, 0, 0.1 * n), window_rate(tl, 0.9 * n, n)
    rss = [p["max_worker_rss_mb"] for p in tl if p["max_worker_rss_mb"]]
    print(
        f"applications={n} elapsed={m['elapsed_s']:.0f}s "
        f"{m['average_label']}={m['average_per_min']:.0f}/min"
    )
    print(
        f"rate first 10%={first:.0f}/min last 10%={last:.0f}/min (last/first = {last / first:.2f})"
    )
    if rss:
        k = max(1, len(rss) // 10)
        print(
            f"worker RSS MB: first samples {rss[:k]} ... last samples {rss[-k:]} (min {min(rss)}, max {max(rss)})"
        )
    print(f"timeline: {json.dumps(tl)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
