"""A contract set's routing: each document mapped by the member contract whose record it has.

A run given several contracts (``--contract credit_card --contract rec_lending``) maps each
document with the contract whose record element the document has, decided from the same scoped
parse (the document's head up to the end of the shared scope): no second parse. The union contract
is built by merge.merge_contracts, its routing plan (``MappingPlan.extra["routes"]``) by
compiler.compile_set.
"""

from __future__ import annotations

from typing import Any

from ..errors import DocumentFailure, ValidateFailure
from ..mapping import MappedApplication, map_record
from .compiler import Route


def map_routed(routes: tuple[Route, ...], scope_element: Any, app_id: int) -> MappedApplication:
    """Map the document with the member whose record element it has; its rows in the union's
    column order; ``extra["contract"]`` = (version tag, name) for processing_log. A document with
    the record elements of several members fails (AmbiguousContract): which one maps it must not
    depend on the order the contracts were given in, which two instances may not share."""
    found = []
    for r in routes:
        record = scope_element
        for step in r.record_steps:
            record = record.find(step)
            if record is None:
                break
        if record is not None:
            found.append((r, record))
    if len(found) > 1:
        which = " and ".join(f"{r.name} ({r.plan.document.record_path})" for r, _ in found)
        raise ValidateFailure(
            f"the document has the record elements of several contracts: {which}; none maps it",
            "AmbiguousContract",
        )
    for r, record in found:
        try:
            result = map_record(r.plan, record, app_id)
        except DocumentFailure as f:  # the log's reason says which contract refused it
            f.reason = f"{r.name}: {f.reason}"
            f.args = (f.reason,)
            f.contract = (r.version_tag, r.name)
            raise
        for table, positions in r.remap.items():
            rows = result.rows.get(table)
            if rows:
                result.rows[table] = [
                    tuple(row[i] if i >= 0 else None for i in positions) for row in rows
                ]
        result.extra["contract"] = (r.version_tag, r.name)
        return result
    tried = "; ".join(f"{r.name} (no {r.plan.document.record_path})" for r in routes)
    raise ValidateFailure(f"the document matches none of the contracts: {tried}", "NoContract")
