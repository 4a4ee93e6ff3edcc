"""One definition of "rate" and "ETA" for the run summary, ``status`` and ``launch``.

A rate is results divided by the time actually observed: the window starts at the first result
seen (or the run's start) and ends now while work is going on, or at the last result once it has
stopped. So a run one minute old is not divided by five minutes, and a run that was killed does
not keep an ETA: without a result for ``IDLE_AFTER_S`` it is idle, and there is no ETA.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Union

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


def observe(results: int, first: _dt.datetime | None, last: _dt.datetime | None, now: _dt.datetime,
            last_activity: _dt.datetime | None = None) -> Observed:
    """The rate of ``results`` logged between ``first`` and ``last``, seen at ``now``: running if the
    last result (or ``last_activity``) is at most ``IDLE_AFTER_S`` old; the window then ends now,
    otherwise at the last result."""
    latest = max((t for t in (last, last_activity) if t is not None), default=None)
    running = latest is not None and _seconds(latest, now) <= IDLE_AFTER_S
    end = now if running else last
    return Observed(round(rate_per_minute(results, first, end), 1), running, None if running else latest)
