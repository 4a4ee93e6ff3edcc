#!/usr/bin/env python3
"""Before/after benchmark: `xml-extractor bench` of two versions of the code, alternated on the
same corpus and database, and the median and spread of each figure per version.

Each round runs both versions one after the other (the order flips every round, so a machine that
slows down or speeds up during the measurement weighs on both alike) and notes the load average
beside each bench. The old version is a git revision exported to a temporary folder; the new one
is this working tree unless --new names a revision too:

    python scripts/bench_ab.py --old a3065ae --rounds 3 --count 3000 --runs 3 --workers 2
    python scripts/bench_ab.py --old a3065ae --new main --db postgresql://postgres@127.0.0.1:54402/xe

The table goes to stdout (Markdown); every bench's JSON stays in --out.

With --whole-command the figure is instead the whole ``run`` command (process start to exit,
--workers W, app_ids 1..--count of the bench corpus, which a bench run creates) against the
full-parse ceiling measured just before it: each run on a fresh copy of the SQLite file, or on
PostgreSQL / SQL Server on emptied targets (bench.empty_targets).

Both versions run with their bytecode compiled once beforehand (into a folder of this script's,
PYTHONPYCACHEPREFIX): an installed package has it, and where PYTHONDONTWRITEBYTECODE is set each
run's worker processes would otherwise compile the whole package from source, which bench counts
as worker start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

FIGURES: list[tuple[str, str]] = [
    ("full-parse ceiling, docs/s", "ceiling_docs_per_s"),
    ("map only, docs/s", "map_only_docs_per_s"),
    ("map only / ceiling", "ratio_map_to_ceiling"),
    ("end to end, apps/min (median of the bench's runs)", "e2e_median"),
    ("end to end / ceiling", "ratio_e2e_to_ceiling"),
    ("fetch, ms/app", "stage_ms_per_app.fetch"),
    ("parse, ms/app", "stage_ms_per_app.parse"),
    ("map, ms/app", "stage_ms_per_app.map"),
    ("write, ms/app", "stage_ms_per_app.write"),
    ("workers' whole time (W x wall), ms/app", "worker_ms_per_app"),
    ("outside: worker start-up, ms/app", "outside_ms_per_app.worker start-up"),
    ("outside: waiting for a batch, ms/app", "outside_ms_per_app.waiting for a batch"),
    ("outside: batch bookkeeping, ms/app", "outside_ms_per_app.batch bookkeeping"),
    ("outside: unexplained, ms/app", "outside_ms_per_app.unexplained"),
    ("peak worker memory, MB", "peak_worker_rss_mb"),
    ("load average (1 min) at start", "load_average.0"),
]


def export(rev: str, into: Path) -> Path:
    """The tree of a git revision, written under ``into`` (its package is what PYTHONPATH finds)."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def bench_env(tree: Path, pycache: Path) -> dict[str, str]:
    """The environment of a bench of ``tree``: its package first, bytecode kept in ``pycache``."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_tree(tree: Path, pycache: Path) -> None:
    """Compile the tree's package once, as an install does."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "xml_extractor")],
        env=bench_env(tree, pycache),
        check=True,
    )


def one_bench(tree: Path, args: argparse.Namespace, out: Path, pycache: Path) -> dict[str, Any]:
    """Run bench with ``tree``'s code; its JSON result (the old code's has fewer figures)."""
    before = sorted(out.glob("bench-*.json"))
    cmd = [sys.executable, "-m", "xml_extractor", "bench", "--db", args.db, "--count",
           str(args.count), "--runs", str(args.runs), "--workers", str(args.workers),
           "--batch-size", str(args.batch_size), "--metrics-dir", str(out)]  # fmt: skip
    env = bench_env(tree, pycache)
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bench failed ({tree}):\n{p.stderr[-3000:]}")
    (new,) = sorted(set(out.glob("bench-*.json")) - set(before))
    result: dict[str, Any] = json.loads(new.read_text())
    result.setdefault("load_average", [round(load, 2)])
    return result


WHOLE_FIGURES: list[tuple[str, str]] = [
    ("whole run command / ceiling", "ratio"),
    ("whole run command, s", "wall_s"),
    ("full-parse ceiling, docs/s", "ceiling_docs_per_s"),
]


def one_whole_run(tree: Path, args: argparse.Namespace, pycache: Path) -> dict[str, Any]:
    """The ceiling, then the whole ``run`` command of ``tree``'s code, timed from outside."""
    import shutil

    from xml_extractor.bench import _parallel_rate, _timed_parse, empty_targets
    from xml_extractor.contract.loader import load_contract
    from xml_extractor.db.database import Database
    from xml_extractor.db.url import parse_url

    url = parse_url(args.db)
    target = args.db
    db = Database(url, load_contract(None))
    try:
        empty_targets(db)  # what a bench left, or the last run
    finally:
        db.close()
    if url.dialect == "sqlite":  # each run on a copy: the same file state every time
        copy = Path(args.out).resolve() / "whole-run.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
        shutil.copy(url.path, copy)
        target = f"sqlite:///{copy}"
    ceiling = _parallel_rate(_timed_parse, url, None, args.count, args.workers)
    cmd = [sys.executable, "-m", "xml_extractor", "run", "--db", target, "--workers",
           str(args.workers), "--batch-size", str(args.batch_size), "--app-id-end",
           str(args.count), "--no-progress"]  # fmt: skip
    t = time.perf_counter()
    p = subprocess.run(cmd, env=bench_env(tree, pycache), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"run failed ({tree}):\n{p.stderr[-3000:]}")
    return {
        "ratio": args.count / wall / ceiling,
        "wall_s": wall,
        "ceiling_docs_per_s": ceiling,
        "e2e_median": args.count / wall * 60,
        "ratio_e2e_to_ceiling": round(args.count / wall / ceiling, 3),
        "load_average": [round(os.getloadavg()[0], 2)],
        "database": url.display(),
    }


def pick(result: dict[str, Any], path: str) -> float | None:
    v: Any = result
    for part in path.split("."):
        if isinstance(v, list):
            v = v[int(part)] if int(part) < len(v) else None
        elif isinstance(v, dict):
            v = v.get(part)
        else:
            return None
    return float(v) if isinstance(v, (int, float)) else None


def cell(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    return f"{statistics.median(got):,.3g} ({min(got):,.3g}..{max(got):,.3g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", required=True, help="git revision of the 'before' code")
    ap.add_argument(
        "--new", default=None, help="git revision of the 'after' code (default: this tree)"
    )
    ap.add_argument("--db", default="sqlite:///.cache/bench-ab.db")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--out", default=".cache/bench-ab", help="folder of the benches' JSON")
    ap.add_argument(
        "--whole-command",
        action="store_true",
        help="time the whole run command against the ceiling instead of bench",
    )
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.db.startswith("sqlite:///") and not args.db.startswith("sqlite:////"):
        args.db = "sqlite:///" + str(Path(args.db[len("sqlite:///") :]).resolve())
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        trees = {
            "before": export(args.old, Path(tmp) / "old"),
            "after": export(args.new, Path(tmp) / "new") if args.new else ROOT,
        }
        pycache = Path(tmp) / "pycache"
        for tree in trees.values():
            compile_tree(tree, pycache)
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for r in range(args.rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                res = (
                    one_whole_run(trees[side], args, pycache)
                    if args.whole_command
                    else one_bench(trees[side], args, out, pycache)
                )
                results[side].append(res)
                print(f"round {r + 1} {side}: {res['e2e_median']:.0f} apps/min, "
                      f"{res['ratio_e2e_to_ceiling']} x ceiling, load {res['load_average']}",
                      file=sys.stderr)  # fmt: skip
    what = (
        f"run --workers {args.workers} (the whole command) over {args.count} documents"
        if args.whole_command
        else f"bench --count {args.count} --runs {args.runs} --workers {args.workers}"
    )
    print(f"{what} on {results['after'][0]['database']}, {args.rounds} rounds alternated; "
          "median (min..max) over the rounds\n")  # fmt: skip
    print(f"| figure | before ({args.old}) | after ({args.new or 'this tree'}) |")
    print("|---|---|---|")
    for label, path in WHOLE_FIGURES if args.whole_command else FIGURES:
        b = [pick(x, path) for x in results["before"]]
        a = [pick(x, path) for x in results["after"]]
        print(f"| {label} | {cell(b)} | {cell(a)} |")


if __name__ == "__main__":
    main()
