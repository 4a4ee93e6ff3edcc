"""The shared sample app-1001 through `xml-extractor map --format json`: the issue's bar."""

import json

from conftest import SAMPLES, cli_in_process


def test_map_sample_json():
    p = cli_in_process("map", str(SAMPLES / "app-1001.xml"), "--format", "json", check=True)
    out = json.loads(p.stdout)
    t = out["tables"]
    contacts = {c["con_id"]: c for c in t["app_contact_base"]}
    assert set(contacts) == {900001, 900002}
    assert (
        contacts[900001]["contact_type_enum"] == 281
        and contacts[900002]["contact_type_enum"] == 282
    )
    assert contacts[900001]["ssn"] == "666012345"
    assert contacts[900001]["cell_phone"] == "7015550100"
    assert contacts[900002]["ssn"] is None and contacts[900002]["birth_date"] is None
    ev = out["events"]
    assert any(e["column"] == "ssn" and e["locator"] == "application/contact[2]" for e in ev)
    assert any(e["column"] == "birth_date" and e["locator"] == "application/contact[2]" for e in ev)
    addr = {(a["con_id"], a["address_type_enum"]): a for a in t["app_contact_address"]}
    curr, prev = addr[(900001, 320)], addr[(900001, 321)]
    assert curr["zip"] == "581021234" and curr["state"] == "ND" and curr["months_at_address"] == 40
    assert prev["zip"] is None
    assert any(e["column"] == "zip" and e["raw_value"] == "7486-444" for e in ev)
    assert any(
        e["event_type"] == "row_dropped"
        and e["column"] == "address_tp_c"
        and e["locator"] == "application/contact[1]/contact_address[3]"
        for e in ev
    )
    emp = t["app_contact_employment"][0]
    assert (
        emp["con_id"] == 900001
        and float(emp["monthly_salary"]) == 5200.00
        and emp["months_at_job"] == 30
    )
    assert [i["indicator"] for i in t["indicators"]] == ["CreditBureauPulled", "MLA"]
    scores = {
        s["score_identifier"]: float(s["score"]) for s in t["scores"]
    }  # decimal(14,4), as text in JSON
    assert scores == {
        "experian_fico_score": 712,
        "precision_score": 0,
        "prescreen_risk_score": 326,
        "Vantage_Score_TU": 701,
        "email_risk": 2,
    }
    dropped = [
        e for e in ev if e["event_type"] == "row_dropped" and e["table"] == "app_contact_base"
    ]
    assert len(dropped) == 2  # the empty con_id and the SEC contact


def test_map_table_format_and_failure(tmp_path):
    p = cli_in_process("map", str(SAMPLES / "app-1001.xml"), check=True)
    assert "app_contact_address (3 rows)" in p.stdout and "data-quality events (6)" in p.stdout
    bad = tmp_path / "bad.xml"
    bad.write_text(
        "<Provenir><Request ID='5'><CustData><IL_application/></CustData></Request></Provenir>"
    )
    p = cli_in_process("map", str(bad))
    assert p.returncode == 1
    assert "stage validate" in p.stdout and "run it with --contract rec_lending" in p.stdout
