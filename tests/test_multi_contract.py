"""One source table holding both product lines, run with a contract set.

A mixed corpus (30% rec lending, 3% faulty, generate-mock --product mixed) is run by three real
instances at once, partitioned and in queue mode, on SQLite and PostgreSQL: every application is
logged exactly once, each success by the contract the generator made it for (processing_log.
contract_name against mock_rl.product_of), each fault at its stage, and reconcile is consistent.
Two contracts that disagree on a shared table are refused with the columns that differ.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli, cli_in_process, popen

from xml_extractor.contract.loader import load_contract
from xml_extractor.contract.merge import merge_contracts
from xml_extractor.db.database import Database
from xml_extractor.db.url import parse_url
from xml_extractor.errors import ContractError
from xml_extractor.mock_rl import MixedGenerator, fault_stage, product_of

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

SET = ("--contract", "credit_card", "--contract", "rec_lending")
CONTRACT_OF = {"cc": "credit_card", "rl": "rec_lending"}


def test_contracts_disagreeing_on_a_shared_table_are_refused(db_url: str, tmp_path: Path) -> None:
    raw = json.loads(Path(load_contract("rec_lending").path).read_text("utf-8"))
    base = next(t for t in raw["tables"] if t["name"] == "app_base")
    for c in base["columns"]:
        if c["name"] == "receive_date":
            c["type"] = "date"  # credit_card says datetime
    base["columns"].append({"name": "dealer_code", "type": "int", "nullable": False, "constant": 1})
    path = tmp_path / "rl_bad.json"
    path.write_text(json.dumps(raw), "utf-8")
    p = cli_in_process("validate-contract", "credit_card", str(path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "table app_base" in p.stderr
    assert (
        "column receive_date: datetime NOT NULL in credit_card vs date NOT NULL in rec_lending"
        in p.stderr
    )
    assert "column dealer_code (int NOT NULL) only in rec_lending must be nullable" in p.stderr
    p = cli_in_process(
        "init-db", "--db", db_url, "--contract", "credit_card", "--contract", str(path)
    )
    assert p.returncode == 2 and "receive_date" in p.stderr
    assert (
        ": 0 change(s) to apply"
        not in cli_in_process("init-db", "--db", db_url, "--dry-run").stdout
    )  # nothing was created


def test_contract_set_union_and_enum_space() -> None:
    s = merge_contracts([load_contract("credit_card"), load_contract("rec_lending")])
    names = [t.name for t in s.tables]
    assert names.index("app_base") < names.index("app_collateral_rl")
    base = s.table("app_base")
    cols = {c.name for c in base.columns}
    assert {
        "funding_date",
        "sub_type_enum",
        "population_assignment_enum",
    } <= cols  # RL-only and CC-only, nullable
    ids = [v.id for vals in s.enums.values() for v in vals]
    assert len(ids) == len(set(ids))
    with pytest.raises(ContractError, match="same contract is given twice"):
        merge_contracts([load_contract("credit_card"), load_contract("credit_card")])


def _wait_all(procs: list, timeout: float = 120) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except Exception:
            os.killpg(p.pid, signal.SIGTERM)
            so, se = p.communicate()
        out.append((p.returncode, so, se))
    return out


def _check(db_url: str, start: int, count: int, seed: int) -> None:
    db = Database(parse_url(db_url), load_contract("credit_card,rec_lending"))
    try:
        rows = db.autocommit_query(
            f"SELECT app_id, status, stage, contract_name, contract_version FROM {db.names['log']}"
        )
    finally:
        db.close()
    by_app: dict[int, list] = {}
    for r in rows:
        by_app.setdefault(int(r[0]), []).append(r)
    assert sorted(by_app) == list(range(start, start + count))  # every application, nothing else
    doubled = [a for a, rs in by_app.items() if len(rs) != 1]
    assert not doubled, doubled[:10]  # exactly once
    gen = MixedGenerator(seed=seed, faulty_share=0.03, rl_share=0.3)
    wrong = []
    routed = {"credit_card": 0, "rec_lending": 0}
    for app_id, ((_, status, stage, name, version),) in by_app.items():
        d = gen.document(app_id)
        want = CONTRACT_OF[product_of(seed, 0.3, app_id)]
        if status == "success":
            ok = (
                d.fault in (None, "con_id_collision")
                and name == want
                and str(version).startswith(want + "@")
            )
            routed[name] += 1
        else:
            ok = d.fault is not None and stage == fault_stage(d.fault)
            # the next document reuses this one's con_id on purpose: whichever instance commits first
            # keeps it, the other fails at insert (a race between instances, not between contracts)
            ok = ok or (stage == "insert" and gen.document(app_id + 1).fault == "con_id_collision")
        if not ok:
            wrong.append((app_id, status, stage, name, d.fault, want))
    assert not wrong, wrong[:10]
    assert routed["rec_lending"] > 0.2 * count and routed["credit_card"] > 0.55 * count


@pytest.mark.parametrize("mode", ["partition", "queue"])
def test_mixed_corpus_three_instances(db_url: str, mode: str) -> None:
    count, seed = int(os.environ.get("XE_MIXED_COUNT", "600")), 11
    cli(
        "generate-mock",
        "--db",
        db_url,
        *SET,
        "--product",
        "mixed",
        "--rl-share",
        "0.3",
        "--faulty-share",
        "0.03",
        "--count",
        str(count),
        "--seed",
        str(seed),
        "--start-id",
        "1000",
        check=True,
    )
    common = ["run", "--db", db_url, *SET, "--workers", "1", "--batch-size", "50", "--no-progress"]
    if mode == "partition":
        procs = [popen(*common, "--instance-id", str(i), "--instance-count", "3") for i in range(3)]
    else:
        procs = [popen(*common, "--mode", "queue", "--chunk-size", "100") for _ in range(3)]
    results = _wait_all(procs)
    for rc, so, se in results:
        assert rc in (0, 1), (rc, se[-2000:])  # 1: the faulty documents failed
    _check(db_url, 1000, count, seed)
    p = cli("reconcile", "--db", db_url, *SET)
    assert p.returncode == 0 and "consistent" in p.stdout, p.stdout + p.stderr
    p = cli("status", "--db", db_url, *SET, "--format", "json")
    by = {c["contract"]: c for c in json.loads(p.stdout)["by_contract"]}
    assert by["rec_lending"]["success"] > 0 and by["credit_card"]["success"] > 0


def test_map_routes_a_document_and_names_the_contracts_it_does_not_match(tmp_path: Path) -> None:
    sample = Path(__file__).parent / "data" / "sample-rl-600000.xml"
    p = cli_in_process("map", str(sample), *SET, "--format", "json", check=True)
    out = json.loads(p.stdout)
    assert (
        out["contract"] == "rec_lending"
        and out["tables"]["app_dealer_rl"][0]["dealer_name"] == "Mickey Mouse RV"
    )
    other = tmp_path / "other.xml"
    other.write_text(
        sample.read_text("utf-8-sig").replace("IL_application", "XX_application"), "utf-8"
    )
    p = cli_in_process("map", str(other), *SET, "--format", "json")
    out = json.loads(p.stdout)
    assert p.returncode == 1 and (out["stage"], out["error_class"]) == ("validate", "NoContract")
    assert "credit_card (no /Provenir/Request/CustData/application)" in out["reason"]
    assert "rec_lending (no /Provenir/Request/CustData/IL_application)" in out["reason"]


def _direct_counts(db_url: str) -> tuple[dict, Counter, dict[int, str]]:
    """Per contract, counted straight from processing_log, data_quality_event and the source table:
    ({contract: {success, failed, pending}}, events per (contract, table, column, kind),
    {failed app_id: contract of its last attempt})."""
    db = Database(parse_url(db_url), load_contract("credit_card,rec_lending"))
    try:
        log = db.autocommit_query(
            f"SELECT app_id, attempt, status, contract_name FROM {db.names['log']}"
        )
        events = db.autocommit_query(
            f"SELECT app_id, table_name, column_name, event_type FROM {db.names['events']}"
        )
        source = {
            int(r[0])
            for r in db.autocommit_query(f"SELECT {db.names['src_id']} FROM {db.names['src']}")
        }
    finally:
        db.close()
    success = {int(a): n for a, _, st, n in log if st == "success"}
    last: dict[int, tuple] = {}
    for a, att, st, n in sorted(log, key=lambda r: (r[0], r[1])):
        last[int(a)] = (st, n)
    failed = {a: n or "(not routed)" for a, (st, n) in last.items() if a not in success}
    out: dict[str, dict] = {}
    for name in list(success.values()) + list(failed.values()):
        out.setdefault(name, {"contract": name, "success": 0, "failed": 0, "pending": 0})
    for name in success.values():
        out[name]["success"] += 1
    for name in failed.values():
        out[name]["failed"] += 1
    pending = len(source - set(last))
    if pending:
        out["(not routed yet)"] = {
            "contract": "(not routed yet)",
            "success": 0,
            "failed": 0,
            "pending": pending,
        }
    routed: dict[int, str] = {}
    for a, _, _, n in log:
        if n is not None:
            routed[int(a)] = max(n, routed.get(int(a), n))
    per_event = Counter((routed.get(int(a), "(not routed)"), t, c, k) for a, t, c, k in events)
    return out, per_event, failed


def test_operator_commands_per_contract_match_the_log(db_url: str, tmp_path: Path) -> None:
    """failures, quality, reconcile and profile of a contract set split their numbers by the
    contract that mapped (or refused) each application, and those equal what processing_log and
    data_quality_event say directly; pending applications are '(not routed yet)'."""
    gen = [
        "generate-mock",
        "--db",
        db_url,
        *SET,
        "--product",
        "mixed",
        "--rl-share",
        "0.3",
        "--faulty-share",
        "0.1",
        "--seed",
        "5",
    ]
    cli_in_process(*gen, "--count", "120", check=True)
    p = cli_in_process("run", "--db", db_url, *SET, "--workers", "1", "--no-progress")
    assert p.returncode == 1, p.stdout + p.stderr  # the faulty documents failed
    cli_in_process(
        *gen, "--count", "10", "--start-id", "1001", check=True
    )  # pending: no contract has seen them
    want, events, failed = _direct_counts(db_url)
    assert want["credit_card"]["success"] > 40 and want["rec_lending"]["success"] > 20
    assert want["(not routed yet)"]["pending"] == 10 and want["(not routed)"]["failed"] > 5
    # a routed document that failed (con_id_collision at insert) is the failure of its contract
    assert any(n in ("credit_card", "rec_lending") for n in failed.values()), failed

    p = cli_in_process("failures", "--db", db_url, *SET, "--format", "json", check=True)
    got: Counter = Counter()
    for g in json.loads(p.stdout):
        got[g["contract"]] += g["count"]
        assert all(failed[a] == g["contract"] for a in g["sample_app_ids"]), g
    assert got == Counter({k: v["failed"] for k, v in want.items() if v["failed"]})
    csv_path = tmp_path / "failed.csv"
    p = cli_in_process(
        "failures",
        "--db",
        db_url,
        *SET,
        "--contract-name",
        "(not routed)",
        "--csv",
        str(csv_path),
        check=True,
    )
    assert p.stdout.splitlines()[0].startswith(
        f"{want['(not routed)']['failed']} failed application(s)"
    )
    assert "contract" in p.stdout.splitlines()[1]  # the contract column of a contract set's table
    with csv_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["app_id"]) for r in rows} == {a for a, n in failed.items() if n == "(not routed)"}
    assert {r["contract"] for r in rows} == {"(not routed)"}

    p = cli_in_process("quality", "--db", db_url, *SET, "--format", "json", check=True)
    q = json.loads(p.stdout)["events"]
    assert {
        (e["contract"], e["table"], e["column"], e["event_type"]): e["events"] for e in q
    } == dict(events)
    assert {e["contract"] for e in q} >= {"credit_card", "rec_lending"}
    collisions = [e for e in q if e["event_type"] in ("con_id_collision", "key_collision")]
    assert collisions and all(
        e["contract"] in ("credit_card", "rec_lending") for e in collisions
    ), collisions
    assert "(not routed)" not in {
        e["contract"] for e in q
    }  # no event without the contract that produced it
    for name in (
        "credit_card",
        "rec_lending",
    ):  # one contract on the shared database: its own events only
        p = cli_in_process(
            "quality", "--db", db_url, "--contract", name, "--format", "json", check=True
        )
        mine = {
            (e["table"], e["column"], e["event_type"]): e["events"]
            for e in json.loads(p.stdout)["events"]
        }
        assert mine == {(t, c, k): n for (who, t, c, k), n in events.items() if who == name}, name
    assert (
        "rec_lending"
        in cli_in_process("quality", "--db", db_url, *SET, check=True).stdout.split(
            "events per contract"
        )[1]
    )

    p = cli_in_process("reconcile", "--db", db_url, *SET, "--format", "json")
    assert p.returncode == 1  # the ten pending ones
    r = json.loads(p.stdout)
    assert {c["contract"]: c for c in r["by_contract"]} == want
    p = cli_in_process("reconcile", "--db", db_url, *SET)
    table = p.stdout.split("applications per contract\n")[1]
    assert "(not routed yet)" in table and "rec_lending" in table

    p = cli_in_process("status", "--db", db_url, *SET, "--format", "json", check=True)
    assert {
        c["contract"]: (c["success"], c["failed"]) for c in json.loads(p.stdout)["by_contract"]
    } == {k: (v["success"], v["failed"]) for k, v in want.items() if v["success"] or v["failed"]}

    p = cli_in_process("profile", "--db", db_url, *SET, "--format", "json", check=True)
    prof = json.loads(p.stdout)
    docs = {c["contract"].split("@")[0]: c["documents"] for c in prof["contracts"]}
    assert set(docs) == {"credit_card", "rec_lending"}
    for (
        name,
        n,
    ) in (
        docs.items()
    ):  # what each member mapped: its successes, more (insert failures, the pending ten)
        assert want[name]["success"] <= n <= want[name]["success"] + want[name]["failed"] + 10, (
            name,
            n,
            want[name],
        )
    assert sum(docs.values()) + prof["unrouted"]["documents"] == 130


def test_status_per_contract_counts_applications_being_redone_on_their_current_attempt(
    db_url: str,
) -> None:
    """While a reprocess is open its applications count as done on their current attempt in
    status' totals ("being redone" says how many), and the per-contract table and the failures by
    stage agree with the totals."""
    cli_in_process(
        "generate-mock",
        "--db",
        db_url,
        *SET,
        "--product",
        "mixed",
        "--faulty-share",
        "0.1",
        "--seed",
        "3",
        "--count",
        "60",
        check=True,
    )
    cli_in_process("run", "--db", db_url, *SET, "--workers", "1", "--no-progress")
    before = json.loads(
        cli_in_process("status", "--db", db_url, *SET, "--format", "json", check=True).stdout
    )
    db = Database(parse_url(db_url), load_contract("credit_card,rec_lending"))
    try:
        failed = [
            int(r[0])
            for r in db.autocommit_query(
                f"SELECT DISTINCT app_id FROM {db.names['log']} WHERE status = 'failed'"
            )
        ]
        # an open request for every application (as `reprocess` leaves them when it is stopped)
        db.execute(
            f"INSERT INTO {db.names['requests']} (app_id, requested_at, command) "
            f"SELECT {db.names['src_id']}, '2026-01-01 00:00:00', 'test' FROM {db.names['src']}"
        )
        db.commit()
    finally:
        db.close()
    assert failed
    s = json.loads(
        cli_in_process("status", "--db", db_url, *SET, "--format", "json", check=True).stdout
    )
    assert (s["success"], s["failed"], s["pending"]) == (
        before["success"],
        before["failed"],
        0,
    ), s
    assert s["success"] + s["failed"] == 60 and s["being_redone"] == 60, s
    assert s["by_contract"] == before["by_contract"], s["by_contract"]
    assert sum(c["success"] + c["failed"] for c in s["by_contract"]) == 60, s["by_contract"]
    assert s["failures"] == before["failures"] != [], s["failures"]


def test_one_member_on_a_contract_set_database_names_the_set(db_url: str) -> None:
    """run with one contract of a database initialised with a contract set: the other members'
    columns are not data to lose but a missing --contract; the refusal says so first."""
    cli_in_process("init-db", "--db", db_url, *SET, check=True)
    for one in ("rec_lending", "credit_card"):
        p = cli_in_process("run", "--db", db_url, "--contract", one, "--no-progress")
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr.startswith(
            "error: this database was initialised with contracts credit_card+rec_lending; "
            f"run `xml-extractor run --db {shlex.quote(db_url)} --no-progress "
            "--contract credit_card --contract rec_lending`\n"
        ), p.stderr


def test_a_document_with_the_records_of_two_contracts_fails_whatever_their_order(
    tmp_path: Path,
) -> None:
    """Mapped by whichever contract came first, two instances given the contracts in different
    orders would map one document two ways; it fails alone instead, naming both."""
    sample = Path(__file__).parent / "data" / "sample-rl-600000.xml"
    text = sample.read_text("utf-8-sig")
    both = tmp_path / "both.xml"
    both.write_text(
        text.replace(
            "</IL_application>", '</IL_application><application app_receive_date="2026-01-02"/>'
        ),
        "utf-8",
    )
    for order in (SET, ("--contract", "rec_lending", "--contract", "credit_card")):
        p = cli_in_process("map", str(both), *order, "--format", "json")
        out = json.loads(p.stdout)
        assert p.returncode == 1 and (out["stage"], out["error_class"]) == (
            "validate",
            "AmbiguousContract",
        ), out
        assert "credit_card (/Provenir/Request/CustData/application)" in out["reason"]
        assert "rec_lending (/Provenir/Request/CustData/IL_application)" in out["reason"]


@pytest.mark.parametrize(
    ("initialised", "typed"),
    [("rec_lending", ()), ("credit_card", ("--contract", "rec_lending"))],
)
def test_a_contract_the_database_lacks_names_what_it_holds_and_the_commands_work(
    db_url: str, initialised: str, typed: tuple[str, ...]
) -> None:
    """A database initialised for one contract, run with another: the hint names the contract the
    schema holds (not the one typed), and every command it prints works when typed literally;
    before init-db for both, the run's missing schema is one line per kind of addition."""
    cli_in_process("init-db", "--db", db_url, "--contract", initialised, check=True)
    p = cli_in_process("run", "--db", db_url, *typed, "--no-progress")
    assert p.returncode == 2, p.stdout + p.stderr
    other = "credit_card" if initialised == "rec_lending" else "rec_lending"
    first = p.stderr.splitlines()[0]
    assert first.startswith(
        f"error: this database was initialised with contract {initialised}, not {other}: "
    ), first
    assert "credit_card+rec_lending" not in first, first
    commands = [shlex.split(c)[1:] for c in first.split("`")[1::2]]
    assert [c[0] for c in commands] == ["run", "init-db", "run"], commands
    assert commands[0][-2:] == ["--contract", initialised], commands
    ran = cli_in_process(*commands[0])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    early = cli_in_process(*commands[2])  # the set's run before its init-db: what to apply, grouped
    assert early.returncode == 2 and "run `xml-extractor init-db" in early.stderr, early.stderr
    listed = early.stderr.split("to apply:\n", 1)[1].splitlines()
    assert len(listed) <= 2 and any(" new column(s): " in line for line in listed), listed
    for command in commands[1:]:
        done = cli_in_process(*command)
        assert done.returncode == 0, (command, done.stdout + done.stderr)


def test_failures_table_keeps_what_to_do_at_the_end_of_a_long_reason(tmp_path: Path) -> None:
    """rec_lending documents run with credit_card fail with a reason longer than the table's
    column: its middle is left out, never its end ("run it with --contract rec_lending")."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process(
        "generate-mock", "--db", url, "--product", "mixed", "--contract", "credit_card",
        "--count", "10", "--rl-share", "0.5", check=True,
    )  # fmt: skip
    assert cli_in_process("run", "--db", url, "--no-progress").returncode == 1
    p = cli_in_process("failures", "--db", url, check=True)
    row = next(line for line in p.stdout.splitlines() if "OtherContractDocument" in line)
    assert "this is a rec_lending document" in row and " ... " in row, row
    assert "run it with --contract rec_lending" in row, row


def test_generate_mock_rl_on_a_credit_card_database_adds_rec_lending_schema(db_url: str) -> None:
    """generate-mock --product rl into a database initialised for credit_card adds rec_lending's
    schema as init-db with both contracts does, and says so; the run it names then finishes."""
    cli_in_process("init-db", "--db", db_url, check=True)
    p = cli_in_process(
        "generate-mock", "--db", db_url, "--product", "rl", "--count", "6", check=True
    )
    assert "created the schema" not in p.stdout, p.stdout
    said = next(line for line in p.stdout.splitlines() if line.startswith("added the schema"))
    assert "(as init-db --contract credit_card --contract rec_lending does)" in said, said
    plan = cli_in_process("init-db", "--db", db_url, *SET, "--dry-run")
    assert plan.returncode == 0 and "new column" not in plan.stdout, plan.stdout
    command = shlex.split(said.split("`")[1])[1:]
    assert command[-4:] == list(SET), command
    ran = cli_in_process(*command, "--no-progress")
    assert ran.returncode == 0 and "finished, exit code 0" in ran.stdout, ran.stdout + ran.stderr
