"""One frozen description of a run, and its summary.

Before, five dataclasses carried the run's identity (RunOptions, SelectionSpec, WorkerConfig,
RunIdentity, RunSummary) and had to be kept in step by hand. Now :class:`RunContext` is the only
one anybody fills in: the selector, the workers and the batch writer read it (or a value derived
from it: :meth:`RunContext.identity`), and :meth:`RunSummary.start` copies what a summary reports
from it. ``RunOptions`` is the same class under the name the command line and the library used.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import socket
import tempfile
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..db.url import DatabaseURL, parse_url
from ..errors import ConfigError, DatabaseError, TransientDatabaseError
from ..progress import AVERAGE_LABEL, rate_label
from .partition import ID_MAX, ID_MIN


def writable_folder(flag: str, folder: str) -> None:
    """Make ``folder`` (parents too) and write a probe file in it; ConfigError naming ``flag`` if
    either fails (a file in the way, no permission, a read-only or pseudo file system)."""
    from pathlib import Path

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {folder}: cannot write there ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class RunContext:
    """Everything that identifies and shapes one instance's run (validated on construction)."""

    url: DatabaseURL | str | None = None
    contract_path: str | None = None
    workers: int = 2
    batch_size: int = 200
    limit: int | None = None
    instance_id: int = 0
    instance_count: int = 1
    app_id_start: int | None = None
    app_id_end: int | None = None
    retry_failed: bool = False
    max_attempts: int = 3
    mode: str = "partition"
    lease_seconds: int = 120
    chunk_size: int = 1000
    progress: bool = True
    reconnect_seconds: float = 60.0
    metrics_dir: str | None = "metrics"  # where the run's metrics JSON goes (None: nowhere)
    logs_dir: str | None = "logs"  # read by the command line, which configures logging
    only_ids: tuple[int, ...] | None = None  # reprocess: exactly these applications
    allow_contract_change: bool = (
        False  # run although the log holds another version of this contract
    )
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = ""  # queue-mode lease owner: host:pid:session (filled in on construction)
    log_level: int | str = (
        20  # the level workers forward records at (the parent's handlers decide the rest)
    )

    def __post_init__(self) -> None:
        if self.only_ids is not None and not isinstance(self.only_ids, tuple):
            object.__setattr__(self, "only_ids", tuple(self.only_ids))
        if isinstance(self.log_level, str):
            object.__setattr__(
                self,
                "log_level",
                logging.getLevelName(self.log_level.upper())
                if isinstance(logging.getLevelName(self.log_level.upper()), int)
                else logging.INFO,
            )
        if not self.owner:
            object.__setattr__(
                self, "owner", f"{socket.gethostname()}:{os.getpid()}:{self.session_id[:8]}"
            )
        self.validate()

    def validate(self) -> None:
        if self.instance_count < 1:
            raise ConfigError(f"--instance-count must be at least 1 (got {self.instance_count})")
        if not 0 <= self.instance_id < self.instance_count:
            raise ConfigError(
                f"--instance-id must be between 0 and {self.instance_count - 1} for "
                f"--instance-count {self.instance_count} (got {self.instance_id})"
            )
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {self.workers})")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit cannot be negative (got {self.limit})")
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1 (got {self.max_attempts})")
        if self.mode not in ("partition", "queue"):
            raise ConfigError(f"--mode must be partition or queue (got {self.mode})")
        if self.mode == "queue" and self.instance_count > 1:
            raise ConfigError(
                "--mode queue shares work through the database: do not combine it with --instance-count"
            )
        for flag, v in (("--app-id-start", self.app_id_start), ("--app-id-end", self.app_id_end)):
            if v is not None and not ID_MIN <= v <= ID_MAX:
                raise ConfigError(
                    f"{flag} {v} is outside the ids a source column can hold ({ID_MIN}..{ID_MAX})"
                )
        if (
            self.app_id_start is not None
            and self.app_id_end is not None
            and self.app_id_start > self.app_id_end
        ):
            raise ConfigError(
                f"--app-id-start {self.app_id_start} is after --app-id-end {self.app_id_end}"
            )
        if self.lease_seconds < 5:
            raise ConfigError("--lease-seconds must be at least 5")
        if self.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1 (got {self.chunk_size})")
        if not (math.isfinite(self.reconnect_seconds) and self.reconnect_seconds >= 0):
            raise ConfigError(
                f"--reconnect-seconds must be a number of seconds, 0 or more (got {self.reconnect_seconds})"
            )

    def prepare_folders(self) -> None:
        """Create --logs-dir and --metrics-dir and prove they take a file, before any work: a bad
        folder found after the run (the metrics are written last) stopped a finished run with a
        traceback and exit 1. ConfigError (exit 2) names the flag."""
        for flag, folder in (("--logs-dir", self.logs_dir), ("--metrics-dir", self.metrics_dir)):
            if folder:
                writable_folder(flag, folder)

    # -- derived --------------------------------------------------------------------------------
    @property
    def database_url(self) -> DatabaseURL:
        return self.url if isinstance(self.url, DatabaseURL) else parse_url(self.url)

    def resolved(self) -> RunContext:
        """The same context with the URL parsed (what is handed to worker processes)."""
        return self if isinstance(self.url, DatabaseURL) else replace(self, url=parse_url(self.url))

    @property
    def id_lo(self) -> int:
        return self.app_id_start if self.app_id_start is not None else ID_MIN

    @property
    def id_hi(self) -> int:
        return self.app_id_end if self.app_id_end is not None else ID_MAX

    @property
    def modulus(self) -> int:
        """The partition this instance selects: (N, I) in partition mode, everything in queue mode."""
        return self.instance_count if self.mode == "partition" else 1

    @property
    def remainder(self) -> int:
        return self.instance_id if self.mode == "partition" else 0

    def identity(self, contract_version: str) -> Any:
        """What the batch writer stamps on every log row (db.store.RunIdentity), for this process."""
        from ..db.store import RunIdentity

        return RunIdentity(self.session_id, self.instance_id, self.instance_count, contract_version)


RunOptions = RunContext  # the name the command line, bench and the library know


class StopKind(enum.Enum):
    """Why a run stopped before its share was done, as a type: the exit code, the summary's
    "stopped" row and the log's last line all follow from it (no text is parsed)."""

    CONFIG = "config"  # a flag, contract, schema or contract-version conflict: exit 2
    CONNECTION = "connection"  # the database stayed unavailable: exit 3, run again later
    CRASH = "crash"  # a worker or the run hit an unexpected error (a bug): exit 3, see the log
    ERROR = "error"  # anything else the run could not recover from (a failed count check): exit 3

    @property
    def exit_code(self) -> int:
        return 2 if self is StopKind.CONFIG else 3

    @property
    def title(self) -> str:
        """How the outcome names it: ``stopped (configuration error)``."""
        return {
            StopKind.CONFIG: "configuration error",
            StopKind.CONNECTION: "database unavailable",
            StopKind.CRASH: "unexpected error",
            StopKind.ERROR: "could not recover",
        }[self]

    @classmethod
    def of(cls, exc: BaseException) -> StopKind:
        """The kind of stop an exception means."""
        if isinstance(exc, ConfigError):
            return cls.CONFIG
        if isinstance(exc, TransientDatabaseError):
            return cls.CONNECTION
        if isinstance(exc, DatabaseError):
            return cls.ERROR
        return cls.CRASH


@dataclass(frozen=True)
class StopReason:
    """A run's stop: its kind and the message a person acts on. ``str()`` is ``kind: text``."""

    kind: StopKind
    text: str

    @classmethod
    def of(cls, exc: BaseException) -> StopReason:
        kind = StopKind.of(exc)
        text = str(exc) if kind is not StopKind.CRASH else f"{type(exc).__name__}: {exc}"
        return cls(kind, text)

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.text}"


def outcome_of(exit_code: int, stop: StopReason | None = None) -> str:
    """The one word (or few) a run's end is called by in its log, summary and metrics."""
    if stop is not None and exit_code in (2, 3):
        return f"stopped ({stop.kind.title})"
    return {0: "finished", 1: "finished with failures", 130: "interrupted"}.get(
        exit_code, f"stopped (exit {exit_code})"
    )


def exit_code_of(exc: BaseException) -> int:
    """The exit code of a run that ended with ``exc`` before it had a summary."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    return StopKind.of(exc).exit_code


@dataclass
class RunSummary:
    """What one instance's run did; ``exit_code`` is what the command exits with."""

    session_id: str
    instance_id: int
    instance_count: int
    mode: str
    database: str
    contract_version: str
    workers: int
    batch_size: int
    started_at: str = ""
    elapsed_s: float = 0.0
    selected: int = 0
    success: int = 0
    failed: int = 0
    skipped: int = 0
    failures_by_stage: dict = field(default_factory=dict)
    failures_by_class: dict = field(default_factory=dict)
    # throughput as progress.py defines it (docs/operations.md, "Rate"), under its labels
    rate_per_min: float = 0.0  # the windowed rate at the end (rate_label)
    average_per_min: float = 0.0  # every result over first to last result (average_label)
    # the moments (epoch s) the average runs from and both rates end at: launch's "all" row adds
    # the instances up over the earliest first result to the latest end
    first_result_at: float | None = None
    rates_end_at: float | None = None
    rate_label: str = field(default_factory=rate_label)
    average_label: str = AVERAGE_LABEL
    stage_ms: dict = field(default_factory=dict)
    peak_worker_rss_mb: float = 0.0
    worker_restarts: int = 0
    worker_startup_s: float | None = None  # from starting the workers to all of them ready
    # every ~5 s: {elapsed_s, done, success, failed, max_worker_rss_mb}
    timeline: list[dict[str, float]] = field(default_factory=list)
    status: str = "running"  # in the metrics file: running while the run goes, then finished / interrupted / stopped
    interrupted: bool = False
    stop_reason: StopReason | None = None
    log_file: str | None = None
    metrics_file: str | None = None
    # the end-of-run check (processor._check_session): "match", "differs: ..." or "unavailable: ..."
    database_check: str | None = None

    @classmethod
    def start(
        cls, ctx: RunContext, database: str, contract_version: str, started_at: str
    ) -> RunSummary:
        return cls(
            session_id=ctx.session_id,
            instance_id=ctx.instance_id,
            instance_count=ctx.instance_count,
            mode=ctx.mode,
            database=database,
            contract_version=contract_version,
            workers=ctx.workers,
            batch_size=ctx.batch_size,
            started_at=started_at,
        )

    @property
    def exit_code(self) -> int:
        if self.stop_reason is not None and self.stop_reason.kind is StopKind.CONFIG:
            return 2
        if self.interrupted:
            return 130
        if self.stop_reason is not None:
            return self.stop_reason.kind.exit_code
        return 1 if self.failed else 0

    @property
    def outcome(self) -> str:
        return outcome_of(self.exit_code, self.stop_reason)

    def public(self) -> dict:
        """The summary as JSON-able data with named fields (metrics file, launch's summary file):
        the stop is ``stop_kind`` and ``stop_reason`` (its text), the end ``outcome`` and
        ``exit_code``."""
        d = asdict(self)
        stop = self.stop_reason
        d["stop_kind"] = stop.kind.value if stop is not None else None
        d["stop_reason"] = stop.text if stop is not None else None
        d["outcome"] = self.outcome
        d["exit_code"] = self.exit_code
        return d
