"""Realistic mock documents: the shape, sizes, value formats and edge cases of ``domain.md``, and
the real value ranges of ``legacy-rules.md`` (5-decimal APRs, fractional scores, 24-character
results, 44-character base64 tokens, six-digit sequence numbers, date-times with their time,
``Priority`` and the workflow attributes on ``Request``, every score-factor rule branch).

Deterministic: document ``app_id`` under seed ``S`` is always the same bytes, whatever else is
generated alongside. Sizes follow a log-normal around a 145 KB median (7 KB..2 MB), with ~95% of
the bytes in ``Reports``/``Journals`` noise, as in the real data. A chosen share of documents is
faulty in one of the ways real rows are (each tagged with the stage it must fail at).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

FAULT_KINDS = {
    # kind: stage the pipeline must report
    "malformed": "parse",
    "truncated": "parse",
    "wrong_product_line": "validate",
    "missing_id": "validate",
    "id_mismatch": "validate",
    "wrong_root": "validate",
    "empty": "read",
    "con_id_collision": "insert",
}

_FIRST = [
    "JANE",
    "JOHN",
    "MARIA",
    "DAVID",
    "LINDA",
    "JAMES",
    "ANA",
    "WEI",
    "FATIMA",
    "OLGA",
    "JOSÉ",
    "ZOË",
]
_LAST = [
    "EXAMPLE",
    "SMITH",
    "GARCIA",
    "NGUYEN",
    "O'BRIEN",
    "MÜLLER",
    "JOHNSON",
    "PATEL",
    "KOWALSKI",
    "LEE",
]
_CITY = [
    ("FARGO", "ND"),
    ("MOORHEAD", "MN"),
    ("AUSTIN", "TX"),
    ("TAMPA", "FL"),
    ("BOISE", "ID"),
    ("DAYTON", "OH"),
]
_STREET = ["MAIN ST", "ELM AVE", "OAK DR", "2ND ST", "LAKE RD", "HILL CT"]
_PROCESS = [
    "00025",
    "00050",
    "00095",
    "00098",
    "00100",
    "00500",
    "01000",
    "02000",
    "03000",
    "03010",
    "03100",
    "06000",
    "07000",
    "07500",
    "08000",
    "09000",
    "10900",
    "11000",
    "12000",
    "13000",
    "15000",
    "20000",
    "30000",
    "40000",
    "99000",
    "99500",
]
_PRIORITY = ["Alloy Error", "Offline Step-Up", "Step-Up Received"]
# (cumulative share, format): the date shapes of real documents, and of their date-only attributes
_DATETIME_SHAPES = [
    (0.35, "{y:04d}-{m:02d}-{d:02d} {hh:02d}:{mi:02d}:{ss:02d}.{ms:03d}"),
    (0.6, "{m:02d}/{d:02d}/{y:04d}"),
    (0.72, "{m}/{d}/{y}"),
    (0.8, "{y}-{m}-{d:02d} {hh}:{mi}:{ss}.0"),
    (0.88, "{m}/{d}/{y} {h12}:{mi:02d}:{ss:02d} {ampm}"),
    (0.95, "{m:02d}-{d:02d}-{y:04d}"),
    (0.97, ""),
    (0.985, "not a valid date"),
    (1.01, "hxjMnT9N5sefccFPz6MJbg=="),
]
_DAY_SHAPES = [
    (0.3, "{y:04d}-{m:02d}-{d:02d} 00:00:00.000"),
    (0.6, "{m:02d}/{d:02d}/{y:04d}"),
    (0.75, "{m}/{d}/{y}"),
    (0.95, "{m:02d}-{d:02d}-{y:04d}"),
    (0.98, ""),
    (1.01, "not a valid date"),
]
_NOISE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass
class MockDocument:
    app_id: int
    text: str
    fault: str | None  # one of FAULT_KINDS, or None for a document that must succeed
    row_app_id: int  # the app_id of the source row (differs from the document's for id_mismatch)
    encoding: str = "utf-8"


# population_assignment codes as real documents carry them, weighted by how often
_POPULATIONS = [
    ("", 50),
    ("DN", 38),
    ("SB", 22),
    ("CM", 15),
    ("SO", 9),
    ("JB", 9),
    ("LB", 6),
    ("HD", 4),
    ("T", 2),
    ("HU", 2),
    ("BL", 2),
    ("EV", 1),
    ("HW", 1),
    ("HE", 1),
    ("CV", 1),
    ("L2", 1),
    ("HV", 1),
    ("ZZ", 1),
]


class MockGenerator:
    """Makes documents; ``faulty_share`` of them broken in one of ``FAULT_KINDS`` ways."""

    def __init__(
        self,
        seed: int = 42,
        faulty_share: float = 0.0,
        median_kb: float = 145.0,
        sigma: float = 0.75,
        min_kb: float = 7.0,
        max_kb: float = 2048.0,
    ) -> None:
        if not 0.0 <= faulty_share <= 1.0:
            raise ValueError("faulty_share must be between 0 and 1")
        self.seed = seed
        self.faulty_share = faulty_share
        self.median = median_kb * 1024
        self.sigma = sigma
        self.min_bytes = int(min_kb * 1024)
        self.max_bytes = int(max_kb * 1024)
        pool_rng = random.Random(seed)
        self._make_pool(pool_rng)

    # -- values ---------------------------------------------------------------------------------
    @staticmethod
    def _date(r: random.Random, kind: str = "any") -> str:
        """``any``: a date-time in one of the real formats (often with its time of day); ``birth`` and
        ``date``: a day only (a real date attribute carries no time, at most midnight)."""
        y, m, d = r.randint(1990, 2025), r.randint(1, 12), r.randint(1, 28)
        hh, mi, ss, ms = r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), r.randint(0, 999)
        x = r.random()
        if kind == "birth":
            y = r.randint(1940, 2004)
        shapes = _DAY_SHAPES if kind in ("birth", "date") else _DATETIME_SHAPES
        shape = next(f for share, f in shapes if x < share)
        return shape.format(
            y=y,
            m=m,
            d=d,
            hh=hh,
            mi=mi,
            ss=ss,
            ms=ms,
            h12=(hh % 12) or 12,
            ampm="PM" if hh >= 12 else "AM",
        )

    @staticmethod
    def _money(r: random.Random, hi: int = 5000) -> str:
        x = r.random()
        if x < 0.55:
            return f"{r.randint(0, hi)}.{r.randint(0, 99):02d}"
        if x < 0.8:
            return f"{r.randint(0, hi * 30)}.0"
        if x < 0.9:
            return ""
        if x < 0.95:
            return f"{r.randint(0, 99)}.{r.randint(0, 999):03d}"
        if x < 0.975:
            return "no numbers here!"
        return "1001.001.001"

    @staticmethod
    def _zip(r: random.Random) -> str:
        x = r.random()
        if x < 0.6:
            return f"{r.randint(501, 99950):05d}"
        if x < 0.8:
            return f"{r.randint(501, 99950):05d}{r.randint(0, 9999):04d}"
        if x < 0.9:
            return f"{r.randint(10000, 99950)}-{r.randint(0, 9999):04d}"
        if x < 0.95:
            return "7486-444"
        return "00019-XYZ"

    @staticmethod
    def _phone(r: random.Random) -> str:
        x = r.random()
        n = f"{r.randint(201, 989)}555{r.randint(0, 9999):04d}"
        if x < 0.5:
            return n
        if x < 0.65:
            return "1" + n
        if x < 0.85:
            return f"({n[:3]}) {n[3:6]}-{n[6:]}"
        if x < 0.9:
            return f"({n[:3]}) {n[3:6]}-{n[6:]} ext. 21"
        return ""

    @staticmethod
    def _ssn(r: random.Random) -> str:
        x = r.random()
        n = f"666{r.randint(0, 999999):06d}"
        if x < 0.6:
            return n
        if x < 0.85:
            return f"{n[:3]}-{n[3:5]}-{n[5:]}"
        if x < 0.9:
            return n + "1"
        if x < 0.95:
            return "hxjMnT9N5sefccFPz6MJbg=="
        return ""

    @staticmethod
    def _pick(r: random.Random, weighted: list[tuple[str, int]]) -> str:
        total = sum(w for _, w in weighted)
        x = r.uniform(0, total)
        for v, w in weighted:
            x -= w
            if x <= 0:
                return v
        return weighted[-1][0]

    @staticmethod
    def _yn(r: random.Random, empty: float = 0.2) -> str:
        x = r.random()
        return "" if x < empty else ("Y" if x < empty + (1 - empty) * 0.7 else "N")

    # -- elements -------------------------------------------------------------------------------
    def _attrs(self, pairs: list[tuple[str, str]]) -> str:
        return " ".join(f"{k}={quoteattr(v)}" for k, v in pairs)

    def _application(self, r: random.Random) -> list[tuple[str, str]]:
        a = [
            ("app_receive_date", self._date(r) if r.random() > 0.01 else "not a valid date"),
            ("app_entry_date", self._date(r)),
            ("app_type_code", self._pick(r, [("PRODB", 127), ("SECURE", 32), ("FPP", 3), ("", 2)])),
            ("campaign_num", r.choice(["Z4K", "A1B", "Q77", "XK2"])),
            ("population_assignment", self._pick(r, _POPULATIONS)),
            ("signature_ind", self._pick(r, [("Y", 159), ("", 5)])),
            ("special_offer", self._pick(r, [("1", 67), ("3", 49), ("2", 30), ("4", 8), ("", 4)])),
            ("app_source_ind", self._pick(r, [("I", 144), ("M", 14), ("", 4)])),
            ("paperless_flag", self._pick(r, [("true", 67), ("false", 26), ("", 1)])),
            ("sms_consent_flag", r.choice(["true", "false"])),
            ("esign_consent_flag", r.choice(["true", "false", ""])),
            (
                "IP_address",
                f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(0, 255)}"
                if r.random() > 0.02
                else "x" * 60,
            ),
            ("procs_date", self._date(r)),
            ("solicitation_num", str(r.randint(10**8, 10**9))),
            ("address_match_flag", self._yn(r)),
            ("name_match_flag", self._yn(r)),
            ("ssn_match_flag", self._yn(r)),
            ("pymnt_prot_plan_ind", self._yn(r)),
            ("swiftpay_num", str(r.randint(1000, 99999))),
            ("pricing_tier", r.choice(["T1", "T2", "T3", ""])),
            ("processing_expiration_date", self._date(r, "date")),
            ("last_update_time", self._date(r)),
            ("credit_life_ind", self._yn(r)),
            ("verification_source", self._pick(r, [("", 103), ("LNQ", 8), ("KIQ", 4), ("LNA", 3)])),
            ("assignedTo", "ANALYST.ONE@EXAMPLE.COM"),
            ("updatedBy", "SYSTEM"),
            ("opt_out_ind", self._yn(r)),
            ("suspicious_ind", self._yn(r)),
            ("Debit_Initial_Deposit_amount", self._money(r)),
            ("secure_ach_amount", self._money(r)),
            ("existing_credit_line", self._money(r)),
            ("signed_date", self._date(r)),
        ]
        return a + self._application_flags(r)

    @staticmethod
    def _base64(r: random.Random, nbytes: int) -> str:
        """Ciphertext as the documents carry it: 32 bytes -> 44 base64 characters."""
        import base64

        return base64.b64encode(bytes(r.randrange(256) for _ in range(nbytes))).decode("ascii")

    def _request(self, r: random.Random) -> list[tuple[str, str]]:
        """``Request`` attributes with the shares of the 164 real documents (legacy-rules.md)."""
        a = [("Process", r.choice(_PROCESS) if r.random() < 0.94 else "")]
        if r.random() < 0.65:
            a.append(("Status", r.choice("ABCDFPQW")))
        if r.random() < 0.74:
            a.append(("Trans", r.choice(["WSCLOSE", "WEBAPP", "LETTR", "DECISION"])))
        if r.random() < 0.41:
            a.append(
                (
                    "LastUpdatedBy",
                    r.choice(["ANALYST.ONE@EXAMPLE.COM", "SYSTEM", "underwriter.two@example.com"]),
                )
            )
        a.append(
            (
                "LockedBy",
                r.choice(["ANALYST.ONE@EXAMPLE.COM", "SYSTEM"]) if r.random() < 0.03 else "",
            )
        )
        if r.random() < 0.9:
            a.append(("Priority", r.choice(_PRIORITY) if r.random() < 0.8 else ""))
        if r.random() < 0.28:
            a.append(("iovation_blackbox", "0400" + self._base64(r, r.randint(300, 1500))))
        if r.random() < 0.09:
            a.append(("btcardtoken", self._base64(r, 32)))
        if r.random() < 0.1:
            a.append(("btresponsecode", r.choice(["APPROVED", "DECLINED", "ERROR_TIMEOUT"])))
        a.append(("Timestamp", self._date(r)))
        return a

    def _product(self, r: random.Random) -> list[tuple[str, str]]:
        """app_product's attributes: decision and scores, then adverse actions and the rest."""
        a = self._product_scores(r) + self._product_adverse(r)
        if (
            r.random() < 0.9
        ):  # else the Reg B start date falls back (to application's, then to app_receive_date)
            a.append(("regb_start_date", self._date(r)))
        return a

    def _application_flags(self, r: random.Random) -> list[tuple[str, str]]:
        """application's notice flags and the attributes only some documents carry (Priority here,
        an empty product line, encrypted account numbers, a retired attribute)."""
        a = [
            (f"non_mon_{x}_sent_flag", self._yn(r, 0.5))
            for x in ("016", "020", "103", "115", "122")
        ]
        x = r.random()
        if x < 0.05:  # a few documents carry Priority here instead of on Request
            a.append(("priority" if r.random() < 0.5 else "Priority", r.choice(_PRIORITY)))
        if r.random() < 0.5:  # empty (or absent) means credit card
            a.append(("product_line", ""))
        if r.random() < 0.1:  # encrypted account numbers: 44-character base64
            a.append(("existing_card_account_num", self._base64(r, 32)))
        if r.random() < 0.05:
            a.append(("regb_start_date", self._date(r)))
        if r.random() < 0.1:
            a.append(("signiture_ind", "Y"))  # a retired attribute -> app_historical_lookup
        return a

    @staticmethod
    def _score(r: random.Random) -> str:
        """A score: empty, an integer, or (as real scores are) a decimal such as 45.31."""
        x = r.random()
        if x < 0.3:
            return ""
        return str(r.randint(300, 850)) if x < 0.6 else f"{r.randint(1, 99)}.{r.randint(1, 99):02d}"

    def _product_scores(self, r: random.Random) -> list[tuple[str, str]]:
        """The decision, the scores and the income figures of app_product."""
        return [
            (
                "decision_tp_c",
                self._pick(
                    r,
                    [
                        ("APPRV", 62),
                        ("NONE", 44),
                        ("DECNC", 29),
                        ("WITHD", 8),
                        ("", 7),
                        ("PDEP", 7),
                        ("DECLN", 3),
                        ("XXX", 1),
                    ],
                ),
            ),
            ("decision_date", self._date(r)),
            ("precision_score", str(r.randint(0, 999))),
            ("experian_fico_score", self._score(r)),
            ("prescreen_fico_score", self._score(r)),
            ("prescreen_risk_score", self._score(r)),
            ("Vantage_Score_TU" if r.random() < 0.8 else "vantage_score_tu", self._score(r)),
            ("TU_DIE_score", self._score(r)),
            ("EX_DIE_score", self._score(r)),
            ("risk_model_score", self._score(r)),
            ("classic_08_score", self._score(r)),
            ("DIE_Plus_Score", self._score(r)),
            ("Vantage_Score_EX", self._score(r)),
            (
                "VeridQA_Result",
                self._pick(
                    r, [("", 60), ("NoOnlineQA_ManualProcess", 25), ("Pass", 10), ("Fail", 5)]
                ),
            ),
            (
                "prescreen_risk_grade",
                self._pick(r, [("", 66), ("A", 34), ("B", 19), ("D", 10), ("E", 10), ("C", 8)]),
            ),
            (
                "backend_risk_grade",
                self._pick(r, [("", 75), ("U", 74), ("D", 6), ("too many characters", 1)]),
            ),
            ("duplicate_app_ind", self._yn(r)),
            ("pending_verif_ind", self._yn(r)),
            ("analyst_rev_ind", self._yn(r)),
            ("supervisor_rev_ind", self._yn(r)),
            ("monthly_income", self._money(r, 12000)),
            ("monthly_debt", self._money(r)),
            ("debt_to_income_ratio", f"0.{r.randint(0, 99):02d}"),
            ("booked_date", self._date(r)),
        ]

    def _product_adverse(self, r: random.Random) -> list[tuple[str, str]]:
        """Adverse-action and risk-model reason codes, Reg B and the bureau counts of app_product."""
        return [
            (
                "adverse_actn1_type_cd",
                self._pick(
                    r,
                    [
                        ("", 113),
                        ("010", 11),
                        ("039", 6),
                        ("38", 4),
                        ("V4_81", 2),
                        ("97V", 2),
                        ("AA ANYTHING-1 ANOTHER FIELD TOO LONG", 1),
                    ],
                ),
            ),
            ("adverse_actn2_type_cd", self._pick(r, [("", 150), ("004", 3), ("V4_68", 1)])),
            ("adverse_actn3_type_cd", self._pick(r, [("", 150), ("027", 3)])),
            ("adverse_actn4_type_cd", self._pick(r, [("", 155), ("015", 2)])),
            ("adverse_actn5_type_cd", self._pick(r, [("", 160), ("45", 1)])),
            (
                "Risk_Model_reason1_tp_c" if r.random() < 0.5 else "risk_model_reason1_tp_c",
                r.choice(["", "R1", "R22"]),
            ),
            ("Risk_Model_reason2_tp_c", r.choice(["", "", "R7"])),
            ("Risk_Model_reason3_tp_c", r.choice(["", "", "", "R9"])),
            ("Risk_Model_reason4_tp_c", r.choice(["", "", "", "", "R2"])),
            ("regbcloseddays_num", str(r.randint(0, 90))),
            ("regb_end_date", self._date(r)),
            ("thirty_day_delinq_num", str(r.randint(0, 5))),
            ("merrick_tradelines_num", str(r.randint(0, 40))),
            ("aggregate_balance", self._money(r, 90000)),
            ("decision_model", ("DM" if r.random() < 0.8 else "TU_") + str(r.randint(1, 9))),
            ("control_accnt_seq_no", str(r.randint(1, 999999))),
            ("pd_seq_no", str(r.randint(1, 999999))),
        ]

    def _rmts(
        self, r: random.Random, first: str, last: str, city: str, st: str
    ) -> list[tuple[str, str]]:
        return [
            ("campaign_number", r.choice(["Z4K", "A1B"])),
            ("primary_first_name", first),
            ("primary_last_name", last),
            ("pri_city", city),
            ("pri_state", st),
            ("pri_zip_code", self._zip(r)),
            ("pri_cur_street_num", str(r.randint(1, 9999))),
            ("pri_cur_street_name", r.choice(_STREET)),
            ("primary_ssn", self._ssn(r)),
            ("apr", f"{r.randint(9, 35)}.{r.randint(0, 99):02d}"),
            ("annual_fee", r.choice(["0", "39", "75", "99"])),
            ("late_payment_fee", "40.00"),
            ("cash_advance_apr", "29.99"),
            (
                "intro_purchase_apr",
                f"0.{r.randint(0, 99999):05d}" if r.random() < 0.9 else "0.00",
            ),  # 0.07657
            (
                "intro_cash_advance_apr",
                f"0.{r.randint(0, 9999):04d}"
                if r.random() < 0.5
                else f"0.{r.randint(0, 99999):05d}",
            ),
            ("transmission_date", self._date(r)),
            ("upc1", str(r.randint(0, 10**9))),
            ("misc_field_1", r.choice(["", "X", "LONGER VALUE"])),
            ("special_flag_1", self._yn(r)),
        ] + ([("pri_apt_num", "4")] if r.random() < 0.05 else [])

    def _contact(self, r: random.Random, con_id: str, role: str, city: str, st: str) -> str:
        first, last = r.choice(_FIRST), r.choice(_LAST)
        attrs = [
            ("con_id", con_id),
            ("ac_role_tp_c", role),
            ("first_name", first),
            ("initials", r.choice(["", "Q", "A"])),
            ("last_name", last),
            ("suffix", r.choice(["", "", "JR", "III"])),
            ("ssn", self._ssn(r)),
            ("birth_date", self._date(r, "birth")),
            ("email", f"{first.lower()}@example.com"),
            ("mother_maiden_name", r.choice(["", "TEST", "SMITH"])),
            ("banking_aba", ""),
            ("banking_account_number", ""),
            ("banking_account_type", self._pick(r, [("", 131), ("C", 7), ("S", 2), ("B", 1)])),
        ]
        if r.random() < 0.02:
            attrs = [
                (k, "" if k not in ("con_id", "ac_role_tp_c") else v) for k, v in attrs
            ]  # every identity field empty
        children = self._addresses(r, city, st) + self._employment(r, city, st)
        if role == "PR":
            children.append(
                f"<app_prod_bcard {self._attrs([('requested_credit_line', self._money(r)), ('allocated_credit_line', str(r.randint(3, 50) * 100)), ('issue_card_ind', self._yn(r, 0.5)), ('card_decision_tp_c', r.choice(['APPRV', 'NODEC', 'DECNC', '']))])} />"
            )
        return f"<contact {self._attrs(attrs)}>\n" + "\n".join(children) + "\n</contact>"

    def _addresses(self, r: random.Random, city: str, st: str) -> list[str]:
        """A contact's addresses: CURR, sometimes PREV or a blank type (some of them empty)."""
        children = []
        n_addr = 1 if r.random() < 0.85 else r.randint(2, 3)
        for i in range(n_addr):
            typ = "CURR" if i == 0 else self._pick(r, [("PREV", 5), ("", 3), ("CURR", 1)])
            a = [
                ("address_tp_c", typ),
                ("address_seq_no", str(r.randint(1, 999999))),
                ("street_number", str(r.randint(1, 9999))),
                ("street_name", r.choice(_STREET)),
                ("unit", r.choice(["", "", "2B"])),
                ("po_box", ""),
                ("rural_route", ""),
                ("address_line_1", ""),
                ("city", city),
                (
                    "state",
                    r.choice([st, st.lower(), st, "vermontington"]) if r.random() < 0.1 else st,
                ),
                ("zip", self._zip(r)),
                ("home_phone", self._phone(r)),
                ("cell_phone", self._phone(r)),
                ("residence_monthly_pymnt", self._money(r, 3000)),
                ("ownership_tp_c", self._pick(r, [("", 47), ("X", 8), ("R", 2), ("O", 1)])),
                ("years_at_residence", str(r.randint(0, 30)) if r.random() < 0.9 else ""),
                ("months_at_residence", str(r.randint(0, 11)) if r.random() < 0.8 else ""),
                ("Patriot_Act_city", ""),
            ]
            if typ == "" and r.random() < 0.5:
                a = [(k, "") for k, _ in a]
            children.append(f"<contact_address {self._attrs(a)} />")
        return children

    def _employment(self, r: random.Random, city: str, st: str) -> list[str]:
        """A contact's employment (95% of contacts): salary and basis, or a value that is no number."""
        if r.random() >= 0.95:
            return []
        basis = self._pick(
            r, [("ANNUM", 156), ("MONTH", 10), ("WEEK", 1), ("BIWEEK", 1), ("HOURLY", 1)]
        )
        sal = {
            "ANNUM": r.randint(15, 250) * 1000,
            "MONTH": r.randint(1, 20) * 500,
            "WEEK": r.randint(3, 30) * 100,
            "BIWEEK": r.randint(6, 60) * 100,
            "HOURLY": r.randint(12, 90),
        }[basis]
        e = [
            ("employment_tp_c", self._pick(r, [("CURR", 159), ("PREV", 2), ("", 1)])),
            ("employment_seq_no", str(r.randint(1, 999999))),
            ("b_name", r.choice(["ACME FREIGHT", "CITY OF FARGO", "SELF"])),
            ("b_salary", f"{sal}.0" if r.random() < 0.97 else "no numbers here!"),
            ("b_salary_basis_tp_c", basis),
            ("b_years_at_job", str(r.randint(0, 30))),
            ("b_months_at_job", str(r.randint(0, 11))),
            ("b_other_income_amt", r.choice(["0", "", "250.00"])),
            ("b_self_employed_ind", self._yn(r)),
            ("b_city", city),
            ("b_state", st if r.random() < 0.97 else "vermontington"),
            ("b_zip", self._zip(r)),
            ("b_phone_no", self._phone(r)),
            ("b_job_title_tp_c", ""),
            (
                "b_primary_income_source_tp_c",
                self._pick(r, [("", 110), ("EMPLOY", 37), ("OTHER", 7)]),
            ),
        ]
        return [f"<contact_employment {self._attrs(e)} />"]

    def _make_pool(self, rng: random.Random) -> None:
        """Element-dense vendor-payload markup, made once per generator and sliced per document.

        Real ``Reports`` are deep trees of small elements with short attribute values and escaped
        payloads; that (not raw byte count) is what makes a full parse cost what it does.
        """
        items = []
        for k in range(6000):
            kind = rng.random()
            word = "".join(rng.choice(_NOISE_ALPHABET) for _ in range(rng.randint(4, 24)))
            if kind < 0.015:
                blob = (word * 400)[: rng.randint(2000, 9000)]
                items.append(f'<Blob enc="base64" data="{blob}" />')
            elif kind < 0.5:
                items.append(
                    f'<Field name="f{k % 97}" type="string" value="{word}" src="bureau" />'
                )
            elif kind < 0.7:
                items.append(
                    f'<Tradeline id="{k}" acct="{word[:10]}" bal="{rng.randint(0, 99999)}.00" status="C" opened="2019-03-0{k % 9 + 1}">'
                    f'<Pay m="1" v="OK" /><Pay m="2" v="30" /><Pay m="3" v="OK" /></Tradeline>'
                )
            elif kind < 0.85:
                items.append(
                    f'<Raw seq="{k}">&lt;node a=&quot;{word}&quot;&gt;{word}&lt;/node&gt;</Raw>'
                )
            else:
                items.append(
                    f'<Message code="M{k % 50}" severity="info">{word} {word[::-1]} applied rule {k % 13}</Message>'
                )
        self._pool = "".join(items)
        self._offsets = [0]
        for it in items:
            self._offsets.append(self._offsets[-1] + len(it))

    def _slice(self, r: random.Random, nbytes: int) -> str:
        out = []
        n = len(self._offsets) - 1
        while nbytes > 0:
            i = r.randrange(n)
            want = self._offsets[i] + nbytes
            j = min(n, bisect.bisect_left(self._offsets, want))
            out.append(self._pool[self._offsets[i] : self._offsets[j]])
            nbytes -= self._offsets[j] - self._offsets[i]
        return "".join(out)

    def _noise(self, r: random.Random, nbytes: int) -> str:
        parts = ["<Reports>"]
        reports = int(nbytes * 0.94)
        k = 0
        while reports > 0:
            n = min(reports, r.randint(4000, 60000))
            parts.append(
                f'<Report name="VendorPayload{k}" vendor="V{k % 7}"><Response>{self._slice(r, n)}</Response></Report>'
            )
            reports -= n + 80
            k += 1
        parts.append("</Reports><Journals>")
        parts.append(
            self._slice(r, max(0, nbytes - int(nbytes * 0.94))).replace("Field", "Journal")
        )
        parts.append("</Journals>")
        return "".join(parts)

    def document(self, app_id: int) -> MockDocument:
        r = random.Random(self.seed * 1_000_003 + app_id)
        fault = None
        if self.faulty_share and r.random() < self.faulty_share:
            fault = r.choice(sorted(FAULT_KINDS))
        target = int(
            min(
                self.max_bytes,
                max(self.min_bytes, math.exp(r.gauss(math.log(self.median), self.sigma))),
            )
        )
        city, st = r.choice(_CITY)
        n_contacts = 1 if r.random() < 0.8 else 2
        contacts = [self._contact(r, str(app_id * 10 + 1), "PR", city, st)]
        if n_contacts == 2:
            contacts.append(self._contact(r, str(app_id * 10 + 2), "AUTHU", city, st))
        x = r.random()
        if x < 0.02:
            contacts.append(self._contact(r, "", "PR", city, st))
        elif x < 0.04:
            contacts.append(
                self._contact(r, str(app_id * 10 + 3), r.choice(["SEC", "WEIRD"]), city, st)
            )
        elif x < 0.05:
            contacts.append(
                self._contact(r, str(app_id * 10 + 1), "AUTHU", city, st)
            )  # same con_id twice
        if fault == "con_id_collision":
            contacts[0] = self._contact(r, str(max(1, app_id - 1) * 10 + 1), "PR", city, st)
        first, last = r.choice(_FIRST), r.choice(_LAST)
        scores = "".join(
            f'<score score_identifier="{n}" score="{r.randint(0, 9)}" />'
            for n in ("email_risk", "device_risk")[: r.randint(0, 2)]
        )
        if (
            r.random() < 0.2
        ):  # a scores/score V4 beside app_product/@Vantage_Score_EX (the legacy V4): kept apart
            scores += f'<score score_identifier="V4" score="{r.randint(300, 850)}.{r.randint(0, 99):02d}" />'
        indicators = "".join(
            f'<Indicator ID="{n}" value="{r.choice(["1", "0", "Y", "N", "true"])}" />'
            for n in ("CreditBureauPulled", "MLA", "OFAC", "FraudAlert")[: r.randint(1, 4)]
        )
        app_tag = "IL_application" if fault == "wrong_product_line" else "application"
        cust = (
            f"<CustData>\n<{app_tag} {self._attrs(self._application(r))}>\n"
            f"<app_product {self._attrs(self._product(r))} />\n"
            f"<rmts_info {self._attrs(self._rmts(r, first, last, city, st))} />\n"
            + "\n".join(contacts)
            + f"\n<scores>{scores}</scores>\n<Indicators>{indicators}</Indicators>\n"
            f'<comments><comment text="called applicant" /></comments>\n</{app_tag}>\n</CustData>'
        )
        doc_id = (
            "" if fault == "missing_id" else str(app_id + 7 if fault == "id_mismatch" else app_id)
        )
        id_attr = f' ID="{doc_id}"' if fault != "missing_id" else ""
        head = f"<Request{id_attr} {self._attrs(self._request(r))}>\n"
        noise = self._noise(r, max(0, target - len(cust) - 400))
        root = "Provenir" if fault != "wrong_root" else "Provenirr"
        text = f'<{root} app_source="API" appType="CC" shred_version="4.0">\n{head}{cust}\n{noise}\n</Request>\n</{root}>\n'
        if fault == "malformed":
            cut = text.find("<rmts_info")
            text = text[:cut] + '<rmts_info broken="1" <<>' + text[cut + 10 :]
        elif fault == "truncated":
            text = text[: int(len(text) * r.uniform(0.3, 0.95))]
        elif fault == "empty":
            text = r.choice(["", "   ", "\n"])
        if fault not in ("empty",) and r.random() < 0.8:
            text = "\ufeff" + text
        return MockDocument(app_id=app_id, text=text, fault=fault, row_app_id=app_id)

    def documents(self, start_id: int, count: int) -> Iterator[MockDocument]:
        for i in range(count):
            yield self.document(start_id + i)
