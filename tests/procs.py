"""Process helpers for tests that send real signals to real processes."""

import os
import signal
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(p.name))
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def python_workers(pid: int, want: int, timeout: float = 30) -> list[int]:
    """The worker processes of a run: forked by its forkserver, so grandchildren of the run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ws = []
        for c in descendants(pid):
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes()
            except OSError:
                continue
            if b"multiprocessing" in cmd and b"resource_tracker" not in cmd and children(c) == []:
                ws.append(c)
        if len(ws) >= want:
            return ws
        time.sleep(0.1)
    raise AssertionError(f"no {want} workers under {pid}")


def kill_group(proc, sig=None) -> None:
    try:
        os.killpg(
            proc.pid, signal.SIGKILL if sig is None else sig
        )  # not a default: Windows has no SIGKILL (import)
    except ProcessLookupError:
        pass


def wait_until(pred, timeout: float = 90, what: str = "condition", interval: float = 0.1) -> None:
    """Poll observable state (a DB count, a file, /proc) until ``pred()``; never a fixed sleep."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def db_rows(url: str, sql_of) -> list[tuple]:
    """Rows of one query (``sql_of(db)`` builds it from the database's names), autocommit."""
    from conftest import open_db

    db = open_db(url)
    try:
        return db.autocommit_query(sql_of(db))
    finally:
        db.close()


class Streams:
    """A running process's stdout and stderr read as they come (a thread each), so a test can
    wait for a line the process says while it runs, then collect the rest at its end."""

    def __init__(self, proc) -> None:
        import threading

        self.proc = proc
        self.parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.parts
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in iter(stream.readline, ""):
            self.parts[name].append(line)

    def text(self, name: str) -> str:
        return "".join(self.parts[name])

    def wait_for(self, text: str, name: str = "stderr", timeout: float = 90) -> None:
        """Until the process has said ``text`` on ``name`` (fails at once if it ended without)."""
        deadline = time.time() + timeout
        while text not in self.text(name):
            if self.proc.poll() is not None:
                for reader in self.readers:
                    reader.join(timeout=10)
                if text in self.text(name):
                    return
                raise AssertionError(
                    f"it ended ({self.proc.returncode}) without saying {text!r}: {self.text(name)}"
                )
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {text!r} on {name}: {self.text(name)}")
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """Its exit code, everything it wrote to stdout and to stderr."""
        rc = self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return rc, self.text("stdout"), self.text("stderr")
