"""Typed failures.

Every way an application can fail carries a *stage* (where in the pipeline it failed) and a
message a person can act on; these end up verbatim in ``processing_log``. Configuration problems
are a separate family: they stop the run before any document is touched (exit code 2).
"""

from __future__ import annotations


class ConfigError(Exception):
    """A bad flag, URL or contract: the run must not start. Exit code 2."""


class ContractError(ConfigError):
    """The mapping contract is invalid; the message names the path inside the contract."""


class DocumentFailure(Exception):
    """One application failed; it is logged with ``stage`` and the run goes on."""

    stage = "map"
    # (version tag, name) of the contract set's member that refused the document, once routed:
    # processing_log records it for the failure as for a success (ops: failures per contract)
    contract: tuple[str, str] | None = None

    def __init__(self, reason: str, error_class: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class or type(self).__name__


class ReadFailure(DocumentFailure):
    """The source row cannot be used at all (NULL, empty, undecodable)."""

    stage = "read"


class ParseFailure(DocumentFailure):
    """The XML is not well-formed, or uses something we refuse (DTD, entities)."""

    stage = "parse"


class ValidateFailure(DocumentFailure):
    """Well-formed XML that is not a document this contract can map (wrong root, no ID, ...)."""

    stage = "validate"


class MapFailure(DocumentFailure):
    """A value the contract declares as fatal could not be mapped."""

    stage = "map"


# -- database errors, typed at the driver boundary ------------------------------------------------
# The dialects turn every driver exception into one of these (``Dialect.wrap``, db/classify.py).
# Only ``RowsRefused`` may become an application's failure (bisect, isolate, log failed/insert);
# ``TransientDatabaseError`` is the run's problem (retry with backoff, then stop with exit 3, the
# applications still pending); any other exception is a bug: the run stops with exit 3, traceback in
# the log, and no failed row is written for it.


class DatabaseError(Exception):
    """A driver error, typed. ``original`` is the driver's exception."""

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


class RowsRefused(DatabaseError):
    """The database refused these rows: key collision, foreign key, type or value out of range."""

    def __init__(
        self, message: str, kind: str = "other", original: BaseException | None = None
    ) -> None:
        super().__init__(message, original)
        self.kind = kind  # "duplicate" | "foreign_key" | "value" | "other"


class TransientDatabaseError(DatabaseError):
    """The environment failed, not the rows: timeout, lock wait, deadlock, disk full, read-only,
    lost connection. Retried, then the run stops (exit 3) with the work still pending."""


class ConnectionLost(TransientDatabaseError):
    """The connection is gone; reconnect before anything else."""


class SchemaMissing(ConfigError):
    """The database has no schema for this contract: run ``xml-extractor init-db`` first (exit 2)."""
