"""The pipeline end to end with real processes, on a real SQLite file and a real PostgreSQL."""

import json
import re

import pytest
from conftest import (
    assert_exactly_once,
    cli,
    cli_in_process,
    engine,
    expected_failures,
    log_rows,
    open_db,
)
from hostile import cases

from xml_extractor.mock import FAULT_KINDS


def seed(url, count=120, faulty=0.15, start=1, seed_=3):
    cli_in_process("init-db", "--db", url, check=True)
    p = cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        str(count),
        "--faulty-share",
        str(faulty),
        "--seed",
        str(seed_),
        "--start-id",
        str(start),
        check=True,
    )
    return p


def faulty_ids(count, faulty, start=1, seed_=3):
    return expected_failures(seed_, faulty, count, start)


def run(url, *extra, env=None):
    """A run in this process; with injected faults (read by the workers) a real process."""
    command = cli if env and "XML_EXTRACTOR_FAULTS" in env else cli_in_process
    return command(
        "run", "--db", url, "--no-progress", "--workers", "2", "--batch-size", "16", *extra, env=env
    )


@pytest.mark.slow
def test_init_db_is_idempotent(db_url, contract):
    for _ in range(2):
        p = cli_in_process("init-db", "--db", db_url, check=True)
    declared = sum(len(v) for v in contract.enums.values())  # 89 in credit_card 1.1.0
    assert f"{declared} declared" in p.stdout and "0 enum rows seeded" in p.stdout
    db = open_db(db_url)
    assert db.scalar(f"SELECT COUNT(*) FROM {db.names['enums']}") == declared
    db.close()


@pytest.mark.slow
def test_run_resume_and_faulty_documents(db_url, contract):
    seed(db_url)
    faults = faulty_ids(120, 0.15)
    assert faults
    p = run(db_url)
    assert p.returncode == 1, p.stdout + p.stderr  # some applications failed, as they must
    stats = assert_exactly_once(db_url)
    assert stats["apps"] == 120
    logs = {a: (s, st, r) for a, s, st, _, _, r in log_rows(db_url)}
    for app_id, kind in faults.items():
        status, stage, reason = logs[app_id]
        assert status == "failed" and stage == FAULT_KINDS[kind] and reason, (
            app_id,
            kind,
            logs[app_id],
        )
    assert stats["failed"] == len(faults)
    p2 = run(db_url)
    assert p2.returncode == 0 and re.search(r"^selected +0$", p2.stdout, re.M), p2.stdout
    assert len(log_rows(db_url)) == 120


@pytest.mark.slow
def test_injected_failure_after_some_tables_leaves_nothing(db_url, contract):
    seed(db_url, count=40, faulty=0.0)
    p = run(
        db_url, env={"XML_EXTRACTOR_FAULTS": "fail_app=17,fail_after_table=app_contact_address"}
    )
    assert p.returncode == 1
    db = open_db(db_url)
    for t in contract.tables:
        n = db.scalar(
            f"SELECT COUNT(*) FROM {db.table(t.name)} WHERE {db.dialect.quote(t.app_id_column)} = 17"
        )
        assert n == 0, f"{t.name} kept rows of the failed application"
    db.close()
    (row,) = [r for r in log_rows(db_url) if r[0] == 17]
    assert (
        row[1] == "failed"
        and row[2] == "insert"
        and "injected fault after inserting app_contact_address" in row[5]
    )
    assert assert_exactly_once(db_url)["success"] == 39


@pytest.mark.slow  # several real runs with worker processes
def test_retry_failed_bounded_by_max_attempts(db_url, contract):
    seed(db_url, count=20, faulty=0.0)
    env = {"XML_EXTRACTOR_FAULTS": "fail_app=5,fail_after_table=app_base"}
    assert run(db_url, env=env).returncode == 1
    from xml_extractor.cli.run import _share_counts
    from xml_extractor.processing.processor import RunOptions

    # what the progress bar counts: (share total, pending)
    assert _share_counts(RunOptions(url=db_url, retry_failed=True, max_attempts=2)) == (20, 1)
    assert _share_counts(RunOptions(url=db_url)) == (20, 0)
    assert run(db_url, "--retry-failed", "--max-attempts", "2", env=env).returncode == 1
    assert (
        run(db_url, "--retry-failed", "--max-attempts", "2", env=env).returncode == 0
    )  # no attempts left: nothing selected
    attempts = [(r[3], r[1]) for r in log_rows(db_url) if r[0] == 5]
    assert attempts == [(1, "failed"), (2, "failed")]
    assert (
        run(db_url, "--retry-failed", "--max-attempts", "3").returncode == 0
    )  # fault gone: attempt 3 succeeds
    attempts = [(r[3], r[1]) for r in log_rows(db_url) if r[0] == 5]
    assert attempts[-1] == (3, "success")
    assert_exactly_once(db_url)


@pytest.mark.slow
def test_hostile_rows_fail_alone_and_nothing_external_reaches_the_database(db_url, contract):
    cli("init-db", "--db", db_url, check=True)
    db = open_db(db_url)
    rows = []
    for name, (text, stage, row_id) in cases(9000).items():
        if isinstance(text, bytes) and db.dialect.name != "sqlite":
            # a text column in PostgreSQL holds characters, not bytes: what a loader would store
            text = text.decode("utf-8") if name != "cp1252_bytes" else text.decode("cp1252")
        rows.append((row_id, text))
    db.begin()
    cur = db.conn.cursor()
    cur.executemany(f"INSERT INTO {db.names['src']} (app_id, xml) VALUES (?, ?)", rows)
    db.commit()
    db.close()
    p = run(db_url)
    assert p.returncode == 1
    logs = {a: (s, st, r) for a, s, st, _, _, r in log_rows(db_url)}
    for name, (_, stage, row_id) in cases(9000).items():
        status, got_stage, reason = logs[row_id]
        if stage is None:
            assert status == "success", (name, reason)
        else:
            assert (status, got_stage) == ("failed", stage), (name, logs[row_id])
    assert_exactly_once(db_url)
    db = open_db(db_url)
    for t in contract.tables + []:
        for c in t.stored_columns:
            if c.type in ("string", "text"):
                for leaked in ("%root:%", "%INJECTED%"):  # /etc/passwd; an expanded internal entity
                    assert (
                        db.scalar(
                            f"SELECT COUNT(*) FROM {db.table(t.name)} WHERE {db.dialect.quote(c.name)} LIKE ?",
                            [leaked],
                        )
                        == 0
                    ), (t.name, c.name, leaked)
    for leaked in ("%root:x:0%", "%INJECTED%"):
        assert (
            db.scalar(f"SELECT COUNT(*) FROM {db.names['events']} WHERE raw_value LIKE ?", [leaked])
            == 0
        )
    db.close()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--instance-id", "3", "--instance-count", "3"], "--instance-id must be between 0 and 2"),
        (["--instance-count", "0"], "--instance-count must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--db", "oracle://x/y"], "unknown database URL scheme oracle:"),
        (["--contract", "/nonexistent.json"], "contract file not found"),
        (["--mode", "queue", "--instance-count", "2"], "do not combine it with --instance-count"),
        (["--batch-size", "40000"], "--batch-size 40000 is too large for sqlite"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(sqlite_url, args, msg):
    a = ["run", "--no-progress"] + (["--db", sqlite_url] if "--db" not in args else []) + args
    p = cli_in_process(*a)
    assert p.returncode == 2 and msg in p.stderr, p.stderr


# The engines' own limits on the bound parameters of one statement (SQLite's SQLITE_MAX_VARIABLE_NUMBER
# since 3.32, PostgreSQL's protocol limit, SQL Server's 2,100 parameters of one request)
ENGINE_PARAMETER_LIMITS = {"sqlite": 32766, "postgresql": 65535, "mssql": 2100}


@pytest.mark.slow
def test_the_largest_batch_size_fits_the_engine_and_one_more_is_refused_before_any_work(db_url):
    """A batch's ids are bound parameters of one IN (...) list: --batch-size is capped by the
    engine's own limit (with room for the statement's other parameters); past it, exit 2 at once."""
    seed(db_url, count=5, faulty=0.0)
    p = cli_in_process("run", "--db", db_url, "--no-progress", "--batch-size", "100000")
    assert p.returncode == 2, p.stdout + p.stderr
    m = re.search(r"--batch-size 100000 is too large for (\w+): at most (\d+)", p.stderr)
    assert m and m.group(1) == engine(db_url), p.stderr
    most = int(m.group(2))
    assert most + 8 <= ENGINE_PARAMETER_LIMITS[engine(db_url)]
    assert log_rows(db_url) == []
    p = cli_in_process("run", "--db", db_url, "--no-progress", "--batch-size", str(most + 1))
    assert p.returncode == 2 and f"at most {most}" in p.stderr, p.stdout + p.stderr
    p = cli_in_process(
        "run", "--db", db_url, "--no-progress", "--workers", "1", "--batch-size", str(most)
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert assert_exactly_once(db_url)["success"] == 5


@pytest.mark.slow
def test_production_processor_alias_and_metrics(db_url, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    seed(db_url, count=10, faulty=0.0)
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "production_processor.py"),
            "--db",
            db_url,
            "--no-progress",
            "--workers",
            "1",
            "--metrics-dir",
            str(tmp_path),
            "--logs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stderr
    (m,) = list(tmp_path.glob("run-*.json"))
    data = json.loads(m.read_text())
    assert data["success"] == 10 and data["exit_code"] == 0
    assert list(tmp_path.glob("run-*.log"))


@pytest.mark.slow
def test_load_xml_files_folders_and_replace(db_url, tmp_path):
    cli_in_process(
        "generate-mock",
        "--out",
        str(tmp_path / "docs"),
        "--count",
        "12",
        "--faulty-share",
        "0",
        check=True,
    )
    (tmp_path / "docs" / "noid.xml").write_text(
        "<Provenir><Request><CustData/></Request></Provenir>"
    )
    p = cli_in_process("load-xml", "--db", db_url, str(tmp_path / "docs"))
    assert p.returncode == 1 and "loaded" in p.stdout and "no usable Request/@ID" in p.stdout
    p = cli_in_process(
        "load-xml", "--db", db_url, str(tmp_path / "docs" / "app-1*.xml")
    )  # loaded before: resumable
    assert p.returncode == 0 and "already loaded (same text)" in p.stdout, p.stdout + p.stderr
    p = cli_in_process(
        "load-xml", "--db", db_url, "--replace", str(tmp_path / "docs" / "app-3.xml")
    )
    assert (
        p.returncode == 0 and "already loaded (same text)" in p.stdout
    )  # the same text is not rewritten
    app3 = tmp_path / "docs" / "app-3.xml"
    app3.write_text(
        app3.read_text("utf-8-sig").replace("<Provenir", "<!-- corrected export -->\n<Provenir", 1),
        "utf-8",
    )
    p = cli_in_process("load-xml", "--db", db_url, "--replace", str(app3))
    assert p.returncode == 0 and "replaced" in p.stdout
    assert run(db_url).returncode == 0
    assert assert_exactly_once(db_url)["success"] == 12


@pytest.mark.slow
def test_rows_in_the_database_equal_the_mapped_rows(db_url, plan):
    """Every stored value of the sample and of a tricky document survives the insert path
    unchanged (PostgreSQL's JSON bulk path and head-only fetch included)."""
    import datetime
    from decimal import Decimal

    from conftest import SAMPLES

    from xml_extractor.mapping import map_document

    sample = (SAMPLES / "app-1001.xml").read_text("utf-8-sig")
    tricky = (
        sample.replace('ID="1001"', 'ID="1002"')
        .replace("<app_product", "<!-- </CustData> --><app_product")
        .replace("900001", "800001")
        .replace("900002", "800002")
        .replace("JANE", "J\u00c1NE &quot;Q&quot; O'NEIL")
    )
    cli_in_process("init-db", "--db", db_url, check=True)
    db = open_db(db_url)
    db.begin()
    cur = db.conn.cursor()
    cur.executemany(
        f"INSERT INTO {db.names['src']} (app_id, xml) VALUES (?, ?)",
        [(1001, sample), (1002, tricky)],
    )
    db.commit()
    assert run(db_url).returncode == 0

    def norm(v):
        if isinstance(v, (Decimal, float)) and not isinstance(v, bool):
            return round(float(v), 4)
        if isinstance(v, datetime.datetime):
            return v.isoformat(sep=" ", timespec="milliseconds")
        if isinstance(v, datetime.date):
            return v.isoformat()
        if (
            isinstance(v, str)
            and db.dialect.name == "sqlite"
            and len(v) in (10, 23)
            and v[4:5] == "-"
            and v[7:8] == "-"
        ):
            return v  # SQLite keeps dates as ISO text
        return v

    for app_id, text in ((1001, sample), (1002, tricky)):
        mapped = map_document(plan, text, app_id)
        for t in plan.tables:
            want = sorted(tuple(norm(v) for v in r) for r in mapped.rows.get(t.name, []))
            cols = ", ".join(db.dialect.quote(c) for c in t.stored_names)
            app_col = db.dialect.quote(db.contract.table(t.name).app_id_column)
            got = sorted(
                tuple(norm(v) for v in r)
                for r in db.autocommit_query(
                    f"SELECT {cols} FROM {db.table(t.name)} WHERE {app_col} = ?", [app_id]
                )
            )
            assert got == want, f"{t.name} of {app_id}"
        assert len(
            db.autocommit_query(
                f"SELECT event_id FROM {db.names['events']} WHERE app_id = ?", [app_id]
            )
        ) == len(mapped.events)
    db.close()


def test_password_never_in_output_logs_or_metrics(db_url, tmp_path):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite URLs carry no password")
    from conftest import url_password

    # SQL Server: the per-test URL carries the server's password already (conftest); it must not show either
    pw = url_password(db_url) if not db_url.startswith("postgresql") else "S3cr3t-pw"
    if not pw:
        pytest.skip(
            "the SQL Server login of XML_EXTRACTOR_TEST_MSSQL has no password (Windows authentication)"
        )
    url = db_url.replace("postgres@", "postgres:S3cr3t-pw@")
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process("generate-mock", "--db", url, "--count", "5", check=True)
    p = cli_in_process(
        "run",
        "--db",
        url,
        "--no-progress",
        "--logs-dir",
        str(tmp_path),
        "--metrics-dir",
        str(tmp_path),
        env={"XML_EXTRACTOR_DB_PASSWORD": "An0ther-pw"},
    )
    assert p.returncode == 0, p.stderr
    texts = [p.stdout, p.stderr] + [f.read_text() for f in tmp_path.iterdir()]
    assert all(pw not in t and "An0ther-pw" not in t for t in texts)
    assert "postgresql://postgres@" in p.stdout or not db_url.startswith("postgresql")
    bad = cli_in_process(
        "run", "--db", "mssql://svc@127.0.0.1:1/nodb", "--no-progress"
    )  # no password, no terminal
    assert bad.returncode == 2 and "S3cr3t" not in bad.stderr
