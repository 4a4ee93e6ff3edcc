"""Schema evolution (db/migrate.py): a contract that gains a column mid-migration is planned,
applied, filled for new applications by `run` and for old ones by `reprocess`; a change that could
lose data is refused with the exact difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli_in_process

from xml_extractor.contracts import __file__ as _contracts_init

PACKAGED = Path(_contracts_init).parent / "credit_card.json"


def _contract_copy(tmp_path: Path, name: str, change) -> str:
    c = json.loads(PACKAGED.read_text("utf-8"))
    change(c)
    p = tmp_path / name
    p.write_text(json.dumps(c), "utf-8")
    return str(p)


def _base(c: dict) -> dict:
    return next(t for t in c["tables"] if t["name"] == "app_base")


def _add_campaign_code(c: dict) -> None:
    c["version"] = c["version"] + "-campaign-code"
    _base(c)["columns"].append(
        {"name": "campaign_code", "type": "string", "length": 10, "attribute": "campaign_num"}
    )


def _values(url: str, contract: str) -> dict[int, tuple]:
    from xml_extractor import load_contract
    from xml_extractor.db.database import Database
    from xml_extractor.testing.queries import sql as testing_sql

    db = Database(url, load_contract(contract))
    try:
        sql = testing_sql(db, "test_campaign_columns", base=db.table("app_base"))
        return {int(a): (n, c) for a, n, c in db.query(sql)}
    finally:
        db.close()


@pytest.mark.slow  # several real runs with worker processes
def test_added_column_planned_applied_and_filled(db_url, tmp_path):
    cli_in_process("init-db", "--db", db_url, check=True)
    cli_in_process("generate-mock", "--db", db_url, "--count", "20", "--seed", "3", check=True)
    cli_in_process("run", "--db", db_url, "--workers", "1", "--no-progress", check=True)
    new = _contract_copy(tmp_path, "cc-new.json", _add_campaign_code)

    # run with the new contract refuses the old schema, naming the plan
    p = cli_in_process("run", "--db", db_url, "--contract", new, "--workers", "1", "--no-progress")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "campaign_code" in p.stdout + p.stderr and "init-db" in p.stdout + p.stderr

    dry = cli_in_process("init-db", "--db", db_url, "--contract", new, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "ALTER TABLE" in dry.stdout
        and "campaign_code" in dry.stdout
        and "VARCHAR(10)" in dry.stdout
    )
    assert (
        cli_in_process("init-db", "--db", db_url, "--contract", new, "--dry-run").stdout
        == dry.stdout
    )  # nothing applied

    applied = cli_in_process("init-db", "--db", db_url, "--contract", new)
    assert applied.returncode == 0, applied.stderr
    assert "campaign_code" in applied.stdout
    assert (
        "0 change(s) to apply"
        in cli_in_process(
            "init-db", "--db", db_url, "--contract", new, "--dry-run", check=True
        ).stdout
    )

    old_apps = _values(db_url, new)
    assert old_apps and all(
        code is None for _, code in old_apps.values()
    )  # earlier applications: not yet

    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "10",
        "--seed",
        "4",
        "--start-id",
        "1001",
        check=True,
    )
    r = cli_in_process(
        "run",
        "--db",
        db_url,
        "--contract",
        new,
        "--workers",
        "1",
        "--no-progress",
        "--allow-contract-change",
    )
    assert r.returncode in (0, 1), r.stdout + r.stderr
    after_run = _values(db_url, new)
    new_ids = [a for a in after_run if a >= 1001]
    assert new_ids and all(after_run[a][1] == after_run[a][0] for a in new_ids)
    assert any(after_run[a][1] is not None for a in new_ids)

    old_ids = sorted(old_apps)
    rp = cli_in_process(
        "reprocess",
        *map(str, old_ids),
        "--db",
        db_url,
        "--contract",
        new,
        "--workers",
        "1",
        "--no-progress",
    )
    assert rp.returncode in (0, 1), rp.stdout + rp.stderr
    after = _values(db_url, new)
    assert all(after[a][1] == after[a][0] for a in old_ids)
    assert any(after[a][1] is not None for a in old_ids)


@pytest.mark.slow
def test_narrowing_change_is_refused_with_the_difference(db_url, tmp_path):
    cli_in_process("init-db", "--db", db_url, check=True)

    def narrow(c: dict) -> None:
        col = next(x for x in _base(c)["columns"] if x["name"] == "campaign_num")
        col["length"] = 4

    narrow_path = _contract_copy(tmp_path, "cc-narrow.json", narrow)
    for args in (["--dry-run"], []):
        p = cli_in_process("init-db", "--db", db_url, "--contract", narrow_path, *args)
        assert p.returncode == 2, p.stdout + p.stderr
        assert (
            "app_base.campaign_num" in p.stderr
            and "length 10 in the database, 4 in the contract" in p.stderr
        )
    r = cli_in_process(
        "run", "--db", db_url, "--contract", narrow_path, "--workers", "1", "--no-progress"
    )
    assert r.returncode == 2 and "campaign_num" in r.stdout + r.stderr

    def drop(c: dict) -> None:
        _base(c)["columns"] = [x for x in _base(c)["columns"] if x["name"] != "ip_address"]

    p = cli_in_process(
        "init-db", "--db", db_url, "--contract", _contract_copy(tmp_path, "cc-drop.json", drop)
    )
    assert (
        p.returncode == 2
        and "app_base.ip_address" in p.stderr
        and "not in the contract" in p.stderr
    )


def test_dry_run_prints_tsql_for_sql_server():
    from xml_extractor import load_contract
    from xml_extractor.db.migrate import Change, MigrationPlan

    plan = MigrationPlan(
        "mssql",
        [
            Change(
                "app_base",
                "x",
                "new column NVARCHAR(10)",
                ["ALTER TABLE [sandbox].[app_base] ADD [x] NVARCHAR(10) NULL"],
            )
        ],
    )
    assert load_contract() is not None
    text = plan.render()
    assert "ALTER TABLE [sandbox].[app_base] ADD [x] NVARCHAR(10) NULL\nGO\n" in text


@pytest.mark.slow
def test_initialise_is_a_library_call(db_url, tmp_path):
    """init-db's work is migrate.initialise (the command only prints its result): it creates the
    schema, applies an additive change naming it, and refuses a lossy one without changing a thing;
    the DDL script is Dialect.schema_script."""
    from xml_extractor import load_contract
    from xml_extractor.db import migrate
    from xml_extractor.db.database import Database

    db = Database(db_url, load_contract())
    try:
        first = migrate.initialise(db)
        assert first.statements > 0 and first.enums_seeded == first.enums_total > 0
        assert first.altered == 0 and first.describe().startswith(f"{first.statements} statements")
        assert migrate.initialise(db).enums_seeded == 0  # idempotent
    finally:
        db.close()
    db = Database(db_url, load_contract(_contract_copy(tmp_path, "cc.json", _add_campaign_code)))
    try:
        assert [c.column for c in migrate.dry_run(db).additions] == ["campaign_code"]
        added = migrate.initialise(db)
        assert added.altered == 1 and [c.column for c in added.applied] == ["campaign_code"]
        assert "1 schema change(s) applied: " in added.describe()
        assert "campaign_code" in added.describe()
        assert migrate.dry_run(db).additions == []
    finally:
        db.close()

    def narrow(c: dict) -> None:
        _base(c)["columns"][-1]["length"] = 2  # the campaign_code just added, VARCHAR(10)

    narrower = _contract_copy(
        tmp_path, "cc-narrow.json", lambda c: (_add_campaign_code(c), narrow(c))
    )
    db = Database(db_url, load_contract(narrower))
    try:
        with pytest.raises(migrate.SchemaRefused, match="campaign_code"):
            migrate.initialise(db)
        assert migrate.dry_run(db).refusals  # still refused: nothing was changed
        script = db.dialect.schema_script(db.contract)
        assert script.startswith("-- xml-extractor ") and "campaign_code" in script
    finally:
        db.close()


def test_init_db_adds_an_index_the_database_lacks(db_url: str) -> None:
    """A database made before an index of the tool's tables existed (here: the history's logged_at,
    which the rates of status and report range over) gets it from init-db; the rows stay."""
    from xml_extractor import load_contract
    from xml_extractor.db.database import Database

    def has_index(db: Database, table: str, index: str) -> bool:
        schema = db.contract.target_schema
        sql = {
            "sqlite": "SELECT COUNT(*) FROM pragma_index_list(?) WHERE name = ?",
            "postgresql": "SELECT COUNT(*) FROM pg_indexes WHERE tablename = ? AND indexname = ? "
            "AND schemaname = ?",
            "mssql": "SELECT COUNT(*) FROM sys.indexes WHERE object_id = OBJECT_ID(?) AND name = ?",
        }[db.dialect.name]
        params: tuple = {
            "sqlite": (table, index),
            "postgresql": (table, index, schema),
            "mssql": (db.dialect.qualified(schema, table), index),
        }[db.dialect.name]
        return int(db.query(sql, params)[0][0]) == 1

    cli_in_process("init-db", "--db", db_url, check=True)
    table, index = "processing_log_history", "ix_processing_log_history_logged_at"
    db = Database(db_url, load_contract())
    try:
        assert has_index(db, table, index)
        d, schema = db.dialect, db.contract.target_schema
        drop = (
            f"DROP INDEX {d.quote(index)} ON {d.qualified(schema, table)}"
            if d.name == "mssql"
            else f"DROP INDEX {d.qualified(schema, index)}"
        )
        db.execute(drop)
        db.commit()
        assert not has_index(db, table, index)
    finally:
        db.close()
    cli_in_process("init-db", "--db", db_url, check=True)
    db = Database(db_url, load_contract())
    try:
        assert has_index(db, table, index)
    finally:
        db.close()
