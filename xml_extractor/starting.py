"""The stop signals while the command line starts: held, then taken.

Importing the command line (click, lxml, the contract and database layers) takes a few hundred
milliseconds. A stop that came then (Ctrl-C on a command typed a moment too fast, a service
stopped at start, a closed terminal) would end the process by the signal's default, -15 or -1,
or with a ``KeyboardInterrupt`` traceback, before any handler of the command line was in place.
The entry point (``xml_extractor.__main__.main``) therefore first points every stop signal at
:func:`hold`, which only records it, and only then imports the command line; its ``main``
installs the real handlers (supervision.interrupt_on_stop_signals) and takes what was held
(supervision.take_held_stop_signals): exit 130, as for a stop at any later moment. This module
imports only ``signal`` so that the window before it is Python's own start-up alone.
"""

from __future__ import annotations

import signal
from typing import Any

_held: list[int] = []


def stop_signals() -> tuple[int, ...]:
    """The signals that ask a command to stop on this platform: SIGINT everywhere; SIGTERM and
    SIGHUP where SIGHUP exists (POSIX: a service manager's stop, a closed terminal); SIGBREAK where
    it exists (Windows: Ctrl-Break, and what ``launch`` sends an instance)."""
    out = [signal.SIGINT]
    if hasattr(signal, "SIGHUP"):
        out += [signal.SIGTERM, signal.SIGHUP]
    if hasattr(signal, "SIGBREAK"):
        out.append(signal.SIGBREAK)
    return tuple(out)


def hold(signum: int, frame: Any) -> None:
    """The handler while the command line imports: remember the stop, raise nothing."""
    _held.append(signum)


def hold_stop_signals() -> None:
    """Point every stop signal that has its default handling at :func:`hold`. One the process
    was started ignoring (``nohup``: the hang-up; a background job's SIGINT) stays ignored."""
    for s in stop_signals():
        if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(s, hold)


def held_stop_signals() -> list[int]:
    """The stops received while held, first first (and forgotten: each is taken once)."""
    out = list(_held)
    _held.clear()
    return out
