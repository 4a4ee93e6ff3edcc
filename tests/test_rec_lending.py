"""The rec-lending (RL) contract on its real-shaped sample, and the generic contract features it
needs (attribute groups, renamed unpivot rows, values of a kept row, ADD_DAYS): each feature is
also tested on a small contract of its own, so that none depends on RL names."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import cli_in_process

from xml_extractor.contract.compiler import compile_contract
from xml_extractor.contract.loader import contract_from_dict, load_contract
from xml_extractor.errors import ContractError
from xml_extractor.mapping import map_document

SAMPLE = Path(__file__).parent / "data" / "sample-rl-600000.xml"


@pytest.fixture(scope="module")
def sample_rows() -> dict:
    p = cli_in_process(
        "map", str(SAMPLE), "--contract", "rec_lending", "--format", "json", check=True
    )
    return json.loads(p.stdout)


def test_sample_maps_into_at_least_twelve_tables(sample_rows: dict) -> None:
    assert sample_rows["status"] == "success" and sample_rows["app_id"] == 600000
    tables = sample_rows["tables"]
    assert len(tables) >= 12, sorted(tables)
    for t in (
        "app_base",
        "app_contact_base",
        "app_contact_address",
        "app_contact_employment",
        "scores",
        "app_historical_lookup",
        "app_operational_rl",
        "app_pricing_rl",
        "app_dealer_rl",
        "app_collateral_rl",
        "app_funding_rl",
        "app_funding_contract_rl",
        "app_funding_checklist_rl",
    ):
        assert tables.get(t), t


def test_sample_values(sample_rows: dict) -> None:
    t = sample_rows["tables"]
    (coll,) = t["app_collateral_rl"]  # coll2..4 hold only value="0": no rows of them
    assert (coll["collateral_number"], coll["vin"], coll["make"], coll["model"], coll["year"]) == (
        1,
        "3EF3984GU4E98RH",
        "AIRSTREAM",
        "RANGELINE",
        2025,
    )
    assert coll["mileage"] == 2334 and coll["new_used_demo"] == "N" and coll["used_flag"] == 0
    rl_enums = load_contract("rec_lending").enums
    ids = {(e, v.code): v.id for e, vals in rl_enums.items() for v in vals}
    assert coll["collateral_type_enum"] == ids[("collateral_type", "RV")]
    assert t["app_dealer_rl"][0]["dealer_name"] == "Mickey Mouse RV"
    assert t["app_dealer_rl"][0]["dealer_num_child"] == 605072  # the first non-empty dlr_num_*
    (pr,) = t["app_contact_base"]
    assert (pr["con_id"], pr["first_name"], pr["last_name"], pr["ssn"]) == (
        645981,
        "MAGDA",
        "RODRIGUEZ-LOPEZ",
        "666192484",
    )
    (addr,) = t["app_contact_address"]  # CURR; PREV is empty; COLL and PATR are dropped with events
    assert (
        addr["street_name"],
        addr["city"],
        addr["state"],
        addr["zip"],
        addr["months_at_address"],
    ) == ("RIDGE ST", "MARQUETTE", "MI", "49855", 56)
    dropped = [e for e in sample_rows["events"] if e["event_type"] == "row_dropped"]
    assert sorted(e["raw_value"] for e in dropped) == ["COLL", "PATR"]
    scores = {r["score_identifier"]: Decimal(r["score"]) for r in t["scores"]}
    assert scores == {"V4_pr": 698, "V4_sec": 0, "CRI_pr": 611, "MRV_pr": 550}
    assert "app_warranties_rl" not in t  # the sample's backend policies are empty: no row
    assert "app_policy_exceptions_rl" not in t
    op = t["app_operational_rl"][0]
    assert op["housing_monthly_payment_pr"] == "0.0000"  # from the kept PR contact's CURR address
    assert op.get("housing_monthly_payment_sec") is None
    assert op["regb_start_date"].startswith("2025-08-27 19:02:04")
    assert op.get("regb_end_date") is None  # regb_closed_days_num is 0
    assert t["app_base"][0]["ip_address"] == "44.232.55.211:52476, 10.254.22.183"


def _rl_doc(**collateral: str) -> str:
    text = SAMPLE.read_text("utf-8-sig")
    start = text.index("<IL_collateral ")
    end = text.index("/>", start) + 2
    attrs = " ".join(f'{k}="{v}"' for k, v in collateral.items())
    text = text[:start] + f"<IL_collateral {attrs} />" + text[end:]
    return text.replace(
        '<IL_backend_policies service_contract_amount=""',
        '<IL_backend_policies gap_company="GAP Co" gap_amount="795.00" gap_term="72" gap_lien="Y" '
        'ext_warranty_company="Warrantech" ext_warranty_amount="2100" ext_warranty_term="60" '
        'service_contract_amount=""',
        1,
    )


def test_four_collateral_groups_and_warranties() -> None:
    plan = compile_contract(load_contract("rec_lending"))
    doc = _rl_doc(
        coll1_VIN="VIN1",
        coll1_make="FOREST RIVER",
        coll1_year="2020",
        coll2_make="MERCURY",
        coll2_HP_Marine="150",
        coll2_year="2019",
        coll3_make="EZ LOADER",
        coll3_model="TRAILER",
        coll3_year="2018",
        coll4_make="YAMAHA",
        coll4_year="2017",
        coll4_value="0",
    )
    m = map_document(plan, doc)
    rows = m.as_dicts(plan)
    colls = {r["collateral_number"]: r for r in rows["app_collateral_rl"]}
    assert sorted(colls) == [1, 2, 3, 4]
    ids = {
        (e, v.code): v.id for e, vals in load_contract("rec_lending").enums.items() for v in vals
    }
    assert (
        colls[2]["motor_size"] == 150
        and colls[2]["collateral_type_enum"] == ids[("collateral_type", "ENGINE")]
    )
    assert colls[3]["collateral_type_enum"] == ids[("collateral_type", "OTHER TRAILER")]
    w = {r["warranty_type_enum"]: r for r in rows["app_warranties_rl"]}
    assert set(w) == {ids[("warranty_type", "GAP")], ids[("warranty_type", "Extended Warranty")]}
    gap = w[ids[("warranty_type", "GAP")]]
    assert (
        gap["company_name"],
        gap["amount"],
        gap["term_months"],
        gap["merrick_lienholder_flag"],
    ) == ("GAP Co", Decimal("795.0000"), 72, 1)


def test_second_contact_and_its_values() -> None:
    plan = compile_contract(load_contract("rec_lending"))
    text = SAMPLE.read_text("utf-8-sig")
    sec = (
        '<IL_contact first_name="JO" last_name="ROE" con_id="645982" ac_role_tp_c="SEC" ssn="666192485" loanpro_customer_id="77">'
        '<IL_contact_address address_type_code="CURR" city="X" residence_monthly_pymnt="1250.50" />'
        '</IL_contact><IL_contact con_id="645983" ac_role_tp_c="AUTHU" first_name="NO" />'
    )
    text = text.replace("<IL_Indicators>", sec + "<IL_Indicators>", 1)
    m = map_document(plan, text)
    rows = m.as_dicts(plan)
    assert sorted(r["con_id"] for r in rows["app_contact_base"]) == [645981, 645982]
    op = rows["app_operational_rl"][0]
    assert op["housing_monthly_payment_sec"] == Decimal("1250.5000")
    assert rows["app_funding_rl"][0]["loanpro_customer_id_sec"] == 77
    assert any(e[2] == "row_dropped" and e[3] == "AUTHU" for e in m.events)


# ---- the generic features, each on a contract of its own ----------------------------------------


def _tiny(tables: list, enums: dict | None = None) -> dict:
    return {
        "name": "tiny",
        "version": "1",
        "source": {"table": "src", "id_column": "id", "xml_column": "xml"},
        "target_schema": "t",
        "document": {"root": "R", "id_path": "D/@id", "scope": "D", "record_path": "D/rec"},
        "enums": enums or {},
        "tables": tables,
    }


def _doc(body: str) -> str:
    return f'<R><D id="7"><rec a="1">{body}</rec></D></R>'


def test_attribute_groups_become_rows_with_their_key() -> None:
    raw = _tiny(
        [
            {
                "name": "item",
                "primary_key": ["app_id", "n"],
                "rows": {
                    "groups": {
                        "of": "box",
                        "present_if": ["what"],
                        "groups": [
                            {"key": 1, "attributes": {"what": "w1", "qty": "q1"}},
                            {"key": 2, "attributes": {"what": "w2", "qty": "q2"}},
                            {"key": 3, "attributes": {"what": "w3"}},
                        ],
                    }
                },
                "columns": [
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                    {"name": "n", "type": "int", "nullable": False, "group": "key"},
                    {"name": "what", "type": "string", "length": 5, "group": "what"},
                    {"name": "qty", "type": "int", "group": "qty"},
                ],
            }
        ]
    )
    plan = compile_contract(contract_from_dict(raw))
    m = map_document(plan, _doc('<box w1="a" q1="3" w2="" q2="9" w3="toolong"/>'))
    assert m.rows["item"] == [(7, 1, "a", 3), (7, 3, None, None)]  # group 2 has no 'what': no row
    assert any(
        e[2] == "value_rejected" and "group 3" in e[4] for e in m.events
    )  # events name the group
    bad = copy.deepcopy(raw)
    bad["tables"][0]["rows"]["groups"]["groups"][0]["attributes"]["nope"] = "x"
    with pytest.raises(ContractError, match="no column reads the field 'nope'"):
        contract_from_dict(bad)


def test_kept_row_values_and_renamed_unpivot() -> None:
    raw = _tiny(
        [
            {
                "name": "person",
                "primary_key": ["pid"],
                "rows": {"for_each": "p", "allowed": {"attribute": "role", "values": ["A", "B"]}},
                "columns": [
                    {"name": "pid", "type": "int", "nullable": False, "attribute": "pid"},
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                ],
            },
            {
                "name": "summary",
                "primary_key": ["app_id"],
                "rows": {"for_each": "."},
                "columns": [
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                    {
                        "name": "b_pid",
                        "type": "int",
                        "kept": {
                            "table": "person",
                            "where": {"attribute": "role", "value": "b"},
                            "column": "pid",
                        },
                    },
                    {
                        "name": "b_city",
                        "type": "string",
                        "length": 9,
                        "kept": {
                            "table": "person",
                            "where": {"attribute": "role", "value": "B"},
                            "path": "addr/@city",
                        },
                    },
                    {"name": "due", "type": "date", "expression": "ADD_DAYS(DATE '2024-02-27', 3)"},
                ],
            },
            {
                "name": "score",
                "primary_key": ["app_id", "name"],
                "rows": {
                    "unpivot": {"of": ".", "names": ["a", {"attribute": "b", "name": "b_role2"}]}
                },
                "columns": [
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                    {
                        "name": "name",
                        "type": "string",
                        "length": 10,
                        "nullable": False,
                        "unpivot": "name",
                    },
                    {"name": "v", "type": "int", "unpivot": "value"},
                ],
            },
        ]
    )
    plan = compile_contract(contract_from_dict(raw))
    m = map_document(
        plan,
        '<R><D id="7"><rec a="1" b="2"><p pid="1" role="A"/><p pid="2" role="B"><addr city="Oslo"/></p>'
        '<p pid="3" role="C"/></rec></D></R>',
    )
    assert m.rows["summary"][0][1:3] == (2, "Oslo")
    assert str(m.rows["summary"][0][3]) == "2024-03-01"
    assert m.rows["score"] == [(7, "a", 1), (7, "b_role2", 2)]
    bad = copy.deepcopy(raw)
    bad["tables"][1]["columns"][1]["kept"]["table"] = "score"
    with pytest.raises(ContractError, match="must be a table defined earlier"):
        contract_from_dict(bad)


@pytest.mark.slow
def test_contract_by_name_or_path(tmp_path: Path) -> None:
    assert load_contract("rec_lending").name == "rec_lending"
    packaged = Path(load_contract("rec_lending").path)
    copy_path = tmp_path / "mine.json"
    copy_path.write_text(packaged.read_text("utf-8"), "utf-8")
    assert load_contract(str(copy_path)).name == "rec_lending"
    with pytest.raises(ContractError, match="no packaged contract named 'nope'"):
        load_contract("nope")
    p = cli_in_process("validate-contract", "rec_lending")
    assert p.returncode == 0 and "rec_lending@1.1.0" in p.stdout


@pytest.mark.slow
def test_generated_rl_documents_have_the_real_shape() -> None:
    """generate-mock --product rl: one to four collaterals, PR alone or PR + SEC, some backend
    policies, the ~145 KB median of the real documents; faults fail at their stage."""
    import statistics

    from xml_extractor.errors import DocumentFailure
    from xml_extractor.mock_rl import RLMockGenerator, fault_stage

    plan = compile_contract(load_contract("rec_lending"))
    gen = RLMockGenerator(seed=4, faulty_share=0.1)
    sizes, colls, roles, warranties, stages, shapes = [], set(), set(), 0, [], set()
    for d in gen.documents(1, 120):
        sizes.append(len(d.text.encode("utf-8")))
        try:
            m = map_document(plan, d.text, expected_app_id=d.row_app_id, min_length=20)
        except DocumentFailure as f:
            stages.append((d.fault, f.stage, fault_stage(d.fault or "")))
            continue
        assert d.fault in (None, "con_id_collision"), d.fault
        rows = m.as_dicts(plan)
        colls.add(len(rows.get("app_collateral_rl", [])))
        roles.add(tuple(sorted(r["contact_type_enum"] for r in rows["app_contact_base"])))
        warranties += len(rows.get("app_warranties_rl", []))
        assert not [e for e in m.events if e[2] == "unmapped_record"]
        if (
            "</IL_application>\n<IL_contact" in d.text
        ):  # the PR contact beside IL_application: mapped
            shapes.add("beside")
            assert d.app_id * 10 + 1 in {r["con_id"] for r in rows["app_contact_base"]} or d.fault
        if f'con_id="{d.app_id * 10 + 4}"' in d.text:  # a blank SEC contact: dropped with an event
            shapes.add("blank SEC")
            assert [e for e in m.events if e[2] == "row_dropped" and "not a real contact" in e[4]]
    assert 100_000 < statistics.median(sizes) < 200_000
    assert {1, 2, 3, 4} <= colls
    assert len(roles) == 2  # PR alone, PR + SEC
    assert warranties > 10
    assert shapes == {"beside", "blank SEC"}
    assert stages and all(got == want for _, got, want in stages)


def test_generate_mock_product_cli(tmp_path: Path) -> None:
    out = tmp_path / "rl"
    p = cli_in_process(
        "generate-mock", "--product", "rl", "--count", "5", "--out", str(out), check=True
    )
    assert "generated 5 documents" in p.stdout
    m = cli_in_process(
        "map",
        str(next(out.glob("*.xml"))),
        "--contract",
        "rec_lending",
        "--format",
        "json",
        check=True,
    )
    assert json.loads(m.stdout)["tables"]["app_collateral_rl"]


def _people(rows: dict) -> dict:
    return _tiny(
        [
            {
                "name": "person",
                "primary_key": ["pid"],
                "rows": rows,
                "columns": [
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                    {"name": "pid", "type": "int", "nullable": False, "attribute": "pid"},
                    {"name": "ssn", "type": "string", "length": 9, "attribute": "ssn"},
                ],
            },
            {
                "name": "phone",
                "primary_key": ["pid", "n"],
                "rows": {"for_each": "phone", "parent_table": "person"},
                "columns": [
                    {"name": "app_id", "type": "int", "nullable": False, "context": "app_id"},
                    {"name": "pid", "type": "int", "nullable": False, "parent": "pid"},
                    {
                        "name": "n",
                        "type": "string",
                        "length": 12,
                        "nullable": False,
                        "attribute": "n",
                    },
                ],
            },
        ]
    )


def test_also_at_and_unmapped_record_events() -> None:
    """Elements of a kind a generator reads: mapped where the contract says they may be (also_at),
    an unmapped_record event anywhere else in the scope (once, for the outermost)."""
    doc = _doc('<p pid="1"><phone n="5551"/></p>').replace(
        "</rec>",
        '</rec><p pid="2"><phone n="5552"/></p>'
        '<x><p pid="3"><phone n="5553"/></p></x><phone n="9"/>',
    )
    plain = compile_contract(contract_from_dict(_people({"for_each": "p"})))
    m = map_document(plain, doc)
    assert m.rows["person"] == [(7, 1, None)] and m.rows["phone"] == [(7, 1, "5551")]
    unmapped = [(e[0], e[5]) for e in m.events if e[2] == "unmapped_record"]
    assert unmapped == [("person", "R/D/p"), ("person", "R/D/x/p"), ("phone", "R/D/phone")]
    also = compile_contract(contract_from_dict(_people({"for_each": "p", "also_at": ["../p"]})))
    m = map_document(also, doc)
    assert m.rows["person"] == [(7, 1, None), (7, 2, None)]
    assert m.rows["phone"] == [(7, 1, "5551"), (7, 2, "5552")]  # children follow their parent
    assert [e[5] for e in m.events if e[2] == "unmapped_record"] == ["R/D/x/p", "R/D/phone"]


def test_drop_when_blank_drops_the_element_and_its_children() -> None:
    rows = {
        "for_each": "p",
        "drop_when_blank": {
            "attributes": ["ssn"],
            "where": {"attribute": "role", "values": ["SEC"]},
        },
        "drop_event": "person",
    }
    plan = compile_contract(contract_from_dict(_people(rows)))
    m = map_document(
        plan,
        _doc(
            '<p pid="1" role="PR" ssn=""/><p pid="2" role="sec" ssn=" "><phone n="1"/><phone n="2"/></p>'
            '<p pid="3" role="SEC" ssn="123456789"/>'
        ),
    )
    assert m.rows["person"] == [
        (7, 1, None),
        (7, 3, "123456789"),
    ]  # PR without ssn kept: the rule is SEC only
    assert "phone" not in m.rows
    (e,) = [e for e in m.events if e[2] == "row_dropped"]
    assert e[0] == "person" and e[3] == "pid 2"
    assert (
        e[4]
        == "person pid 2 dropped: ssn empty (role sec), not a real person; with it 2 phone not mapped"
    )
    assert not [
        e for e in m.events if e[2] == "unmapped_record"
    ]  # under a dropped element: its event says so
