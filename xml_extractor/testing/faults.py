"""The write path's fault plan: a write transaction that fails after a given table, or stays open
long enough for a test to kill the worker holding it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import RowsRefused
from .gate import settings


class InjectedFault(RowsRefused):
    """Raised by FaultPlan inside a write transaction: stands for the database refusing the rows
    of the application named by ``fail_app`` (so it takes the bisect-and-isolate path)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "other")


@dataclass
class FaultPlan:
    """Read from the admitted ``XML_EXTRACTOR_FAULTS`` (``key=value,...``, xml_extractor.hooks):
    ``fail_app=ID,fail_after_table=T`` raises inside the transaction right after table T was
    inserted for a batch holding application ID; ``sleep_before_commit=S`` holds every write
    transaction open S seconds (so a test can kill a worker mid-transaction), and with
    ``sleep_while=PATH`` only while that file exists (a test slows a run down, then lets it
    finish at full speed by removing the file); ``hold_commits=DIR`` parks every write
    transaction right before its commit while ``DIR/hold`` exists, each parked process saying so
    in ``DIR/parked-PID`` (a test knows that no commit is under way, then decides what happens
    next); ``bug=1`` makes
    ``fail_app`` raise a TypeError instead (a programming error in the write path)."""

    fail_app: int | None = None
    fail_after_table: str | None = None
    sleep_before_commit: float = 0.0
    sleep_while: str | None = None  # the sleep applies only while this file exists
    bug: bool = False  # fail_app raises a TypeError (a bug in the write path) instead of a refusal
    hold_commits: str | None = None  # a folder: commits wait while its file "hold" exists

    @classmethod
    def from_spec(cls, spec: str) -> FaultPlan:
        kv = settings(spec)
        return cls(
            int(kv["fail_app"]) if "fail_app" in kv else None,
            kv.get("fail_after_table"),
            float(kv.get("sleep_before_commit", 0)),
            kv.get("sleep_while"),
            kv.get("bug") == "1",
            kv.get("hold_commits"),
        )

    def after_table(self, name: str, app_ids: Iterable[int]) -> None:
        """Inside the write transaction, after table ``name`` was inserted for ``app_ids``."""
        if self.fail_after_table != name or self.fail_app not in set(app_ids):
            return
        if self.bug:  # a programming error, not a refusal: the run must stop, nobody is failed
            raise TypeError(f"injected bug after inserting {name} for application {self.fail_app}")
        raise InjectedFault(
            f"injected fault after inserting {name} for application {self.fail_app}"
        )

    def before_commit(self) -> None:
        """Right before the write transaction commits."""
        if self.sleep_before_commit and (
            self.sleep_while is None or os.path.exists(self.sleep_while)
        ):
            time.sleep(self.sleep_before_commit)
        if self.hold_commits:
            park_while_held(Path(self.hold_commits))


def park_while_held(folder: Path, timeout_s: float = 120.0) -> None:
    """Wait while ``folder/hold`` exists, with ``folder/parked-PID`` present meanwhile."""
    if not (folder / "hold").exists():
        return
    parked = folder / f"parked-{os.getpid()}"
    parked.write_text("", encoding="utf-8")
    deadline = time.monotonic() + timeout_s
    try:
        while (folder / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        parked.unlink(missing_ok=True)
