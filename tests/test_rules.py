"""Every rule of the default contract (domain.md), each on a small hand-made document."""

from decimal import Decimal

import pytest

from xml_extractor.errors import DocumentFailure, ParseFailure, ValidateFailure
from xml_extractor.mapping import map_document


def doc(app="", contacts="", product="", extra="", app_id=7, rmts=""):
    # regb_start_date is present so that the Reg B fallback (tests/test_legacy_rules.py) adds no event here
    return (
        f'\ufeff<Provenir><Request ID="{app_id}"><CustData><application app_receive_date="2025-01-02" {app}>'
        f'<app_product regb_start_date="2025-01-02" {product}/><rmts_info {rmts}/>{contacts}{extra}</application></CustData>'
        f'<Reports><Report><x a="1"/></Report></Reports></Request></Provenir>'
    )


def contact(con_id, role="PR", attrs="", children=""):
    return f'<contact con_id="{con_id}" ac_role_tp_c="{role}" {attrs}>{children}</contact>'


def m(plan, text, app_id=7):
    r = map_document(plan, text, expected_app_id=app_id)
    return r.as_dicts(plan), r.events


def events_of(events, kind=None, column=None):
    return [
        e for e in events if (kind is None or e[2] == kind) and (column is None or e[1] == column)
    ]


def test_contacts_kept_only_with_numeric_con_id_and_known_role(plan):
    t, ev = m(
        plan,
        doc(
            contacts=contact("1", "PR")
            + contact("", "PR")
            + contact("abc", "AUTHU")
            + contact("3", "SEC")
            + contact("4", "WEIRD")
            + contact("5", "authu")
        ),
    )
    assert sorted(c["con_id"] for c in t["app_contact_base"]) == [1, 5]
    drops = events_of(ev, "row_dropped")
    assert len(drops) == 4  # empty con_id, non-numeric con_id, SEC, WEIRD
    assert events_of(ev, "value_rejected", "con_id")  # 'abc' is recorded as a rejected value too


def test_same_con_id_higher_priority_role_wins_then_later_element(plan):
    t, ev = m(
        plan,
        doc(
            contacts=contact("1", "AUTHU", 'first_name="A"')
            + contact("1", "PR", 'first_name="B"')
            + contact("1", "AUTHU", 'first_name="C"')
        ),
    )
    (c,) = t["app_contact_base"]
    assert c["first_name"] == "B" and c["contact_type_enum"] == 281
    assert len(events_of(ev, "duplicate_key")) == 2
    t, _ = m(
        plan,
        doc(contacts=contact("2", "PR", 'first_name="X"') + contact("2", "PR", 'first_name="Y"')),
    )
    assert t["app_contact_base"][0]["first_name"] == "Y"  # tie: the later element wins


def addr(typ, **kw):
    a = " ".join(f'{k}="{v}"' for k, v in kw.items())
    return f'<contact_address address_tp_c="{typ}" {a}/>'


def test_address_rules(plan):
    kids = (
        addr(
            "CURR",
            city="A",
            zip="58102-1234",
            state="nd",
            cell_phone="(701) 555-0100",
            years_at_residence="3",
            months_at_residence="4",
        )
        + addr("", city="LOST")
        + addr("", city="")
        + addr("MAIL", city="X")
        + addr("PREV", city="P1")
        + addr("PREV", city="P2", zip="7486-444")
        + addr("PREV", street_name="", city="")
    )
    t, ev = m(plan, doc(contacts=contact("1", "PR", children=kids)))
    rows = {r["address_type_enum"]: r for r in t["app_contact_address"]}
    assert set(rows) == {320, 321}
    assert (
        rows[320]["zip"] == "581021234"
        and rows[320]["state"] == "ND"
        and rows[320]["months_at_address"] == 40
    )
    assert (
        rows[321]["city"] == "P2" and rows[321]["zip"] is None
    )  # later element wins; bad zip -> NULL + event
    assert (
        len([e for e in ev if e[2] == "row_dropped" and e[0] == "app_contact_address"]) == 3
    )  # blank, blank, MAIL
    assert events_of(ev, "value_rejected", "zip")
    assert (
        t["app_contact_base"][0]["cell_phone"] == "7015550100"
    )  # from the CURR address, digits only


def test_all_empty_address_or_employment_writes_no_row(plan):
    kids = (
        addr("CURR", city="", zip="")
        + '<contact_employment employment_tp_c="CURR" b_name="" b_salary=""/>'
    )
    t, ev = m(plan, doc(contacts=contact("1", "PR", children=kids)))
    assert "app_contact_address" not in t and "app_contact_employment" not in t
    assert not ev


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("666-01-2345", "666012345"),
        ("666012345", "666012345"),
        ("6660123451", None),
        ("hxjMnT9N5sefccFPz6MJbg==", None),
        ("", None),
    ],
)
def test_ssn_exactly_nine_digits(plan, raw, expected):
    t, ev = m(plan, doc(contacts=contact("1", "PR", f'ssn="{raw}"')))
    assert t["app_contact_base"][0]["ssn"] == expected
    assert bool(events_of(ev, None, "ssn")) == (expected is None and raw != "")


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("58102", "58102"),
        ("581021234", "581021234"),
        ("99999-9999", "999999999"),
        ("7486-444", None),
        ("00019-XYZ", None),
    ],
)
def test_zip_five_or_nine_digits(plan, raw, expected):
    t, ev = m(plan, doc(contacts=contact("1", "PR", children=addr("CURR", zip=raw, city="C"))))
    assert t["app_contact_address"][0]["zip"] == expected
    assert bool(events_of(ev, "value_rejected", "zip")) == (expected is None)


@pytest.mark.parametrize(
    "raw,expected", [("nd", "ND"), ("ND", "ND"), ("vermontington", None), ("N1", None)]
)
def test_state_two_letters(plan, raw, expected):
    t, ev = m(plan, doc(contacts=contact("1", "PR", children=addr("CURR", state=raw, city="C"))))
    assert t["app_contact_address"][0]["state"] == expected


@pytest.mark.parametrize(
    "basis,salary,monthly",
    [
        ("ANNUM", "62400.0", "5200.00"),
        ("MONTH", "3000", "3000.00"),
        ("WEEK", "1000", "4333.33"),
        ("BIWEEK", "2000", "4333.33"),
        ("HOURLY", "20", "3466.67"),
        ("annum", "12000", "1000.00"),
    ],
)
def test_monthly_salary_by_basis(plan, basis, salary, monthly):
    emp = (
        f'<contact_employment employment_tp_c="CURR" b_salary="{salary}" b_salary_basis_tp_c="{basis}" '
        f'b_years_at_job="2" b_months_at_job="6"/>'
    )
    t, ev = m(plan, doc(contacts=contact("1", "PR", children=emp)))
    e = t["app_contact_employment"][0]
    assert e["monthly_salary"] == Decimal(monthly) and e["months_at_job"] == 30
    assert not events_of(ev, "value_rounded")


def test_months_at_address_partial_inputs(plan):
    t, _ = m(
        plan,
        doc(
            contacts=contact(
                "1",
                "PR",
                children=addr("CURR", city="C", years_at_residence="1") + addr("PREV", city="D"),
            )
        ),
    )
    rows = {r["address_type_enum"]: r for r in t["app_contact_address"]}
    assert rows[320]["months_at_address"] == 12 and rows[321]["months_at_address"] is None


def test_unknown_enum_in_nullable_column_is_null_plus_event(plan):
    t, ev = m(
        plan,
        doc(app='app_type_code="ZZZ" population_assignment="dn"', product='decision_tp_c="XXX"'),
    )
    b = t["app_base"][0]
    assert (
        b["app_type_enum"] is None
        and b["decision_enum"] is None
        and b["population_assignment_enum"] == 30
    )
    assert {e[1] for e in events_of(ev, "unknown_enum")} == {"app_type_enum", "decision_enum"}


def test_too_long_and_bad_numbers_are_null_plus_event_never_truncated(plan):
    t, ev = m(
        plan,
        doc(
            app='IP_address="' + "1" * 60 + '"',
            product='backend_risk_grade="too many characters" '
            'monthly_income="no numbers here!" monthly_debt="1001.001.001" aggregate_balance="21.212"',
        ),
    )
    assert t["app_base"][0]["ip_address"] is None
    tr = t["app_transactional_cc"][0]
    assert (
        tr["backend_risk_grade"] is None
        and tr["monthly_income"] is None
        and tr["monthly_debt"] is None
    )
    assert tr["aggregate_balance"] == Decimal(
        "21.212"
    )  # money keeps 4 places (contract 1.1.0): no rounding
    kinds = {(e[1], e[2]) for e in ev}
    assert {
        ("ip_address", "value_rejected"),
        ("backend_risk_grade", "value_rejected"),
        ("monthly_income", "value_rejected"),
        ("monthly_debt", "value_rejected"),
    } <= kinds
    assert not events_of(ev, None, "aggregate_balance")
    assert all(e[3] is not None for e in ev)  # the raw value is kept


@pytest.mark.parametrize(
    "raw",
    [
        "2025-10-14 20:09:54.949",
        "10/14/2025",
        "1/7/2024",
        "2024-1-07 1:02:03.0",
        "3/9/2023 4:05:06 PM",
        "05-10-1978",
    ],
)
def test_date_formats(plan, raw):
    t, ev = m(plan, doc(app=f'app_entry_date="{raw}"'))
    assert t["app_base"][0]["app_entry_date"] is not None and not ev


def test_receive_date_defaults_when_unparseable(plan):
    text = doc().replace('app_receive_date="2025-01-02"', 'app_receive_date="not a valid date"')
    t, ev = m(plan, text)
    assert str(t["app_base"][0]["receive_date"]).startswith("1900-01-01")
    assert events_of(ev, "default_applied", "receive_date")
    t, ev = m(plan, doc().replace('app_receive_date="2025-01-02"', ""))
    assert str(t["app_base"][0]["receive_date"]).startswith("1900-01-01") and events_of(
        ev, "default_applied"
    )


def test_empty_strings_are_null_and_attribute_case_is_ignored(plan):
    t, _ = m(
        plan,
        doc(
            app='campaign_num="" PRIORITY="Offline Step-Up"', product='RISK_MODEL_REASON1_TP_C="R1"'
        ),
    )
    assert (
        t["app_base"][0]["campaign_num"] is None
        and t["app_operational_cc"][0]["priority_enum"] == 561
    )
    assert t["app_transactional_cc"][0]["risk_model_reason1_code"] == "R1"


def test_scores_indicators_and_history(plan):
    extra = (
        '<scores><score score_identifier="email_risk" score="2"/><score score_identifier="x" score="high"/></scores>'
        '<Indicators><Indicator ID="MLA" value="N"/></Indicators>'
    )
    t, ev = m(
        plan,
        doc(
            app='signiture_ind="Y"',
            product='experian_fico_score="712" TU_DIE_score="" score="abc"',
            extra=extra,
        ),
    )
    s = {r["score_identifier"]: r["score"] for r in t["scores"]}
    assert s == {"experian_fico_score": 712, "email_risk": 2}
    assert len(events_of(ev, "value_rejected", "score")) == 2  # 'abc' and 'high'
    assert t["indicators"] == [{"app_id": 7, "indicator": "MLA", "value": "N"}]
    assert t["app_historical_lookup"] == [
        {"app_id": 7, "name": "signiture_ind", "source": "application", "value": "Y"}
    ]


def test_wrong_product_line_and_id_problems_fail_typed(plan):
    rec = '<Provenir><Request ID="7"><CustData><IL_application/></CustData></Request></Provenir>'
    with pytest.raises(
        ValidateFailure, match="this is a rec_lending document .*--contract rec_lending"
    ):
        map_document(plan, rec, 7)
    other = '<Provenir><Request ID="7"><CustData><something_else/></CustData></Request></Provenir>'
    with pytest.raises(ValidateFailure, match="no /Provenir/Request/CustData/application"):
        map_document(plan, other, 7)
    with pytest.raises(ValidateFailure, match="is 7 but the row's app_id is 8"):
        map_document(plan, doc(), 8)
    with pytest.raises(ValidateFailure, match="no /Provenir/Request/@ID"):
        map_document(plan, doc().replace(' ID="7"', ""), 7)
    with pytest.raises(ValidateFailure, match="not an integer"):
        map_document(plan, doc().replace(' ID="7"', ' ID="A7"'), 7)


def test_every_identity_field_empty_keeps_contact_row(plan):
    t, ev = m(
        plan, doc(contacts=contact("1", "PR", 'first_name="" last_name="" ssn="" birth_date=""'))
    )
    assert t["app_contact_base"][0]["first_name"] is None and not ev


def test_failure_types_carry_stage(plan):
    with pytest.raises(ParseFailure) as e:
        map_document(plan, "<Provenir><Request ID='1'><CustData>", 1)
    assert e.value.stage == "parse"
    with pytest.raises(DocumentFailure) as e:
        map_document(plan, "   ", 1)
    assert e.value.stage == "read"


def test_scope_marker_inside_a_comment_or_cdata_is_not_trusted(plan):
    tricky = (
        doc(contacts=contact("1", "PR", 'first_name="A"'))
        .replace("<app_product", "<!-- </CustData> --><app_product")
        .replace("<Reports>", "<Reports><![CDATA[ </CustData> ]]>")
    )
    t, _ = m(plan, tricky)
    assert t["app_contact_base"][0]["first_name"] == "A"
    nested = doc(extra="<CustData><x/></CustData>", contacts=contact("2", "PR"))
    t, _ = m(plan, nested)  # an inner CustData closes first: the exact path still finds the record
    assert t["app_contact_base"][0]["con_id"] == 2
