#!/usr/bin/env python3
"""How fast do the operator commands answer on a large migration database?

Builds a synthetic database of N applications without parsing a document (INSERT ... SELECT of
synthetic rows: the source table, processing_log with 2% failures and half of them retried,
app_base, a 1:1 child, one contact with an address, two scores per application, an event for
every third, run_progress; 30 sessions of 3 instances over 30 hours), then times every operator
command as the operator runs it (a subprocess: Python start-up, contract load, statistics check
and the queries), R times each:

    python scripts/ops_bench.py --db sqlite:///.cache/ops-1m.db --apps 1000000
    python scripts/ops_bench.py --db postgresql://postgres@127.0.0.1:54330/ops_1m --apps 1000000

The database is rebuilt only when its log does not already hold this many applications. The
figures are wall-clock on whatever machine runs it: on a shared machine, quote them with the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xml_extractor import load_contract  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402
from xml_extractor.db.statistics import refresh_statistics  # noqa: E402
from xml_extractor.db.store import init_db  # noqa: E402
from xml_extractor.testing.queries import sql as testing_sql  # noqa: E402
from xml_extractor.testing.synthetic import build  # noqa: E402

COMMANDS: list[tuple[str, list[str]]] = [
    ("status", ["status"]),
    ("failures", ["failures"]),
    ("failures --app-id", ["failures", "--app-id", "{probe}"]),
    ("reconcile", ["reconcile"]),
    ("quality", ["quality"]),
    ("reprocess --failed --dry-run", ["reprocess", "--failed", "--dry-run"]),
]


def time_command(db_url: str, args: list[str], repeat: int) -> tuple[list[float], int]:
    times, code = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "xml_extractor", *args, "--db", db_url],
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, XML_EXTRACTOR_DB=db_url),
        )
        times.append(time.perf_counter() - t)
        code = p.returncode
        if p.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return times, code


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db", required=True, help="sqlite:///file.db or a PostgreSQL URL (its tables are filled)"
    )
    ap.add_argument("--apps", type=int, default=1_000_000, help="applications in the log")
    ap.add_argument(
        "--doc-bytes",
        type=int,
        default=3000,
        help="size of each stand-in document (SQLite keeps up to ~4 KB of a row in the table b-tree)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each command")
    ap.add_argument(
        "--only", action="append", default=None, help="time only this command (repeatable)"
    )
    ap.add_argument(
        "--json", dest="json_out", default=None, help="also write the figures to this JSON file"
    )
    a = ap.parse_args()
    if a.db.startswith("sqlite:///"):
        Path(a.db[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    db = Database(a.db, load_contract())
    init_db(db)
    have = int(db.scalar(testing_sql(db, "ops_count_log_attempt_one")) or 0)
    if have != a.apps:
        if have:
            raise SystemExit(
                f"{a.db} holds {have} applications, not {a.apps}: give an empty database"
            )
        secs = build(db, a.apps, a.doc_bytes)
        print(f"built {a.apps} applications in {secs:.1f}s ({db.dialect.name})", flush=True)
        # as a run would have left it: statistics refreshed while the tables grew
        refresh_statistics(db)
    db.close()
    results = {}
    for label, args in COMMANDS:
        if a.only and label not in a.only:
            continue
        args = [x.replace("{probe}", str(a.apps // 2 + 50 - (a.apps // 2) % 50)) for x in args]
        times, code = time_command(a.db, args, a.repeat)
        results[label] = {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "exit": code,
        }
        print(
            f"{label:32s} median {statistics.median(times):7.3f}s  (min {min(times):.3f}, max {max(times):.3f}) exit {code}",
            flush=True,
        )
    # the queries alone (one process, connection open): what the database answers in, without
    # Python start-up and the contract load that every command above pays
    from xml_extractor import ops

    db = Database(a.db, load_contract())
    inproc = {}
    for label, fn in (
        ("status", ops.status),
        ("failures", ops.failures),
        ("reconcile", ops.reconcile),
        ("quality", ops.quality),
    ):
        if a.only and label not in a.only:
            continue
        times = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            fn(db)
            times.append(time.perf_counter() - t)
        inproc[label] = {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
        }
        print(
            f"  queries only: {label:18s} median {statistics.median(times):7.3f}s  (min {min(times):.3f}, "
            f"max {max(times):.3f})",
            flush=True,
        )
    db.close()
    if a.json_out:
        Path(a.json_out).write_text(
            json.dumps(
                {
                    "db": a.db.split("@")[-1],
                    "apps": a.apps,
                    "results": results,
                    "queries_only": inproc,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
