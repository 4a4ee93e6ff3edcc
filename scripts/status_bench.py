#!/usr/bin/env python3
"""How fast does `status` answer on a large processing_log? Kept for its old command line; the
work is scripts/ops_bench.py's (synthetic database without documents, every operator command):

    python scripts/status_bench.py --db postgresql://postgres@127.0.0.1:54330/status_bench --rows 1000000
    # is: python scripts/ops_bench.py --db ... --apps 1000000 --only status
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db", required=True, help="sqlite:///file.db or a PostgreSQL URL (its tables are filled)"
    )
    ap.add_argument("--rows", type=int, default=1_000_000, help="applications in the log")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    return subprocess.call(
        [
            sys.executable,
            str(ROOT / "scripts" / "ops_bench.py"),
            "--db",
            a.db,
            "--apps",
            str(a.rows),
            "--repeat",
            str(a.repeat),
            "--only",
            "status",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
