"""`xml-extractor profile`: capacity loss (the contract must change) told apart from invalid values, the
unmapped attributes, unknown codes; exit 1 only on capacity loss. Real SQLite/PostgreSQL sources made
by `generate-mock`, real command line."""

import json
import re

import pytest
from conftest import cli_in_process

from xml_extractor.contract.loader import default_contract_path, load_contract
from xml_extractor.db.database import Database
from xml_extractor.mock import MockGenerator
from xml_extractor.profile import read_attributes, sample_ids

DOCS = 2000


@pytest.fixture(scope="module")
def source_2000(module_db_url):
    """2,000 generated documents in a source table of each engine."""
    url = module_db_url
    cli_in_process("generate-mock", "--db", url, "--count", str(DOCS), "--seed", "7", check=True)
    return url


def contract_copy(tmp_path, change):
    raw = json.loads(default_contract_path().read_text("utf-8"))
    change(raw)
    p = tmp_path / "contract.json"
    p.write_text(json.dumps(raw), encoding="utf-8")
    return p


def column(raw, table, name):
    t = next(t for t in raw["tables"] if t["name"] == table)
    return next(c for c in t["columns"] if c["name"] == name)


@pytest.mark.slow
def test_default_contract_has_no_capacity_loss_on_generated_documents(source_2000):
    p = cli_in_process("profile", "--db", source_2000, "--sample", str(DOCS), "--format", "json")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    r = json.loads(p.stdout)
    assert r["documents"] == DOCS and r["mapped"] == DOCS
    assert r["capacity_loss_columns"] == []
    cols = {f"{c['table']}.{c['column']}": c for c in r["columns"]}
    # the real ranges were seen and fit: 5 decimals, 24 characters, 6 digits, fractional scores
    assert cols["app_pricing_cc.intro_purchase_apr"]["max_decimal_places"] == 5
    assert cols["app_transactional_cc.verid_qa_result"]["longest"] == 24
    assert cols["app_contact_address.address_seq_no"]["max_integer_digits"] == 6
    assert cols["scores.score"]["max_decimal_places"] == 2
    # invalid values are reported as such, not as capacity loss
    assert (
        cols["app_contact_base.ssn"]["invalid"] > 0
        and cols["app_contact_base.ssn"]["capacity_loss"] == 0
    )
    assert (
        cols["app_base.ip_address"]["invalid"] > 0
        and cols["app_base.ip_address"]["invalid_examples"]
    )
    assert {e["enum"]: set(e["unknown_codes"]) for e in r["enums"]} == {
        "decision": {"XXX"},
        "population_assignment": {"ZZ"},
    }
    unmapped = {(u["element"], u["attribute"]) for u in r["unmapped"]}
    assert ("Provenir/Request", "Timestamp") in unmapped
    for a in (
        "Process",
        "Status",
        "Trans",
        "LastUpdatedBy",
        "Priority",
        "iovation_blackbox",
        "btcardtoken",
    ):
        assert ("Provenir/Request", a) not in unmapped  # the legacy attributes are mapped now
    table = cli_in_process("profile", "--db", source_2000, "--sample", "300")
    assert (
        table.returncode == 0 and "no capacity loss" in table.stdout and "unmapped" in table.stdout
    )


@pytest.mark.slow  # a large input: its fixture builds thousands of rows
def test_narrow_contract_reports_exactly_the_two_columns_and_exits_1(source_2000, tmp_path):
    def narrow(raw):
        column(raw, "app_pricing_cc", "intro_purchase_apr")["scale"] = 3
        column(raw, "app_transactional_cc", "verid_qa_result")["length"] = 20

    path = contract_copy(tmp_path, narrow)
    p = cli_in_process(
        "profile",
        "--db",
        source_2000,
        "--sample",
        "400",
        "--contract",
        str(path),
        "--format",
        "json",
    )
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    r = json.loads(p.stdout)
    assert sorted(r["capacity_loss_columns"]) == [
        "app_pricing_cc.intro_purchase_apr",
        "app_transactional_cc.verid_qa_result",
    ]
    cols = {f"{c['table']}.{c['column']}": c for c in r["columns"]}
    apr, verid = (
        cols["app_pricing_cc.intro_purchase_apr"],
        cols["app_transactional_cc.verid_qa_result"],
    )
    assert apr["capacity"] == {"scale": apr["capacity_loss"]} and apr["max_decimal_places"] == 5
    assert re.fullmatch(r"0\.\d{5}", apr["capacity_examples"][0]["raw"])
    assert "rounded" in apr["capacity_examples"][0]["reason"]
    assert verid["capacity"] == {"length": verid["capacity_loss"]} and verid["longest"] == 24
    assert verid["capacity_examples"][0]["raw"] == "NoOnlineQA_ManualProcess"
    table = cli_in_process(
        "profile", "--db", source_2000, "--sample", "400", "--contract", str(path)
    )
    assert table.returncode == 1
    assert (
        "CAPACITY LOSS in 2 column(s)" in table.stdout
        and "NoOnlineQA_ManualProcess" in table.stdout
    )


@pytest.mark.slow
def test_attributes_the_contract_leaves_unmapped_are_listed(tmp_path):
    def leave_out(raw):
        for t in raw["tables"]:
            if t["name"] == "app_operational_cc":
                t["columns"] = [c for c in t["columns"] if c["name"] != "last_transaction"]
            if t["name"] == "app_base":
                t["columns"] = [c for c in t["columns"] if c["name"] != "campaign_num"]

    path = contract_copy(tmp_path, leave_out)
    files = tmp_path / "docs"
    files.mkdir()
    carrying_trans = 0
    for d in MockGenerator(seed=3).documents(1, 40):
        (files / f"{d.app_id}.xml").write_text(d.text, encoding="utf-8")
        carrying_trans += bool(re.search(r'<Request[^>]* Trans="[^"]+"', d.text))
    p = cli_in_process("profile", str(files), "--contract", str(path), "--format", "json")
    assert p.returncode == 0, p.stderr
    unmapped = {(u["element"], u["attribute"]): u for u in json.loads(p.stdout)["unmapped"]}
    assert unmapped[("Provenir/Request", "Trans")]["documents"] == carrying_trans > 0
    camp = unmapped[("Provenir/Request/CustData/application", "campaign_num")]
    assert camp["documents"] == 40 and len(camp["examples"]) == 3
    p = cli_in_process("profile", str(files), "--format", "json")  # the default contract reads both
    assert not {
        ("Provenir/Request", "Trans"),
        ("Provenir/Request/CustData/application", "campaign_num"),
    } & {(u["element"], u["attribute"]) for u in json.loads(p.stdout)["unmapped"]}


def test_read_set_covers_paths_expressions_fallbacks_and_unpivot(contract):
    reads = read_attributes(contract)
    app = ("Provenir", "Request", "CustData", "application")
    assert (("Provenir", "Request"), "priority") in reads  # path ../../@Priority
    assert (app, "priority") in reads  # its fallback
    assert (app, "product_line") in reads  # an expression's @attribute
    assert (app + ("app_product",), "die_plus_score") in reads  # an unpivot name
    assert (app + ("contact", "contact_address"), "address_tp_c") in reads  # allowed + predicate
    assert (("Provenir", "Request"), "id") in reads


@pytest.mark.slow  # a large input: its fixture builds thousands of rows
def test_sample_ids_spread_over_the_range_by_keyset(source_2000):
    db = Database(source_2000, load_contract())
    try:
        ids = sample_ids(db, 10)
        assert ids == [1 + 200 * k for k in range(10)]
        assert len(sample_ids(db, 5000)) == DOCS  # never more than there are, never twice the same
    finally:
        db.close()


@pytest.mark.slow
def test_profile_reads_server_heads_and_counts_failures(db_url):
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "60",
        "--seed",
        "11",
        "--faulty-share",
        "0.3",
        check=True,
    )
    p = cli_in_process("profile", "--db", db_url, "--sample", "60", "--format", "json")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    r = json.loads(p.stdout)
    assert r["documents"] == 60 and r["mapped"] + sum(r["failed"].values()) == 60 and r["failed"]
    assert r["capacity_loss_columns"] == []


def test_paths_and_db_together_is_a_usage_error(tmp_path):
    p = cli_in_process("profile", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert p.returncode == 2 and "either PATHS or --db" in p.stderr


@pytest.mark.slow
def test_fractional_scores_in_an_int_column_are_capacity_loss_not_invalid():
    """The legacy complaint 'fractional scores dropped': with scores.score int (contract 1.0.0),
    45.31 is a valid number the type cannot hold; 'abc' stays an invalid value."""
    from xml_extractor.contract.loader import contract_from_dict
    from xml_extractor.profile import Profiler

    raw = json.loads(default_contract_path().read_text("utf-8"))
    score = column(raw, "scores", "score")
    score["type"] = "int"
    del score["precision"], score["scale"]
    prof = Profiler(contract_from_dict(raw, "int-scores"), "mock")
    for d in MockGenerator(seed=5).documents(1, 150):
        prof.add(d.text, d.app_id)
    prof.add(
        MockGenerator(seed=5).document(151).text.replace('DIE_Plus_Score="', 'DIE_Plus_Score="abc'),
        151,
    )
    assert [f"{c.table}.{c.column}" for c in prof.report.capacity_columns] == ["scores.score"]
    cp = prof.report.columns[("scores", "score")]
    assert cp.capacity["scale"] > 0 and cp.max_decimal_places == 2
    assert re.fullmatch(
        r"\w+: '\d+\.\d\d' is not a whole number \(int has no decimal places\)",
        cp.capacity_examples[0]["reason"],
    )


@pytest.mark.slow
def test_a_contract_set_routes_each_document_to_its_contract(db_url):
    url = db_url  # PostgreSQL sends heads only: the routing must not need the whole document
    cli_in_process(
        "generate-mock",
        "--db",
        url,
        "--count",
        "120",
        "--product",
        "mixed",
        "--seed",
        "4",
        check=True,
    )
    p = cli_in_process(
        "profile",
        "--db",
        url,
        "--sample",
        "120",
        "--contract",
        "credit_card",
        "--contract",
        "rec_lending",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    out = json.loads(p.stdout)
    cc, rl = out["contracts"]
    assert cc["contract"].startswith("credit_card@") and rl["contract"].startswith("rec_lending@")
    assert cc["documents"] > 0 and rl["documents"] > 0 and cc["documents"] + rl["documents"] == 120
    assert (
        cc["mapped"] == cc["documents"]
        and rl["mapped"] == rl["documents"]
        and out["unrouted"]["documents"] == 0
    )
    rl_unmapped = {(u["element"], u["attribute"]) for u in rl["unmapped"]}
    assert all(
        e.startswith("Provenir/Request/CustData/IL_application")
        or e in ("Provenir", "Provenir/Request")
        for e, _ in rl_unmapped
    )
    # the credit-card contract alone: the rec-lending documents fail at validate, as in a run
    p = cli_in_process("profile", "--db", url, "--sample", "120", "--format", "json")
    alone = json.loads(p.stdout)
    assert alone["failed"] == {"validate": rl["documents"]} and alone["mapped"] == cc["documents"]


def test_huge_integers_and_seven_fraction_digits_are_capacity_not_invalid_or_a_crash():
    """A 5,000-digit sequence number is a number the int column cannot hold (it used to raise ValueError
    out of int() and stop the profile); a date-time with 7 decimal places (SQL Server, .NET) is a time
    the column cuts (it used to be 'not a date': invalid, the whole value lost)."""
    from xml_extractor.profile import Profiler

    prof = Profiler(load_contract(), "test")
    text = MockGenerator(seed=5).document(1).text
    text = re.sub(r'address_seq_no="\d+"', f'address_seq_no="{"9" * 5000}"', text, count=1)
    text = re.sub(
        r'decision_date="[^"]*"', 'decision_date="2025-10-14 17:13:36.9591234"', text, count=1
    )
    prof.add(text, 1)
    assert prof.report.mapped == 1
    seq = prof.report.columns[("app_contact_address", "address_seq_no")]
    decision = prof.report.columns[("app_base", "decision_date")]
    assert seq.capacity == {"digits": 1} and seq.invalid == 0 and seq.max_integer_digits == 5000
    assert decision.capacity == {"time": 1} and decision.invalid == 0 and decision.values == 1


@pytest.mark.slow
def test_sample_size_is_honoured_when_ids_have_gaps(db_url):
    """ids 1..60 and 1000: evenly spaced points run past the dense ids and the one far id ends the range.
    A sample as large as the table reads every document (was 11 of 31 for ids 1..30 + 100); a smaller one
    is still exactly --sample distinct ids, and still reaches both ends of the range."""
    cli_in_process("generate-mock", "--db", db_url, "--count", "60", "--seed", "2", check=True)
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        "--count",
        "1",
        "--start-id",
        "1000",
        "--seed",
        "2",
        check=True,
    )
    db = Database(db_url, load_contract())
    try:
        assert sample_ids(db, 61) == list(range(1, 61)) + [1000]
        assert sample_ids(db, 500) == list(range(1, 61)) + [1000]
        ids = sample_ids(db, 31)
        assert (
            len(ids) == len(set(ids)) == 31
            and ids == sorted(ids)
            and ids[0] == 1
            and ids[-1] == 1000
        )
    finally:
        db.close()
    p = cli_in_process("profile", "--db", db_url, "--sample", "61", "--format", "json")
    assert json.loads(p.stdout)["documents"] == 61, p.stderr


def test_file_failures_name_their_path_and_map_checks_the_same_min_length(tmp_path):
    """profile on files: a failure example carries the file's path (it has no app_id); map checks
    the contract's min_length as run and profile do (it said 'at least 1 needed')."""
    (tmp_path / "short.xml").write_text("<Provenir><Req", "utf-8")
    (tmp_path / "empty.xml").write_text("", "utf-8")
    p = cli_in_process("profile", str(tmp_path), "--format", "json")
    examples = json.loads(p.stdout)["failure_examples"]
    assert sorted(e["path"] for e in examples) == [
        str(tmp_path / "empty.xml"),
        str(tmp_path / "short.xml"),
    ]
    assert all("at least 20 needed" in e["reason"] for e in examples), examples
    m = cli_in_process("map", str(tmp_path / "empty.xml"))
    assert m.returncode == 1 and "at least 20 needed" in m.stdout, m.stdout + m.stderr


def test_operator_labels_say_what_they_count(db_url):
    """failures --csv help lists the CSV's real columns; reconcile's label reads 'an app_base row'."""
    h = " ".join(cli_in_process("failures", "--help", check=True).stdout.split())
    assert "app_id, attempt, stage, error_class, reason, logged_at, contract" in h
    url = db_url
    cli_in_process("init-db", "--db", url, check=True)
    out = cli_in_process("reconcile", "--db", url).stdout
    assert "success without an app_base row" in out and "without a app_base" not in out, out
