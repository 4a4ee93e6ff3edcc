"""The driver boundary (issue 16, items 6-7): a refusal of *these rows* is an application's
failure; a timeout, a lock wait or a full disk is the run's problem (retried, then exit 3 with the
applications still pending, never logged failed), and the same command finishes them once the
fault is gone. No statement binds more parameters than the driver takes (10,000 colliding
contacts on PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from conftest import (
    _pg_admin_exec,
    assert_exactly_once,
    cli,
    cli_in_process,
    kill_sessions,
    open_db,
    server_session,
)

RUN = ("--no-progress", "--workers", "1", "--batch-size", "10")


def _dirs(tmp_path) -> tuple[str, ...]:
    return ("--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics"))


def _load(url: str, ids: list[int], texts: dict[int, str] | None = None) -> None:
    from xml_extractor.mock import MockGenerator

    gen = MockGenerator(seed=9, median_kb=3)
    db = open_db(url)
    n = db.names
    db.begin()
    cur = db.conn.cursor()
    for i in ids:
        cur.execute(
            f"INSERT INTO {n['src']} ({n['src_id']}, {n['src_xml']}) VALUES (?, ?)",
            [i, (texts or {}).get(i) or gen.document(i).text],
        )
    cur.close()
    db.commit()
    db.close()


def _counts(url: str) -> dict[str, int]:
    db = open_db(url)
    try:
        rows = db.autocommit_query(
            f"SELECT status, COUNT(*) FROM {db.names['log']} GROUP BY status"
        )
        return {str(s): int(c) for s, c in rows}
    finally:
        db.close()


@pytest.mark.slow
def test_statement_timeout_on_a_held_lock_leaves_nothing_failed(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip(
            "statement_timeout is a PostgreSQL role setting: SQLite and SQL Server have no server-side statement timeout"
        )
    cli("init-db", "--db", db_url, check=True)
    _load(db_url, list(range(1, 31)))
    role = "xe_to_" + uuid.uuid4().hex[:8]
    _pg_admin_exec(f"CREATE ROLE {role} LOGIN SUPERUSER")
    _pg_admin_exec(f"ALTER ROLE {role} SET statement_timeout = '1s'")
    role_url = db_url.replace("://postgres@", f"://{role}@")
    holder = open_db(db_url)
    try:
        holder.execute(
            f"LOCK TABLE {holder.table('app_contact_base')} IN EXCLUSIVE MODE"
        ).close()  # reads pass, writes wait
        p = cli("run", "--db", role_url, *RUN, *_dirs(tmp_path), timeout=180)
        assert p.returncode == 3, p.stdout + p.stderr
        assert "timeout" in (p.stdout + p.stderr).lower()
        assert (
            _counts(db_url).get("failed", 0) == 0
        )  # valid applications are not failed: still pending
    finally:
        holder.rollback()  # the fault is gone
        holder.close()
    try:
        p = cli("run", "--db", role_url, *RUN, *_dirs(tmp_path), timeout=180)
        assert p.returncode == 0, p.stdout + p.stderr
        assert _counts(db_url) == {"success": 30}
        assert_exactly_once(db_url)
    finally:
        _pg_admin_exec(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.slow
def test_disk_full_leaves_nothing_failed_and_the_same_command_finishes(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        url = f"sqlite:///{mnt / 'full.db'}"
        cli_in_process("init-db", "--db", url, check=True)
        _load(url, list(range(1, 41)))
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # take every byte that is left
        for size in (65536, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        os.ftruncate(
            fd, max(0, os.fstat(fd).st_size - 96 * 1024)
        )  # room to open the database, not to write much
        os.close(fd)
        p = cli_in_process("run", "--db", url, *RUN, *_dirs(tmp_path), timeout=90)
        assert p.returncode == 3, p.stdout + p.stderr
        assert "full" in (p.stdout + p.stderr).lower()
        os.remove(filler)  # the fault is gone
        assert _counts(url).get("failed", 0) == 0
        p = cli_in_process("run", "--db", url, *RUN, *_dirs(tmp_path), timeout=90)
        assert p.returncode == 0, p.stdout + p.stderr
        assert _counts(url) == {"success": 40}
        assert_exactly_once(url)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow  # several real runs with worker processes
def test_ten_thousand_colliding_contacts_fail_alone_with_the_owner_named(db_url, tmp_path):
    from xml_extractor.mock import MockGenerator

    cli_in_process("init-db", "--db", db_url, check=True)
    _load(db_url, [1, 2])
    cli_in_process(
        "run", "--db", db_url, *RUN, *_dirs(tmp_path), check=True
    )  # application 1 owns con_id 11
    t = MockGenerator(seed=9, median_kb=3).document(3).text
    i = t.find("<contact ")
    j = t.find("</contact>", i) + len("</contact>")
    block = t[i:j]
    first_con = block.split('con_id="', 1)[1].split('"', 1)[0]
    extra = [
        block.replace(f'con_id="{first_con}"', f'con_id="{cid}"', 1).replace(
            'ac_role_tp_c="PR"', 'ac_role_tp_c="AUTHU"', 1
        )
        for cid in [11] + list(range(500000, 509999))
    ]
    doc = t[:j] + "\n" + "\n".join(extra) + t[j:]
    _load(db_url, [3], {3: doc})
    p = cli_in_process("run", "--db", db_url, *RUN, *_dirs(tmp_path), timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr  # application 3 failed, the run did not stop
    db = open_db(db_url)
    try:
        rows = db.autocommit_query(
            f"SELECT app_id, status, stage, error_class, reason FROM {db.names['log']} WHERE app_id = 3"
        )
    finally:
        db.close()
    assert (
        len(rows) == 1
        and rows[0][1] == "failed"
        and rows[0][2] == "insert"
        and rows[0][3] == "KeyCollision"
    ), rows
    assert "con_id 11 already belongs to application 1" in rows[0][4]
    assert_exactly_once(db_url)


def _pyodbc_error(cls_name: str, state: str, text: str) -> BaseException:
    pyodbc = pytest.importorskip("pyodbc")
    return getattr(pyodbc, cls_name)(
        state, f"[{state}] ERROR: {text};\nError while executing the query (1) (SQLExecDirectW)"
    )


def test_driver_errors_are_typed_rows_or_environment():
    """The classification table itself: what bisects (RowsRefused) and what stops the run."""
    import sqlite3

    from xml_extractor.db.classify import wrap_odbc, wrap_sqlite
    from xml_extractor.errors import (
        ConnectionLost,
        DatabaseError,
        RowsRefused,
        SchemaMissing,
        TransientDatabaseError,
    )

    cases = [
        (
            wrap_sqlite(
                sqlite3.IntegrityError("UNIQUE constraint failed: app_contact_base.con_id")
            ),
            RowsRefused,
            "duplicate",
        ),
        (
            wrap_sqlite(sqlite3.IntegrityError("FOREIGN KEY constraint failed")),
            RowsRefused,
            "foreign_key",
        ),
        (
            wrap_sqlite(
                sqlite3.IntegrityError("NOT NULL constraint failed: app_base.receive_date")
            ),
            RowsRefused,
            "value",
        ),
        (
            wrap_sqlite(OverflowError("Python int too large to convert to SQLite INTEGER")),
            RowsRefused,
            "value",
        ),
        (
            wrap_sqlite(sqlite3.OperationalError("database or disk is full")),
            TransientDatabaseError,
            None,
        ),
        (wrap_sqlite(sqlite3.OperationalError("database is locked")), TransientDatabaseError, None),
        (
            wrap_sqlite(sqlite3.OperationalError("attempt to write a readonly database")),
            TransientDatabaseError,
            None,
        ),
        (wrap_sqlite(sqlite3.OperationalError("disk I/O error")), TransientDatabaseError, None),
        (
            wrap_sqlite(sqlite3.OperationalError("table app_base has no column named x")),
            SchemaMissing,
            None,
        ),
        (
            wrap_sqlite(sqlite3.ProgrammingError("Cannot operate on a closed database.")),
            ConnectionLost,
            None,
        ),
        (
            wrap_sqlite(sqlite3.DatabaseError("database disk image is malformed")),
            DatabaseError,
            None,
        ),
        (
            wrap_odbc(
                _pyodbc_error(
                    "IntegrityError", "23505", "duplicate key value violates unique constraint"
                )
            ),
            RowsRefused,
            "duplicate",
        ),
        (
            wrap_odbc(
                _pyodbc_error(
                    "IntegrityError", "23503", "insert or update violates foreign key constraint"
                )
            ),
            RowsRefused,
            "foreign_key",
        ),
        (
            wrap_odbc(_pyodbc_error("DataError", "22003", "integer out of range")),
            RowsRefused,
            "value",
        ),
        (
            wrap_odbc(
                _pyodbc_error("DataError", "22001", "value too long for type character varying(2)")
            ),
            RowsRefused,
            "value",
        ),
        (
            wrap_odbc(
                _pyodbc_error("Error", "57014", "canceling statement due to statement timeout")
            ),
            TransientDatabaseError,
            None,
        ),
        (
            wrap_odbc(_pyodbc_error("Error", "55P03", "could not obtain lock on relation")),
            TransientDatabaseError,
            None,
        ),
        (
            wrap_odbc(_pyodbc_error("Error", "40P01", "deadlock detected")),
            TransientDatabaseError,
            None,
        ),
        (
            wrap_odbc(
                _pyodbc_error("Error", "53100", "could not extend file: No space left on device")
            ),
            TransientDatabaseError,
            None,
        ),
        (
            wrap_odbc(
                _pyodbc_error(
                    "ProgrammingError", "25006", "cannot execute INSERT in a read-only transaction"
                )
            ),
            TransientDatabaseError,
            None,
        ),
        (
            wrap_odbc(
                _pyodbc_error(
                    "OperationalError", "08S01", "server closed the connection unexpectedly"
                )
            ),
            ConnectionLost,
            None,
        ),
        (
            wrap_odbc(_pyodbc_error("ProgrammingError", "42703", 'column "x" does not exist')),
            SchemaMissing,
            None,
        ),
    ]
    for err, cls, kind in cases:
        assert type(err) is cls, (err, cls)
        if kind:
            assert err.kind == kind
    assert isinstance(
        wrap_sqlite(KeyError("x")), KeyError
    )  # not the driver's: unchanged (a bug stays a bug)


def test_a_connection_dropped_before_the_schema_check_is_reconnected_not_called_a_missing_schema(
    db_url,
):
    """run and reprocess check the schema first (db/migrate.py require_current). A connection the
    server drops at that moment (a failover, pg_terminate_backend) used to be reported as "could not
    read the database schema: run init-db", exit 2: the operator was sent to fix a schema that was
    fine. It is read again on a new connection."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no server-side connection to terminate")
    from xml_extractor.db.migrate import require_current

    cli_in_process("init-db", "--db", db_url, check=True)
    db = open_db(db_url)
    try:
        session = server_session(db)
        kill_sessions(db_url, session)  # pg_terminate_backend / KILL
        require_current(db)  # raised SchemaMissing before the fix
        assert server_session(db) != session  # a new connection did the read
    finally:
        db.close()
