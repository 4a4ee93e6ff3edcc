"""The product's only door to the test-only machinery (xml_extractor.testing): hold points and
fault injection.

The crash and signal tests need a write transaction that fails after a given table or stays open
long enough to be killed, and a process that waits at a named point of its start-up. A production
run must never trip them, not even through a stray ``XML_EXTRACTOR_FAULTS`` copied from a test
into a shell. So every hook here is a no-op that imports nothing unless ``XML_EXTRACTOR_FAULTS`` is
set; then ``XML_EXTRACTOR_TESTING_GATE`` must name a gate file admitting exactly that
specification (xml_extractor.testing.gate checks it), and only then is the testing package used.
Anything less is ignored with a warning on the package logger.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .testing.faults import FaultPlan

FAULTS_ENV = "XML_EXTRACTOR_FAULTS"
GATE_ENV = "XML_EXTRACTOR_TESTING_GATE"

log = logging.getLogger(__name__)


def admitted_spec() -> str:
    """The fault specification to honour: ``XML_EXTRACTOR_FAULTS`` when its gate admits it, else
    "" (with a warning when the variable is set but not admitted)."""
    spec = os.environ.get(FAULTS_ENV, "")
    if not spec:
        return ""
    gate = os.environ.get(GATE_ENV, "")
    if gate:
        from .testing.gate import refusal

        why = refusal(gate, spec)
    else:
        why = f"no {GATE_ENV}"
    if why:
        log.warning(
            "%s is set but ignored (%s): fault injection is for the test suite only",
            FAULTS_ENV,
            why,
        )
        return ""
    return spec


def hold(point: str) -> None:
    """Test hook at a named point (xml_extractor.testing.hold): a no-op outside the gate."""
    spec = admitted_spec()
    if spec:
        from .testing.hold import hold_at

        hold_at(point, spec)


def fault_plan() -> FaultPlan | None:
    """The write path's admitted fault plan (xml_extractor.testing.faults), None outside the gate."""
    spec = admitted_spec()
    if not spec:
        return None
    from .testing.faults import FaultPlan

    return FaultPlan.from_spec(spec)
