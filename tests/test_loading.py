"""load-xml: every per-file problem is a skip with a reason; conflicts load neither file unless one
is preferred; a pattern matching nothing is a usage error; read commands never create a database
file; setup commands run concurrently without failing."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import re
import time
from pathlib import Path

import pytest
from conftest import SAMPLES, cli_in_process, engine, popen, url_password

from xml_extractor import load_contract
from xml_extractor.db.database import Database


def _doc(app_id: str, custdata: str = "<CustData/>") -> str:
    return (
        f'<?xml version="1.0"?>\n<Provenir><Request ID="{app_id}">{custdata}</Request></Provenir>\n'
    )


def _source(url: str, ids: list[int]) -> dict[int, str]:
    db = Database(url, load_contract())
    try:
        return {a: x for a, x, _ in db.fetch_documents(ids)}  # as the run reads them
    finally:
        db.close()


def _folder(tmp_path: Path, too_big: str) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    sample = (SAMPLES / "app-1001.xml").read_text("utf-8")
    (d / "app-1001.xml").write_text(sample, "utf-8")
    (d / "empty-custdata.xml").write_text(_doc("77"), "utf-8")  # complete, empty CustData: loads
    (d / "big-id.xml").write_text(_doc(too_big), "utf-8")
    (d / "no-id.xml").write_text("<Provenir><Request><CustData/></Request></Provenir>", "utf-8")
    (d / "not-xml.xml").write_text("id,name\n1,x\n", "utf-8")
    (d / "empty.xml").write_text("", "utf-8")
    (d / "app-463.xml").write_text(
        _doc("470", "<CustData><application/></CustData>"), "utf-8"
    )  # carries 470
    (d / "app-470.xml").write_text(_doc("470"), "utf-8")
    return d


@pytest.mark.slow
def test_each_problem_is_a_skip_with_a_reason(db_url, tmp_path):
    too_big = "99999999999999999999" if db_url.startswith("sqlite") else "3000000000"
    d = _folder(tmp_path, too_big)
    p = cli_in_process("load-xml", str(d), "--db", db_url)
    assert p.returncode == 1, p.stdout + p.stderr
    out, err = p.stdout, p.stderr
    assert "Traceback" not in out + err
    assert "created the schema" in out
    assert f"big-id.xml: Request/@ID {too_big} does not fit the source table's id column" in err
    assert "no-id.xml: no /Provenir/Request/@ID in the document" in err
    assert "not-xml.xml: not an XML document" in err and "empty.xml: an empty file" in err
    assert "truncated" not in err  # the complete document with <CustData/> is fine
    for name in ("app-463.xml", "app-470.xml"):  # the conflict names both files, loads neither
        line = next(ln for ln in err.splitlines() if f"{name}: " in ln)
        assert (
            "Request/@ID 470 is carried by 2 files" in line
            and "app-463.xml" in line
            and "app-470.xml" in line
        )
    assert set(_source(db_url, [77, 470, 1001])) == {77, 1001}

    again = cli_in_process(
        "load-xml", str(d / "app-1001.xml"), "--db", db_url
    )  # the same file again (a load run twice)
    assert again.returncode == 0 and "already loaded (same text)" in again.stdout, (
        again.stdout + again.stderr
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "app-1001.xml").write_text(
        _doc("1001", "<CustData><application/></CustData>"), "utf-8"
    )
    again = cli_in_process("load-xml", str(other / "app-1001.xml"), "--db", db_url)
    assert again.returncode == 1, again.stdout + again.stderr
    assert (
        "app_id 1001 is already in the source table with another text (--replace to overwrite)"
        in again.stderr
    )

    chosen = cli_in_process(
        "load-xml",
        str(d / "app-463.xml"),
        str(d / "app-470.xml"),
        "--prefer",
        str(d / "app-470.xml"),
        "--db",
        db_url,
    )
    assert "app-463.xml: Request/@ID 470 is also in" in chosen.stderr
    assert _source(db_url, [470])[470] == _doc("470")  # the real 470, not 463's file


def test_no_files_matched_is_a_usage_error(sqlite_url, tmp_path):
    p = cli_in_process("load-xml", str(tmp_path / "nothere" / "*.xml"), "--db", sqlite_url)
    assert p.returncode == 2 and "no files matched" in p.stderr and "nothere" in p.stderr
    p = cli_in_process("load-xml", str(tmp_path / "missing.xml"), "--db", sqlite_url)
    assert p.returncode == 2 and "no files matched" in p.stderr


@pytest.mark.slow
def test_overlapping_arguments_load_each_file_once_and_generate_mock_says_it_created_the_schema(
    db_url, tmp_path
):
    """A folder and a glob inside it name the same files: each is loaded once, not a conflict with
    itself. generate-mock into a fresh database says it created the schema, as load-xml does."""
    fresh = db_url
    p = cli_in_process("generate-mock", "--db", fresh, "--count", "2", check=True)
    first = p.stdout.splitlines()[0]
    if engine(fresh) == "mssql":  # printed as the URL's display form: no password, no options
        assert first.startswith("created the schema in ") and first.endswith(
            " (as init-db does)"
        ), first
        assert re.search(r"xe_[0-9a-f]{12}", fresh).group(0) in first, first  # type: ignore[union-attr]
        assert not url_password(fresh) or url_password(fresh) not in first
    else:
        assert first == f"created the schema in {fresh} (as init-db does)", p.stdout
    p = cli_in_process("generate-mock", "--db", fresh, "--count", "2", check=True)
    assert "created the schema" not in p.stdout
    d = tmp_path / "docs"
    d.mkdir()
    for i in (11, 12, 20):
        (d / f"app-{i}.xml").write_text(_doc(str(i)), "utf-8")
    url = db_url  # ids 1 and 2 are the mock's
    p = cli_in_process("load-xml", str(d), str(d / "app-1*.xml"), "--db", url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "carried by" not in p.stderr and set(_source(url, [11, 12, 20])) == {11, 12, 20}


@pytest.mark.slow
def test_read_commands_never_create_a_database_file(tmp_path):
    missing = tmp_path / "typo.db"
    for cmd in (
        ["status"],
        ["reconcile"],
        ["failures"],
        ["quality"],
        ["run", "--no-progress"],
        ["reprocess", "--failed"],
        ["init-db", "--dry-run"],
    ):
        p = cli_in_process(*cmd, "--db", f"sqlite:///{missing}")
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        assert f"no database at {missing}" in p.stderr
        assert not missing.exists()


def _together(*commands: list[str]) -> list[tuple[int, str]]:
    procs = [popen(*c) for c in commands]
    return [(p.wait(timeout=300), p.stdout.read() + p.stderr.read()) for p in procs]  # type: ignore[union-attr]


@pytest.mark.slow
def test_two_init_db_at_once_on_a_fresh_database(db_url):
    for code, out in _together(
        ["init-db", "--db", db_url], ["init-db", "--db", db_url], ["init-db", "--db", db_url]
    ):
        assert code == 0 and "Traceback" not in out, out
    assert (
        "0 change(s) to apply"
        in cli_in_process("init-db", "--db", db_url, "--dry-run", check=True).stdout
    )


@pytest.mark.slow
def test_two_generate_mock_at_once(db_url):
    args = ["generate-mock", "--db", db_url, "--count", "300", "--seed", "5"]
    for code, out in _together(args, args):
        assert code == 0 and "Traceback" not in out, out
    assert len(_source(db_url, list(range(1, 301)))) == 300


@pytest.mark.slow
@pytest.mark.parametrize(
    "table_index, name, clash",
    [
        (0, "Processing_Log", "the processing log"),
        (0, "APP_XML", "the source table"),
        (1, "Run_Progress", "the progress table"),
        (1, "App_Base", "defined twice"),
    ],
)
def test_contract_table_names_that_clash_are_refused(tmp_path, table_index, name, clash):
    import json

    from xml_extractor.contracts import __file__ as contracts_init
    from xml_extractor.errors import ContractError

    c = json.loads((Path(contracts_init).parent / "credit_card.json").read_text("utf-8"))
    c["tables"][table_index]["name"] = name
    path = tmp_path / "clash.json"
    path.write_text(json.dumps(c), "utf-8")
    with pytest.raises(ContractError, match=clash):
        load_contract(str(path))
    p = cli_in_process("validate-contract", str(path))
    assert p.returncode == 2 and name in p.stderr + p.stdout


def _connect_at(path: str, start: float, out: multiprocessing.queues.Queue) -> None:
    from xml_extractor.db.sqlite import SQLiteDialect
    from xml_extractor.db.url import parse_url

    while time.time() < start:
        pass
    try:
        conn = SQLiteDialect().connect(parse_url(f"sqlite:///{path}"))
        out.put(conn.execute("PRAGMA journal_mode").fetchone()[0])
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_opening_one_fresh_sqlite_file_at_the_same_instant_all_get_wal(tmp_path):
    """Converting a fresh file to WAL needs the exclusive lock, and SQLite refuses the losers at
    once ("database is locked") without calling the busy handler: two generate-mock or init-db
    started together on a new file lost one (CI saw it). Six processes, released at one instant,
    ten fresh files: every connection must end up open and in WAL mode."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"fresh{round_}.db")
        out = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_connect_at, args=(path, start, out)) for _ in range(6)]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert results == ["wal"] * 6, (round_, results)


@pytest.mark.slow
def test_ids_outside_the_selectable_range_are_refused_and_the_edges_are_processed(db_url, tmp_path):
    """The id range a database can load is the one run can process: ids past the source's int
    column (PostgreSQL) or the contract's int app_id columns (SQLite's source holds 64 bits; such an
    id failed at map with a misleading "no usable value") are refused by load-xml (a skip) and
    generate-mock (exit 2, nothing written); the lowest and highest accepted ids are processed."""
    lo, hi = -(2**31), 2**31 - 1
    d = tmp_path / "edge"
    d.mkdir()
    (d / "below.xml").write_text(_doc(str(lo - 1)), "utf-8")
    p = cli_in_process("load-xml", str(d), "--db", db_url)
    assert p.returncode == 1 and f"Request/@ID {lo - 1} does not fit" in p.stderr, (
        p.stdout + p.stderr
    )
    for start, count in ((hi - 2, 5), (lo - 1, 3)):
        p = cli_in_process(
            "generate-mock", "--db", db_url, "--count", str(count), "--start-id", str(start)
        )
        assert (
            p.returncode == 2 and f"hold {lo}..{hi}" in p.stderr and "Traceback" not in p.stderr
        ), p.stderr
    assert not _source(db_url, [lo, hi])
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "2",
        "--start-id",
        str(lo),
        "--faulty-share",
        "0",
        check=True,
    )
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "2",
        "--start-id",
        str(hi - 1),
        "--faulty-share",
        "0",
        check=True,
    )
    p = cli_in_process(
        "run",
        "--db",
        db_url,
        "--no-progress",
        "--workers",
        "1",
        "--instance-id",
        "1",
        "--instance-count",
        "3",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    for i in (0, 2):
        cli_in_process(
            "run",
            "--db",
            db_url,
            "--no-progress",
            "--workers",
            "1",
            "--instance-id",
            str(i),
            "--instance-count",
            "3",
            check=True,
        )
    p = cli_in_process("reconcile", "--db", db_url)
    assert p.returncode == 0, p.stdout


@pytest.mark.slow
def test_load_xml_again_over_rows_other_tools_wrote_with_a_byte_order_mark(db_url, tmp_path):
    """A row written by another tool keeps the file's byte-order mark; load-xml drops it when it
    reads the file. The same document is 'already loaded (same text)' (an interrupted load run
    again exits 0), with or without --replace (which rewrites only what differs)."""
    cli_in_process("init-db", "--db", db_url, check=True)
    d = tmp_path / "bom"
    d.mkdir()
    docs = {i: "\ufeff" + _doc(str(i)) for i in (1, 2, 3)}
    for i, text in docs.items():
        (d / f"app-{i}.xml").write_text(text, "utf-8")
    db = Database(db_url, load_contract())
    try:
        db.begin()
        for i, text in docs.items():
            # as the other tool stored it: the text, or on SQL Server's varchar(max) the file's bytes
            db.execute(
                f"INSERT INTO {db.names['src']} ({db.names['src_id']}, {db.names['src_xml']}) VALUES (?, ?)",
                [i, db.source_value(text)],
            ).close()
        db.commit()
    finally:
        db.close()
    p = cli_in_process("load-xml", str(d), "--db", db_url)
    assert p.returncode == 0 and "already loaded (same text)" in p.stdout, p.stdout + p.stderr
    (d / "app-3.xml").write_text(_doc("3", "<CustData><application/></CustData>"), "utf-8")
    p = cli_in_process("load-xml", str(d), "--db", db_url, "--replace")
    assert p.returncode == 0, p.stdout + p.stderr
    counts = {
        ln.rsplit(None, 1)[0].strip(): ln.rsplit(None, 1)[1]
        for ln in p.stdout.splitlines()
        if ln[:1].isalpha() and ln.rsplit(None, 1)[-1].isdigit()
    }
    assert counts.get("replaced") == "1" and counts.get("already loaded (same text)") == "2", (
        p.stdout
    )
