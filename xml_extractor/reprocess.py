"""Reprocess as a recorded request that the run consumes, never delete-then-hope.

``reprocess`` writes one ``reprocess_request`` row per selected application (after the partition
and ``--limit`` are applied: only what this command will redo is requested), then runs. An
application with an open request counts as pending (the named query ``pending_ids``); the batch
transaction that writes its new attempt first moves its old ``processing_log`` rows to
``processing_log_history``, deletes its old target rows and data-quality events and deletes the
request, so a crash at any point leaves the old result or the new one, never neither. Running the
same command again after a stop finds its open requests and finishes exactly those.

Each command's selection on an instance's share is recorded in ``reprocess_command`` (the command
text, the share, when, how many applications) in the transaction that records its requests. The
same command again, with none of its requests open, re-evaluates its selection now
(:func:`not_redone`): what the command redid after its request (a result replaced since then) is
redone; anything else the selection picks now (a failure of a later run) is requested and redone
by it. When nothing is left the command is complete (``completed_at``: set when the command's run
ends, or by the next look at it when the run was killed or a plain ``run`` finished its requests)
and the same command again redoes nothing and says so; ``again=True`` (``--again``) records a new
selection.

The Python API: :func:`plan` (check, select, record: a :class:`ReprocessPlan`), the caller runs
``plan.app_ids`` (the run's ``only_ids``), then :func:`finish` marks the command complete.

Attempt history: old log rows move to ``processing_log_history`` (with ``replaced_at``), so
``processing_log`` only ever holds the current generation of an application and the one
definition of "final" (the is_final_failed fragment of db/sql/common.sql: a failed row and no success row) stays right; the new
attempt continues the numbering (max + 1).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field

from . import ops
from .db.base import chunks
from .db.database import Database
from .db.store import app_tables, utcnow
from .errors import ConfigError
from .processing.partition import mine

IN_LIST_CHUNK = 500  # ids per IN (...) list: far below every driver's parameter limit


@dataclass
class ReprocessRequest:
    """What one ``reprocess`` invocation will redo on this instance."""

    command: str
    app_ids: list[int]
    resumed: bool  # True: open requests of the same command were found and are finished first


@dataclass(frozen=True)
class Selection:
    """What a reprocess command names (a union of selectors) and the share it works on."""

    app_ids: tuple[int, ...] = ()
    failed: bool = False
    since: _dt.datetime | None = None
    limit: int | None = None
    instance_id: int = 0
    instance_count: int = 1

    @property
    def command(self) -> str:
        """The command's identity: the same text is the same command (see command_key)."""
        return command_key(list(self.app_ids), self.failed, self.since, self.limit)


@dataclass(frozen=True)
class Completed:
    """A command whose recorded selection on this share has no open request left."""

    command: str
    completed_at: _dt.datetime
    applications: int

    def message(self) -> str:
        return (
            f"{self.command!r} complete at {self.completed_at:%Y-%m-%d %H:%M:%S} UTC: "
            f"{self.applications} applications redone; --again to redo them"
        )


@dataclass
class ReprocessPlan:
    """What :func:`plan` decided: the applications to run again (``app_ids``), or ``completed``
    (the same command finished earlier: nothing requested), with what the command says about
    the selection."""

    command: str
    app_ids: list[int] = field(default_factory=list)
    resumed: bool = False
    missing: list[int] = field(default_factory=list)  # named ids the source table lacks
    closed: list[int] = field(default_factory=list)  # open requests closed: source row gone
    gone: list[int] = field(default_factory=list)  # selected, logged, source row gone: skipped
    rows_to_replace: dict[str, int] = field(default_factory=dict)
    completed: Completed | None = None
    dry_run: bool = False
    # set when a recorded command's selection now picks applications it has not redone: its
    # request time, and how many of the selection it redid since then (they stay done)
    redone_since: _dt.datetime | None = None
    redone: int = 0


def parse_since(text: str) -> _dt.datetime:
    """--since as naive UTC (an offset is converted; none means UTC)."""
    try:
        d = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: use ISO time, e.g. 2026-11-22T13:00 (UTC)") from None
    if d.tzinfo is not None:
        d = d.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return d


def check_selection(sel: Selection) -> None:
    """A selection names something and a valid share (ConfigError, exit 2, before any connection)."""
    require_selection(list(sel.app_ids), sel.failed, sel.since)
    if sel.limit is not None and sel.limit < 1:
        raise ConfigError(f"--limit must be a positive integer (got {sel.limit})")
    if sel.instance_count < 1 or not 0 <= sel.instance_id < sel.instance_count:
        raise ConfigError(
            f"--instance-id must be between 0 and {sel.instance_count - 1} "
            f"for --instance-count {sel.instance_count}"
        )


def plan(db: Database, sel: Selection, dry_run: bool = False, again: bool = False) -> ReprocessPlan:
    """Check the contract against the database, then: the same command recorded earlier with no
    open request (and not ``again``): complete when its selection now picks nothing it has not
    redone (``completed`` says when), else those are requested (``redone_since``); else resume its
    open requests, or select, record the selection and request it (``dry_run``: only say what
    would be requested)."""
    check_schema(db)  # the contract against the database before anything changes
    command = sel.command
    share = _share(command, sel.instance_id, sel.instance_count)
    prior = None if again else _q(db, "reprocess_command_get", **share)
    if prior and not mine(open_requests(db, command), sel.instance_id, sel.instance_count):
        return _plan_recorded(db, sel, _as_datetime(prior[0][0]), dry_run)
    out = ReprocessPlan(command, dry_run=dry_run, missing=_missing(db, sel))
    out.closed = close_orphans(db, dry_run)
    gone: set[int] = set()
    ids = ops.select_for_reprocess(db, list(sel.app_ids), sel.failed, sel.since, gone)
    out.gone = sorted(gone)
    req = request_reprocess(
        db, ids, command, sel.instance_id, sel.instance_count, sel.limit, dry_run
    )
    out.app_ids, out.resumed = req.app_ids, req.resumed
    out.rows_to_replace = rows_to_replace(db, req.app_ids) if req.app_ids else {}
    return out


def _plan_recorded(
    db: Database, sel: Selection, requested_at: _dt.datetime, dry_run: bool
) -> ReprocessPlan:
    """A recorded command with no open request on this share: complete when its selection now
    picks nothing it has not redone since ``requested_at``; else request those (the command's
    request time stays, so what it redid stays done)."""
    gone: set[int] = set()
    fresh, redone = not_redone(db, sel, requested_at, gone)
    if not fresh:
        done = completed(db, sel.command, sel.instance_id, sel.instance_count, record=not dry_run)
        if done is not None:
            return ReprocessPlan(sel.command, completed=done, dry_run=dry_run)
    out = ReprocessPlan(sel.command, dry_run=dry_run, missing=_missing(db, sel))
    out.closed = close_orphans(db, dry_run)
    out.gone = sorted(gone)
    out.app_ids, out.redone_since, out.redone = fresh, requested_at, len(redone)
    out.rows_to_replace = rows_to_replace(db, fresh) if fresh else {}
    if fresh and not dry_run:
        share = _share(sel.command, sel.instance_id, sel.instance_count)

        def tx() -> None:
            with db.transaction():
                db.execute(
                    db.sql("reprocess_command_extend"), {**share, "applications": len(fresh)}
                ).close()
                _insert_requests(db, fresh, sel.command, utcnow())

        db.with_retry(tx)
    return out


def not_redone(
    db: Database, sel: Selection, requested_at: _dt.datetime, gone: set[int] | None = None
) -> tuple[list[int], set[int]]:
    """The selection re-evaluated now on this share, split into what the command has not redone
    (first) and what it has redone since ``requested_at`` (second). Redone: a result of the
    application was replaced at or after the request (processing_log_history.replaced_at); a named
    application also when its current result was logged at or after it (a never-logged one has
    nothing to replace). With ``limit`` the command redoes at most that many of its selection in
    all: only ``limit`` minus the redone ones still selected are picked, the oldest results first."""
    ids = ops.select_for_reprocess(db, list(sel.app_ids), sel.failed, sel.since, gone)
    ids = mine(ids, sel.instance_id, sel.instance_count)
    named = set(sel.app_ids)
    redone: set[int] = set()
    for part in chunks(ids, IN_LIST_CHUNK):
        rows = _q(db, "reprocess_replaced_since", since=requested_at, ids=part)
        redone |= {int(r[0]) for r in rows}
        names = [a for a in part if a in named]
        if names:
            rows = _q(db, "reprocess_logged_since_among", since=requested_at, ids=names)
            redone |= {int(r[0]) for r in rows}
    fresh = [a for a in ids if a not in redone]
    if sel.limit is not None:
        fresh = sorted(oldest_first(db, fresh)[: max(0, sel.limit - len(redone))])
    return fresh, redone


def _missing(db: Database, sel: Selection) -> list[int]:
    """Named ids the source table lacks; none of them there (and no other selector) is a usage
    error rather than an empty reprocess."""
    missing = sorted(set(sel.app_ids) - ops.source_existing(db, list(sel.app_ids)))
    if missing and len(missing) == len(set(sel.app_ids)) and not sel.failed and not sel.since:
        raise ConfigError(
            "none of the named applications is in the source table; not in the source table: "
            + ids_text(missing)
        )
    return missing


def ids_text(ids: list[int], shown: int = 30) -> str:
    """Ids for a message: the first ``shown``, then how many in all."""
    return " ".join(map(str, ids[:shown])) + (
        f" ... ({len(ids)} in all)" if len(ids) > shown else ""
    )


def _share(command: str, instance_id: int, instance_count: int) -> dict[str, object]:
    return {"command": command, "instance_id": instance_id, "instance_count": instance_count}


def completed(
    db: Database, command: str, instance_id: int, instance_count: int, record: bool = True
) -> Completed | None:
    """The command's recorded selection on this share when none of its requests is open: it is
    complete (``record``: a completion not yet recorded is recorded now, at the time it is
    noticed). None when it was never recorded or still has open requests (it resumes)."""
    share = _share(command, instance_id, instance_count)
    rows = _q(db, "reprocess_command_get", **share)
    if not rows:
        return None
    _requested_at, applications, completed_at = rows[0]
    if completed_at is None:
        if mine(open_requests(db, command), instance_id, instance_count):
            return None
        completed_at = utcnow()
        if record:
            _mark_complete(db, share, completed_at)
    return Completed(command, _as_datetime(completed_at), int(applications))


def finish(db: Database, command: str, instance_id: int, instance_count: int) -> Completed | None:
    """After the command's run: record it complete when none of its requests on this share is
    open (whoever consumed them); None while some are open (the same command again resumes)."""
    return completed(db, command, instance_id, instance_count, record=True)


def _mark_complete(db: Database, share: dict[str, object], now: _dt.datetime) -> None:
    def tx() -> None:
        with db.transaction():
            db.execute(db.sql("reprocess_command_complete"), {**share, "now": now}).close()

    db.with_retry(tx)


def _as_datetime(v: object) -> _dt.datetime:
    if isinstance(v, _dt.datetime):
        return v
    return _dt.datetime.fromisoformat(str(v))


def command_key(
    app_ids: list[int], failed: bool, since: _dt.datetime | None, limit: int | None
) -> str:
    """The selection as text (partition excluded: each instance filters its share). Long id lists
    are summarised by a hash so the key fits its column."""
    parts = ["reprocess"]
    if app_ids:
        parts.append(" ".join(map(str, sorted(set(app_ids)))))
    if failed:
        parts.append("--failed")
    if since is not None:
        parts.append("--since " + since.isoformat(sep="T"))
    if limit is not None:
        parts.append(f"--limit {limit}")
    text = " ".join(parts)
    if len(text) > 380:
        text = text[:300] + " ... sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text


def _q(db: Database, name: str, **params: object) -> list[tuple]:
    return db.with_retry(lambda: db.autocommit_query(db.sql(name), params))


def open_requests(db: Database, command: str | None = None) -> list[int]:
    """Application ids with an open request (of this command, or of any)."""
    if command is None:
        return sorted(int(r[0]) for r in _q(db, "reprocess_all"))
    return sorted(int(r[0]) for r in _q(db, "reprocess_open", command=command))


def close_orphans(db: Database, dry_run: bool = False) -> list[int]:
    """Close (delete) the open requests whose application the source table no longer holds: no
    run can select such an application, so its request could never be consumed and would stay
    open forever. Returns their ids, for the command to name with the reason (``dry_run``: only
    which they are)."""
    if dry_run:
        return sorted(int(r[0]) for r in _q(db, "reprocess_orphans"))

    def tx() -> list[int]:
        with db.transaction():
            gone = sorted(int(r[0]) for r in db.query(db.sql("reprocess_orphans"), {}))
            for part in chunks(gone, IN_LIST_CHUNK):
                db.execute(db.sql("reprocess_consume"), {"ids": part}).close()
        return gone

    return list(db.with_retry(tx))


def request_reprocess(
    db: Database,
    selected: list[int],
    command: str,
    instance_id: int,
    instance_count: int,
    limit: int | None,
    dry_run: bool = False,
) -> ReprocessRequest:
    """Record what this instance will redo: the open requests of the same command if a previous
    invocation stopped (resume), else the selection's share of this instance, limited."""
    share = _share(command, instance_id, instance_count)
    resume = mine(open_requests(db, command), instance_id, instance_count)
    if resume:
        if not dry_run and not _q(db, "reprocess_command_get", **share):
            _record_command(db, share, len(resume))  # requests recorded before the table was
        return ReprocessRequest(command, resume[:limit] if limit is not None else resume, True)
    todo = mine(selected, instance_id, instance_count)
    if limit is not None:  # the oldest results first: --again takes the next ones
        todo = sorted(oldest_first(db, todo)[:limit])
    if dry_run or not todo:
        return ReprocessRequest(command, todo, False)
    now = utcnow()

    def tx() -> None:
        with db.transaction():
            db.execute(db.sql("reprocess_command_forget"), share).close()
            db.execute(
                db.sql("reprocess_command_record"), {**share, "now": now, "applications": len(todo)}
            ).close()
            _insert_requests(db, todo, command, now)

    db.with_retry(tx)
    return ReprocessRequest(command, todo, False)


def _insert_requests(db: Database, todo: list[int], command: str, now: _dt.datetime) -> None:
    """One request per application of ``todo`` without an open one (inside the caller's
    transaction)."""
    insert = db.sql("reprocess_insert")
    have: set[int] = set()
    for part in chunks(todo, IN_LIST_CHUNK):
        have |= {int(r[0]) for r in db.query(db.sql("reprocess_existing"), {"ids": part})}
    rows = [
        insert.values({"app_id": a, "now": now, "command": command}) for a in todo if a not in have
    ]
    cur = db.conn.cursor()
    for part in chunks(rows, IN_LIST_CHUNK):
        cur.executemany(insert, part)
    cur.close()


def _record_command(db: Database, share: dict[str, object], applications: int) -> None:
    def tx() -> None:
        with db.transaction():
            db.execute(
                db.sql("reprocess_command_record"),
                {**share, "now": utcnow(), "applications": applications},
            ).close()

    db.with_retry(tx)


def oldest_first(db: Database, ids: list[int]) -> list[int]:
    """``ids`` ordered by when their current result was logged, never-logged ones first, then by
    id: ``reprocess --failed --limit N --again`` pages through the failures instead of redoing
    the same first N (each redone application's result is then the newest)."""
    last: dict[int, str] = {}
    for part in chunks(ids, IN_LIST_CHUNK):
        last.update((int(a), str(t)) for a, t in _q(db, "last_logged_among", ids=part))
    return sorted(ids, key=lambda a: (a in last, last.get(a, ""), a))


def rows_to_replace(db: Database, ids: list[int]) -> dict[str, int]:
    """What the new attempts will replace, per table (for --dry-run and the report)."""
    counts: dict[str, int] = {}
    for name, qtable, col in app_tables(db):
        n = 0
        for part in chunks(ids, IN_LIST_CHUNK):
            n += int(_q_ident(db, "count_app_rows", qtable, col, part))
        counts[name] = n
    return counts


def _q_ident(db: Database, name: str, qtable: str, col: str, ids: list[int]) -> int:
    sql = db.sql(name, table=qtable, app_col=col)
    return int(db.with_retry(lambda: db.autocommit_query(sql, {"ids": ids}))[0][0])


def check_schema(db: Database) -> None:
    """The contract against the database, before anything changes: db/migrate.py's comparison
    (every table and column the run writes, reprocess's own tables included). A difference is
    SchemaMissing / SchemaRefused (exit 2) and nothing has been touched."""
    from .db.migrate import require_current

    try:
        require_current(db)
    except ConfigError as exc:
        raise type(exc)(f"nothing was changed: {exc}") from None


def require_selection(app_ids: list[int], failed: bool, since: object) -> None:
    if not app_ids and not failed and not since:
        raise ConfigError("name applications: APP_ID..., --failed or --since TIME")
