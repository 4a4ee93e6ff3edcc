"""Signals and process supervision: the one module that knows what the platform offers.

Everything else asks here which signals stop a command, how a worker or a launched instance is
started and stopped, how a child notices that its parent died, and how much memory a process
uses. Each answer is decided by what the running interpreter has (``signal.SIGHUP``,
``os.killpg``, ``signal.pthread_sigmask``, ``signal.CTRL_BREAK_EVENT``, ``/proc``), not by the
platform's name, so an interpreter with the POSIX-only names removed takes the Windows paths.

- Stop signals: SIGINT everywhere; SIGTERM and SIGHUP where SIGHUP exists (POSIX: a service
  manager's stop, a closed terminal); SIGBREAK where it exists (Windows: Ctrl-Break, and what
  ``launch`` sends an instance).
- A child dies with its parent through a *lifeline*: a pipe whose other end only the parent holds.
  The child blocks on it in a daemon thread; end-of-file means the parent is gone, whatever killed
  it (SIGKILL, TerminateProcess, a crash). Workers get one from the run (:func:`lifeline` /
  :class:`ParentWatch`); instances started by ``launch`` get their standard input as one
  (:data:`LIFELINE_ENV`, :func:`watch_stdin_lifeline`), on which a ``stop`` line also asks them to
  stop (where neither a process group signal nor CTRL_BREAK_EVENT exists).
- A process group is stopped with ``killpg`` (SIGTERM, then SIGKILL) where it exists, else with
  CTRL_BREAK_EVENT to a child started with CREATE_NEW_PROCESS_GROUP, then a forced end.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from . import starting

log = logging.getLogger(__name__)

LIFELINE_ENV = "XML_EXTRACTOR_PARENT_LIFELINE"  # set by launch for its instances: "stdin"
EXIT_GRACE_S = (
    0.2  # a worker whose parent is gone has this long to stop by itself, then it is ended
)


class ParentGone(BaseException):
    """The parent process died: stop now, commit nothing (a BaseException, like SystemExit, so that
    no ``except Exception`` on the way turns it into a failure)."""


# -- which signals ---------------------------------------------------------------------------------


stop_signals = starting.stop_signals  # the signals that ask a command to stop on this platform


def signal_name(signum: int) -> str:
    """SIGTERM, SIGBREAK, ... (a number without a name on this platform: SIG<number>)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return next(
            (
                n
                for n in dir(signal)
                if n.startswith("SIG") and not n.startswith("SIG_") and getattr(signal, n) == signum
            ),
            f"SIG{signum}",
        )


def repeats(signum: int, last: dict[int, float], now: float) -> bool:
    """Whether ``signum`` repeats, within a second, a stop the process already has (``last``: when
    each signal was last seen, updated here). Only for SIGBREAK: Windows sends a console's
    Ctrl-Break to every process of the console, so an instance started by launch gets it directly
    and again as launch's forwarded CTRL_BREAK_EVENT; that is one stop, not "stop now"."""
    seen, last[signum] = last.get(signum), now
    return signum == getattr(signal, "SIGBREAK", None) and seen is not None and now - seen < 1.0


def install_stop_handlers(handler: Callable[[int, Any], Any]) -> dict[int, Any]:
    """Point every stop signal at ``handler``; returns what to :func:`restore_handlers`. A signal
    the process was started ignoring (``nohup``: SIGHUP) stays ignored. Only the main thread can
    set handlers: elsewhere nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {
        s: signal.signal(s, handler)
        for s in stop_signals()
        if signal.getsignal(s) != signal.SIG_IGN
    }


def restore_handlers(saved: dict[int, Any]) -> None:
    for s, h in saved.items():
        signal.signal(s, h)


def ignore_stop_signals() -> None:
    """In a worker: a stop signal to the whole group (Ctrl-C, Ctrl-Break, a service stop) is for
    the run, which decides when its workers stop. In the command line once its exit code is
    decided (cli.main): a stop then would only change it."""
    for s in stop_signals():
        signal.signal(s, signal.SIG_IGN)


_exit_decided = False  # set by the command line once its exit code is decided (exit_decided)


def exit_decided() -> None:
    """The command line's exit code is decided: from now on a stop signal raises nothing. A stop
    that arrived while a first one was being handled (between the KeyboardInterrupt and the exit)
    would otherwise escape cli.main, and Python ends a process whose KeyboardInterrupt escapes
    by killing itself with SIGINT (exit -2 in launch's table). Then cli.main ignores the signals
    (ignore_stop_signals); this flag covers the few instructions before that."""
    global _exit_decided
    _exit_decided = True


def forget_interrupts_that_left_exec() -> None:
    """Once the exit code is decided and the stop signals ignored: make CPython forget a
    KeyboardInterrupt that left code run by ``exec`` of a string (a dataclass's or a named
    tuple's generated methods, while a command imports a module) although the command caught it.
    CPython notes such an interrupt as unhandled (``run_eval_code_obj`` in pythonrun.c), and
    ``python -m`` (how launch starts its instances) then ends the process by SIGINT after the
    interpreter's shutdown: exit -2 instead of 130. Each ``exec`` of a string starts by clearing
    that note, and this one raises nothing."""
    exec("None", {})


def _interrupt(signum: int, frame: object) -> None:
    if _exit_decided:
        return
    # SIGINT as Python's own handler raises it (no message); the others name the signal
    raise KeyboardInterrupt() if signum == signal.SIGINT else KeyboardInterrupt(signal_name(signum))


def interrupt_on_stop_signals() -> None:
    """In the command line: every stop signal raises KeyboardInterrupt (SIGINT as Python's own
    handler does), so that any command stops with exit 130, until :func:`exit_decided`; one
    started ignored stays so."""
    for s in stop_signals():
        current = signal.getsignal(s)
        if current in (signal.SIG_DFL, signal.default_int_handler, starting.hold):
            signal.signal(s, _interrupt)


def take_held_stop_signals() -> None:
    """Take the stops held while the command line started (after interrupt_on_stop_signals):
    those :mod:`starting` recorded while it imported, and those blocked where
    ``pthread_sigmask`` exists (launch starts an instance with them blocked, so that a stop sent
    before its first line of Python is held too). The first one interrupts here (exit 130)
    instead of having ended the process by the signal's default (-15)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals())
    held = starting.held_stop_signals()
    if held:
        handler = signal.getsignal(held[0])
        if callable(handler):
            handler(held[0], None)


@contextmanager
def stop_signals_blocked() -> Iterator[Callable[[], None]]:
    """Block the stop signals while processes are started (where ``pthread_sigmask`` exists): a
    blocked mask is inherited across fork and exec, so a child cannot be killed by a signal to the
    group before it has set its own handlers. This process keeps its handlers; a signal that
    arrives meanwhile is held and delivered when the mask is restored. Yields a function that
    blocks them again (a helper that unblocked them on its way out). Elsewhere: does nothing."""
    if (
        not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield lambda: None
        return
    sigs = stop_signals()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    def block_again() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    try:
        yield block_again
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- the start method ------------------------------------------------------------------------------


def worker_context(preload: list[str]) -> Any:
    """forkserver where it exists, with ``preload`` imported in the server: a new worker is a cheap
    fork of a clean, single-threaded server (never of the multi-threaded run), its modules already
    imported. spawn elsewhere (Windows): a fresh interpreter imports the worker's module."""
    if "forkserver" in mp.get_all_start_methods():
        try:
            ctx = mp.get_context("forkserver")
        except ValueError:
            return mp.get_context("spawn")
        ctx.set_forkserver_preload(preload)
        return ctx
    return mp.get_context("spawn")


def start_helpers(ctx: Any, hold: Callable[[str], None] = lambda point: None) -> None:
    """Start multiprocessing's helper processes (the resource tracker, then the forkserver) with
    the stop signals blocked, so that a signal to the group cannot kill them (their pipes are the
    workers' sentinels: a dead server would make every worker look dead at once). The tracker's
    start unblocks SIGINT/SIGTERM in this process on its way out, so the mask is blocked again
    before the forkserver. Only for forkserver; spawn starts no server."""
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver, resource_tracker

    with stop_signals_blocked() as block_again:
        resource_tracker.ensure_running()
        block_again()
        forkserver.ensure_running()
        hold("forkserver_started")  # test hook (gated): a signal now must still stop the run


def start_process(proc: Any) -> None:
    """``proc.start()`` with the stop signals blocked (the child sets its own handlers)."""
    with stop_signals_blocked():
        proc.start()


# -- lifelines: a child dies with its parent -------------------------------------------------------


def lifeline(ctx: Any) -> tuple[Connection, Connection]:
    """(child end, parent end) of a new lifeline: the child watches its end, the parent holds the
    other and never writes to it; the parent's death (any death) closes it."""
    child_end, parent_end = ctx.Pipe(duplex=False)
    return child_end, parent_end


class ParentWatch:
    """In a worker: a daemon thread blocked on the lifeline. When the parent is gone it lets the
    main thread stop by itself for :data:`EXIT_GRACE_S` (an idle worker sees the end of its
    command pipe; a busy one :meth:`check` before it commits), then ends the process at once,
    silently: an open transaction is rolled back by the database, as after a kill."""

    def __init__(self, conn: Connection, grace_s: float = EXIT_GRACE_S) -> None:
        self.conn = conn
        self.grace_s = grace_s
        self._gone = threading.Event()
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def _watch(self) -> None:
        try:
            while True:
                self.conn.recv()  # the parent never writes: only the end of the pipe returns
        except (EOFError, OSError):
            pass
        self._gone.set()
        if not self._done.wait(self.grace_s):
            os._exit(0)  # nobody is left to report to; nothing is flushed, nothing printed

    def gone(self) -> bool:
        """Whether the parent is gone, looking at the pipe itself (not only at what the thread saw)."""
        if self._gone.is_set():
            return True
        try:
            if self.conn.poll(0):  # readable without a message ever being sent: the end of the pipe
                return True
        except (EOFError, OSError):
            return True
        return False

    def check(self) -> None:
        """Raise ParentGone if the parent is gone (called right before a commit)."""
        if self.gone():
            raise ParentGone()

    def finished(self) -> None:
        """The main thread is stopping by itself: no need to end the process."""
        self._done.set()


# -- the launcher's lifeline (standard input of an instance) ----------------------------------------

_parent_gone = threading.Event()
_children: set[Any] = set()
_children_lock = threading.Lock()


def parent_gone() -> bool:
    """Whether the launcher that watches this process is gone (only with :func:`watch_stdin_lifeline`)."""
    return _parent_gone.is_set()


def register_child(proc: Any) -> None:
    """A worker this process started: ended at once if the parent of this process goes away."""
    with _children_lock:
        _children.add(proc)
    if _parent_gone.is_set():
        kill(proc)


def unregister_child(proc: Any) -> None:
    with _children_lock:
        _children.discard(proc)


def obey_the_launcher() -> None:
    """An instance started by launch (:data:`LIFELINE_ENV`) handles SIGINT and SIGTERM even when it
    inherited them ignored (launch run as a script's background job, or with ``trap "" INT TERM``):
    launch stops its instances with SIGTERM to their group, or a ``stop`` line, and an instance that
    ignored both would run to the end while launch waits for it. Other commands keep an inherited
    ignore (``nohup`` semantics)."""
    if os.environ.get(LIFELINE_ENV) != "stdin":
        return
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.SIGTERM in stop_signals() and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # interrupt_on_stop_signals handles it next


def watch_stdin_lifeline() -> bool:
    """If launch started this process (:data:`LIFELINE_ENV` = ``stdin``), watch standard input: a
    ``stop`` line asks for a stop like Ctrl-C (a second one: stop now); its end means the launcher
    is gone: the workers are ended at once (nothing more is committed), the output is silenced
    (nobody reads it), and the command is interrupted. Returns whether it watches."""
    if os.environ.pop(LIFELINE_ENV, "") != "stdin":
        return False
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else 0
    except (OSError, ValueError):
        fd = 0
    threading.Thread(target=_watch_stdin, args=(fd,), name="launcher-watch", daemon=True).start()
    return True


def _watch_stdin(fd: int) -> None:
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 512)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip() == b"stop":
                log.warning("the launcher asked this instance to stop")
                _interrupt_main()
    _launcher_gone()


def _launcher_gone() -> None:
    _parent_gone.set()
    try:  # the launcher read this process's output: writing to it now would only fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass
    with _children_lock:
        procs = list(_children)
    for p in procs:
        kill(p)
    log.warning("the launcher is gone (its pipe closed): workers ended, stopping now")
    _interrupt_main()


def _interrupt_main() -> None:
    """What a Ctrl-C does, without a signal: the main thread's SIGINT handler runs. Only an
    instance of launch watches a lifeline, and :func:`obey_the_launcher` gave it a SIGINT handler
    however it was started."""
    import _thread

    try:
        _thread.interrupt_main(signal.SIGINT)
    except (TypeError, RuntimeError):  # a handler set to SIG_IGN since: nothing to interrupt
        log.warning("the launcher's stop cannot reach this process: SIGINT is ignored")


# -- starting and stopping children ----------------------------------------------------------------


def kill(proc: Any) -> None:
    """End a process now (SIGKILL on POSIX, TerminateProcess on Windows): a multiprocessing
    Process or a subprocess.Popen. An open transaction of it is rolled back by the database."""
    try:
        proc.kill()
    except (OSError, ValueError, AttributeError):
        pass


def group_popen_kwargs() -> dict[str, Any]:
    """How launch starts an instance: in its own process group (a terminal's Ctrl-C reaches only
    the launcher, which forwards the stop), standard input as its lifeline."""
    kw: dict[str, Any] = {"stdin": subprocess.PIPE, "env": {**os.environ, LIFELINE_ENV: "stdin"}}
    if hasattr(os, "killpg"):
        kw["start_new_session"] = True
    elif hasattr(subprocess, "CREATE_NEW_PROCESS_GROUP"):
        kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    return kw


def stop_group(proc: subprocess.Popen, hard: bool) -> None:
    """Ask a child started with :func:`group_popen_kwargs` to stop (its in-flight batches commit),
    or (``hard``) end it now: ``killpg`` SIGTERM / SIGKILL where it exists; else CTRL_BREAK_EVENT /
    a forced end (Windows); else a ``stop`` line on its lifeline / a forced end."""
    if proc.poll() is not None:
        return
    try:
        if hasattr(os, "killpg"):
            os.killpg(
                proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM) if hard else signal.SIGTERM
            )
        elif hard:
            kill(proc)
        elif hasattr(signal, "CTRL_BREAK_EVENT") and hasattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP"
        ):
            os.kill(proc.pid, signal.CTRL_BREAK_EVENT)
        elif proc.stdin is not None:
            proc.stdin.write("stop\n" if getattr(proc, "text_mode", False) else b"stop\n")  # type: ignore[arg-type]
            proc.stdin.flush()
    except (ProcessLookupError, OSError, ValueError):
        pass


# -- memory ----------------------------------------------------------------------------------------


def memory_kb() -> tuple[int, int]:
    """This process's own (peak, current) resident memory in KB; 0 where unknown. Linux: VmHWM and
    VmRSS of /proc (ru_maxrss would count the parent's pages at fork); Windows: the peak and current
    working set (GetProcessMemoryInfo); other POSIX: ru_maxrss for the peak."""
    peak = cur = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
        return peak, cur
    except (OSError, ValueError):
        pass
    if sys.platform == "win32":
        return _windows_memory_kb()
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (
            rss // 1024 if sys.platform == "darwin" else rss
        ), 0  # macOS counts bytes, the others KB
    except (ImportError, OSError, ValueError):
        return 0, 0


def _windows_memory_kb() -> tuple[int, int]:
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [
            ("cb", wintypes.DWORD),
            ("PageFaultCount", wintypes.DWORD),
            ("PeakWorkingSetSize", ctypes.c_size_t),
            ("WorkingSetSize", ctypes.c_size_t),
            ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
            ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
            ("PagefileUsage", ctypes.c_size_t),
            ("PeakPagefileUsage", ctypes.c_size_t),
        ]

    try:
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        k32.GetCurrentProcess.restype = wintypes.HANDLE
        k32.K32GetProcessMemoryInfo.argtypes = [
            wintypes.HANDLE,
            ctypes.POINTER(Counters),
            wintypes.DWORD,
        ]
        k32.K32GetProcessMemoryInfo.restype = wintypes.BOOL
        c = Counters()
        c.cb = ctypes.sizeof(Counters)
        if not k32.K32GetProcessMemoryInfo(k32.GetCurrentProcess(), ctypes.byref(c), c.cb):
            return 0, 0
        return c.PeakWorkingSetSize // 1024, c.WorkingSetSize // 1024
    except (OSError, AttributeError):
        return 0, 0
