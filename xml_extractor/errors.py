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


class InsertFailure(DocumentFailure):
    """The database refused the application's rows (key collision, constraint)."""

    stage = "insert"
