"""launch: N partitioned ``run`` instances as subprocesses, prefixed output, one combined summary.

The instances live and die with the launcher: each is started in its own process group with its
standard input as a lifeline (supervision.group_popen_kwargs): when the launcher dies, however (even
SIGKILL or TerminateProcess), the pipe closes and each instance ends its workers at once (nothing
more is committed) and stops. A stop signal to the launcher (supervision.stop_signals: Ctrl-C, a
service stop, a closed terminal, Ctrl-Break) is forwarded to every instance's group (supervision.stop_group: SIGTERM to
the group on POSIX, CTRL_BREAK_EVENT on Windows): in-flight batches commit; a second stop ends
them now. Each instance writes its summary to a file given with the hidden ``run --summary-json``
option: its stdout is exactly what ``run`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from .. import supervision
from ..errors import ConfigError
from ..processing.context import outcome_of
from ..progress import AVERAGE_LABEL, rate_per_minute
from .common import ENV, HINT_ARGV, handle_errors
from .launch_progress import LaunchProgress, _run_params


@click.command(
    "launch", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    required=True,
    envvar=ENV + "INSTANCES",
    help="How many partitioned instances to start.",
)
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def launch_cmd(instances: int, run_args: tuple[str, ...]) -> None:
    """Start N partitioned `run` instances as subprocesses, prefix their output, sum them up.
    Ctrl-C (or SIGTERM) stops them all cleanly. With --mode queue the N instances share the work
    queue instead of a partition each (launch passes them no --instance-id/--instance-count)."""
    for bad in ("--instance-id", "--instance-count"):
        if any(a == bad or a.startswith(bad + "=") for a in run_args):
            raise ConfigError(f"launch sets {bad} itself; do not pass it")
    # queue mode: the instances coordinate through the work queue, so each is a plain queue run (no
    # partition of its own: run refuses --instance-count with --mode queue)
    queue = _run_params(run_args).get("mode") == "queue"
    folder = Path(tempfile.mkdtemp(prefix="xml-extractor-launch-"))
    procs: list[subprocess.Popen] = []
    stopping = {"n": 0}

    def forward(signum: int, frame: Any) -> None:
        stopping["n"] += 1
        click.echo(
            f"[launch] {supervision.signal_name(signum)}: stopping all instances"
            + (" now" if stopping["n"] > 1 else " after their in-flight batches"),
            err=True,
        )
        for p in list(procs):
            supervision.stop_group(p, hard=stopping["n"] > 1)

    # the stop is forwarded from before the first instance starts; each starts with the stop
    # signals blocked (inherited, held until its handlers are in place: cli.main), and one that
    # arrives meanwhile is forwarded as soon as the instance is in procs
    old = supervision.install_stop_handlers(forward)
    progress: LaunchProgress | None = None
    try:
        for i in range(instances):
            if stopping["n"]:
                break
            with supervision.stop_signals_blocked():
                procs.append(_start(i, instances, queue, run_args, folder))
        progress = LaunchProgress(run_args, instances, lambda: [p.poll() for p in procs])
        progress.start()  # a live line on a terminal
        codes = _wait_for(procs, instances, progress.echo)
    finally:
        supervision.restore_handlers(old)
        if progress is not None:
            progress.stop()
        _close_lifelines(procs)
    if not procs:
        folder.rmdir()
        raise KeyboardInterrupt  # stopped before the first instance started: handle_errors' 130
    click.echo(_summary_table(_read_summaries(folder, instances), codes))
    sys.exit(130 if stopping["n"] else (2 if 2 in codes else max(codes)))


def _wait_for(
    procs: list[subprocess.Popen], instances: int, echo: Callable[[str], None]
) -> list[int]:
    """The instances' exit codes, their output pumped meanwhile, prefixed (_pump)."""
    once = _ErrorOnce()
    threads = [
        threading.Thread(target=_pump, args=(p, i, instances, once, echo), daemon=True)
        for i, p in enumerate(procs)
    ]
    for t in threads:
        t.start()
    codes = [p.wait() for p in procs]
    for t in threads:
        t.join(timeout=5)
    return codes


def _close_lifelines(procs: list[subprocess.Popen]) -> None:
    """The lifelines: closed only once every instance has ended."""
    for p in procs:
        if p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass


def _pump(
    p: subprocess.Popen, i: int, instances: int, once: _ErrorOnce, echo: Callable[[str], None]
) -> None:
    """Instance ``i``'s output, prefixed; a configuration error another instance said is not
    repeated (_ErrorOnce). Once launch's own output is gone (``launch ... | head``), the instance's
    is still read to its end, so that the instance never blocks on a full pipe."""
    assert p.stdout is not None
    reader_gone = False
    for line in p.stdout:
        shown = once.line(i, line.rstrip())
        if shown is not None and not reader_gone:
            try:
                echo(f"[{i}/{instances}] {shown}")
            except OSError:  # BrokenPipeError: nobody reads launch's output any more
                reader_gone = True


def _start(
    i: int, instances: int, queue: bool, run_args: tuple[str, ...], folder: Path
) -> subprocess.Popen:
    """Instance ``i``: `run` with the launch's arguments, its share (partition mode) and its summary
    file; its hints name the launch command the user typed (HINT_ARGV), not the instance's."""
    part = [] if queue else ["--instance-id", str(i), "--instance-count", str(instances)]
    cmd = [sys.executable, "-m", "xml_extractor", "run", "--no-progress", *run_args, *part]
    cmd += ["--summary-json", str(folder / f"{i}.json")]
    kw = supervision.group_popen_kwargs()
    kw["env"] = {**kw.get("env", os.environ), HINT_ARGV: json.dumps(sys.argv[1:])}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


class _ErrorOnce:
    """The instances of a launch stop on the same configuration error: the first says it, the
    others say whose it is (one refusal, not one per instance)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.said: dict[str, int] = {}  # an error's first line -> the instance that said it
        self.repeating: set[int] = set()

    def line(self, i: int, text: str) -> str | None:
        """The line to show for instance ``i``'s ``text``, or None to leave it out."""
        with self.lock:
            if i in self.repeating:
                return None
            if not text.startswith("error: "):
                return text
            first = self.said.setdefault(text, i)
            if first == i:
                return text
            self.repeating.add(i)
            return f"error: the same as instance {first}'s (above)"


def _summary_table(summaries: dict[int, dict], codes: list[int]) -> str:
    """One row per instance and one for all, the rates under progress.py's labels (the "all"
    row: every result from the earliest first result to the latest end of an instance's rates)."""
    rows: list[list[Any]] = []
    for i, code in enumerate(codes):
        s = summaries.get(i, {})
        rows.append(
            [i, code]
            + [s.get(k, "-") for k in ("selected", "success", "failed", "skipped")]
            + [s.get("average_per_min", "-"), s.get("elapsed_s", "-"), s.get("outcome", "-")]
        )
    tot = lambda k: sum(int(summaries[i].get(k, 0)) for i in summaries)  # noqa: E731
    elapsed = max((float(s.get("elapsed_s", 0)) for s in summaries.values()), default=0.0)
    average = _average_of_all(list(summaries.values()), tot("success") + tot("failed"))
    rows.append(
        ["all", max(codes)]
        + [tot(k) for k in ("selected", "success", "failed", "skipped")]
        + [average, elapsed, outcome_of(max(codes))]
    )
    headers = ["instance", "exit", "selected", "success", "failed", "skipped"]
    headers += [f"{AVERAGE_LABEL}/min", "elapsed s", "outcome"]
    return tabulate(rows, headers=headers, tablefmt="simple")


def _average_of_all(summaries: list[dict], results: int) -> float:
    """Every instance's results over the earliest first result to the latest moment an instance's
    rates end at (now at its end, or its last result once idle): report's and status's average
    over the same results."""
    firsts = [float(s["first_result_at"]) for s in summaries if s.get("first_result_at")]
    ends = [float(s["rates_end_at"]) for s in summaries if s.get("rates_end_at")]
    if not firsts or not ends:
        return 0.0
    return round(rate_per_minute(results, min(firsts), max(ends)), 1)


def _read_summaries(folder: Path, instances: int) -> dict[int, dict]:
    """The summaries the instances wrote (an instance that was killed wrote none)."""
    out: dict[int, dict] = {}
    for i in range(instances):
        f = folder / f"{i}.json"
        try:
            out[i] = json.loads(f.read_text(encoding="utf-8"))
            f.unlink()
        except (OSError, ValueError):
            pass
    try:
        folder.rmdir()
    except OSError:
        pass
    return out
