"""The default contract honours ../shared/legacy-rules.md: every real value range kept exactly (through
`xml-extractor map`, one test per row of the table), every attribute the legacy system maps lands in a
column, the legacy business rules (Reg B start date fallback, both score-factor types with every
population branch and the 2023-10-11 boundary), the two V4 scores kept apart, and drop events that
name the attribute."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from conftest import cli_in_process

from xml_extractor.mapping import map_document

BASE64_44 = "q83vEjRWeJq8zN7wEjRWeJq8zN7wEjRWeJq8zN7wEjQ="
BLACKBOX = "0400" + "nYjPq1Rt" * 80


def document(request="", app="", product="", rmts="", contacts="", scores="", app_id=7):
    return (
        f'\ufeff<Provenir><Request ID="{app_id}" {request}><CustData>'
        f'<application app_receive_date="2025-10-14 09:00:00.000" {app}>'
        f"<app_product {product}/><rmts_info {rmts}/>{contacts}<scores>{scores}</scores></application>"
        f'</CustData><Reports><Report><x a="1"/></Report></Reports></Request></Provenir>'
    )


REAL = document(
    request=(
        'Process="07500" Status="Q" Trans="WSCLOSE" LastUpdatedBy="analyst.one@example.com" '
        f'LockedBy="underwriter.two@example.com" Priority="Offline Step-Up" iovation_blackbox="{BLACKBOX}" '
        f'btcardtoken="{BASE64_44}" btresponsecode="APPROVED"'
    ),
    app=f'existing_card_account_num="{BASE64_44}" product_line=""',
    product=(
        'DIE_Plus_Score="45.31" VeridQA_Result="NoOnlineQA_ManualProcess" decision_date="2025-10-14 17:13:36.959" '
        'booked_date="2025-10-15 08:01:02.003" regb_start_date="2025-10-14 17:13:36.959"'
    ),
    rmts='intro_cash_advance_apr="0.07657" intro_purchase_apr="0.12345"',
    contacts=(
        '<contact con_id="1" ac_role_tp_c="PR" birth_date="1978-05-10 00:00:00.000">'
        '<contact_address address_tp_c="CURR" address_seq_no="206886" city="FARGO"/>'
        '<contact_employment employment_tp_c="CURR" employment_seq_no="206887" b_name="ACME"/></contact>'
    ),
)


@pytest.fixture(scope="module")
def mapped_real(tmp_path_factory):
    """The document carrying every real value, through the real command line."""
    f = tmp_path_factory.mktemp("legacy") / "real.xml"
    f.write_text(REAL, encoding="utf-8")
    p = cli_in_process("map", str(f), "--format", "json", check=True)
    return json.loads(p.stdout)


def one(out, table):
    (row,) = out["tables"][table]
    return row


def no_event_on(out, *columns):
    return not [e for e in out["events"] if e["column"] in columns]


# -- the "real value ranges" table, one test per row ------------------------------------------------


def test_intro_aprs_keep_five_decimals(mapped_real):
    p = one(mapped_real, "app_pricing_cc")
    assert Decimal(p["intro_cash_advance_apr"]) == Decimal("0.07657")
    assert Decimal(p["intro_purchase_apr"]) == Decimal("0.12345")
    assert no_event_on(mapped_real, "intro_cash_advance_apr", "intro_purchase_apr")


def test_fractional_scores_are_kept(mapped_real):
    scores = {s["score_identifier"]: Decimal(s["score"]) for s in mapped_real["tables"]["scores"]}
    assert scores["DIE_Plus_Score"] == Decimal("45.31")
    assert no_event_on(mapped_real, "score")


def test_verid_qa_result_kept_whole(mapped_real):
    assert one(mapped_real, "app_transactional_cc")["verid_qa_result"] == "NoOnlineQA_ManualProcess"
    assert no_event_on(mapped_real, "verid_qa_result")


def test_encrypted_account_number_kept_whole(mapped_real):
    assert one(mapped_real, "app_operational_cc")["existing_card_account_num"] == BASE64_44
    assert no_event_on(mapped_real, "existing_card_account_num")


def test_six_digit_sequence_numbers_kept(mapped_real):
    assert one(mapped_real, "app_contact_address")["address_seq_no"] == 206886
    assert one(mapped_real, "app_contact_employment")["employment_seq_no"] == 206887
    assert no_event_on(mapped_real, "address_seq_no", "employment_seq_no")


def test_date_times_keep_their_time(mapped_real):
    assert one(mapped_real, "app_base")["decision_date"] == "2025-10-14 17:13:36.959000"
    t = one(mapped_real, "app_transactional_cc")
    assert (
        t["booked_date"] == "2025-10-15 08:01:02.003000"
        and t["regb_start_date"] == "2025-10-14 17:13:36.959000"
    )
    assert (
        one(mapped_real, "app_contact_base")["birth_date"] == "1978-05-10"
    )  # a date at midnight loses nothing
    assert no_event_on(mapped_real, "decision_date", "booked_date", "regb_start_date", "birth_date")


def test_priority_read_from_request(mapped_real):
    assert one(mapped_real, "app_operational_cc")["priority_enum"] == 561  # Offline Step-Up


# -- no converter drops information without an event -------------------------------------------------


def test_a_time_a_date_column_cannot_hold_is_an_event(plan):
    r = map_document(
        plan,
        document(
            contacts='<contact con_id="1" ac_role_tp_c="PR" birth_date="1978-05-10 13:45:00"/>'
        ),
        expected_app_id=7,
    )
    assert r.as_dicts(plan)["app_contact_base"][0]["birth_date"] == dt.date(1978, 5, 10)
    (e,) = [e for e in r.events if e[1] == "birth_date"]
    assert e[2] == "value_rounded" and "13:45:00" in e[4]


def test_sub_millisecond_time_is_an_event(plan):
    r = map_document(
        plan, document(product='decision_date="2025-10-14 17:13:36.959123"'), expected_app_id=7
    )
    assert r.as_dicts(plan)["app_base"][0]["decision_date"] == dt.datetime(
        2025, 10, 14, 17, 13, 36, 959000
    )
    assert [e[2] for e in r.events if e[1] == "decision_date"] == ["value_rounded"]


# -- boundary values: kept exactly, or changed/refused with an event (an adversarial review) -----------


def _through_map(plan, column_path, raw):
    """Map one value of (table, column, where) and return (stored value, event kinds on the column)."""
    table, column, where = column_path
    if where == "address":
        kw = {
            "contacts": f'<contact con_id="1" ac_role_tp_c="PR"><contact_address address_tp_c="CURR" city="X" '
            f'address_seq_no="{raw}"/></contact>'
        }
    elif where == "birth":
        kw = {"contacts": f'<contact con_id="1" ac_role_tp_c="PR" birth_date="{raw}"/>'}
    else:
        kw = {
            where: f'{ {"rmts": "intro_purchase_apr", "product": "decision_date"}[where] }="{raw}"'
        }
    r = map_document(plan, document(**kw), 7)
    rows = r.as_dicts(plan).get(table) or [{}]
    return rows[0].get(column), [e[2] for e in r.events if e[1] == column]


SEQ = ("app_contact_address", "address_seq_no", "address")
APR = ("app_pricing_cc", "intro_purchase_apr", "rmts")
DECISION = ("app_base", "decision_date", "product")
BIRTH = ("app_contact_base", "birth_date", "birth")


@pytest.mark.parametrize(
    "where,raw,expected",
    [
        (SEQ, "2147483647", 2147483647),
        (SEQ, "-2147483648", -2147483648),
        (SEQ, "206886.000", 206886),
        (
            SEQ,
            "0" * 5000 + "206886",
            206886,
        ),  # leading zeros do not count as digits (int() alone refuses >4,300)
        (APR, "99999.99999", Decimal("99999.99999")),
        (APR, "-0.07657", Decimal("-0.07657")),
        (APR, " 0.07657 ", Decimal("0.07657")),
        (DECISION, "2024-02-29", dt.datetime(2024, 2, 29)),
        (DECISION, "02/29/2024 11:59:59 PM", dt.datetime(2024, 2, 29, 23, 59, 59)),
        (DECISION, "9999-12-31 23:59:59.999", dt.datetime(9999, 12, 31, 23, 59, 59, 999000)),
        (
            DECISION,
            "2025-10-14 17:13:36.9590000",
            dt.datetime(2025, 10, 14, 17, 13, 36, 959000),
        ),  # zeros carry nothing
        (BIRTH, "1978-05-10 00:00:00.0000000", dt.date(1978, 5, 10)),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_boundary_values_are_kept_exactly_without_event(plan, where, raw, expected):
    assert _through_map(plan, where, raw) == (expected, [])


@pytest.mark.parametrize(
    "where,raw,expected,kind",
    [
        (SEQ, "2147483648", None, "value_rejected"),
        (SEQ, "-2147483649", None, "value_rejected"),
        (
            SEQ,
            "9" * 5000,
            None,
            "value_rejected",
        ),  # was a ValueError out of int(): the document failed, profile crashed
        (SEQ, "206886.5", None, "value_rejected"),
        (APR, "100000", None, "value_rejected"),
        (APR, "0.076575", Decimal("0.07658"), "value_rounded"),
        (APR, "7.657E-2", None, "value_rejected"),
        (DECISION, "2023-02-29", None, "value_rejected"),
        (DECISION, "2025-10-14 24:00:00", None, "value_rejected"),
        (
            DECISION,
            "2025-10-14T17:13:36.959Z",
            None,
            "value_rejected",
        ),  # an offset is never dropped silently
        # SQL Server / .NET write 7 decimal places: cut to milliseconds with an event (was: the whole value NULL)
        (
            DECISION,
            "2025-10-14 17:13:36.9591234",
            dt.datetime(2025, 10, 14, 17, 13, 36, 959000),
            "value_rounded",
        ),
        (
            DECISION,
            "2025-10-14 17:13:36.9590001",
            dt.datetime(2025, 10, 14, 17, 13, 36, 959000),
            "value_rounded",
        ),
        (BIRTH, "1978-05-10 00:00:00.0000001", dt.date(1978, 5, 10), "value_rounded"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_boundary_values_changed_or_refused_leave_an_event(plan, where, raw, expected, kind):
    assert _through_map(plan, where, raw) == (expected, [kind])


def test_boundary_values_through_the_command_line(tmp_path):
    """The same converters behind `xml-extractor map`: a 5,000-digit number is an event, not a traceback."""
    f = tmp_path / "huge.xml"
    f.write_text(
        document(
            product='decision_date="2025-10-14 17:13:36.9591234"',
            contacts='<contact con_id="1" ac_role_tp_c="PR"><contact_address address_tp_c="CURR" city="X" '
            f'address_seq_no="{"9" * 5000}"/></contact>',
        ),
        encoding="utf-8",
    )
    out = json.loads(cli_in_process("map", str(f), "--format", "json", check=True).stdout)
    assert one(out, "app_contact_address")["address_seq_no"] is None
    assert one(out, "app_base")["decision_date"] == "2025-10-14 17:13:36.959000"
    kinds = {e["column"]: e["event_type"] for e in out["events"]}
    assert kinds["address_seq_no"] == "value_rejected" and kinds["decision_date"] == "value_rounded"


# -- the attributes the legacy system maps ---------------------------------------------------------------


@pytest.mark.parametrize(
    "column,expected",
    [
        ("process_enum", 513),  # 07500: the 14th workflow code
        ("status_enum", 546),  # Q
        ("last_transaction", "WSCLOSE"),
        ("last_updated_by", "analyst.one@example.com"),
        ("locked_by", "underwriter.two@example.com"),
        ("iovation_blackbox", BLACKBOX),
        ("bt_card_token", BASE64_44),
        ("bt_response_code", "APPROVED"),
    ],
)
def test_request_attributes_land_in_columns(mapped_real, column, expected):
    assert one(mapped_real, "app_operational_cc")[column] == expected


def test_product_line_empty_means_credit_card(plan, mapped_real):
    assert one(mapped_real, "app_base")["product_line_enum"] == 600
    for app in ('product_line="CC"', ""):  # explicit, or absent
        assert (
            map_document(plan, document(app=app), 7).as_dicts(plan)["app_base"][0][
                "product_line_enum"
            ]
            == 600
        )
    r = map_document(plan, document(app='product_line="RL"'), 7)
    assert r.as_dicts(plan)["app_base"][0]["product_line_enum"] is None
    assert [e[2] for e in r.events if e[1] == "product_line_enum"] == ["unknown_enum"]


@pytest.mark.parametrize(
    "code,enum_id", [("Alloy Error", 560), ("Offline Step-Up", 561), ("Step-Up Received", 562)]
)
def test_priority_either_place(plan, code, enum_id):
    for where in ("request", "app"):
        r = map_document(plan, document(**{where: f'Priority="{code}"'}), 7)
        assert r.as_dicts(plan)["app_operational_cc"][0]["priority_enum"] == enum_id
        assert not [
            e for e in r.events if e[1] == "priority_enum"
        ]  # either place is normal: no event
    r = map_document(
        plan, document(request='Priority="Alloy Error"', app='priority="Step-Up Received"'), 7
    )
    assert r.as_dicts(plan)["app_operational_cc"][0]["priority_enum"] == 560  # Request first
    # ... and the application's different priority, not stored, is an event (it was dropped silently)
    (e,) = [e for e in r.events if e[1] == "priority_enum"]
    assert e[2] == "value_conflict" and e[3] == "Step-Up Received" and "@priority" in e[4]
    for same in ('priority="alloy error "', 'priority=""'):  # the same code, or nothing: no event
        r = map_document(plan, document(request='Priority="Alloy Error"', app=same), 7)
        assert not [e for e in r.events if e[1] == "priority_enum"]


# -- Reg B start date -------------------------------------------------------------------------------------


def test_regb_start_date_when_present_no_event(plan):
    r = map_document(plan, document(product='regb_start_date="03/09/2025"'), 7)
    assert r.as_dicts(plan)["app_transactional_cc"][0]["regb_start_date"] == dt.datetime(2025, 3, 9)
    assert not [e for e in r.events if e[1] == "regb_start_date"]


def test_regb_start_date_falls_back_to_receive_date_with_event(plan):
    r = map_document(plan, document(), 7)
    assert r.as_dicts(plan)["app_transactional_cc"][0]["regb_start_date"] == dt.datetime(
        2025, 10, 14, 9, 0
    )
    (e,) = [e for e in r.events if e[1] == "regb_start_date"]
    assert (
        e[0] == "app_transactional_cc" and e[2] == "fallback_applied" and "app_receive_date" in e[4]
    )
    assert e[3] == "2025-10-14 09:00:00.000"


def test_regb_start_date_invalid_falls_back_with_both_events(plan):
    r = map_document(plan, document(product='regb_start_date="not a valid date"'), 7)
    assert r.as_dicts(plan)["app_transactional_cc"][0]["regb_start_date"] == dt.datetime(
        2025, 10, 14, 9, 0
    )
    assert [e[2] for e in r.events if e[1] == "regb_start_date"] == [
        "value_rejected",
        "fallback_applied",
    ]


def test_regb_start_date_on_application_is_used_before_receive_date(plan):
    r = map_document(plan, document(app='regb_start_date="2025-10-01"'), 7)
    assert r.as_dicts(plan)["app_transactional_cc"][0]["regb_start_date"] == dt.datetime(
        2025, 10, 1
    )
    (e,) = [e for e in r.events if e[1] == "regb_start_date"]
    assert "../@regb_start_date" in e[4]


# -- score-factor types -----------------------------------------------------------------------------------

# the legacy compares the receive date-time with 2023-10-11 00:00: one second later is after it
AFTER, ON_BOUNDARY, JUST_AFTER = "2023-10-12 00:00:00", "2023-10-11 00:00:00", "2023-10-11 00:00:01"

CB_ALWAYS = {"BL": "00Q88", "CV": "AJ", "EV": "EV", "JB": "00227", "L2": "00337", "SO": "00A9Q"}
CB_AFTER = {
    "CM": "AJ",
    "DN": "00W83",
    "HD": "00W83",
    "HE": "AJ",
    "HU": "FT",
    "HV": "00V60",
    "HW": "V4",
    "LB": "00V60",
    "SB": "FT",
}


def factors(
    plan,
    population="",
    received=AFTER,
    app_type="PRODB",
    decision_model="DM1",
    codes=("010",) * 5,
    reasons=("R1",) * 4,
):
    app = f'population_assignment="{population}" app_type_code="{app_type}"'
    product = (
        f'decision_model="{decision_model}" '
        + " ".join(f'adverse_actn{n}_type_cd="{c}"' for n, c in enumerate(codes, 1))
        + " "
        + " ".join(f'Risk_Model_reason{n}_tp_c="{c}"' for n, c in enumerate(reasons, 1))
    )
    text = document(app=app, product=product).replace(
        'app_receive_date="2025-10-14 09:00:00.000"', f'app_receive_date="{received}"'
    )
    base = map_document(plan, text, 7).as_dicts(plan)["app_base"][0]
    return (
        [base[f"cb_score_factor_type_{n}"] for n in range(1, 6)],
        [base[f"risk_model_score_factor_type_{n}"] for n in range(1, 5)],
    )


@pytest.mark.parametrize("population,expected", sorted(CB_ALWAYS.items()))
def test_cb_factor_populations_at_any_date(plan, population, expected):
    for received in (AFTER, ON_BOUNDARY, "2019-01-01 00:00:00"):
        assert factors(plan, population, received)[0] == [expected] * 5


@pytest.mark.parametrize("population,expected", sorted(CB_AFTER.items()))
def test_cb_factor_populations_only_after_2023_10_11(plan, population, expected):
    assert factors(plan, population, AFTER)[0] == [expected] * 5
    assert factors(plan, population, JUST_AFTER)[0] == [expected] * 5
    assert factors(plan, population, ON_BOUNDARY)[0] == [None] * 5  # at 2023-10-11 00:00 not yet
    assert (
        factors(plan, population, ON_BOUNDARY, app_type="SECURE")[0] == [None] * 5
    )  # SECURE is gated too


def test_cb_factor_decision_model_tu(plan):
    assert factors(plan, "", AFTER, decision_model="TU_FICO9")[0] == ["00227"] * 5
    assert factors(plan, "CM", JUST_AFTER, decision_model="TU_FICO9")[0] == ["AJ"] * 5
    assert (
        factors(plan, "CM", ON_BOUNDARY, decision_model="TU_FICO9")[0] == [None] * 5
    )  # TU is gated too
    assert (
        factors(plan, "BL", AFTER, decision_model="TU_FICO9")[0] == ["00Q88"] * 5
    )  # population first


def test_cb_factor_secure_app_type(plan):
    codes = ("V4_81", "010", "V4_68", "97V", "V481")
    assert factors(plan, "", AFTER, app_type="SECURE", codes=codes)[0] == [
        "V4",
        "00W83",
        "V4",
        "00W83",
        "00W83",
    ]
    assert (
        factors(plan, "", AFTER, app_type="SECURE", decision_model="TU1", codes=codes)[0]
        == ["00227"] * 5
    )


def test_cb_factor_empty_unless_code_and_nothing_matches(plan):
    assert factors(plan, "BL", AFTER, codes=("010", "", "039", "", ""))[0] == [
        "00Q88",
        None,
        "00Q88",
        None,
        None,
    ]
    assert factors(plan, "", AFTER)[0] == [None] * 5  # no branch matches
    assert factors(plan, "T", AFTER, app_type="PRODB")[0] == [None] * 5


RM = {"BL": "ben_lomond", "JB": "jupiter_bowl", "LB": "lightbox", "SB": "SB", "SO": "solitude"}


@pytest.mark.parametrize("population,expected", sorted(RM.items()))
def test_risk_model_factor_populations(plan, population, expected):
    assert factors(plan, population)[1] == [expected] * 4
    assert factors(plan, population, ON_BOUNDARY)[1] == [expected] * 4  # no date condition
    assert factors(plan, population, reasons=("R1", "", "R9", ""))[1] == [
        expected,
        None,
        expected,
        None,
    ]


def test_risk_model_factor_other_population_is_empty(plan):
    for population in ("", "DN", "CM", "HW"):
        assert factors(plan, population)[1] == [None] * 4


# -- the two V4 scores, and drop events that name the attribute -------------------------------------------


def test_two_v4_scores_kept_apart(plan):
    r = map_document(
        plan,
        document(
            product='Vantage_Score_EX="701.5"', scores='<score score_identifier="V4" score="688"/>'
        ),
        7,
    )
    scores = {s["score_identifier"]: s["score"] for s in r.as_dicts(plan)["scores"]}
    assert scores == {"Vantage_Score_EX": Decimal("701.5"), "V4": Decimal("688")}
    assert not [e for e in r.events if e[0] == "scores"]  # no collision, no duplicate_key


def test_dropped_score_names_its_attribute(plan):
    r = map_document(plan, document(product='DIE_Plus_Score="abc" experian_fico_score="712"'), 7)
    assert {s["score_identifier"] for s in r.as_dicts(plan)["scores"]} == {"experian_fico_score"}
    ev = [e for e in r.events if e[0] == "scores"]
    assert {e[2] for e in ev} == {"value_rejected", "row_dropped"}
    assert all("DIE_Plus_Score" in e[4] for e in ev), ev


def test_a_score_losing_a_key_clash_leaves_its_value_in_the_event(plan):
    """A scores/score named like an unpivoted attribute, or two V4 elements: the event of the row that
    loses carries the value it drops (it carried only the key: 45.31 was gone without a trace)."""
    r = map_document(
        plan,
        document(
            product='DIE_Plus_Score="45.31"',
            scores='<score score_identifier="DIE_Plus_Score" score="50"/>',
        ),
        7,
    )
    assert [s["score"] for s in r.as_dicts(plan)["scores"]] == [Decimal("50")]
    (e,) = [e for e in r.events if e[2] == "duplicate_key"]
    assert e[3] == "7|DIE_Plus_Score" and e[4].endswith("; not kept: score=45.3100")
    r = map_document(
        plan,
        document(
            scores='<score score_identifier="V4" score="50"/><score score_identifier="V4" score="51"/>'
        ),
        7,
    )
    (e,) = [e for e in r.events if e[2] == "duplicate_key"]
    assert e[4].endswith("; not kept: score=50.0000") and e[5] == "application/scores/score[1]"


def test_dropped_score_element_names_its_identifier(plan):
    """A scores/score element whose score is unusable: the drop event says which score (it said
    'score dropped: no usable score', and the locator scores/score does not tell V4 from another)."""
    r = map_document(
        plan,
        document(
            scores='<score score_identifier="V4" score="abc"/><score score_identifier="X" score="1"/>'
        ),
        7,
    )
    assert [s["score_identifier"] for s in r.as_dicts(plan)["scores"]] == ["X"]
    (e,) = [e for e in r.events if e[2] == "row_dropped"]
    assert e[0] == "scores" and e[4] == "score V4 dropped: no usable score"


def test_a_bad_fallback_is_a_contract_error_naming_its_place():
    from xml_extractor.contract.loader import contract_from_dict, default_contract_path
    from xml_extractor.errors import ContractError

    raw = json.loads(default_contract_path().read_text("utf-8"))
    t = next(t for t in raw["tables"] if t["name"] == "app_transactional_cc")
    col = next(c for c in t["columns"] if c["name"] == "regb_start_date")
    col["fallback"] = [{"path": "../@app_receive_date"}, {"expression": "nope + 1"}]
    with pytest.raises(
        ContractError, match=r"columns\[\d+\]\.fallback\[1\].*unknown column 'nope'"
    ):
        contract_from_dict(raw, "bad-fallback")
