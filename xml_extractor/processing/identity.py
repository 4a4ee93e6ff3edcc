"""The contract version is part of a run's identity.

Two instances with different (but schema-compatible) contracts would silently mix results: the
same column filled from different attributes depending on which instance took the application.
So a run compares its contract's version tag (name@version#content-hash) with the versions that
produced the rows already in processing_log (for the same contract name: a multi-contract
database holds several names side by side) and refuses to start (exit 2) when they differ,
unless told ``--allow-contract-change`` (docs/operations.md says when). ``reprocess`` implies it:
redoing applications with a fixed contract is what it is for.
"""

from __future__ import annotations

import logging

from ..db.database import Database
from ..errors import ConfigError

log = logging.getLogger(__name__)


def versions_in_log(db: Database) -> list[tuple[str, int]]:
    """(contract version, applications) of the current log rows."""
    return [
        (str(v), int(n))
        for v, n in db.with_retry(lambda: db.autocommit_query(db.sql("contract_versions")))
    ]


def is_other_version(version: str, version_tag: str, contract_name: str) -> bool:
    """Is a log row's contract_version another version of this run's contract?"""
    return version != version_tag and version.split("@", 1)[0] == contract_name


def check_contract_identity(
    db: Database, version_tag: str, contract_name: str, allow_change: bool
) -> list[tuple[str, int]]:
    """The other versions of this contract that produced existing rows; ConfigError if there are
    any and the change is not allowed."""
    others = [
        (v, n) for v, n in versions_in_log(db) if is_other_version(v, version_tag, contract_name)
    ]
    if not others:
        return []
    desc = ", ".join(f"{v} ({n} application(s))" for v, n in others)
    if not allow_change:
        raise ConfigError(
            f"this run's contract is {version_tag}, but the database holds results of {desc}. "
            f"Mixing contract versions gives applications mapped two different ways. If the change is "
            f"intended, redo the old ones with `reprocess` or run with --allow-contract-change "
            f"(see docs/operations.md, 'Re-running after a contract change')."
        )
    log.warning(
        "contract change allowed: this run uses %s; the database also holds %s", version_tag, desc
    )
    return others


def other_version_started(db: Database, version_tag: str, contract_name: str) -> list[str]:
    """Other versions of this contract in the log, by the loose index scan (one probe per version,
    cheap at any log size): what the run re-reads while it runs. Two instances started within a
    moment of each other with different versions both pass the start check (neither has written
    yet); the re-read catches the other's first commits."""
    return sorted(
        v for v in db.logged_contract_versions() if is_other_version(v, version_tag, contract_name)
    )
