"""Getting documents into the source table: files from disk, or generated mock documents."""
from __future__ import annotations

import collections
import glob
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .db.database import Database
from .db.store import init_db
from .errors import DocumentFailure
from .mock import MockGenerator
from .parsing import DocumentPlan, decode_source, parse_app_id, parse_document

_ID_FALLBACK = re.compile(r"<Request\b[^>]*?\bID\s*=\s*[\"'](\d+)[\"']")


@dataclass
class LoadReport:
    counts: collections.Counter = field(default_factory=collections.Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)


def expand_paths(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if any(c in p for c in "*?["):
            out += [Path(x) for x in sorted(glob.glob(p, recursive=True)) if os.path.isfile(x)]
        elif os.path.isdir(p):
            out += sorted(Path(p).rglob("*.xml"))
        else:
            out.append(Path(p))
    return out


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
    n = db.names
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        found |= {int(r[0]) for r in db.autocommit_query(
            f"SELECT {n['src_id']} FROM {n['src']} WHERE {n['src_id']} IN ({db.dialect.in_list(len(part))})", part)}
    return found


def _write_source(db: Database, rows: list[tuple[int, str]], replace_ids: set[int]) -> None:
    n = db.names

    def tx() -> None:
        db.begin()
        cur = db.conn.cursor()
        if replace_ids:
            ids = sorted(replace_ids)
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                cur.execute(f"DELETE FROM {n['src']} WHERE {n['src_id']} IN ({db.dialect.in_list(len(part))})", part)
        cur.executemany(f"INSERT INTO {n['src']} ({n['src_id']}, {n['src_xml']}) VALUES (?, ?)", rows)
        cur.close()
        db.commit()
    db.with_retry(tx)


def load_files(db: Database, paths: Iterable[str], replace: bool = False, batch: int = 200) -> LoadReport:
    init_db(db)
    from .contract.compiler import compile_contract
    plan = compile_contract(db.contract).document  # once, not per file
    rep = LoadReport()
    pending: list[tuple[int, str]] = []
    seen: set[int] = set()

    def flush() -> None:
        if not pending:
            return
        ids = [i for i, _ in pending]
        exists = _existing(db, ids)
        keep = [(i, t) for i, t in pending if replace or i not in exists]
        for i, _ in pending:
            if i in exists:
                rep.counts["replaced" if replace else "skipped: app_id already present"] += 1
                if not replace:
                    rep.problems.append((f"app_id {i}", "already present (use --replace to overwrite)"))
        _write_source(db, keep, exists if replace else set())
        rep.counts["loaded"] += len([1 for i, _ in keep if i not in exists])
        pending.clear()

    for path in expand_paths(paths):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            rep.counts["skipped: unreadable"] += 1
            rep.problems.append((str(path), str(exc)))
            continue
        try:
            text = decode_source(raw)
            app_id = document_id(text, plan)
        except DocumentFailure as f:
            rep.counts["skipped: no usable Request/@ID"] += 1
            rep.problems.append((str(path), f.reason))
            continue
        if app_id in seen:
            rep.counts["skipped: duplicate app_id in this load"] += 1
            rep.problems.append((str(path), f"app_id {app_id} appears in another file of this load"))
            continue
        seen.add(app_id)
        pending.append((app_id, text))
        if len(pending) >= batch:
            flush()
    flush()
    return rep


def generate_into_db(db: Database, count: int, seed: int, faulty_share: float, start_id: int, batch: int = 200) -> dict:
    init_db(db)
    gen = MockGenerator(seed=seed, faulty_share=faulty_share)
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
    return {"written": written, "skipped": skipped, "seconds": time.perf_counter() - t0,
            "median_kb": statistics.median(sizes) / 1024 if sizes else 0, "faulty": sum(faults.values()),
            "faults": dict(sorted(faults.items()))}


def generate_into_folder(out_dir: str, count: int, seed: int, faulty_share: float, start_id: int) -> dict:
    gen = MockGenerator(seed=seed, faulty_share=faulty_share)
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
    return {"written": count, "skipped": 0, "seconds": time.perf_counter() - t0,
            "median_kb": statistics.median(sizes) / 1024 if sizes else 0, "faulty": sum(faults.values()),
            "faults": dict(sorted(faults.items()))}
