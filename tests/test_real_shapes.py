"""The last legacy values and the real rec-lending shapes (../shared/legacy-rules.md,
../shared/rec-lending/README.md), each through the real `map` (and `profile`) command line on
documents built from the shared samples (tests/data): the score-factor date gate, the legacy
product-line ids, banking_accounts_held and ssn_match_flag as codes, a rec-lending contact beside
IL_application, blank SEC contacts, and profile's precision-noise class and failing file names."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_in_process
from lxml import etree

DATA = Path(__file__).parent / "data"
CC_SAMPLE, RL_SAMPLE = DATA / "app-1001.xml", DATA / "sample-rl-600000.xml"


def mapped(path: Path, *contract: str) -> dict:
    p = cli_in_process("map", str(path), "--format", "json", *contract, check=True)
    return json.loads(p.stdout)


def build(sample: Path, out: Path, change) -> Path:
    """A copy of a shared sample with ``change(tree)`` applied."""
    tree = etree.parse(str(sample))
    change(tree)
    out.write_bytes(etree.tostring(tree, encoding="utf-8"))
    return out


def only(out: dict, table: str) -> dict:
    (row,) = out["tables"][table]
    return row


# -- product line ids ---------------------------------------------------------------------------------


def test_product_line_ids_are_the_legacy_ones():
    assert only(mapped(CC_SAMPLE), "app_base")["product_line_enum"] == 600
    assert (
        only(mapped(RL_SAMPLE, "--contract", "rec_lending"), "app_base")["product_line_enum"] == 602
    )


# -- score-factor date gate -----------------------------------------------------------------------------


def _score_factor_doc(
    tmp_path: Path, received: str, app_type: str, decision_model: str, code: str
) -> Path:
    def change(tree):
        app = tree.find(".//CustData/application")
        app.set("app_receive_date", received)
        app.set("app_type_code", app_type)
        app.set("population_assignment", "")
        product = app.find("app_product")
        product.set("decision_model", decision_model)
        product.set("adverse_actn1_type_cd", code)

    return build(CC_SAMPLE, tmp_path / f"sf-{app_type}-{received[:4]}.xml", change)


@pytest.mark.slow
def test_score_factor_rules_after_the_populations_only_after_2023_10_11(tmp_path):
    def factor(received, app_type, model, code):
        return only(
            mapped(_score_factor_doc(tmp_path, received, app_type, model, code)), "app_base"
        )["cb_score_factor_type_1"]

    assert (
        factor("2020-03-02 10:00:00.000", "PRODB", "TU_FICO9", "010") is None
    )  # the legacy gives nothing
    assert factor("2022-06-01 10:00:00.000", "SECURE", "DM1", "V4_81") is None
    assert factor("2022-06-01 10:00:00.000", "SECURE", "DM1", "010") is None
    assert factor("2024-01-05 10:00:00.000", "PRODB", "TU_FICO9", "010") == "00227"
    assert factor("2024-01-05 10:00:00.000", "SECURE", "DM1", "V4_81") == "V4"
    assert factor("2024-01-05 10:00:00.000", "SECURE", "DM1", "010") == "00W83"
    assert (
        factor("2023-10-11 08:30:00.000", "SECURE", "DM1", "010") == "00W83"
    )  # after 2023-10-11 00:00


# -- codes the contract kept as numbers ---------------------------------------------------------------------


@pytest.mark.slow
def test_banking_accounts_held_and_ssn_match_flag_are_codes(tmp_path):
    def change(tree):
        app = tree.find(".//CustData/application")
        app.set("ssn_match_flag", "R")
        pr, authu = app.findall("contact")[:2]
        pr.set("banking_accounts_held", "C")
        authu.set("banking_accounts_held", "B")

    out = mapped(build(CC_SAMPLE, tmp_path / "codes.xml", change))
    held = {r["con_id"]: r["banking_accounts_held"] for r in out["tables"]["app_contact_base"]}
    assert held == {900001: "C", 900002: "B"}
    assert only(out, "app_operational_cc")["ssn_match_enum"] == 150  # the legacy id of R
    assert not [
        e
        for e in out["events"]
        if e["column"] in ("banking_accounts_held", "ssn_match_enum", "ssn_match_flag")
    ]
    for code, legacy_id in (("N", 151), ("Y", 152)):
        out = mapped(
            build(
                CC_SAMPLE,
                tmp_path / f"ssn-{code}.xml",
                lambda t, c=code: t.find(".//CustData/application").set("ssn_match_flag", c),
            )
        )
        assert only(out, "app_operational_cc")["ssn_match_enum"] == legacy_id


# -- a rec-lending contact beside IL_application -----------------------------------------------------------


def _contact_beside(tree):
    custdata = tree.find(".//CustData")
    contact = custdata.find("IL_application/IL_contact")
    custdata.append(contact)  # moved: a direct child of CustData


def test_rl_contact_beside_il_application_is_mapped(tmp_path):
    inside = mapped(RL_SAMPLE, "--contract", "rec_lending")
    beside = mapped(
        build(RL_SAMPLE, tmp_path / "beside.xml", _contact_beside), "--contract", "rec_lending"
    )
    contact = only(beside, "app_contact_base")
    assert (
        contact["con_id"] == 645981
        and contact["last_name"] == "RODRIGUEZ-LOPEZ"
        and contact["ssn"] == "666192484"
    )
    for table in (
        "app_contact_base",
        "app_contact_address",
        "app_contact_employment",
        "app_historical_lookup",
    ):
        assert beside["tables"].get(table) == inside["tables"].get(table), table
    assert [e for e in beside["events"] if e["event_type"] == "unmapped_record"] == []


def test_an_element_where_the_contract_does_not_read_it_is_an_event(tmp_path):
    """The generic rule: without also_at, the contact beside the record is an unmapped_record event
    (never a silent drop); a credit-card contact beside application likewise."""
    contract = json.loads(
        (Path(__file__).parents[1] / "xml_extractor/contracts/rec_lending.json").read_text()
    )
    for t in contract["tables"]:
        for g in t["rows"] if isinstance(t["rows"], list) else [t["rows"]]:
            g.pop("also_at", None)
    (tmp_path / "rl.json").write_text(json.dumps(contract))
    out = mapped(
        build(RL_SAMPLE, tmp_path / "beside.xml", _contact_beside),
        "--contract",
        str(tmp_path / "rl.json"),
    )
    assert "app_contact_base" not in out["tables"]
    (e,) = [e for e in out["events"] if e["event_type"] == "unmapped_record"]
    assert (
        e["table"] == "app_contact_base" and e["locator"] == "Provenir/Request/CustData/IL_contact"
    )
    assert 'con_id="645981"' in e["raw_value"] and "IL_application" not in e["locator"]

    def cc_beside(tree):
        custdata = tree.find(".//CustData")
        custdata.append(custdata.find("application/contact"))

    out = mapped(build(CC_SAMPLE, tmp_path / "cc-beside.xml", cc_beside))
    (e,) = [e for e in out["events"] if e["event_type"] == "unmapped_record"]
    assert (
        e["locator"] == "Provenir/Request/CustData/contact" and 'con_id="900001"' in e["raw_value"]
    )
    assert 900001 not in {r["con_id"] for r in out["tables"]["app_contact_base"]}


# -- blank SEC contacts -------------------------------------------------------------------------------------


def test_blank_sec_contact_is_dropped_with_its_children_and_an_event(tmp_path):
    def change(tree):
        app = tree.find(".//CustData/IL_application")
        sec = etree.SubElement(
            app,
            "IL_contact",
            con_id="645982",
            ac_role_tp_c="SEC",
            ssn="",
            first_name="",
            last_name="",
            birth_date="",
        )
        etree.SubElement(
            sec, "IL_contact_address", address_type_code="CURR", city="FARGO", state="ND"
        )
        etree.SubElement(
            sec, "IL_contact_employment", employment_type_code="CURR", business_name="ACME"
        )

    out = mapped(build(RL_SAMPLE, tmp_path / "blank-sec.xml", change), "--contract", "rec_lending")
    assert [r["con_id"] for r in out["tables"]["app_contact_base"]] == [645981]
    for table in ("app_contact_address", "app_contact_employment"):
        assert {r["con_id"] for r in out["tables"][table]} == {645981}
    (e,) = [
        e
        for e in out["events"]
        if e["event_type"] == "row_dropped" and "645982" in (e["reason"] or "")
    ]
    assert e["table"] == "app_contact_base" and "ssn empty" in e["reason"] and "SEC" in e["reason"]
    assert "1 IL_contact_address" in e["reason"] and "1 IL_contact_employment" in e["reason"]


def test_sec_contact_with_an_ssn_is_kept(tmp_path):
    def change(tree):
        app = tree.find(".//CustData/IL_application")
        etree.SubElement(
            app,
            "IL_contact",
            con_id="645983",
            ac_role_tp_c="SEC",
            ssn="666192485",
            first_name="ANA",
        )

    out = mapped(build(RL_SAMPLE, tmp_path / "sec.xml", change), "--contract", "rec_lending")
    assert sorted(r["con_id"] for r in out["tables"]["app_contact_base"]) == [645981, 645983]


# -- profile: precision noise, failing files ------------------------------------------------------------------


def _noisy(tree):
    app = tree.find(".//CustData/application")
    app.find("app_product").set("monthly_income", "3333.3333333333335")
    app.find("app_product").set("monthly_debt", "994.3104166666667")
    app.find("rmts_info").set("apr", "0.22449999999999998")


def test_profile_float_noise_is_its_own_class_not_capacity_loss(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    build(CC_SAMPLE, folder / "noisy.xml", _noisy)
    p = cli_in_process("profile", str(folder), "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["capacity_loss_columns"] == []
    noise = set(r["precision_noise_columns"])
    assert {
        "app_transactional_cc.monthly_income",
        "app_transactional_cc.monthly_debt",
        "app_pricing_cc.apr",
    } <= noise
    col = next(c for c in r["columns"] if c["column"] == "monthly_income")
    assert (
        col["precision_noise"] == 1
        and col["precision_noise_examples"][0]["raw"] == "3333.3333333333335"
    )
    text = cli_in_process("profile", str(folder))
    assert (
        text.returncode == 0
        and "precision noise" in text.stdout
        and "monthly_income" in text.stdout
    )


@pytest.mark.slow
def test_profile_names_failing_files_and_exits_1_only_for_capacity_loss(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    build(CC_SAMPLE, folder / "noisy.xml", _noisy)
    shutil.copy(RL_SAMPLE, folder / "not-credit-card.xml")
    (folder / "broken.xml").write_text(
        "<Provenir><Request ID='5'><CustData><application", encoding="utf-8"
    )
    p = cli_in_process("profile", str(folder))
    assert p.returncode == 0, p.stdout + p.stderr  # failures and noise are not capacity loss
    for name in ("not-credit-card.xml", "broken.xml"):
        assert f"would fail: {folder / name}" in p.stdout
    r = json.loads(cli_in_process("profile", str(folder), "--format", "json").stdout)
    assert sorted(Path(f["path"]).name for f in r["failed_files"]) == [
        "broken.xml",
        "not-credit-card.xml",
    ]

    def real_loss(
        tree,
    ):  # 5 decimal places of a 4-place money column: a valid value that does not fit
        tree.find(".//CustData/application/app_product").set("monthly_income", "5200.12345")

    build(CC_SAMPLE, folder / "loss.xml", real_loss)
    p = cli_in_process("profile", str(folder))
    assert p.returncode == 1 and "CAPACITY LOSS" in p.stdout and "monthly_income" in p.stdout
