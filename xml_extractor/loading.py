"""Getting documents into the source table: files from disk, or generated mock documents."""

from __future__ import annotations

import collections
import glob
import os
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .db.database import Database
from .db.store import init_db, utcnow
from .errors import ConfigError, DocumentFailure
from .mock import MockGenerator
from .parsing import DocumentPlan, decode_source, parse_app_id, parse_document

_ID_FALLBACK = re.compile(
    r"<Request\b[^>]*?\bID\s*=\s*[\"']([0-9]+)[\"']"
)  # ASCII digits, as parse_app_id


@dataclass
class LoadReport:
    counts: collections.Counter = field(default_factory=collections.Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)
    created_schema: bool = False
    marked_for_reprocess: list[int] = field(
        default_factory=list
    )  # replaced documents of processed applications

    def skip(self, path: str, category: str, why: str) -> None:
        self.counts[f"skipped: {category}"] += 1
        self.problems.append((path, why))


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files of the arguments (files, folders: their *.xml, globs); an argument that matches no
    file is a usage error (exit 2): a typo must not look like an empty load. A file several
    arguments match (``DIR 'DIR/app-1*.xml'``) is listed once (by its resolved path), or it would
    conflict with itself."""
    out: list[Path] = []
    seen: set[Path] = set()
    unmatched: list[str] = []
    for p in paths:
        if any(c in p for c in "*?["):
            found = [Path(x) for x in sorted(glob.glob(p, recursive=True)) if os.path.isfile(x)]
        elif os.path.isdir(p):
            found = sorted(Path(p).rglob("*.xml"))
        elif os.path.lexists(p):
            found = [Path(p)]
        else:
            found = []
        if not found:
            unmatched.append(p)
        for f in found:
            if (key := f.resolve()) not in seen:
                seen.add(key)
                out.append(f)
    if unmatched:
        raise ConfigError("no files matched: " + ", ".join(unmatched))
    return out


def id_range(db: Database) -> tuple[int, int]:
    """The ids the tool can load and process: what the source table's id column holds
    (Dialect.source_id_max) and what the contract's app_id columns hold (``int`` in the packaged
    contracts: a larger id would be rejected at map), within the 64-bit range selection works in
    (partition.ID_MIN: the lowest 64-bit id, -2**63, is left out, so 'id > lo - 1' always binds)."""
    from .contract.converters import INT_RANGES
    from .processing.partition import ID_MIN

    hi = db.dialect.source_id_max
    lo = max(-hi - 1, ID_MIN)
    members = db.contract.extra.get("members") or [db.contract]
    for c in members:
        for t in c.tables:
            for col in t.stored_columns:
                if col.name == t.app_id_column and col.type in INT_RANGES:
                    lo, hi = max(lo, INT_RANGES[col.type][0]), min(hi, INT_RANGES[col.type][1])
    return lo, hi


def document_id(text: str, plan: DocumentPlan) -> int:
    """Request/@ID by the safe parser; a regex on the head only if the document does not parse
    (a broken document is still loaded: it fails, visibly, when it is processed)."""
    try:
        return parse_app_id(parse_document(text, plan).document_id, plan)
    except DocumentFailure:
        m = _ID_FALLBACK.search(text[:65536])
        if not m:
            raise
        return int(m.group(1))


def _existing(db: Database, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        found |= {
            int(r[0])
            for r in db.with_retry(
                lambda: db.autocommit_query(db.sql("source_existing"), {"ids": part})
            )
        }
    return found


def _stored_texts(db: Database, ids: list[int]) -> dict[int, Any]:
    """The source table's text of these ids, as the run fetches it (a stored text that is not
    UTF-8 comes back as parsing.UndecodableText, equal to no file's text), to tell a file loaded
    before from a different one."""
    out: dict[int, Any] = {}
    for i in range(0, len(ids), 100):
        part = ids[i : i + 100]
        out.update((a, x) for a, x, _ in db.with_retry(lambda: db.fetch_documents(part)))
    return out


def _same_text(stored: Any, text: str) -> bool:
    """Is the stored document the file's text, as the run reads both (decode_source drops leading
    byte-order marks from the file; a row written by another tool may keep them)? A document
    fetched as bytes (SQL Server varchar) is read as the run reads it: decode_source."""
    if isinstance(stored, (bytes, bytearray, memoryview)):
        try:
            stored = decode_source(stored)
        except DocumentFailure:
            return False
    return isinstance(stored, str) and stored.lstrip("\ufeff") == text


REPLACE_COMMAND = (
    "load-xml --replace"  # the command key of the reprocess requests a replace records
)


def _write_source(db: Database, rows: list[tuple[int, str]], replace_ids: set[int]) -> list[int]:
    """Insert rows (an id another process inserted meanwhile is left alone: two loads or two
    generate-mock at once never fail on each other), after deleting ``replace_ids``. A replaced
    application that was already processed gets a reprocess request in the same transaction
    (xml_extractor/reprocess.py): its stored rows come from the old document, so it is pending
    again until the next run or reprocess replaces them. Returns those ids."""
    insert = db.sql("source_insert_new")
    db.check_source()  # the column's kind read (and a legacy type refused) before the transaction, not inside it

    def tx() -> list[int]:
        with db.transaction():
            cur = db.conn.cursor()
            ids = sorted(replace_ids)
            marked: list[int] = []
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                text, values = db.sql("source_delete").bind({"ids": part})
                cur.execute(text, values)
                logged = {int(r[0]) for r in db.query(db.sql("logged_among"), {"ids": part})}
                open_ = {int(r[0]) for r in db.query(db.sql("reprocess_existing"), {"ids": part})}
                marked += sorted(logged - open_)
            if rows:
                # bound as the source column takes it (Database.source_value: SQL Server varchar -> UTF-8 bytes)
                cur.executemany(
                    str(insert),
                    [insert.values({"app_id": a, "xml": db.source_value(x)}) for a, x in rows],
                )
            if marked:
                req, now = db.sql("reprocess_insert"), utcnow()
                cur.executemany(
                    str(req),
                    [
                        req.values({"app_id": a, "now": now, "command": REPLACE_COMMAND})
                        for a in marked
                    ],
                )
            cur.close()
        return marked

    return list(db.with_retry(tx))


@dataclass
class _Candidate:
    path: Path
    app_id: int


def _identify(
    path: Path, plan: DocumentPlan, db: Database, ids: tuple[int, int], rep: LoadReport
) -> _Candidate | None:
    """The file's application id, or None after recording why it is skipped (``ids``: id_range)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        rep.skip(str(path), "unreadable", f"unreadable: {exc.strerror or exc}")
        return None
    if not raw.strip():
        rep.skip(str(path), "not XML", "an empty file")
        return None
    try:
        text = decode_source(raw)
    except DocumentFailure as f:
        rep.skip(str(path), "not XML", f"not a readable XML document: {f.reason}")
        return None
    if "<" not in text[:4096]:
        rep.skip(str(path), "not XML", "not an XML document (no element in its first 4 KB)")
        return None
    try:
        app_id = document_id(text, plan)
    except DocumentFailure as f:
        if f.stage == "parse":  # not well-formed, and no ID to be found in its head either
            rep.skip(str(path), "not XML", f"not a well-formed XML document: {f.reason}")
        else:
            rep.skip(str(path), "no usable Request/@ID", f.reason)
        return None
    if not ids[0] <= app_id <= ids[1]:
        rep.skip(
            str(path),
            "id out of range",
            f"Request/@ID {app_id} does not fit the source table's id column ({db.dialect.name}) "
            f"or the contract's app_id columns: {ids[0]}..{ids[1]}",
        )
        return None
    return _Candidate(path, app_id)


def ensure_schema(db: Database) -> bool:
    """Create the schema (as init-db does) when tables are missing; True when it created any, so
    load-xml and generate-mock can say so."""
    from .db.migrate import plan as schema_plan

    created = any(c.column is None for c in schema_plan(db).additions)
    if created:
        init_db(db)
    return created


def load_files(
    db: Database,
    paths: Iterable[str],
    replace: bool = False,
    prefer: Iterable[str] = (),
    batch: int = 200,
) -> LoadReport:
    """Load files into the source table. Every per-file problem is a skip with a reason. Two files
    carrying one id: neither is loaded (the conflict names both) unless ``prefer`` names one of
    them. An id already in the table is skipped unless ``replace``. Creates the schema when the
    database has none (and says so: ``created_schema``)."""
    files = expand_paths(paths)
    rep = LoadReport(created_schema=ensure_schema(db))
    from .contract.compiler import compile_contract

    plan = compile_contract(db.contract).document  # once, not per file
    ids = id_range(db)  # likewise: it walks every column of the contract
    by_id: dict[int, list[Path]] = collections.defaultdict(list)
    for path in files:  # first pass: ids only (documents are not kept in memory)
        cand = _identify(path, plan, db, ids, rep)
        if cand is not None:
            by_id[cand.app_id].append(cand.path)
    chosen = _choose_files(by_id, {os.path.realpath(p) for p in prefer}, rep)
    pending: list[tuple[int, str]] = []
    for app_id in sorted(chosen):  # second pass: read again and load
        try:
            text = decode_source(chosen[app_id].read_bytes())
        except (OSError, DocumentFailure) as exc:
            rep.skip(
                str(chosen[app_id]), "unreadable", f"changed or unreadable since it was read: {exc}"
            )
            continue
        pending.append((app_id, text))
        if len(pending) >= batch:
            _flush(db, pending, chosen, replace, rep)
    _flush(db, pending, chosen, replace, rep)
    return rep


def _choose_files(
    by_id: dict[int, list[Path]], preferred: set[str], rep: LoadReport
) -> dict[int, Path]:
    """The one file to load per id: the only one, or the one ``--prefer`` names; the others (or all
    of them, when none is preferred) are skipped as id conflicts."""
    chosen: dict[int, Path] = {}
    for app_id, found in by_id.items():
        if len(found) == 1:
            chosen[app_id] = found[0]
            continue
        picks = [f for f in found if os.path.realpath(f) in preferred]
        if len(picks) == 1:
            chosen[app_id] = picks[0]
            for f in found:
                if f is not picks[0]:
                    rep.skip(
                        str(f),
                        "id conflict (other file preferred)",
                        f"Request/@ID {app_id} is also in {picks[0]}, which --prefer chose",
                    )
            continue
        listed = ", ".join(map(str, found))
        for f in found:
            rep.skip(
                str(f),
                "id conflict",
                f"Request/@ID {app_id} is carried by {len(found)} files ({listed}); "
                "none loaded: name the right one with --prefer PATH",
            )
    return chosen


def _flush(
    db: Database,
    pending: list[tuple[int, str]],
    chosen: dict[int, Path],
    replace: bool,
    rep: LoadReport,
) -> None:
    """Write a batch of read documents, then empty ``pending``: an id loaded before with the same
    text is left alone, with another text skipped unless ``replace`` (then overwritten and marked
    for reprocess)."""
    if not pending:
        return
    exists = _existing(db, [i for i, _ in pending])
    stored = _stored_texts(db, sorted(exists))
    # loaded before (an interrupted load run again): nothing to do, with or without --replace
    same = {i for i, t in pending if i in exists and _same_text(stored.get(i), t)}
    keep = [(i, t) for i, t in pending if i not in same and (replace or i not in exists)]
    for i, _ in pending:
        if i in same:
            rep.counts["already loaded (same text)"] += 1
        elif i in exists and not replace:
            rep.skip(
                str(chosen[i]),
                "app_id already present",
                f"app_id {i} is already in the source table with another text (--replace to overwrite)",
            )
        elif i in exists:
            rep.counts["replaced"] += 1
    rep.marked_for_reprocess += _write_source(db, keep, (exists - same) if replace else set())
    rep.counts["loaded"] += len([1 for i, _ in keep if i not in exists])
    pending.clear()


def generate_into_db(
    db: Database,
    count: int,
    seed: int,
    faulty_share: float,
    start_id: int,
    batch: int = 200,
    generator: Any = None,
) -> dict:
    """``generator``: anything with ``documents(start, count)`` (mock_rl.generator_for: rl, mixed)."""
    lo, hi = id_range(db)
    if count > 0 and not (lo <= start_id and start_id + count - 1 <= hi):
        raise ConfigError(
            f"--start-id {start_id} with --count {count} gives ids {start_id}..{start_id + count - 1}; "
            f"the source table's id column ({db.dialect.name}) and the contract's app_id columns hold {lo}..{hi}"
        )
    created = ensure_schema(db)
    if not created:
        init_db(db)  # as always: an existing schema gets what it lacks (columns, enum rows)
    gen = generator or MockGenerator(seed=seed, faulty_share=faulty_share)
    t0 = time.perf_counter()
    faults: collections.Counter = collections.Counter()
    sizes: list[int] = []
    written = skipped = 0
    for lo in range(start_id, start_id + count, batch):
        n = min(batch, start_id + count - lo)
        exists = _existing(db, list(range(lo, lo + n)))
        rows = []
        for d in gen.documents(lo, n):
            if d.row_app_id in exists:
                skipped += 1
                continue
            if d.fault:
                faults[d.fault] += 1
            sizes.append(len(d.text))
            rows.append((d.row_app_id, d.text))
        _write_source(db, rows, set())
        written += len(rows)
    return {
        "written": written,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "median_kb": statistics.median(sizes) / 1024 if sizes else 0,
        "faulty": sum(faults.values()),
        "faults": dict(sorted(faults.items())),
        "created_schema": created,
    }


def generate_into_folder(
    out_dir: str, count: int, seed: int, faulty_share: float, start_id: int, generator: Any = None
) -> dict:
    gen = generator or MockGenerator(seed=seed, faulty_share=faulty_share)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    faults: collections.Counter = collections.Counter()
    sizes = []
    for d in gen.documents(start_id, count):
        if d.fault:
            faults[d.fault] += 1
        data = d.text.encode("utf-8")
        if d.app_id % 50 == 7 and not d.fault:  # some older documents are cp1252
            try:
                data = d.text.encode("cp1252")
            except UnicodeEncodeError:
                pass
        sizes.append(len(data))
        (Path(out_dir) / f"app-{d.app_id}.xml").write_bytes(data)
    return {
        "written": count,
        "skipped": 0,
        "seconds": time.perf_counter() - t0,
        "median_kb": statistics.median(sizes) / 1024 if sizes else 0,
        "faulty": sum(faults.values()),
        "faults": dict(sorted(faults.items())),
    }
