"""Contract validation: every error names its place in the contract and what is wrong."""

import copy
import json

import pytest
from conftest import cli_in_process

from xml_extractor.contract.loader import contract_from_dict, load_contract
from xml_extractor.errors import ContractError


@pytest.fixture(scope="module")
def raw():
    return load_contract().raw


def broken(raw, mutate):
    c = copy.deepcopy(raw)
    mutate(c)
    with pytest.raises(ContractError) as e:
        contract_from_dict(c, "c.json")
    return str(e.value)


def table(c, name):
    return next(t for t in c["tables"] if t["name"] == name)


def col(c, tname, cname):
    return next(x for x in table(c, tname)["columns"] if x["name"] == cname)


def test_default_contract_is_valid_and_maps_most_attributes(raw):
    c = load_contract()
    mapped = sum(
        1 for t in c.tables for x in t.columns if "attribute" in x.spec or "path" in x.spec
    )
    assert mapped >= 200 and len(c.tables) >= 12
    assert {
        "app_base",
        "app_contact_base",
        "app_contact_address",
        "app_contact_employment",
        "scores",
        "indicators",
        "app_historical_lookup",
        "app_operational_cc",
        "app_pricing_cc",
        "app_transactional_cc",
        "app_solicited_cc",
    } <= {t.name for t in c.tables}


@pytest.mark.parametrize(
    "mutate,expect",
    [
        (lambda c: c.pop("tables"), "(top level): 'tables' is a required property"),
        (
            lambda c: c.update(target_schema="x; DROP TABLE y"),
            "target_schema: 'x; DROP TABLE y' does not match",
        ),
        (lambda c: table(c, "app_base").update(name='app"base'), "tables[0].name"),
        (
            lambda c: col(c, "app_base", "campaign_num").update(name="a b"),
            "tables[0].columns[6].name",
        ),
        (
            lambda c: col(c, "app_base", "campaign_num").update(type="varchar"),
            "tables[0].columns[6].type",
        ),
        (
            lambda c: col(c, "app_base", "campaign_num").pop("length"),
            "'length' is a required property",
        ),
        (lambda c: col(c, "app_base", "campaign_num").update(on_invalid="explode"), "on_invalid"),
        (lambda c: c["source"].update(table="app_xml--"), "source.table"),
        (lambda c: c["enums"]["decision"]["values"][0].update(id=0), "enums.decision.values[0].id"),
        (
            lambda c: table(c, "app_contact_base")["rows"].update(
                drop_when_blank={"where": {"attribute": "a", "values": ["SEC"]}}
            ),
            "tables[5].rows.drop_when_blank: 'attributes' is a required property",
        ),
        (
            lambda c: table(c, "app_contact_base")["rows"].update(also_at="../contact"),
            "tables[5].rows.also_at: '../contact' is not of type 'array'",
        ),
    ],
)
def test_schema_errors_name_the_path(raw, mutate, expect):
    assert expect in broken(raw, mutate)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mutate,expect",
    [
        (
            lambda c: col(c, "app_base", "app_type_enum").update(enum="nope"),
            "tables[0].columns[3].enum: unknown enum 'nope'",
        ),
        (lambda c: c["enums"]["app_type"]["values"][1].update(id=1), "duplicate id 1"),
        (lambda c: c["enums"]["app_type"]["values"][1].update(id=10), "already used by enum"),
        (
            lambda c: table(c, "app_base").update(
                foreign_keys=[
                    {"columns": ["app_id"], "references": "scores", "ref_columns": ["app_id"]}
                ]
            ),
            "must be a table defined earlier",
        ),
        (
            lambda c: col(c, "app_base", "app_id").update(nullable=True),
            "must be declared nullable: false",
        ),
        (
            lambda c: col(c, "app_base", "campaign_num").update(pattern="(["),
            "not a valid regular expression",
        ),
        (
            lambda c: col(c, "app_contact_address", "months_at_address").update(
                expression="months_at_residence + nope"
            ),
            "unknown column 'nope'",
        ),
        (
            lambda c: col(c, "app_contact_address", "months_at_address").update(
                expression="FOO(1)"
            ),
            "unknown function FOO()",
        ),
        (
            lambda c: col(c, "app_contact_address", "months_at_address").update(expression="(1 + "),
            "expected",
        ),
        (
            lambda c: col(c, "app_base", "campaign_num").update(on_invalid="truncate", type="int"),
            "applies to string columns only",
        ),
        (lambda c: col(c, "app_base", "campaign_num").pop("attribute"), "has no value source"),
        (lambda c: col(c, "app_base", "decision_enum").update(path="app_product/@x[y"), "bad"),
        (
            lambda c: (
                col(c, "app_base", "campaign_num").update(parent="con_id", attribute=None)
                or col(c, "app_base", "campaign_num").pop("attribute")
            ),
            "only generators with a parent_table",
        ),
        (
            lambda c: table(c, "app_contact_address")["rows"].update(parent_table="indicators"),
            "must be a table defined earlier",
        ),
        (
            lambda c: (
                [
                    x.pop("context")
                    for x in table(c, "indicators")["columns"]
                    if x["name"] == "app_id"
                ]
                and [
                    x.update(constant=1)
                    for x in table(c, "indicators")["columns"]
                    if x["name"] == "app_id"
                ]
            ),
            'needs a stored column with "context": "app_id"',
        ),
        (
            lambda c: c["document"].update(scope="Request/Other"),
            "must contain document.record_path",
        ),
        (
            lambda c: table(c, "app_contact_base")["rows"].update(also_at=["../../../contact"]),
            "tables[5].rows.also_at[0]: path '../../../contact' leaves document.scope (at most 1 '..' from the record element)",
        ),
        (
            lambda c: table(c, "app_contact_base")["rows"].update(also_at=["../contact/@x"]),
            "tables[5].rows.also_at[0]: path",
        ),
        (
            lambda c: table(c, "app_contact_address")["rows"].update(
                also_at=["../contact_address"]
            ),
            "tables[6].rows.also_at: a generator with a parent_table reads under its parent's rows",
        ),
        (
            lambda c: table(c, "scores")["rows"][0].update(drop_when_blank={"attributes": ["x"]}),
            "tables[9].rows[0].drop_when_blank: only for_each generators drop elements",
        ),
    ],
)
def test_semantic_errors_name_the_place(raw, mutate, expect):
    assert expect in broken(raw, mutate)


def test_validate_contract_cli(tmp_path, raw):
    p = cli_in_process("validate-contract", check=True)
    assert p.stdout.startswith("ok: credit_card")
    bad = copy.deepcopy(raw)
    bad["tables"][0]["columns"][3]["enum"] = "nope"
    f = tmp_path / "c.json"
    f.write_text(json.dumps(bad))
    p = cli_in_process("validate-contract", str(f))
    assert p.returncode == 2 and "unknown enum 'nope'" in p.stderr
    f.write_text("{not json")
    p = cli_in_process("validate-contract", str(f))
    assert p.returncode == 2 and "not valid JSON" in p.stderr
    p = cli_in_process("validate-contract", str(tmp_path / "missing.json"))
    assert p.returncode == 2 and "not found" in p.stderr
    f.write_bytes(
        '{"name": "café"}'.encode("latin-1")
    )  # was a UnicodeDecodeError traceback, exit 1
    p = cli_in_process("validate-contract", str(f))
    assert p.returncode == 2 and "not UTF-8" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_validated_digests_are_the_packaged_contracts_as_they_validate_today():
    """contracts/validated.sha256 lets a packaged contract skip the JSON Schema pass: it must list
    exactly the packaged contracts' bytes (with the schema's), each of which validates."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "refresh", ROOT / "scripts" / "refresh_contract_digests.py"
    )
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    listed = (ROOT / "xml_extractor" / "contracts" / "validated.sha256").read_text("utf-8")
    assert listed == refresh.expected_listing(), (
        "a packaged contract or schema.json changed: python scripts/refresh_contract_digests.py"
    )


def test_only_the_listed_bytes_skip_the_schema_pass(tmp_path, raw):
    """A packaged contract loads without importing jsonschema (a fresh process); the same contract
    with one schema error, or merely re-serialised (other bytes), is validated."""
    import subprocess
    import sys

    from conftest import _child_env

    probe = (
        "import sys; from xml_extractor import load_contract; "
        "[load_contract(n) for n in ('credit_card', 'rec_lending')]; "
        "print('jsonschema' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_child_env(None)
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr
    bad = copy.deepcopy(raw)
    bad["tables"][0]["surprise"] = 1  # only the schema refuses it (additionalProperties)
    f = tmp_path / "c.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(ContractError, match="surprise"):
        load_contract(str(f))
    f.write_text(json.dumps(raw, indent=1))  # valid, other bytes: validated, and loads
    assert load_contract(str(f)).digest == load_contract().digest


def test_a_damaged_digest_list_only_turns_the_skip_off(tmp_path, monkeypatch):
    """A validated.sha256 that is not UTF-8 (or missing) means: validate everything; never a
    traceback (it was a UnicodeDecodeError in every command, exit 1)."""
    from importlib import resources

    from xml_extractor.contract import loader

    listed = (resources.files("xml_extractor.contracts") / "validated.sha256").read_bytes()
    damaged = tmp_path / "validated.sha256"
    damaged.write_bytes(b"\xff\xfe junk\n")

    class Listing:
        def joinpath(self, name):
            return damaged

    loader.validated_digests.cache_clear()
    real_files = resources.files
    monkeypatch.setattr(
        loader.resources,
        "files",
        lambda pkg: Listing() if pkg == "xml_extractor.contracts" else real_files(pkg),
    )
    assert loader.validated_digests() == frozenset()
    loader.validated_digests.cache_clear()
    damaged.write_bytes(b"\xef\xbb\xbf" + listed.upper())  # a BOM, upper-case digests: the same
    assert loader.validated_digests() == frozenset(
        ln.split()[0] for ln in listed.decode().splitlines()
    )
    monkeypatch.undo()
    loader.validated_digests.cache_clear()  # the packaged listing again for the tests after


@pytest.mark.slow
def test_hostile_identifiers_never_reach_sql(raw):
    for evil in ['x"; DROP TABLE app_base; --', "a]b", "sandbox.x", "ä"]:
        assert "does not match" in broken(raw, lambda c: table(c, "indicators").update(name=evil))


def test_a_name_ending_in_a_newline_is_refused(raw):
    """JSON Schema patterns are matched with Python's re.search, whose ``$`` also matches before
    a final newline: a table, a column, an attribute and a document path ending in one are each
    refused, not taken as the name without it."""

    def attribute(c):
        next(x for x in table(c, "app_base")["columns"] if "attribute" in x)["attribute"] += "\n"

    for mutate in [
        lambda c: table(c, "indicators").update(name="indicators\n"),
        lambda c: col(c, "indicators", "value").update(name="value\n"),
        attribute,
        lambda c: c["document"].update(record_path=c["document"]["record_path"] + "\n"),
    ]:
        assert "does not match" in broken(raw, mutate)


def test_a_path_step_ending_in_a_newline_is_refused():
    from xml_extractor.contract.compiler import parse_path

    with pytest.raises(ContractError, match="bad path step"):
        parse_path("app_product\n/@decision_tp_c", "x", True, False)
