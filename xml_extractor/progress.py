"""One definition of "rate" and "ETA" for the run summary, ``status`` and ``launch``.

A rate is results divided by the time actually observed: the window starts at the first result
seen (or the run's start) and ends now while work is going on, or at the last result once it has
stopped. So a run one minute old is not divided by five minutes, and a run that was killed does
not keep an ETA: without a result for ``IDLE_AFTER_S`` it is idle, and there is no ETA.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO, Union

Moment = Union[_dt.datetime, float]  # a timestamp, or seconds (time.time() / monotonic)

IDLE_AFTER_S = 120.0  # no result for this long: nothing is running


def _seconds(start: Moment, end: Moment) -> float:
    if isinstance(start, _dt.datetime) and isinstance(end, _dt.datetime):
        return (end - start).total_seconds()
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return float(end) - float(start)
    raise TypeError("start and end must both be datetimes or both be seconds")


def rate_per_minute(results: int, start: Moment | None, end: Moment | None) -> float:
    """Results per minute over [start, end] (at least one second: a single batch is not infinite)."""
    if not results or start is None or end is None:
        return 0.0
    return results / max(1.0, _seconds(start, end)) * 60.0


def eta_minutes(remaining: int, rate: float, running: bool) -> float | None:
    """Minutes to go at this rate, only while something is running and something remains."""
    if not running or rate <= 0 or remaining <= 0:
        return None
    return remaining / rate


@dataclass
class Observed:
    """What a window of results says: rate, whether work is going on, and since when it is not."""

    rate_per_min: float
    running: bool
    idle_since: _dt.datetime | None


def observe(
    results: int,
    first: _dt.datetime | None,
    last: _dt.datetime | None,
    now: _dt.datetime,
    last_activity: _dt.datetime | None = None,
) -> Observed:
    """The rate of ``results`` logged between ``first`` and ``last``, seen at ``now``: running if the
    last result (or ``last_activity``) is at most ``IDLE_AFTER_S`` old; the window then ends now,
    otherwise at the last result."""
    latest = max((t for t in (last, last_activity) if t is not None), default=None)
    running = latest is not None and _seconds(latest, now) <= IDLE_AFTER_S
    end = now if running else last
    return Observed(
        round(rate_per_minute(results, first, end), 1), running, None if running else latest
    )


# -- the one definition, with its labels ---------------------------------------------------------
# Two numbers describe throughput, and every place that shows one names it the same way:
#   "rate (last 5 min)": results logged in the named window, divided by the part of the window
#       that was observed (the window starts no earlier than the first result; it ends now while
#       running, at the last result once idle: see observe()).
#   "average since first result": every result, divided by the time from the first result to now
#       (to the last result once idle).
# A "result" is one committed attempt (success or failed) of one application. The ETA is always
# the remaining applications at the windowed rate, and only while something is running.

RATE_WINDOW_MINUTES = 5


def rate_label(window_minutes: float = RATE_WINDOW_MINUTES) -> str:
    """The windowed rate's name, e.g. ``rate (last 5 min)``."""
    return f"rate (last {window_minutes:g} min)"


AVERAGE_LABEL = "average since first result"
ETA_LABEL = "at the {rate}"  # how an ETA says which rate it assumes


@dataclass(frozen=True)
class Rates:
    """Both throughput numbers of one moment, their labels, and the ETA they imply."""

    recent_per_min: float
    average_per_min: float
    window_minutes: float
    running: bool
    idle_since: _dt.datetime | None

    @property
    def recent_label(self) -> str:
        return rate_label(self.window_minutes)

    def eta(self, remaining: int) -> float | None:
        """Minutes to finish ``remaining`` at the windowed rate (None when idle or nothing remains)."""
        return eta_minutes(remaining, self.recent_per_min, self.running)

    def describe(self, remaining: int | None = None) -> str:
        """One line any command can print: ``1,234/min rate (last 5 min), 1,100/min average since
        first result, ETA 12 min at the rate (last 5 min)``."""
        text = f"{self.recent_per_min:,.0f}/min {self.recent_label}, {self.average_per_min:,.0f}/min {AVERAGE_LABEL}"
        if remaining is not None:
            text += ", " + format_eta(self.eta(remaining), self, remaining)
        return text


def measure(
    total: int,
    first: _dt.datetime | None,
    last: _dt.datetime | None,
    recent: int,
    recent_first: _dt.datetime | None,
    recent_last: _dt.datetime | None,
    now: _dt.datetime,
    window_minutes: float = RATE_WINDOW_MINUTES,
    last_activity: _dt.datetime | None = None,
) -> Rates:
    """Rates from ``total`` results logged between ``first`` and ``last`` and the ``recent`` of them
    logged in the window (between ``recent_first`` and ``recent_last``), seen at ``now``."""
    seen = observe(recent, recent_first, recent_last, now, last_activity or last)
    end = now if seen.running else last
    return Rates(
        seen.rate_per_min,
        round(rate_per_minute(total, first, end), 1),
        window_minutes,
        seen.running,
        seen.idle_since,
    )


def format_eta(
    minutes: float | None, rates: Rates | None = None, remaining: int | None = None
) -> str:
    """``ETA 12 min at the rate (last 5 min)`` (time as eta_words); without one ``ETA - (nothing
    pending)``, ``ETA - (idle)`` or ``ETA - (nothing to estimate)``."""
    label = ETA_LABEL.format(rate=rates.recent_label if rates else rate_label())
    if minutes is None:
        why = (
            "nothing pending"
            if remaining == 0
            else "idle"
            if rates is not None and not rates.running
            else "nothing to estimate"
        )
        return f"ETA - ({why})"
    return f"ETA {eta_words(minutes)} {label}"


def eta_words(minutes: float) -> str:
    """An ETA's time as every command words it: ``under 1 min`` (never ``0 min`` while something
    remains), ``12 min``, hours past two (``2.5 h``)."""
    if minutes < 1:
        return "under 1 min"
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def rolling_rates(counts: list[int], window_minutes: int = RATE_WINDOW_MINUTES) -> list[float]:
    """The rate curve: for each minute of ``counts`` (results per consecutive minute, from the
    first result's minute), the windowed rate ending with that minute, over the observed part of
    the window (the first minutes are not divided by the whole window)."""
    out: list[float] = []
    acc = 0
    for i, n in enumerate(counts):
        acc += n
        if i >= window_minutes:
            acc -= counts[i - window_minutes]
        out.append(round(acc / min(i + 1, window_minutes), 1))
    return out


# -- the run's progress bar ------------------------------------------------------------------------


class ProgressListener(Protocol):
    """What a run tells whoever shows its progress (processing/processor.py calls it)."""

    def starting(self, step: str) -> None:
        """The run is starting: ``step`` says what it is doing (connecting, starting workers)."""

    def advanced(self, success: int, failed: int, skipped: int, rates: Rates) -> None:
        """A batch committed: this run's counts so far and its rates."""


class RunProgress:
    """``run``'s progress line on a terminal (stderr): what it is doing while it starts, then
    done/total of this instance's share counting what earlier runs did, this run's ok and failed
    counts, the rate and a labelled ETA. Redrawn in place, at most every ``interval`` seconds
    (a batch is what a worker reports, so the count moves by batches)."""

    def __init__(
        self,
        total: int | None,
        already_done: int,
        stream: TextIO,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.already_done = total, already_done
        self.stream, self.interval, self.clock = stream, interval, clock
        self._drawn_at: float | None = None
        self._line = ""
        self._pending: str | None = None  # the newest line not drawn yet (drawn at close)
        self._lock = threading.Lock()

    def resuming(self) -> str | None:
        """``resuming: 1,000 of 1,064 already done`` when earlier runs did part of this share."""
        if not self.already_done or self.total is None:
            return None
        return f"resuming: {self.already_done:,} of {self.total:,} already done"

    def starting(self, step: str) -> None:
        self._draw(" | ".join(p for p in (f"starting: {step}", self.resuming()) if p), force=True)

    def advanced(self, success: int, failed: int, skipped: int, rates: Rates) -> None:
        self._draw(self.render(success, failed, skipped, rates))

    def render(self, success: int, failed: int, skipped: int, rates: Rates) -> str:
        """``1,032 of 1,064 done (97%) | this run: ok 30, failed 2 | 1,234/min rate (last 5
        min) | ETA 1 min at the rate (last 5 min)``."""
        done = self.already_done + success + failed + skipped
        if self.total:
            head = f"{done:,} of {self.total:,} done ({done / self.total:.0%})"
        else:
            head = f"{done:,} done"
        parts = [head, f"this run: ok {success:,}, failed {failed:,}"]
        if skipped:
            parts[-1] += f", done elsewhere {skipped:,}"
        parts.append(f"{rates.recent_per_min:,.0f}/min {rates.recent_label}")
        remaining = None if self.total is None else max(0, self.total - done)
        parts.append(format_eta(rates.eta(remaining or 0), rates, remaining))
        return " | ".join(parts)

    def close(self) -> None:
        """End the line (the summary follows below it)."""
        with self._lock:
            if self._pending is not None:
                self._line = self._pending
                self.stream.write("\r\033[K" + self._pending)
                self._pending = None
            if self._line:
                self.stream.write("\n")
                self.stream.flush()
                self._line = ""

    def _draw(self, line: str, force: bool = False) -> None:
        now = self.clock()
        with self._lock:
            if not force and self._drawn_at is not None and now - self._drawn_at < self.interval:
                self._pending = line
                return
            self._drawn_at, self._line, self._pending = now, line, None
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
