"""A Windows simulation for interpreters the tests start (tests/test_windows_simulation.py).

Python imports ``sitecustomize`` at start-up from ``sys.path``; the tests put this folder on
``PYTHONPATH`` *and* set ``XE_WINSIM=1`` for the command they start, so every process it starts in
turn (multiprocessing's spawned workers, ``launch``'s instances) inherits both and is simulated
too. Without ``XE_WINSIM=1`` this module does nothing; the normal suite never has this folder on
its path.

What it does, before any of the program's code runs:

- ``signal`` keeps only what Windows has: ``SIGINT SIGILL SIGFPE SIGSEGV SIGTERM SIGABRT``, plus
  ``SIGBREAK`` (Ctrl-Break) and ``CTRL_C_EVENT``/``CTRL_BREAK_EVENT`` (0 and 1, as on Windows).
  Every other ``SIG*`` name is gone (``SIGHUP SIGKILL SIGSTOP SIGCONT SIGUSR1 SIGUSR2 SIGQUIT
  SIGALRM SIGCHLD SIGPIPE`` ...), and so are ``pthread_sigmask pthread_kill sigwait sigwaitinfo
  sigtimedwait sigpending siginterrupt alarm pause setitimer getitimer pidfd_send_signal``,
  ``SIG_BLOCK``/``SIG_UNBLOCK``/``SIG_SETMASK``, ``ITIMER_*`` and ``Sigmasks``. ``Signals`` is rebuilt
  with the remaining names; ``signal.signal``/``getsignal``/``raise_signal`` refuse any other number
  with ``ValueError: invalid signal value`` and ``valid_signals()`` returns only these.
  ``SIGBREAK`` is really SIGUSR2's number (a spare signal): a test "presses Ctrl-Break" by sending
  that signal.
- ``os`` loses ``killpg fork forkpty setsid setpgrp setpgid getpgid getpgrp getsid wait3 wait4
  register_at_fork tcgetpgrp tcsetpgrp posix_spawn posix_spawnp sched_getaffinity getloadavg``.
  ``os.getppid()`` returns the parent's pid as it was at start-up
  forever (Windows records it at creation; nothing re-parents an orphan), so "my parent's pid
  changed" never reveals a dead parent, as on Windows.
- ``os.kill`` behaves as Windows' does: ``CTRL_BREAK_EVENT`` to a process group id (a process
  started with ``CREATE_NEW_PROCESS_GROUP``) reaches every process of that group; ``CTRL_C_EVENT``
  to such a group reaches nobody (new groups have Ctrl-C disabled); either event to 0, or to a
  process that is not the leader of a new group (``os.kill(pid, 0)`` used as "is it alive?"
  included, since 0 *is* ``CTRL_C_EVENT``), goes to the whole console, as GenerateConsoleCtrlEvent
  does; a pid that does not exist gives ``OSError`` (EINVAL, Windows' error 87). Any other signal
  number terminates the process at once (TerminateProcess): ``os.kill(pid, SIGTERM)`` is not a
  request to stop.
- ``subprocess.Popen``: ``preexec_fn`` and ``pass_fds`` are refused (``ValueError``, as on Windows);
  ``start_new_session``, ``process_group``, ``user``, ``group``, ``extra_groups`` and ``umask`` are
  ignored (Windows ignores them); ``creationflags`` is accepted: ``CREATE_NEW_PROCESS_GROUP`` starts
  the child in a new process group, ``CREATE_NEW_CONSOLE``/``DETACHED_PROCESS`` in a new session
  (another console); the ``subprocess.CREATE_*``/``DETACHED_PROCESS`` constants exist.
  ``send_signal`` takes only ``SIGTERM`` (= ``terminate()``), ``CTRL_C_EVENT`` and
  ``CTRL_BREAK_EVENT`` (through ``os.kill`` above), anything else is ``ValueError: Unsupported
  signal``; ``terminate()`` and ``kill()`` are TerminateProcess (an uncatchable kill).
- ``multiprocessing`` has one start method, as on Windows: ``get_all_start_methods() == ['spawn']``,
  the default context is spawn, ``get_context('fork')``/``('forkserver')`` raise ``ValueError:
  cannot find context``, and the fork/forkserver context classes are gone. ``Process.terminate()``
  and ``kill()`` are TerminateProcess. (``set_start_method`` is not called: on Windows a program
  may still call ``set_start_method('spawn')`` once.)
- ``import resource``, ``fcntl``, ``termios``, ``pty``, ``tty``, ``pwd``, ``grp`` fail with
  ``ModuleNotFoundError`` (the stdlib imports them optionally); ``select.select`` refuses anything
  but sockets (Windows' select works on sockets only).

What it does not simulate (kept because removing it would break CPython, or cannot be faked):

- ``sys.platform`` stays ``linux`` and ``os.name`` ``posix``: code that branches on them takes its
  POSIX branch here; only feature detection (``hasattr(signal, "SIGHUP")``, ``getattr(subprocess,
  "CREATE_NEW_PROCESS_GROUP", 0)``, ...) is exercised. For the same reason ``os.getuid`` and its
  kin stay (pytest, among others, calls them when ``sys.platform`` is not ``win32``).
- Console control events are real signals: Ctrl-Break is SIGUSR2 delivered to the handler the
  program installed for ``SIGBREAK`` (Windows runs console handlers on a new thread and the C
  runtime raises the signal in the main thread; the effect on Python code is the same); closing
  the console window (CTRL_CLOSE_EVENT, which the C runtime also turns into SIGBREAK, followed by
  a forced end about 5 s later) is not simulated. A console-wide event goes to the processes of
  the simulated command's session (the test starts each command in its own session; the
  simulation refuses to broadcast when that is not so, rather than signal the test runner).
- Exit statuses stay POSIX ones: a TerminateProcess'd child shows -9 (Windows: 1, or -15 for
  multiprocessing), one ended by an unhandled Ctrl-Break -12 (Windows: 0xC000013A).
- ``os.waitpid``, ``os.WNOHANG`` and the ``W*`` status macros stay (subprocess and multiprocessing
  use them at import and wait time; Windows' own subprocess does not need them); ``select.poll``
  and ``epoll`` stay (subprocess and multiprocessing.connection pick them through ``selectors``;
  Windows uses WaitForMultipleObjects there). Pipes, sockets and multiprocessing's resource
  tracker process (POSIX only; here it ignores Ctrl-Break as it ignores SIGINT) are the Linux ones.
- Files and paths: ``/`` separators, case-sensitive names, no drive letters, no mandatory file
  locks or sharing violations (an open file can be renamed or deleted here, not on Windows),
  ``\\n`` line endings, the locale's encoding (Windows' default code page is cp1252 unless UTF-8
  mode is on), ``os.chmod``/``os.O_NOFOLLOW``/symlinks as on Linux.
- The console itself (code page, Ctrl-C echo), services, Job objects, ``msvcrt``/``_winapi``/
  ``winreg`` (not importable here, as on Linux), and drivers (SQL Server's ODBC driver on Windows).
"""

from __future__ import annotations

import os
import sys

ENV_FLAG = "XE_WINSIM"
CONSOLE_ENV = (
    "XE_WINSIM_CONSOLE"  # the pgid playing the console: set by the first simulated process
)
# a test's folder: the first spawned worker started while it is set dies before reading its start
# data (as one that a Ctrl-C or Ctrl-Break reached as it started), leaving "died" there
WORKER_DIES_ENV = "XE_WINSIM_FIRST_WORKER_DIES"

WINDOWS_SIGNALS = ("SIGINT", "SIGILL", "SIGFPE", "SIGSEGV", "SIGTERM", "SIGABRT")
SIGNAL_FUNCS_GONE = (
    "pthread_sigmask",
    "pthread_kill",
    "sigwait",
    "sigwaitinfo",
    "sigtimedwait",
    "sigpending",
    "siginterrupt",
    "alarm",
    "pause",
    "setitimer",
    "getitimer",
    "pidfd_send_signal",
    "SIG_BLOCK",
    "SIG_UNBLOCK",
    "SIG_SETMASK",
    "ITIMER_REAL",
    "ITIMER_VIRTUAL",
    "ITIMER_PROF",
    "ItimerError",
    "Sigmasks",
)
OS_GONE = (
    "killpg",
    "fork",
    "forkpty",
    "setsid",
    "setpgrp",
    "setpgid",
    "getpgid",
    "getpgrp",
    "getsid",
    "wait3",
    "wait4",
    "register_at_fork",
    "tcgetpgrp",
    "tcsetpgrp",
    "posix_spawn",
    "posix_spawnp",
    "sched_getaffinity",
    "getloadavg",
)
MODULES_GONE = frozenset({"resource", "fcntl", "termios", "pty", "tty", "pwd", "grp"})
CREATE_NEW_CONSOLE = 0x10
CREATE_NEW_PROCESS_GROUP = 0x200
DETACHED_PROCESS = 0x8
CREATE_NO_WINDOW = 0x08000000
CTRL_C_EVENT = 0
CTRL_BREAK_EVENT = 1


class _Gone:
    """A meta-path finder that makes the POSIX-only modules unimportable."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name in MODULES_GONE:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _simulate() -> None:
    import _signal
    import enum
    import errno
    import functools
    import inspect
    import signal

    real_kill, real_killpg = os.kill, os.killpg
    real_getpgid, real_getsid = os.getpgid, os.getsid
    sigkill, sigint, sigbreak = int(signal.SIGKILL), int(signal.SIGINT), int(signal.SIGUSR2)
    console = int(os.environ.setdefault(CONSOLE_ENV, str(os.getpgrp())))
    parent_pid = os.getppid()

    # --- signal -----------------------------------------------------------------------------
    kept = {name: int(getattr(signal, name)) for name in WINDOWS_SIGNALS}
    kept["SIGBREAK"] = sigbreak
    members = {**kept, "CTRL_C_EVENT": CTRL_C_EVENT, "CTRL_BREAK_EVENT": CTRL_BREAK_EVENT}
    for mod in (signal, _signal):
        for name in list(vars(mod)):
            if (
                name.startswith("SIG") and not name.startswith("SIG_") and name not in kept
            ) or name in SIGNAL_FUNCS_GONE:
                delattr(mod, name)
    signals = enum.IntEnum("Signals", members, module="signal")  # type: ignore[misc]
    signal.Signals = signals  # type: ignore[misc]
    for name in members:
        setattr(signal, name, signals[name])
    allowed = frozenset(kept.values())

    def _check(signalnum: int) -> None:
        if int(signalnum) not in allowed:
            raise ValueError("invalid signal value")

    def _guarded(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def wrapper(signalnum, *args):  # type: ignore[no-untyped-def]
            _check(signalnum)
            return fn(signalnum, *args)

        return wrapper

    signal.signal = _guarded(signal.signal)
    signal.getsignal = _guarded(signal.getsignal)
    signal.raise_signal = _guarded(signal.raise_signal)
    signal.valid_signals = lambda: {signals(n) for n in allowed}  # type: ignore[assignment]

    # --- os ---------------------------------------------------------------------------------
    for name in OS_GONE:
        if hasattr(os, name):
            delattr(os, name)
    os.getppid = lambda: parent_pid

    def _session(only_console_group: bool) -> list[int]:
        """The processes of the simulated console (the command's session)."""
        if real_getsid(0) != console:
            raise RuntimeError(
                "winsim: a console-wide control event needs the simulated command started in "
                "its own session (the test's popen), so that it does not reach the test runner"
            )
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pgrp, sid = int(fields[2]), int(fields[3])
            if sid == console and (pgrp == console or not only_console_group):
                out.append(int(entry))
        return out

    def _broadcast(event: int) -> None:
        # Ctrl-C is disabled in groups made with CREATE_NEW_PROCESS_GROUP; Ctrl-Break reaches all
        for pid in _session(only_console_group=event == CTRL_C_EVENT):
            try:
                real_kill(pid, sigint if event == CTRL_C_EVENT else sigbreak)
            except ProcessLookupError:
                pass

    def kill(pid: int, sig: int) -> None:
        """os.kill as on Windows: console control events for 0 and 1, TerminateProcess otherwise."""
        sig = int(sig)
        if sig not in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
            real_kill(pid, sigkill)
            return
        if pid == 0:
            _broadcast(sig)
            return
        try:
            leader = real_getpgid(pid) == pid
        except ProcessLookupError:
            raise OSError(
                errno.EINVAL, "The parameter is incorrect (simulated WinError 87)"
            ) from None
        if leader and pid != console:  # a group of its own: CREATE_NEW_PROCESS_GROUP
            if sig == CTRL_BREAK_EVENT:
                real_killpg(pid, sigbreak)
            return
        _broadcast(
            sig
        )  # any process attached to the console: GenerateConsoleCtrlEvent acts as for 0

    os.kill = kill

    # --- modules Windows does not have ------------------------------------------------------
    for name in MODULES_GONE:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, _Gone())  # type: ignore[arg-type]

    import select
    import socket
    import stat

    real_select = select.select

    def _sockets_only(*lists):  # type: ignore[no-untyped-def]
        for fd_list in lists[:3]:
            for f in fd_list:
                fd = f if isinstance(f, int) else f.fileno()
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    raise OSError(
                        errno.ENOTSOCK,
                        "An operation was attempted on something that is not a socket "
                        "(simulated WinError 10038)",
                    )
        return real_select(*lists)

    select.select = _sockets_only
    del socket

    # --- subprocess -------------------------------------------------------------------------
    import subprocess

    popen_init = subprocess.Popen.__init__
    popen_sig = inspect.signature(popen_init)

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        bound = popen_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        if a["preexec_fn"] is not None:
            raise ValueError("preexec_fn is not supported on Windows platforms")
        if a["pass_fds"]:
            raise ValueError("pass_fds not supported on Windows.")
        flags = a["creationflags"] or 0
        a.update(
            creationflags=0,
            start_new_session=bool(flags & (CREATE_NEW_CONSOLE | DETACHED_PROCESS)),
            process_group=0 if flags & CREATE_NEW_PROCESS_GROUP else None,
            user=None,
            group=None,
            extra_groups=None,
            umask=-1,
        )
        popen_init(*bound.args, **bound.kwargs)

    def send_signal(self, sig):  # type: ignore[no-untyped-def]
        self.poll()
        if self.returncode is not None:
            return
        if sig == signal.SIGTERM:
            self.terminate()
        elif sig in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
            os.kill(self.pid, sig)
        else:
            raise ValueError(f"Unsupported signal: {sig}")

    def terminate(self):  # type: ignore[no-untyped-def]
        if self.returncode is None:
            try:
                real_kill(self.pid, sigkill)
            except ProcessLookupError:
                pass

    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]
    subprocess.Popen.send_signal = send_signal  # type: ignore[method-assign]
    subprocess.Popen.terminate = terminate  # type: ignore[method-assign]
    subprocess.Popen.kill = terminate  # type: ignore[method-assign]
    for name, value in (
        ("CREATE_NEW_CONSOLE", CREATE_NEW_CONSOLE),
        ("CREATE_NEW_PROCESS_GROUP", CREATE_NEW_PROCESS_GROUP),
        ("DETACHED_PROCESS", DETACHED_PROCESS),
        ("CREATE_NO_WINDOW", CREATE_NO_WINDOW),
    ):
        setattr(subprocess, name, value)

    # --- multiprocessing --------------------------------------------------------------------
    import multiprocessing
    import multiprocessing.context as mpc
    import multiprocessing.popen_fork as popen_fork

    for method in ("fork", "forkserver"):
        mpc._concrete_contexts.pop(method, None)  # type: ignore[attr-defined]
    for name in ("ForkContext", "ForkServerContext", "ForkProcess", "ForkServerProcess"):
        if hasattr(mpc, name):
            delattr(mpc, name)
    default = mpc._default_context
    default._default_context = mpc._concrete_contexts["spawn"]  # type: ignore[attr-defined]
    mpc.DefaultContext.get_all_start_methods = lambda self: ["spawn"]  # type: ignore[method-assign]
    multiprocessing.get_all_start_methods = default.get_all_start_methods  # type: ignore[attr-defined]

    def _terminate_process(self):  # type: ignore[no-untyped-def]
        if self.returncode is None:
            try:
                real_kill(self.pid, sigkill)
            except ProcessLookupError:
                pass

    popen_fork.Popen.terminate = _terminate_process  # type: ignore[method-assign]
    popen_fork.Popen.kill = _terminate_process  # type: ignore[method-assign]

    # multiprocessing's resource tracker exists only on POSIX; it ignores SIGINT and SIGTERM, and
    # here Ctrl-Break too, so that a console-wide Ctrl-Break does not end it as an artefact
    import multiprocessing.resource_tracker as tracker

    tracker_main = tracker.main

    def _tracker_main(fd):  # type: ignore[no-untyped-def]
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)
        return tracker_main(fd)

    tracker.main = _tracker_main


def _first_worker_dies(folder: str) -> None:
    if "--multiprocessing-fork" not in sys.argv:
        return
    try:
        fd = os.open(os.path.join(folder, "died"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


if os.environ.get(ENV_FLAG) == "1":
    _simulate()
    if os.environ.get(WORKER_DIES_ENV):
        _first_worker_dies(os.environ[WORKER_DIES_ENV])
