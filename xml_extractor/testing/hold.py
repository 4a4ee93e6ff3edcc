"""Hold points: a process stops at a named point of its start-up until the test lets it go, so a
signal test hits a window of a few milliseconds every time instead of by luck."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .gate import settings


def hold_at(point: str, spec: str, timeout_s: float = 120.0) -> None:
    """A no-op unless the admitted specification ``spec`` holds ``hold=POINT,hold_dir=DIR``: then
    write ``DIR/held-POINT`` (the process id) and wait until ``DIR/release-POINT`` exists (at most
    ``timeout_s``)."""
    kv = settings(spec)
    if kv.get("hold") != point or not kv.get("hold_dir"):
        return
    folder = Path(kv["hold_dir"])
    (folder / f"held-{point}").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + timeout_s
    while not (folder / f"release-{point}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
