"""The gate of the test-only fault injection (xml_extractor.testing.faults) and hold points.

The crash tests need a write transaction that fails after a given table, or stays open long enough
to be killed. That switch must never be tripped by a production run, not even by a stray
``XML_EXTRACTOR_FAULTS`` copied from a test into a shell or a unit file. So the faults are
honoured only when, in addition, ``XML_EXTRACTOR_TESTING_GATE`` names a gate file that:

- is a regular file owned by the user running the process and not writable by anyone else (where
  the platform has POSIX owners and permissions), and
- holds :data:`GATE_MAGIC` followed by the SHA-256 of the exact fault specification.

The test harness (tests/conftest.py ``cli``/``popen``, scripts/soak.py) writes such a file into
the test's own temporary folder with ``xml_extractor.testing.harness.fault_injection_env``; the folder, and the gate with
it, is gone after the test. Anything less (the variable alone, a gate for other faults, a gate
another user could have written) is ignored with a warning on the package logger.
"""

from __future__ import annotations

import hashlib
import os
import stat

GATE_MAGIC = "xml-extractor test harness: fault injection allowed for "


def gate_text(spec: str) -> str:
    """What a gate file admitting exactly ``spec`` holds."""
    return GATE_MAGIC + hashlib.sha256(spec.encode("utf-8")).hexdigest() + "\n"


def settings(spec: str) -> dict[str, str]:
    """An admitted fault specification as ``{key: value}`` (``k=v,...``)."""
    return dict(p.split("=", 1) for p in spec.split(",") if "=" in p)


def refusal(path: str, spec: str) -> str | None:
    """Why the gate does not admit ``spec`` (None: it does)."""
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
    if content != gate_text(spec):
        return "the gate file does not admit these faults"
    return None
