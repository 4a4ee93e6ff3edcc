"""SQL Server schema evolution, string capacity and key comparison, checked without a server.

- Widening a column SQL Server cannot ALTER in place (in a primary key, a foreign key or an index:
  msgs 5074/4922) is refused with a one-transaction DBA script; the planning reads the catalogue
  facts (sys.indexes, sys.foreign_keys) that are fed here as the rows the named queries return.
- NVARCHAR(n) counts UTF-16 units: a plan compiled for SQL Server checks and truncates in them.
- String key columns are declared with a binary collation: keys compare as in SQLite/PostgreSQL.
- init-db turns a statement the database refuses into one clear line naming it (exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_in_process

from xml_extractor.contract.loader import ColumnDef, Contract, load_contract
from xml_extractor.contracts import __file__ as _contracts_init
from xml_extractor.db import migrate
from xml_extractor.db.base import key_columns
from xml_extractor.db.database import Database

PACKAGED = Path(_contracts_init).parent / "credit_card.json"
BIN2 = "COLLATE Latin1_General_100_BIN2"


def _copy(tmp_path: Path, change: Any, name: str = "cc.json") -> str:
    c = json.loads(PACKAGED.read_text("utf-8"))
    change(c)
    c["version"] += "-t"
    p = tmp_path / name
    p.write_text(json.dumps(c), "utf-8")
    return str(p)


def _col(c: dict, table: str, column: str) -> dict:
    t = next(t for t in c["tables"] if t["name"] == table)
    return next(x for x in t["columns"] if x["name"] == column)


# -- a SQL Server catalogue as data ---------------------------------------------------------------


def _info_schema_row(col: ColumnDef) -> tuple:
    """information_schema.columns as SQL Server describes a column init-db created."""
    null = "YES" if col.nullable else "NO"
    if col.type == "string":
        return (
            col.name,
            "nvarchar",
            col.length if (col.length or 0) <= 4000 else -1,
            None,
            None,
            null,
        )
    if col.type == "text":
        return (col.name, "nvarchar", -1, None, None, null)
    if col.type == "decimal":
        return (col.name, "decimal", None, col.precision, col.scale, null)
    return (
        col.name,
        {"datetime": "datetime2", "int": "int"}.get(col.type, col.type),
        None,
        None,
        None,
        null,
    )


class Catalogue(Database):
    """A SQL Server database created by init-db with ``created`` (the older contract), seen
    through the catalogue queries migrate sends: each named query is answered with the rows SQL
    Server would return. Nothing else is available (no connection)."""

    def __init__(self, contract: Contract, created: Contract) -> None:
        super().__init__("mssql://h/db", contract, connect=False)
        self.created = created
        self.asked: list[str] = []

    def autocommit_query(self, sql: Any, params: Any = ()) -> list[tuple]:
        name = getattr(sql, "name", "")
        self.asked.append(name)
        d, c = self.dialect, self.created
        tables = {d.qualified(c.target_schema, t.name): t for t in c.tables}
        if name in ("schema_columns", "schema_primary_key"):
            t = next((t for t in c.tables if t.name == params["table"]), None)
            if t is None:  # a tool table: there, with the column the plan looks for
                return (
                    [("contract_name", "nvarchar", 63, None, None, "YES")]
                    if name == "schema_columns"
                    else []
                )
            if name == "schema_primary_key":
                return [(k,) for k in t.primary_key]
            return [_info_schema_row(col) for col in t.stored_columns]
        if name == "schema_index_columns":
            t = tables[params["qtable"]]
            rows = [(f"pk_{t.name}", 1, 1, 0, "CLUSTERED", 0, 0, k, None) for k in t.primary_key]
            idx = list(t.indexes)
            if t.app_id_column not in t.primary_key[:1] and (t.app_id_column,) not in {
                i[1] for i in idx
            }:
                idx.append((f"ix_{t.name}_{t.app_id_column}", (t.app_id_column,)))
            rows += [
                (n, 0, 0, 0, "NONCLUSTERED", 0, 0, col, None) for n, cols in idx for col in cols
            ]
            return rows
        if name == "schema_foreign_keys":
            out = []
            for t in c.tables:
                for i, fk in enumerate(t.foreign_keys):
                    q, rq = (
                        d.qualified(c.target_schema, t.name),
                        d.qualified(c.target_schema, fk.references),
                    )
                    if params["qtable"] in (q, rq):
                        out += [
                            (
                                f"fk_{t.name}_{i + 1}",
                                c.target_schema,
                                t.name,
                                a,
                                c.target_schema,
                                fk.references,
                                b,
                                "NO_ACTION",
                                "NO_ACTION",
                            )
                            for a, b in zip(fk.columns, fk.ref_columns)
                        ]
            return out
        if name == "enum_rows":  # the database holds the contract's own ids
            return [(v.id, v.enum, v.code) for vals in c.enums.values() for v in vals]
        if name == "source_column_type":  # the users' [dbo].[app_xml].[xml]
            return [("varchar", -1, "SQL_Latin1_General_CP1_CI_AS")]
        raise AssertionError(f"unexpected query {name}")


def _tsql(script: str) -> list[Any]:
    """Every statement of a T-SQL batch, parsed (never an unparsed Command)."""
    sqlglot = pytest.importorskip("sqlglot")
    parsed = [
        p
        for p in sqlglot.parse(script, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
        if p is not None
    ]
    bad = [p.sql("tsql") for p in parsed if isinstance(p, sqlglot.exp.Command)]
    assert not bad, f"not parsed as T-SQL: {bad}"
    return parsed


def _lines(script: str) -> list[str]:
    return [ln for ln in script.splitlines() if ln and not ln.startswith("--")]


def _widen_score_identifier(c: dict) -> None:
    _col(c, "scores", "score_identifier")["length"] = 80


@pytest.mark.slow
def test_widening_a_primary_key_column_is_refused_with_the_dba_script(tmp_path):
    old = load_contract()
    db = Catalogue(load_contract(_copy(tmp_path, _widen_score_identifier)), old)
    p = migrate.plan(db)
    assert "schema_index_columns" in db.asked and "schema_foreign_keys" in db.asked
    [r] = p.refusals
    assert (r.table, r.column) == (
        "scores",
        "score_identifier",
    ) and "primary key pk_scores" in r.what
    assert "init-db --dry-run" in r.todo and r.dba is not None
    assert not any(
        "score_identifier" in s for s in p.statements
    )  # never a plain ALTER that fails on the server
    qt = db.table("scores")
    lines = _lines(p.dba_script)
    assert (
        lines[:2] == ["SET XACT_ABORT ON;", "BEGIN TRANSACTION;"]
        and lines[-1] == "COMMIT TRANSACTION;"
    )
    drop = lines.index(f"ALTER TABLE {qt} DROP CONSTRAINT [pk_scores];")
    alter = lines.index(
        f"ALTER TABLE {qt} ALTER COLUMN [score_identifier] NVARCHAR(80) {BIN2} NOT NULL;"
    )
    add = lines.index(
        f"ALTER TABLE {qt} ADD CONSTRAINT [pk_scores] PRIMARY KEY CLUSTERED ([app_id], [score_identifier]);"
    )
    assert drop < alter < add
    assert not any("fk_scores_1" in ln for ln in lines)  # its FK is on app_id: untouched
    _tsql(p.dba_script)
    text = p.render()
    assert (
        "-- REFUSED scores.score_identifier" in text and "Stop every xml-extractor instance" in text
    )
    assert text.rstrip().endswith("COMMIT TRANSACTION;\nGO")


@pytest.mark.slow
def test_run_says_what_init_db_says(tmp_path):
    db = Catalogue(load_contract(_copy(tmp_path, _widen_score_identifier)), load_contract())
    with pytest.raises(migrate.SchemaRefused) as e:
        migrate.require_current(db)
    assert str(e.value) == migrate.refusal_message(migrate.plan(db))
    assert "init-db --dry-run" in str(e.value) and "run `xml-extractor init-db`" not in str(e.value)
    assert "only a DBA script can apply" in str(e.value) and "could lose data" not in str(e.value)


def _app_id_bigint(c: dict) -> None:
    for t in c["tables"]:
        for col in t["columns"]:
            if col["name"] == "app_id":
                col["type"] = "bigint"


def test_widening_app_id_everywhere_drops_and_recreates_every_key_once(tmp_path):
    old = load_contract()
    db = Catalogue(load_contract(_copy(tmp_path, _app_id_bigint)), old)
    p = migrate.plan(db)
    assert {r.table for r in p.refusals} == {t.name for t in old.tables} and all(
        r.dba for r in p.refusals
    )
    assert not p.statements
    lines = _lines(p.dba_script)
    fks = {
        f"fk_{t.name}_{i + 1}"
        for t in old.tables
        for i, fk in enumerate(t.foreign_keys)
        if "app_id" in fk.columns
    }
    kept = {f"fk_{t.name}_{i + 1}" for t in old.tables for i, fk in enumerate(t.foreign_keys)} - fks
    assert kept and not any(k in p.dba_script for k in kept)  # con_id keys: not touched
    first_alter = min(i for i, ln in enumerate(lines) if "ALTER COLUMN" in ln)
    last_alter = max(i for i, ln in enumerate(lines) if "ALTER COLUMN" in ln)
    for fk in fks:
        dropped = [i for i, ln in enumerate(lines) if f"DROP CONSTRAINT [{fk}]" in ln]
        added = [i for i, ln in enumerate(lines) if f"ADD CONSTRAINT [{fk}] FOREIGN KEY" in ln]
        assert (
            len(dropped) == len(added) == 1 and dropped[0] < first_alter and added[0] > last_alter
        ), fk
    for t in old.tables:
        qt = db.table(t.name)
        assert f"ALTER TABLE {qt} ALTER COLUMN [app_id] BIGINT NOT NULL;" in lines
        created = [i for i, ln in enumerate(lines) if f"ADD CONSTRAINT [pk_{t.name}]" in ln]
        if (
            "app_id" not in t.primary_key
        ):  # (con_id): the key stays, only the app_id index is rebuilt
            assert not created and f"DROP CONSTRAINT [pk_{t.name}]" not in p.dba_script
            for name, _ in t.indexes:
                assert lines.index(f"DROP INDEX [{name}] ON {qt};") < first_alter
                assert (
                    lines.index(f"CREATE NONCLUSTERED INDEX [{name}] ON {qt} ([app_id]);")
                    > last_alter
                )
            continue
        pk_drop = lines.index(f"ALTER TABLE {qt} DROP CONSTRAINT [pk_{t.name}];")
        assert pk_drop < first_alter and len(created) == 1 and created[0] > last_alter
    _tsql(p.dba_script)


def test_widening_an_unindexed_column_still_alters(tmp_path):
    def widen(c: dict) -> None:
        _col(c, "app_base", "campaign_num")["length"] = 20

    db = Catalogue(load_contract(_copy(tmp_path, widen)), load_contract())
    p = migrate.plan(db)
    assert not p.refusals and not p.dba_script
    assert p.statements == [
        f"ALTER TABLE {db.table('app_base')} ALTER COLUMN [campaign_num] NVARCHAR(20) NULL"
    ]
    _tsql(p.statements[0])


def test_index_rules_of_alter_column():
    """ALTER TABLE docs: a column in an index may grow only as (n)varchar, not in the primary key,
    and an index key never becomes NVARCHAR(MAX)."""
    t = "[dbo].[t]"
    ix = migrate.IndexFact(t, "ix_t_c", keys=(("c", False),), included=("d",))
    facts = migrate.TableFacts([ix])
    C, T, I = migrate.ColType, "char", "int"
    assert migrate.mssql_alter_blockers(t, "c", C(T, 10), C(T, 20), facts) == ([], True)
    assert migrate.mssql_alter_blockers(t, "c", C(I, 4), C(I, 8), facts) == (
        ["in index ix_t_c"],
        True,
    )
    assert migrate.mssql_alter_blockers(t, "c", C(T, 10), C("text"), facts)[1] is False
    assert migrate.mssql_alter_blockers(t, "d", C(T, 10), C("text"), facts) == (
        ["in index ix_t_c"],
        True,
    )
    assert migrate.mssql_alter_blockers(t, "x", C(I, 4), C(I, 8), facts) == ([], True)
    fk = migrate.ForeignKeyFact("fk_u_1", "[dbo].[u]", ("c",), t, ("c",))
    assert migrate.mssql_alter_blockers(t, "c", C(T, 10), C(T, 20), migrate.TableFacts([], [fk]))[
        0
    ] == ["in foreign key fk_u_1"]


def test_widening_an_index_key_to_max_is_refused_without_a_script(tmp_path):
    def to_max(c: dict) -> None:
        _col(c, "scores", "score_identifier")["length"] = 5000

    db = Catalogue(load_contract(_copy(tmp_path, to_max)), load_contract())
    p = migrate.plan(db)
    [r] = p.refusals
    assert "cannot be NVARCHAR(MAX)" in r.what and r.dba is None and not p.dba_script


def test_mssql_catalogue_queries_parse_as_tsql():
    db = Database("mssql://h/db", load_contract(), connect=False)
    for name in ("schema_index_columns", "schema_foreign_keys"):
        assert len(_tsql(str(db.sql(name)))) == 1


# -- init-db: a refused statement is one clear line ----------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_init_db_names_the_statement_the_database_refuses(db_url, tmp_path):
    """PostgreSQL cannot change the type of a column a view reads: a real refusal of the plan's
    ALTER (SQLite stores any length: it has nothing to alter)."""
    cli_in_process("init-db", "--db", db_url, check=True)
    old = load_contract()
    db = Database(db_url, old)
    try:
        db.execute(
            f"CREATE VIEW {db.dialect.qualified(old.target_schema, 'campaigns')} AS "
            f"SELECT app_id, campaign_num FROM {db.table('app_base')}"
        ).close()
        db.commit()
    finally:
        db.close()

    def widen(c: dict) -> None:
        _col(c, "app_base", "campaign_num")["length"] = 20

    new = _copy(tmp_path, widen)
    p = cli_in_process("init-db", "--db", db_url, "--contract", new)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert (
        'could not apply: ALTER TABLE "sandbox"."app_base" ALTER COLUMN "campaign_num" TYPE VARCHAR(20)'
        in p.stderr
    ), p.stderr
    assert "view" in p.stderr.lower() and "init-db --dry-run" in p.stderr
    dry = cli_in_process(
        "init-db", "--db", db_url, "--contract", new, "--dry-run", check=True
    ).stdout
    assert "campaign_num" in dry  # nothing was applied: still planned


# -- string capacity in UTF-16 units -----------------------------------------------------------------


def _doc(campaign: str) -> str:
    return (
        '<Provenir><Request ID="7"><CustData><application app_receive_date="2025-01-02" '
        f'campaign_num="{campaign}"><app_product regb_start_date="2025-01-02"/></application></CustData>'
        '<Reports><Report><x a="1"/></Report></Reports></Request></Provenir>'
    )


@pytest.mark.parametrize(
    "value, cut",
    [
        ("abcdefgh\U0001f600i", "abcdefgh\U0001f600"),  # 10 characters, 11 units
        ("abcdefghi\U0001f600", "abcdefghi"),
    ],
)  # the pair is not split
def test_emoji_at_the_limit_is_truncated_in_utf16_units_for_sql_server_only(tmp_path, value, cut):
    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.contract.converters import utf16_length
    from xml_extractor.mapping import map_document

    def truncate(c: dict) -> None:
        _col(c, "app_base", "campaign_num")["on_invalid"] = "truncate"

    contract = load_contract(_copy(tmp_path, truncate))
    assert len(value) == 10 and utf16_length(value) == 11
    sqlite_run = map_document(compile_contract(contract, "sqlite"), _doc(value), expected_app_id=7)
    assert sqlite_run.as_dicts(compile_contract(contract))["app_base"][0]["campaign_num"] == value
    assert not [e for e in sqlite_run.events if e[1] == "campaign_num"]
    plan = compile_contract(contract, "mssql")
    mssql_run = map_document(plan, _doc(value), expected_app_id=7)
    stored = mssql_run.as_dicts(plan)["app_base"][0]["campaign_num"]
    assert stored == cut and utf16_length(stored) <= 10
    [ev] = [e for e in mssql_run.events if e[1] == "campaign_num"]
    assert ev[2] == "value_truncated" and "11 UTF-16 units" in ev[4] and ev[3] == value


def test_default_policy_under_sql_server_is_null_with_an_event():
    from xml_extractor.contract.compiler import compile_contract
    from xml_extractor.mapping import map_document

    value = "\U0001f600" * 6  # 6 characters in string(10), 12 UTF-16 units
    r = map_document(compile_contract(load_contract(), "mssql"), _doc(value), expected_app_id=7)
    assert r.rows["app_base"] and [e[2] for e in r.events if e[1] == "campaign_num"] == [
        "value_rejected"
    ]
    r = map_document(compile_contract(load_contract()), _doc(value), expected_app_id=7)
    assert not [e for e in r.events if e[1] == "campaign_num"]


def test_locator_fits_its_column_in_utf16_units():
    from xml_extractor.contract.converters import utf16_length
    from xml_extractor.mapping import LOCATOR_LIMIT, fit_locator

    assert fit_locator("application/contact[2]") == "application/contact[2]"
    long = "/".join(["\U0001f600x"] * 200)
    cut = fit_locator(long)
    assert utf16_length(cut) <= LOCATOR_LIMIT and cut.startswith("…") and long.endswith(cut[1:])


# -- keys compared as the other engines compare them ---------------------------------------------


@pytest.mark.parametrize("dialect", ["mssql", "postgresql", "sqlite"])
def test_key_collation_on_exactly_the_string_key_columns(dialect):
    contract = load_contract()
    out = cli_in_process("init-db", "--print", "--dialect", dialect, check=True).stdout
    found = set()
    for m in re.finditer(r"CREATE TABLE \S+\.\[(\w+)\] \((.*?)\n\)", out, re.S):
        for line in m.group(2).splitlines():
            if "COLLATE" in line:
                found.add((m.group(1), re.search(r"\[(\w+)\]", line).group(1)))  # type: ignore[union-attr]
    if dialect != "mssql":
        assert "COLLATE" not in out
        return
    want = {(contract.enum_table, "type"), (contract.enum_table, "value")}
    want.add(("reprocess_command", "command"))  # reprocess's recorded commands, keyed by their text
    want |= {
        (t.name, c.name)
        for t in contract.tables
        for c in t.stored_columns
        if c.type == "string" and c.name.lower() in key_columns(t)
    }
    assert want >= {
        ("scores", "score_identifier"),
        ("indicators", "indicator"),
        ("app_historical_lookup", "name"),
        ("app_historical_lookup", "source"),
    }
    assert found == want
    assert out.count(BIN2) == len(want)


def test_profile_of_a_sql_server_database_measures_lengths_in_its_unit():
    from xml_extractor.profile import make_profiler

    value = (
        "\U0001f600" * 6
    )  # 6 characters, 12 UTF-16 units: string(10) holds it only on the other engines
    longest = {}
    for dialect in (None, "mssql"):
        prof = make_profiler([load_contract()], "test", dialect)
        prof.add(_doc(value), 7)
        longest[dialect] = prof.report.columns[("app_base", "campaign_num")].longest
    assert longest == {None: 6, "mssql": 12}
