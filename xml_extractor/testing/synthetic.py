"""Synthetic operator-scale data: N applications' source rows, log, target rows and events built
by ``INSERT ... SELECT`` (the ``synth_*`` queries of testing/sql/testing_*.sql), without parsing a document. For
scripts/ops_bench.py (1M applications in minutes) and tests/test_ops_scale.py (query plans at a
few hundred thousand rows).

Shape: applications 1..N in the log, N/50 more in the source never attempted; every 50th failed at
``parse`` and every 100th then succeeded on attempt 2; one app_base, app_operational_cc,
app_contact_base and app_contact_address row and two scores per successful application; an event
for every third application (20 kinds); 30 sessions of 3 instances, timestamps spread evenly over
``span`` ending at ``end``; run_progress as the workers would have kept it.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from ..db.database import Database
from .queries import sql


def build(
    db: Database,
    apps: int,
    doc_bytes: int = 3000,
    end: _dt.datetime | None = None,
    span: _dt.timedelta = _dt.timedelta(hours=30),
) -> float:
    """Fill an initialised, empty database; returns the seconds it took."""
    t0 = time.perf_counter()
    end = end or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    version = db.contract.version_tag

    def run(name: str, params: dict[str, Any], **tables: str) -> None:
        db.execute(sql(db, name, **tables), params).close()

    per_app = {"apps": apps}
    with db.transaction():
        run(
            "synth_numbers",
            {
                "count": apps + apps // 50,
                "now": end.isoformat(sep=" ", timespec="milliseconds"),
                "apps": apps,
                "span_ms": int(span.total_seconds() * 1000),
            },
        )
        run("synth_source", {"doc_bytes": doc_bytes})
        run("synth_log", {"apps": apps, "contract_version": version})
        run("synth_log_retry", {"apps": apps, "contract_version": version})
        run(
            "synth_base",
            {"apps": apps, "receive_date": _dt.datetime(2024, 1, 15)},
            base=db.table("app_base"),
        )
        run("synth_one_to_one", per_app, child=db.table("app_operational_cc"))
        run("synth_contact", per_app, contact=db.table("app_contact_base"))
        run("synth_address", per_app, address=db.table("app_contact_address"))
        run("synth_scores", per_app, scores=db.table("scores"))
        run("synth_events", per_app)
        run("synth_progress", {})
        run("synth_drop", {})
    return time.perf_counter() - t0
