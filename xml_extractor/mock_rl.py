"""Realistic rec-lending (RL) documents, and mixed corpora of both product lines.

The shape follows ``../shared/rec-lending/sample-rl-600000.xml``: ``IL_application`` with its
dealer fields, one ``IL_collateral`` element holding one to four collaterals as ``collN_*``
attribute groups, ``IL_app_decision_info`` with the bureau scores of PR (and SEC), backend
policies (warranty products as attribute groups), the funding checklist's Y/N/D flags, the ITI
hand-off elements, PR alone or PR + SEC contacts with CURR/PREV addresses and employment, and
the large vendor noise after ``CustData`` (reusing mock.py's generator: ~145 KB median).

``MixedGenerator`` interleaves credit-card and RL documents; which product an id got is a pure
function of (seed, rl_share, app_id) (:func:`product_of`), so a test knows the truth.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from .mock import FAULT_KINDS, MockDocument, MockGenerator

RL_FAULT_KINDS = {
    "malformed": "parse",
    "truncated": "parse",
    "missing_id": "validate",
    "id_mismatch": "validate",
    "wrong_root": "validate",
    "no_record": "validate",  # neither application nor IL_application: no contract matches
    "empty": "read",
    "con_id_collision": "insert",
}

_DEALERS = [
    "Mickey Mouse RV",
    "Lakeside Marine",
    "Trail Kings Powersports",
    "Sunset Trailers",
    "Blue Water Boats",
]
_MAKES = {
    "RV": [("AIRSTREAM", "RANGELINE"), ("FOREST RIVER", "SALEM"), ("WINNEBAGO", "VISTA")],
    "MARINE": [("TRACKER", "PRO TEAM 175"), ("MALIBU", "WAKESETTER"), ("BAYLINER", "VR5")],
    "MC": [("HARLEY-DAVIDSON", "STREET GLIDE"), ("HONDA", "GOLD WING")],
    "OR": [("POLARIS", "RZR XP"), ("CAN-AM", "OUTLANDER")],
    "HT": [("FEATHERLITE", "8542"), ("SUNDOWNER", "RANCHER")],
    "UT": [("BIG TEX", "70PI"), ("CARRY-ON", "6X12")],
}
_ENGINES = [("MERCURY", "150 PRO XS"), ("YAMAHA", "F115"), ("MERCRUISER", "4.5L")]
_TRAILERS = [("EZ LOADER", "TRAILER"), ("SHORELANDER", "TRAILER"), ("MAGIC TILT", "BOAT TRAILER")]
_WARRANTIES = [
    "gap",
    "service_contract",
    "ext_warranty",
    "road_side",
    "credit_life",
    "credit_disability",
    "other",
]


def product_of(seed: int, rl_share: float, app_id: int) -> str:
    """'rl' or 'cc': the product line a mixed corpus gives this id (the generator's truth)."""
    return "rl" if random.Random(seed * 7919 + app_id * 31 + 5).random() < rl_share else "cc"


class RLMockGenerator:
    """Makes RL documents; ``faulty_share`` of them broken in one of ``RL_FAULT_KINDS`` ways."""

    def __init__(self, seed: int = 42, faulty_share: float = 0.0, median_kb: float = 145.0) -> None:
        self.seed = seed
        self.faulty_share = faulty_share
        self.base = MockGenerator(
            seed=seed, faulty_share=0.0, median_kb=median_kb
        )  # values and noise

    def _contact(self, r: random.Random, con_id: str, role: str) -> str:
        b = self.base
        city, st = r.choice(
            [("MARQUETTE", "MI"), ("BOISE", "ID"), ("TAMPA", "FL"), ("FARGO", "ND")]
        )
        attrs = [
            ("last_name", r.choice(["RODRIGUEZ-LOPEZ", "SMITH", "NGUYEN", "O'BRIEN"])),
            ("first_name", r.choice(["MAGDA", "JOHN", "ANA", "WEI"])),
            ("email", "someone@example.com"),
            ("drivers_license_state", st),
            ("drivers_license", str(r.randint(10**8, 10**9 - 1))),
            ("birth_date", b._date(r, "birth")),
            ("ssn", b._ssn(r)),
            ("ssn_last_4", f"{r.randint(0, 9999):04d}"),
            ("home_phone", b._phone(r)),
            ("cell_phone", b._phone(r)),
            ("middle_initial", r.choice(["L", "", "Q"])),
            ("suffix", r.choice(["", "", "JR"])),
            ("con_id", con_id),
            ("ac_role_tp_c", role),
            ("loanpro_customer_id", str(r.randint(1000, 99999)) if r.random() < 0.5 else ""),
        ]
        parts = [f"<IL_contact {b._attrs(attrs)}>"]
        for kind in ("CURR", "PREV")[: 1 if r.random() < 0.6 else 2]:
            parts.append(
                "<IL_contact_address "
                + b._attrs(
                    [
                        ("zip_code", b._zip(r)),
                        ("years_at_residence", str(r.randint(0, 20))),
                        ("street_number", str(r.randint(1, 9999))),
                        ("street_name", r.choice(["RIDGE ST", "MAIN ST", "LAKE RD"])),
                        ("state", st),
                        ("residence_monthly_pymnt", b._money(r, 3000)),
                        ("city", city),
                        ("months_at_residence", str(r.randint(0, 11))),
                        ("address_type_code", kind),
                        ("ownership_type_code", r.choice(["O", "R", "F", ""])),
                        ("apartment_unit_number", ""),
                        ("po_box", ""),
                        ("rural_route", ""),
                    ]
                )
                + " />"
            )
        if r.random() < 0.3:
            parts.append(
                '<IL_contact_address address_type_code="COLL" street_name="1 DOCK RD" city="SLC" state="UT" />'
            )
        for kind in ("CURR", "PREV")[: 1 if r.random() < 0.7 else 2]:
            parts.append(
                "<IL_contact_employment "
                + b._attrs(
                    [
                        (
                            "business_name",
                            r.choice(["DOOMBRINGER DESIGNS", "ACME", "CITY OF FARGO"]),
                        ),
                        ("title_position", r.choice(["DEVELOPER", "NURSE", "DRIVER"])),
                        ("years_at_job", str(r.randint(0, 30))),
                        ("months_at_job", str(r.randint(0, 11))),
                        ("employment_type_code", kind),
                        (
                            "other_income_source_type_code",
                            r.choice(["CHDSUP", "RENTAL", "", "UNKN"]),
                        ),
                        ("self_employed_ind", r.choice(["Y", "N"])),
                        ("salary_basis_type_code", r.choice(["MONTH", "ANNUM", "HOURLY"])),
                        ("business_phone", b._phone(r)),
                        ("salary", b._money(r, 20000)),
                        ("other_income_amt", b._money(r, 2000)),
                        ("zip_code", b._zip(r)),
                        ("state", st),
                        ("city", city),
                    ]
                )
                + " />"
            )
        parts.append("</IL_contact>")
        return "".join(parts)

    def _collateral(self, r: random.Random, app_type: str) -> str:
        n = r.choice([1, 1, 1, 2, 2, 3, 4])
        attrs = [("coll_is_motorhome", "Y" if app_type == "RV" else "N")]
        for k in range(1, 5):
            if k > n:
                attrs += [(f"coll{k}_new_used_demo", ""), (f"coll{k}_value", "0")]
                continue
            make, model = r.choice(
                _MAKES.get(app_type, _MAKES["RV"])
                if k == 1
                else (_ENGINES if k in (2, 4) else _TRAILERS)
            )
            vin = "".join(
                r.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
                for _ in range(r.choice([17, 17, 15, 12]))
            )
            attrs += [
                (f"coll{k}_new_used_demo", r.choice(["N", "U", "D"])),
                (f"coll{k}_VIN", vin),
                (f"coll{k}_year", str(r.randint(1998, 2026))),
                (f"coll{k}_make", make),
                (f"coll{k}_model", model),
                (f"coll{k}_value", self.base._money(r, 90000)),
            ]
            if k == 1:
                attrs.append(("coll1_mileage", str(r.randint(0, 90000))))
            else:
                attrs.append((f"coll{k}_HP_Marine", str(r.choice([0, 90, 150, 250]))))
            if r.random() < 0.3:
                attrs += [
                    (f"coll_option{2 * k - 1}", self.base._money(r, 3000)),
                    (f"coll_option{2 * k - 1}_desc", "SOLAR PACKAGE"),
                ]
        return f"<IL_collateral {self.base._attrs(attrs)} />"

    def _policies(self, r: random.Random) -> str:
        attrs = []
        for w in r.sample(_WARRANTIES, r.choice([0, 0, 1, 1, 2, 3])):
            attrs += [
                (f"{w}_company", r.choice(["GAP Co", "Warrantech", "Route 66 Roadside"])),
                (f"{w}_amount", self.base._money(r, 4000)),
                (f"{w}_term", str(r.choice([12, 36, 60, 72, 84]))),
                (f"{w}_policy", f"P{r.randint(10**6, 10**7)}"),
            ]
            if w == "gap":
                attrs.append(("gap_lien", r.choice(["Y", "N"])))
        attrs += [("service_contract_lien", "")]
        return f"<IL_backend_policies {self.base._attrs(attrs)} />"

    def _decision(self, r: random.Random, joint: bool) -> str:
        b = self.base
        attrs = [
            ("experian_fico_score_10t", f"0{r.randint(600, 850)}"),
            ("experian_vantage4_score", str(r.randint(300, 850))),
            ("MRV_lead_indicator_p", r.choice(["MRV", "Vantage", ""])),
            ("MRV_score_p", f"{r.randint(300, 900)}.0"),
            ("CRI_score_p", f"{r.randint(300, 900)}.0"),
            ("monthly_income", b._money(r, 20000)),
            ("regular_pymt_amount1", b._money(r, 2000)),
            ("monthly_debt", b._money(r, 5000)),
            ("debt_to_income_ratio", f"{r.randint(0, 60)}.{r.randint(0, 99):02d}"),
            ("decision_type_code", r.choice(["APPRV", "DECLN", "PENDING", "WITHD", ""])),
            ("decision_date", b._date(r)),
            ("regb_closed_days_num", str(r.choice([0, 0, 30, 45]))),
            ("pending_verif_ind", r.choice(["Y", "N"])),
            ("override_type_code_notes", ""),
        ]
        for i in range(1, 6):
            attrs.append(
                (
                    f"Vantage4P_decline_code{i}",
                    f"V4_{r.randint(1, 99):02d}" if r.random() < 0.7 else "",
                )
            )
        for i in range(1, 5):
            attrs.append((f"MRVP_Decline_Code_{i}", r.choice(["als5400", "bcc5620", ""])))
        if joint:
            attrs += [
                ("experian_vantage4_score2", str(r.randint(300, 850))),
                ("MRV_score_s", f"{r.randint(300, 900)}.0"),
                ("CRI_score_s", f"{r.randint(300, 900)}.0"),
                ("MRV_lead_indicator_s", r.choice(["MRV", "Vantage"])),
            ]
        if r.random() < 0.1:
            attrs += [
                ("override_credit", "LOW SCORE"),
                ("override_capacity", r.choice(["DTI", ""])),
            ]
        return f"<IL_app_decision_info {b._attrs(attrs)} />"

    def _checklist(self, r: random.Random) -> str:
        b = self.base
        yn = [
            (n, r.choice(["Y", "Y", "N", "D", ""]))
            for n in (
                "app_signed_borrower1",
                "app_signed_borrower2",
                "dl_borrower1",
                "dl_borrower2",
                "guarantee_of_lien",
                "ins_mb_lienholder",
                "rv_boat_title_vin_confirm",
                "motor_title_vin_confirm",
                "ucc1_filed_by_Merrick",
            )
        ]
        flags = [
            (n, r.choice(["Y", "N", ""]))
            for n in (
                "ct_address_confirmed",
                "ct_apr_within_guidelines",
                "loan_LTV_within_policy",
                "loan_DTI_ratio_within_policy",
                "loan_FICO_within_policy",
                "collateral_ages_within_policy",
                "ct_signed_borrower1",
            )
        ]
        money = [
            (n, b._money(r, 60000))
            for n in (
                "total_of_payments",
                "total_amount_financed",
                "subtotal",
                "ct_sale_price",
                "finance_charge",
                "ct_cash_down_payment",
                "taxes",
                "title_fee",
            )
        ]
        other = [
            ("fund_this_loan_indicator", r.choice(["Y", "N", "P"])),
            ("funding_contact_code", r.choice(["6010", "5006", "6024"])),
            ("chk_requested_by", r.choice(["5016", "WENDY", "PAM S", ""])),
            ("ct_contract_state", r.choice(["CA", "MI", "FL"])),
            ("ct_note_date", b._date(r, "date")),
            ("credit_bureau_expire", b._date(r, "date")),
            ("ct_rate_over_split", f"{r.randint(3, 20)}.{r.randint(0, 99):02d}"),
        ]
        return f"<IL_fund_checklist {b._attrs(yn + flags + money + other)} />"

    def document(self, app_id: int) -> MockDocument:
        """One rec-lending document (deterministic for the seed and app_id), its fault if any."""
        b = self.base
        r = random.Random(self.seed * 1_000_033 + app_id)
        fault = None
        if self.faulty_share and r.random() < self.faulty_share:
            fault = r.choice(sorted(RL_FAULT_KINDS))
        target = int(
            min(b.max_bytes, max(b.min_bytes, math.exp(r.gauss(math.log(b.median), b.sigma))))
        )
        app_type = r.choice(["RV", "RV", "MARINE", "MC", "OR", "HT", "UT"])
        joint = r.random() < 0.35
        dealer = r.choice(_DEALERS)
        app = self._il_application(r, app_type, joint, dealer)
        contacts, beside = self._contacts(r, app_id, fault, joint)
        tag = "IL_app" if fault == "no_record" else "IL_application"
        cust = self._cust_data(r, tag, app, app_type, joint, contacts, beside)
        doc_id = str(app_id + 7 if fault == "id_mismatch" else app_id)
        id_attr = "" if fault == "missing_id" else f' ID="{doc_id}"'
        head = (
            f'<Request{id_attr} Process="{r.choice(["01800", "06800", "99800"])}" Status="{r.choice(["F", "P", ""])}" '
            f'Priority="" LastUpdatedBy="ADAM.STARR@MERRICKBANK.COM">\n'
        )
        noise = b._noise(r, max(0, target - len(cust) - 400))
        root = "Provenirr" if fault == "wrong_root" else "Provenir"
        text = (
            f'<{root} ID="{app_id}" ipaddress="44.232.55.211:52476, 10.254.22.183" appone_trans_id="{r.randint(10**8, 10**9)}" '
            f'product="rl" app_source="API">\n{head}{cust}\n{noise}\n</Request>\n</{root}>\n'
        )
        text = self._with_fault(r, text, fault)
        return MockDocument(app_id=app_id, text=text, fault=fault, row_app_id=app_id)

    def _il_application(
        self, r: random.Random, app_type: str, joint: bool, dealer: str
    ) -> list[tuple[str, str]]:
        """IL_application's attributes: the dealer, the loan, the dates."""
        b = self.base
        app = [
            ("parent_dealer_number", str(r.randint(600000, 699999))),
            ("app_source_ind", r.choice(["A", "D", "F", "S", "P"])),
            ("app_type_code", app_type),
            (
                "sub_type_code",
                r.choice(["ATV", "UTV", "PWC", "SNOWMOBILE"]) if app_type == "OR" else "",
            ),
            ("dlr_broker", r.choice(["Y", "N"])),
            ("dlr_phone", b._phone(r)),
            ("dlr_fax", b._phone(r)),
            (
                "dlr_num_rv" if app_type == "RV" else "dlr_num_marine",
                str(r.randint(600000, 699999)),
            ),
            ("dlr_state", r.choice(["FL", "MI", "CA"])),
            ("dlr_zipcode", b._zip(r)),
            ("dlr_name", dealer),
            ("dlr_city", "Winter Park"),
            ("dlr_address_line1", "1112 Preserve Point Drive"),
            ("app_cash_down_payment", b._money(r, 30000)),
            ("app_sale_price", b._money(r, 90000)),
            ("requested_term_months", str(r.choice([60, 120, 144, 180]))),
            ("loan_amount_requested", b._money(r, 80000)),
            ("individual_joint_app_ind", "J" if joint else "I"),
            ("app_entry_date", b._date(r)),
            ("app_receive_date", b._date(r, "date")),
            ("assigned_analyst", "scott.garton@merrickbank.com"),
            ("duplicate_app_ind", r.choice(["Y", "N"])),
            ("last_update_time", b._date(r)),
            ("tied_app_id", str(r.randint(1, 999999)) if r.random() < 0.1 else ""),
            ("loanpro_loan_id", str(r.randint(1, 10**6))),
        ]
        return app

    def _contacts(
        self, r: random.Random, app_id: int, fault: str | None, joint: bool
    ) -> tuple[list[str], str]:
        """The contacts inside IL_application and the PR contact placed beside it (real recent
        exports), a con_id_collision fault reusing the previous application's con_id."""
        con = app_id * 10 + 1
        if fault == "con_id_collision":
            con = max(1, app_id - 1) * 10 + 1
        contacts = [self._contact(r, str(con), "PR")]
        if joint:
            contacts.append(self._contact(r, str(app_id * 10 + 2), "SEC"))
        if r.random() < 0.03:
            contacts.append(
                self._contact(r, str(app_id * 10 + 3), "AUTHU")
            )  # not an RL role: dropped with an event
        # the shapes of real recent exports, drawn apart so the other values of a seed stay the same:
        # the PR contact beside IL_application (a child of CustData), a blank SEC contact (no SSN, no names)
        shape = random.Random(f"{self.seed}:{app_id}:shape")
        beside = contacts.pop(0) if shape.random() < 0.1 else ""
        if shape.random() < 0.05:
            contacts.append(
                f'<IL_contact con_id="{app_id * 10 + 4}" ac_role_tp_c="SEC" ssn="" first_name="" last_name="" '
                'birth_date=""><IL_contact_address address_type_code="CURR" city="" state="" /></IL_contact>'
            )
        return contacts, beside

    def _cust_data(
        self,
        r: random.Random,
        tag: str,
        app: list[tuple[str, str]],
        app_type: str,
        joint: bool,
        contacts: list[str],
        beside: str,
    ) -> str:
        """The CustData element: IL_application with its collateral, decision, comments, funding,
        checklist, policies and contacts."""
        b = self.base
        comments = "".join(
            f'<IL_comments comment_seq_number="{i}" comment="Revolving Debt Burden automatically calculated" '
            f'user_id="System" />'
            for i in range(r.randint(1, 12))
        )
        cust = (
            f"<CustData>\n<{tag} {b._attrs(app)}>\n"
            f'<IL_fund_dlr_ach dlr_aba="{r.choice(["026009593", "02600959", ""])}" dlr_account_num="{r.randint(10**6, 10**9)}" '
            f'dlr_bank_name="Bill Bixby Bank" dlr_check_or_sav="{r.choice(["22", "32"])}" dlr_proceeds_amount="{b._money(r, 60000)}" '
            f'suppress_ach="{r.choice(["Y", "N"])}" />\n'
            + self._collateral(r, app_type)
            + "\n"
            + self._decision(r, joint)
            + "\n"
            + comments
            + "\n"
            + f'<IL_ITI_control funding_date="{b._date(r, "date")}" account_number="{r.randint(10**6, 10**7)}" '
            f'verification_number="{r.randint(10**5, 10**6)}" boarding_datetime="{b._date(r)}" />\n'
            + self._checklist(r)
            + "\n"
            + self._policies(r)
            + "\n"
            + f'<IL_ITI_note payment_date="{r.randint(1, 12):02d}/{r.randint(1, 28):02d}/25" product_number="4015201" />\n'
            + "\n".join(contacts)
            + '\n<WorkItems><WorkItem name="decision" status="pass" /></WorkItems>\n'
            f"</{tag}>\n{beside}</CustData>"
        )
        return cust

    @staticmethod
    def _with_fault(r: random.Random, text: str, fault: str | None) -> str:
        """The text broken as the fault says (malformed, truncated, empty), and usually a BOM."""
        if fault == "malformed":
            cut = text.find("<IL_collateral")
            text = text[:cut] + '<IL_collateral broken="1" <<>' + text[cut + 14 :]
        elif fault == "truncated":
            text = text[: int(len(text) * r.uniform(0.3, 0.95))]
        elif fault == "empty":
            text = r.choice(["", "   ", "\n"])
        if fault != "empty" and r.random() < 0.8:
            text = "\ufeff" + text
        return text

    def documents(self, start_id: int, count: int) -> Iterator[MockDocument]:
        for i in range(count):
            yield self.document(start_id + i)


class MixedGenerator:
    """Credit-card and RL documents in one corpus (``rl_share`` of them RL), as one source table
    holding both product lines. A credit-card 'wrong product line' fault would be a valid RL
    document here; it becomes a document of no known product line instead (stage validate)."""

    def __init__(
        self,
        seed: int = 42,
        faulty_share: float = 0.0,
        rl_share: float = 0.3,
        median_kb: float = 145.0,
    ) -> None:
        if not 0.0 <= rl_share <= 1.0:
            raise ValueError("rl_share must be between 0 and 1")
        self.seed = seed
        self.rl_share = rl_share
        self.cc = MockGenerator(seed=seed, faulty_share=faulty_share, median_kb=median_kb)
        self.rl = RLMockGenerator(seed=seed, faulty_share=faulty_share, median_kb=median_kb)

    def document(self, app_id: int) -> MockDocument:
        if product_of(self.seed, self.rl_share, app_id) == "rl":
            return self.rl.document(app_id)
        d = self.cc.document(app_id)
        if d.fault == "wrong_product_line":
            d.text = d.text.replace("IL_application", "XX_application")
        return d

    def documents(self, start_id: int, count: int) -> Iterator[MockDocument]:
        for i in range(count):
            yield self.document(start_id + i)


def fault_stage(fault: str) -> str:
    """The stage the pipeline must report for a fault of either generator."""
    return RL_FAULT_KINDS.get(fault) or FAULT_KINDS[fault]


def generator_for(
    product: str, seed: int, faulty_share: float, rl_share: float = 0.3
) -> MockGenerator | RLMockGenerator | MixedGenerator:
    """generate-mock --product cc|rl|mixed."""
    if product == "rl":
        return RLMockGenerator(seed=seed, faulty_share=faulty_share)
    if product == "mixed":
        return MixedGenerator(seed=seed, faulty_share=faulty_share, rl_share=rl_share)
    return MockGenerator(seed=seed, faulty_share=faulty_share)
