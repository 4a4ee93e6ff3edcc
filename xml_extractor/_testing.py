"""The gate of the test-only fault injection (``FaultPlan`` in db/store.py).

The crash tests need a write transaction that fails after a given table, or stays open long enough
to be killed. That switch must never be tripped by a production run, not even by a stray
``XML_EXTRACTOR_FAULTS`` copied from a test into a shell or a unit file. So the faults are
honoured only when, in addition, ``XML_EXTRACTOR_TESTING_GATE`` names a gate file that:

- is a regular file owned by the user running the process and not writable by anyone else (where
  the platform has POSIX owners and permissions), and
- holds :data:`GATE_MAGIC` followed by the SHA-256 of the exact fault specification.

The test harness (tests/conftest.py ``cli``/``popen``, scripts/soak.py) writes such a file into
the test's own temporary folder with :func:`fault_injection_env`; the folder, and the gate with
it, is gone after the test. Anything less (the variable alone, a gate for other faults, a gate
another user could have written) is ignored with a warning on the package logger.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from pathlib import Path

FAULTS_ENV = "XML_EXTRACTOR_FAULTS"
GATE_ENV = "XML_EXTRACTOR_TESTING_GATE"
GATE_MAGIC = "xml-extractor test harness: fault injection allowed for "

log = logging.getLogger(__name__)


def _gate_text(spec: str) -> str:
    return GATE_MAGIC + hashlib.sha256(spec.encode("utf-8")).hexdigest() + "\n"


def fault_spec() -> str:
    """The fault specification to honour: ``XML_EXTRACTOR_FAULTS`` when the gate admits it, else ""."""
    spec = os.environ.get(FAULTS_ENV, "")
    if not spec:
        return ""
    why = _gate_refusal(os.environ.get(GATE_ENV, ""), spec)
    if why:
        log.warning(
            "%s is set but ignored (%s): fault injection is for the test suite only",
            FAULTS_ENV,
            why,
        )
        return ""
    return spec


def fault_settings() -> dict[str, str]:
    """The admitted fault specification (:func:`fault_spec`) as ``{key: value}`` (``k=v,...``)."""
    return dict(p.split("=", 1) for p in fault_spec().split(",") if "=" in p)


def hold(point: str, timeout_s: float = 120.0) -> None:
    """Test hook: stop at a named point of the start-up until the test lets go, so that a signal
    test can hit a window of a few milliseconds every time instead of by luck. A no-op unless the
    gated specification holds ``hold=POINT,hold_dir=DIR``: then this writes ``DIR/held-POINT``
    (the process id) and waits until ``DIR/release-POINT`` exists (at most ``timeout_s``)."""
    kv = fault_settings()
    if kv.get("hold") != point or not kv.get("hold_dir"):
        return
    folder = Path(kv["hold_dir"])
    (folder / f"held-{point}").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + timeout_s
    while not (folder / f"release-{point}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _gate_refusal(path: str, spec: str) -> str | None:
    """Why the gate does not admit ``spec`` (None: it does)."""
    if not path:
        return f"no {GATE_ENV}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return "the gate file cannot be opened"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "the gate is not a regular file"
        if hasattr(
            os, "geteuid"
        ):  # POSIX permissions (Windows has neither owner ids nor these bits)
            if st.st_uid != os.geteuid():
                return "the gate file belongs to another user"
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return "the gate file is writable by others"
        content = os.read(fd, 4096).decode("utf-8", errors="replace")
    finally:
        os.close(fd)
    if content != _gate_text(spec):
        return "the gate file does not admit these faults"
    return None


def fault_injection_env(spec: str, folder: str | Path) -> dict[str, str]:
    """For test harnesses: write a gate admitting exactly ``spec`` into ``folder`` (the test's own
    temporary folder) and return the two variables a child process needs."""
    path = Path(folder) / f"fault-gate-{hashlib.sha256(spec.encode('utf-8')).hexdigest()[:16]}"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _gate_text(spec).encode("utf-8"))
        finally:
            os.close(fd)
    return {FAULTS_ENV: spec, GATE_ENV: str(path.resolve())}
