"""launch's combined live progress line: done/total, rate, ETA and each instance's state, redrawn
every few seconds on a terminal (stderr), nothing at all without one.

It reads what the instances commit (run_progress: one row per worker and run, updated in each
batch's transaction) for the sessions started since the launch, so it needs nothing from the
instances but the database they share. Rate and ETA are progress.py's, the same definition as
``status`` and the run summary. Lines the instances print go through :meth:`echo`, which clears
the live line first and redraws it after, so the two never garble each other.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import click

from ..processing.partition import ID_MAX, ID_MIN
from ..progress import AVERAGE_LABEL, RATE_WINDOW_MINUTES, Rates, format_eta, measure


def _run_context(run_args: tuple[str, ...]) -> click.Context:
    """The run options as ``run`` itself would parse them (flags, then environment variables)."""
    from .run import run_cmd

    return run_cmd.make_context("run", list(run_args), resilient_parsing=True)


def _run_params(run_args: tuple[str, ...]) -> dict[str, Any]:
    return dict(_run_context(run_args).params)


class LaunchProgress:
    """One status line for N launched instances. ``start()`` does nothing without a terminal."""

    def __init__(
        self,
        run_args: tuple[str, ...],
        instances: int,
        states: Callable[[], list[int | None]],
        stream: TextIO | None = None,
        interval: float = 2.0,
    ) -> None:
        self.run_args = run_args
        self.instances = instances
        self.states = states  # each instance's exit code, None while it runs
        self.stream = stream or sys.stderr
        self.interval = interval
        self.active = False
        self._lock = threading.Lock()
        self._line = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: Any = None
        self._since: Any = None
        self._total: int | None = None
        self._queue = (
            False  # queue mode: every instance is instance 0 of 1; only the total is known
        )
        self._samples: list[tuple[Any, int]] = []  # (moment, done) per redraw, the window's worth
        self._last_done, self._grew_at = 0, None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.stream.isatty():
            return
        try:
            self._open()
        except Exception:
            return
        self.active = True
        self._thread = threading.Thread(target=self._loop, name="launch-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.active:
            self._draw(self._render(), final=True)
        if self._db is not None:
            self._db.close()

    def echo(self, message: str) -> None:
        """Print an instance's line without garbling the live line."""
        shared = self.active and self._line and sys.stdout.isatty()  # both on one screen
        with self._lock:
            if shared:
                self.stream.write("\r\033[K")
                self.stream.flush()
            click.echo(message)
            if shared:
                self.stream.write(self._line)
                self.stream.flush()

    # -- internals ------------------------------------------------------------------------------
    def _open(self) -> None:
        from ..contract.loader import load_contract
        from ..db.database import Database
        from ..db.store import utcnow
        from .common import resolve_url, tls_options

        ctx = _run_context(self.run_args)
        p = ctx.params
        self._queue = p.get("mode") == "queue"
        # the instances' own --encrypt / --trust-server-certificate: the live line connects as they do
        self._db = Database(
            resolve_url(
                p.get("db_url"),
                p.get("server"),
                p.get("database"),
                p.get("username"),
                tls=tls_options(ctx),
            ),
            load_contract(p.get("contract_path")),
        )
        self._since = utcnow()
        lo = p.get("app_id_start") if p.get("app_id_start") is not None else ID_MIN
        hi = p.get("app_id_end") if p.get("app_id_end") is not None else ID_MAX
        n = self._db.scalar(
            self._db.sql("count_pending"), {"id_lo": lo, "id_hi": hi, "modulus": 1, "remainder": 0}
        )
        limit = p.get("limit")
        self._total = min(int(n), limit * self.instances) if limit is not None else int(n)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._draw(self._render())
            except Exception:
                pass

    def _render(self) -> str:
        from ..db.store import utcnow

        rows = self._db.autocommit_query(
            self._db.sql("launch_progress"),
            {"since": self._since, "instance_count": 1 if self._queue else self.instances},
        )
        per = {int(i): (int(ok or 0) + int(bad or 0)) for i, ok, bad, _, _ in rows}
        first = _ts(min((r[3] for r in rows if r[3] is not None), default=None))
        done = sum(per.values())
        now = utcnow()
        states = self.states()
        rates = self._rates(done, first, now, any(s is None for s in states))
        total = f" of {self._total:,}" if self._total is not None else ""
        remaining = None if self._total is None else max(0, self._total - done)
        parts = [
            f"{done:,}{total} done",
            f"{rates.recent_per_min:,.0f}/min {rates.recent_label}",
            f"{rates.average_per_min:,.0f}/min {AVERAGE_LABEL}",
            format_eta(rates.eta(remaining or 0), rates, remaining),
        ]
        inst = " ".join(
            f"[{i}] "
            + ("" if self._queue else f"{per.get(i, 0):,} ")
            + ("running" if s is None else f"exit {s}")
            for i, s in enumerate(states)
        )
        return " | ".join(parts) + " | " + inst

    def _rates(self, done: int, first: Any, now: Any, running: bool) -> Rates:
        """progress.py's two rates from what the instances committed: the window's results are
        the growth of ``done`` since the newest sample at least the window old (samples kept
        in memory, one per redraw)."""
        self._samples.append((now, done))
        window = _dt.timedelta(minutes=RATE_WINDOW_MINUTES)
        while len(self._samples) > 1 and self._samples[1][0] <= now - window:
            self._samples.pop(0)
        since, before = self._samples[0] if self._samples[0][0] <= now - window else (first, 0)
        grew_at = self._last_growth(done, now)
        last = now if running else grew_at
        recent_first = max(since, first) if since is not None and first is not None else first
        return measure(done, first, last, done - before, recent_first, last, now)

    def _last_growth(self, done: int, now: Any) -> Any:
        """When ``done`` last grew (the end of the window once every instance has stopped)."""
        if done != self._last_done:
            self._last_done, self._grew_at = done, now
        return self._grew_at

    def _draw(self, line: str, final: bool = False) -> None:
        with self._lock:
            width = 200
            self._line = "\r\033[K" + line[:width]
            self.stream.write(self._line + ("\n" if final else ""))
            self.stream.flush()
            if final:
                self._line = ""


def _ts(v: Any) -> Any:
    if v is None or isinstance(v, _dt.datetime):
        return v
    return _dt.datetime.fromisoformat(str(v))
