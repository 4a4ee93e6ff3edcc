#!/usr/bin/env python3
"""How fast does `status` answer on a large processing_log?

Fills a fresh PostgreSQL database with N source ids and N processing_log rows (server-side
generate_series: 3 instances, 30 sessions, ~2% failures, timestamps over the last 30 hours), then
times `xml-extractor status` (the library call and the whole command) R times:

    python scripts/status_bench.py --db postgresql://postgres@127.0.0.1:54329/status_bench --rows 1000000
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xml_extractor import load_contract  # noqa: E402
from xml_extractor import ops  # noqa: E402
from xml_extractor.db.database import Database  # noqa: E402
from xml_extractor.db.store import init_db  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="a PostgreSQL URL (the database is filled)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    db = Database(a.db, load_contract())
    if db.dialect.name != "postgresql":
        print("this script fills the database with PostgreSQL's generate_series", file=sys.stderr)
        return 2
    init_db(db)
    n, log = db.names, db.names["log"]
    have = int(db.scalar(f"SELECT COUNT(*) FROM {log}"))
    if have != a.rows:
        t = time.perf_counter()
        db.execute(f"TRUNCATE {log}, {n['src']}").close()
        db.execute(f"INSERT INTO {n['src']} ({n['src_id']}, {n['src_xml']}) SELECT g, NULL FROM generate_series(1, ?) g",
                   [a.rows + a.rows // 50]).close()
        db.execute(
            f"INSERT INTO {log} (app_id, status, stage, error_class, reason, attempt, instance_id, instance_count, "
            f"session_id, contract_version, parse_ms, map_ms, insert_ms, worker_pid, logged_at) "
            f"SELECT g, CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'success' END, CASE WHEN g % 50 = 0 THEN 'parse' END, "
            f"CASE WHEN g % 50 = 0 THEN 'XMLSyntaxError' END, CASE WHEN g % 50 = 0 THEN 'malformed XML' END, 1, g % 3, 3, "
            f"'session-' || (g % 30), 'credit_card@1.0.0', 0.2, 0.5, 0.3, 1000 + g % 4, "
            f"(now() AT TIME ZONE 'UTC') - ((? - g) * interval '1 second' * 108000 / ?) "
            f"FROM generate_series(1, ?) g", [a.rows, a.rows, a.rows]).close()
        db.execute(f"DELETE FROM {n['progress']}").close()
        db.execute(
            f"INSERT INTO {n['progress']} (session_id, worker_pid, instance_id, instance_count, started_at, last_at, success, failed) "
            f"SELECT session_id, worker_pid, MIN(instance_id), 3, MIN(logged_at), MAX(logged_at), "
            f"SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) "
            f"FROM {log} GROUP BY session_id, worker_pid").close()
        db.commit()
        db.conn.autocommit = True
        db.execute(f"VACUUM ANALYZE {log}").close()
        db.execute(f"VACUUM ANALYZE {n['src']}").close()
        db.conn.autocommit = False
        print(f"filled {a.rows} log rows in {time.perf_counter() - t:.1f}s")
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        s = ops.status(db)
        times.append(time.perf_counter() - t)
    db.close()
    cmd = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xml_extractor", "status", "--db", a.db], check=True,
                       stdout=subprocess.DEVNULL, cwd=str(ROOT))
        cmd.append(time.perf_counter() - t)
    print(f"log rows={a.rows}: status query median {statistics.median(times) * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); whole command incl. Python start "
          f"median {statistics.median(cmd) * 1000:.0f} ms (min {min(cmd) * 1000:.0f}, max {max(cmd) * 1000:.0f})")
    print(f"answer: success={s['success']} failed={s['failed']} pending={s['pending']} sessions(24h)={len(s['sessions'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
