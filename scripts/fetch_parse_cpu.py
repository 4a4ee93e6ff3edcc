#!/usr/bin/env python3
"""CPU time per document of a SQLite worker's fetch and decode + parse, text path against stored
bytes, alternated batch by batch in one process (CPU time, not wall clock: a shared machine's
load weighs on it far less), and of a worker's contract: loaded and validated, or unpickled.

    python scripts/fetch_parse_cpu.py --db sqlite:///.cache/bench.db [--count 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xml_extractor.contract.compiler import compile_contract  # noqa: E402
from xml_extractor.contract.loader import load_contract  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402
from xml_extractor.db.url import parse_url  # noqa: E402
from xml_extractor.parsing import decode_source, parse_document  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", default="sqlite:///.cache/bench.db")
    ap.add_argument("--count", type=int, default=400, help="documents 1..count, 200 a batch")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    contract = load_contract(None)
    plan = compile_contract(contract, "sqlite")
    db = Database(parse_url(args.db), contract)
    cpu = time.process_time
    got: dict[str, list[float]] = {
        k: [] for k in ("fetch text", "fetch stored", "decode+parse text", "decode+parse stored")
    }
    batches = [list(range(i, min(i + 200, args.count + 1))) for i in range(1, args.count + 1, 200)]
    for _ in range(args.rounds):
        for ids in batches:
            n = len(ids)
            t = cpu()
            text = db.fetch_documents(ids)
            got["fetch text"].append((cpu() - t) / n * 1000)
            t = cpu()
            stored = db.fetch_documents(ids, "</CustData>", stored=True)
            got["fetch stored"].append((cpu() - t) / n * 1000)
            for kind, docs in (("text", text), ("stored", stored)):
                t = cpu()
                for _, x, _ in docs:
                    parse_document(decode_source(x), plan.document)
                got[f"decode+parse {kind}"].append((cpu() - t) / n * 1000)
    db.close()
    for k, v in got.items():
        print(
            f"{k}: {statistics.median(v):.3f} ms/document ({min(v):.3f}..{max(v):.3f}, n={len(v)})"
        )
    data = pickle.dumps(contract)
    loads, unpickles = [], []
    for _ in range(args.rounds):
        t = cpu()
        load_contract(None)
        loads.append((cpu() - t) * 1000)
        t = cpu()
        pickle.loads(data)
        unpickles.append((cpu() - t) * 1000)
    print(
        f"worker's contract: load_contract {statistics.median(loads):.0f} ms "
        f"({min(loads):.0f}..{max(loads):.0f}), unpickled {statistics.median(unpickles):.1f} ms"
    )


if __name__ == "__main__":
    main()
