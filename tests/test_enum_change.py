"""An enum id the contract changes in a database that already holds the old ids (the product-line
ids credit card 602 -> 600 and rec lending 603 -> 602): `init-db --dry-run` names the change, `run`
and `init-db` refuse it, `init-db --allow-enum-change` rewrites app_enums and every stored id in
one transaction (602 -> 600 and 603 -> 602 at once, never colliding), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from conftest import cli_in_process

from xml_extractor.contract.loader import load_contract
from xml_extractor.db import migrate
from xml_extractor.db.database import Database, make_dialect
from xml_extractor.db.url import parse_url

DATA = Path(__file__).parent / "data"
PACKAGED = Path(__file__).parents[1] / "xml_extractor" / "contracts"
NEW = ("--contract", "credit_card", "--contract", "rec_lending")


def _old_ids(tmp_path: Path) -> tuple[str, ...]:
    """The packaged contracts with the product-line ids they had before (CC 602, RL 603)."""
    out = []
    for name, code, old in (("credit_card", "CC", 602), ("rec_lending", "RL", 603)):
        raw = json.loads((PACKAGED / f"{name}.json").read_text("utf-8"))
        raw["version"] = "0.9-old-ids"
        (value,) = raw["enums"]["product_line"]["values"]
        assert value["code"] == code
        value["id"] = old
        path = tmp_path / f"{name}-old.json"
        path.write_text(json.dumps(raw), "utf-8")
        out += ["--contract", str(path)]
    return tuple(out)


def _stored(db_url: str) -> tuple[dict[int, int], dict[int, tuple[str, str]]]:
    """app_base.product_line_enum per app_id, and the product-line rows of app_enums."""
    db = Database(parse_url(db_url), load_contract("credit_card,rec_lending"))
    try:
        base = db.autocommit_query(f"SELECT app_id, product_line_enum FROM {db.table('app_base')}")
        enums = db.autocommit_query(
            f"SELECT enum_id, type, value FROM {db.names['enums']} WHERE type = 'product_line'"
        )
    finally:
        db.close()
    return {int(a): int(p) for a, p in base}, {int(i): (str(t), str(v)) for i, t, v in enums}


@pytest.mark.slow
def test_enum_id_change_is_named_refused_and_rewritten_in_one_step(
    db_url: str, tmp_path: Path
) -> None:
    old = _old_ids(tmp_path)
    cli_in_process("init-db", "--db", db_url, *old, check=True)
    cli_in_process(
        "load-xml",
        "--db",
        db_url,
        str(DATA / "app-1001.xml"),
        str(DATA / "sample-rl-600000.xml"),
        *old,
        check=True,
    )
    cli_in_process("run", "--db", db_url, *old, "--workers", "1", "--no-progress", check=True)
    assert _stored(db_url) == (
        {1001: 602, 600000: 603},
        {602: ("product_line", "CC"), 603: ("product_line", "RL")},
    )

    p = cli_in_process("init-db", "--db", db_url, *NEW, "--dry-run")
    assert p.returncode == 2, p.stdout + p.stderr
    for line in (
        "enum product_line code 'CC': id 602 in the database, 600 in the contract (stored in app_base.product_line_enum)",
        "enum product_line code 'RL': id 603 in the database, 602 in the contract",
    ):
        assert line in p.stdout and line in p.stderr
    assert "--allow-enum-change" in p.stderr
    for refused in (
        cli_in_process("init-db", "--db", db_url, *NEW),
        cli_in_process("run", "--db", db_url, *NEW, "--workers", "1", "--no-progress"),
    ):
        assert (
            refused.returncode == 2
            and "id 602 in the database, 600 in the contract" in refused.stderr
        )
    # one contract alone cannot take id 602 while the database gives it to a code that contract does not declare
    p = cli_in_process(
        "init-db", "--db", db_url, "--contract", "rec_lending", "--allow-enum-change"
    )
    assert p.returncode == 2 and "id 602 is product_line 'CC' in the database" in p.stderr
    assert _stored(db_url)[0] == {1001: 602, 600000: 603}  # nothing changed

    p = cli_in_process("init-db", "--db", db_url, *NEW, "--allow-enum-change", "--dry-run")
    assert p.returncode == 0 and "UPDATE" in p.stdout and "CASE" in p.stdout
    p = cli_in_process("init-db", "--db", db_url, *NEW, "--allow-enum-change")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "product_line CC 602 -> 600" in p.stdout and "(2 stored value(s) rewritten)" in p.stdout
    assert _stored(db_url) == (
        {1001: 600, 600000: 602},
        {600: ("product_line", "CC"), 602: ("product_line", "RL")},
    )
    p = cli_in_process("init-db", "--db", db_url, *NEW, "--dry-run")
    assert p.returncode == 0 and "0 refused" in p.stdout and "enum product_line" not in p.stdout
    p = cli_in_process(
        "reprocess", "--db", db_url, *NEW, "1001", "600000", "--workers", "1", "--no-progress"
    )
    assert p.returncode == 0, (
        p.stdout + p.stderr
    )  # the new contract maps to the same ids it now finds
    assert _stored(db_url)[0] == {1001: 600, 600000: 602}


@pytest.mark.parametrize("dialect", ["mssql", "postgresql", "sqlite"])
def test_enum_rewrite_statements_parse(dialect: str) -> None:
    """The printed rewrite (what --dry-run shows a DBA) is valid SQL of each dialect; T-SQL by sqlglot."""
    sqlglot = pytest.importorskip("sqlglot")
    contract = load_contract("credit_card,rec_lending")
    d = make_dialect(dialect)
    db = types.SimpleNamespace(
        contract=contract, dialect=d, table=lambda n: d.qualified(contract.target_schema, n)
    )
    moves = [
        migrate.EnumMove("product_line", "CC", 602, 600, "Credit card"),
        migrate.EnumMove("product_line", "RL", 603, 602, "Rec lending's"),
    ]
    stmts = migrate._enum_statements(
        db, moves, [("app_base", "product_line_enum", "product_line")], literal=True
    )  # type: ignore[arg-type]
    assert len(stmts) == 4
    read = {"mssql": "tsql", "postgresql": "postgres", "sqlite": "sqlite"}[dialect]
    for sql, params in stmts:
        assert params == ()
        sqlglot.parse_one(sql, read=read, error_level=sqlglot.ErrorLevel.RAISE)
    assert (
        "CASE [product_line_enum] WHEN 602 THEN 600 WHEN 603 THEN 602 END" in stmts[-1][0]
        or dialect != "mssql"
    )
