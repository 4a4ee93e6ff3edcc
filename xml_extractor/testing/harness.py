"""For test harnesses (tests/conftest.py, scripts/soak.py): the environment that lets a child
process honour a fault specification."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..hooks import FAULTS_ENV, GATE_ENV
from .gate import gate_text


def fault_injection_env(spec: str, folder: str | Path) -> dict[str, str]:
    """For test harnesses: write a gate admitting exactly ``spec`` into ``folder`` (the test's own
    temporary folder) and return the two variables a child process needs."""
    path = Path(folder) / f"fault-gate-{hashlib.sha256(spec.encode('utf-8')).hexdigest()[:16]}"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, gate_text(spec).encode("utf-8"))
        finally:
            os.close(fd)
    return {FAULTS_ENV: spec, GATE_ENV: str(path.resolve())}
