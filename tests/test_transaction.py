"""Database.transaction(): the one way the product opens a write transaction. On a real SQLite file
and a real PostgreSQL: what the block wrote is visible to another connection once it ends, an
exception inside it rolls back and propagates unchanged, a failed commit is told apart
(``committing``), and a transaction opened inside another is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import open_db

from xml_extractor.db.database import Database, NestedTransaction

DDL = [
    "CREATE TABLE tx_parent (id INTEGER PRIMARY KEY)",
    # checked at COMMIT: a violation makes the commit itself fail (both engines)
    "CREATE TABLE tx_child (id INTEGER, parent INTEGER REFERENCES tx_parent (id) "
    "DEFERRABLE INITIALLY DEFERRED)",
]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A connection to a fresh database holding the two scratch tables."""
    d = open_db(db_url)
    for s in DDL:
        d.execute(s).close()
    d.conn.commit()
    yield d
    d.close()


def _ids(url: str, table: str) -> list[int]:
    """The ids of ``table`` read through another connection (what is committed)."""
    other = open_db(url)
    try:
        return sorted(int(r[0]) for r in other.autocommit_query(f"SELECT id FROM {table}"))
    finally:
        other.close()


@pytest.mark.slow
def test_commit_is_visible_to_another_connection(db: Database, db_url: str) -> None:
    with db.transaction() as same:
        assert same is db and db.in_transaction
        db.execute("INSERT INTO tx_parent (id) VALUES (1)").close()
        db.execute("INSERT INTO tx_parent (id) VALUES (2)").close()
    assert not db.in_transaction
    assert _ids(db_url, "tx_parent") == [1, 2]


@pytest.mark.slow
def test_exception_rolls_back_and_propagates_unchanged(db: Database, db_url: str) -> None:
    class Boom(Exception):
        pass

    boom = Boom("inside the block")
    with pytest.raises(Boom) as caught, db.transaction():
        db.execute("INSERT INTO tx_parent (id) VALUES (7)").close()
        raise boom
    assert caught.value is boom  # neither wrapped nor typed: with_retry does that
    assert not db.in_transaction
    assert _ids(db_url, "tx_parent") == []
    with db.transaction():  # the connection is usable again
        db.execute("INSERT INTO tx_parent (id) VALUES (8)").close()
    assert _ids(db_url, "tx_parent") == [8]


def test_driver_error_rolls_back_the_statements_before_it(db: Database, db_url: str) -> None:
    with pytest.raises(Exception) as caught, db.transaction():
        db.execute("INSERT INTO tx_parent (id) VALUES (3)").close()
        db.execute("INSERT INTO tx_parent (id) VALUES (3)").close()  # duplicate key
    assert not isinstance(caught.value, NestedTransaction)
    assert _ids(db_url, "tx_parent") == []


@pytest.mark.slow
def test_a_failed_commit_is_told_apart(db: Database, db_url: str) -> None:
    tx = db.transaction()
    with pytest.raises(Exception), tx:
        db.execute("INSERT INTO tx_child (id, parent) VALUES (1, 99)").close()
        assert not tx.committing  # the deferred key is checked at COMMIT, not here
    assert tx.committing
    assert not db.in_transaction
    assert _ids(db_url, "tx_child") == []
    tx = db.transaction()
    with pytest.raises(RuntimeError), tx:
        raise RuntimeError("before the commit")
    assert not tx.committing


@pytest.mark.slow
def test_nested_transaction_is_refused_and_the_outer_rolled_back(db: Database, db_url: str) -> None:
    with pytest.raises(NestedTransaction), db.transaction():
        db.execute("INSERT INTO tx_parent (id) VALUES (4)").close()
        with db.transaction():
            db.execute("INSERT INTO tx_parent (id) VALUES (5)").close()
    assert not db.in_transaction
    assert _ids(db_url, "tx_parent") == []


@pytest.mark.slow
def test_with_retry_runs_the_whole_transaction_again(db: Database, db_url: str) -> None:
    """A transient error inside the block: rolled back, then the block runs again from its begin
    (what every caller relies on: ``db.with_retry(tx)`` around ``with db.transaction():``)."""
    from xml_extractor.errors import TransientDatabaseError

    runs: list[int] = []

    def tx() -> Any:
        with db.transaction():
            runs.append(1)
            db.execute(f"INSERT INTO tx_parent (id) VALUES ({10 + len(runs)})").close()
            if len(runs) == 1:
                raise TransientDatabaseError("lock wait (test)")
            return len(runs)

    assert db.with_retry(tx) == 2
    assert _ids(db_url, "tx_parent") == [12]  # the first run's row was rolled back
