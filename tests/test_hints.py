"""Commands that say what to type next, on SQLite and PostgreSQL.

Every hint a user is given is a command they can copy: it carries the flags they typed (the
database, the contracts), never a password; generate-mock creates the schema of the contracts it
generates documents for; a document of another packaged contract names it; a document over a
libxml2 limit names huge_tree; a refused schema is said once, one line per kind of difference.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import cli

pytestmark = pytest.mark.slow  # every test here runs the pipeline's worker processes

SET = ("--contract", "credit_card", "--contract", "rec_lending")
SAMPLES = Path(__file__).parent / "data"


def _quoted(db_url: str) -> str:
    return shlex.quote(db_url)


def test_generate_mock_rl_then_the_documented_run_works(db_url: str) -> None:
    """generate-mock --product rl creates rec_lending's schema: the documented
    `run --contract rec_lending` after it processes every document."""
    p = cli("generate-mock", "--db", db_url, "--product", "rl", "--count", "6", check=True)
    assert "as init-db --contract rec_lending does" in p.stdout, p.stdout
    p = cli("run", "--db", db_url, "--contract", "rec_lending", "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr
    s = json.loads(
        cli("status", "--db", db_url, "--contract", "rec_lending", "--format", "json").stdout
    )
    assert (s["success"], s["failed"]) == (6, 0), s


def test_generate_mock_mixed_creates_both_schemas(db_url: str) -> None:
    p = cli("generate-mock", "--db", db_url, "--product", "mixed", "--count", "10", check=True)
    assert "as init-db --contract credit_card --contract rec_lending does" in p.stdout, p.stdout
    p = cli("run", "--db", db_url, *SET, "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_init_db_hint_carries_the_users_flags_and_following_it_works(db_url: str) -> None:
    """A credit-card database run with the contract set: the refusal's init-db command names the
    database and both contracts; typed as printed, it makes the same run succeed."""
    cli("generate-mock", "--db", db_url, "--count", "3", check=True)
    p = cli("run", "--db", db_url, *SET, "--no-progress")
    assert p.returncode == 2, p.stdout + p.stderr
    want = f"xml-extractor init-db --db {_quoted(db_url)} {' '.join(SET)}"
    assert want in p.stderr, p.stderr
    line = next(ln for ln in p.stderr.splitlines() if want in ln)
    hint = line[line.index("`") + 1 : line.index("`", line.index("`") + 1)]
    assert hint == want, hint
    cli(*shlex.split(hint)[1:], check=True)
    p = cli("run", "--db", db_url, *SET, "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_run_with_one_member_is_told_the_whole_command(db_url: str) -> None:
    """The refusal of a one-contract run on a contract-set database is the user's own command
    with both --contract flags: copied, it runs."""
    cli("init-db", "--db", db_url, *SET, check=True)
    p = cli("run", "--db", db_url, "--contract", "rec_lending", "--no-progress", "--workers", "1")
    assert p.returncode == 2, p.stdout + p.stderr
    want = (
        f"run `xml-extractor run --db {_quoted(db_url)} --no-progress --workers 1 "
        "--contract credit_card --contract rec_lending`"
    )
    assert want in p.stderr.splitlines()[0], p.stderr
    hint = want[5:-1]
    p = cli(*shlex.split(hint)[1:])
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_hint_never_shows_the_password(tmp_path: Path) -> None:
    """A --db URL with a password: the hint repeats it without the password."""
    url = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    p = cli("init-db", "--db", url, "--dry-run", "--contract", "rec_lending")
    assert "s3cret" not in p.stdout + p.stderr
    from xml_extractor.cli.common import _no_password

    assert _no_password(url) == "postgresql://someone@127.0.0.1:1/nowhere"


def test_a_configuration_error_is_printed_once_grouped(db_url: str) -> None:
    """A rec-lending run of a credit-card database: 97 refused columns are one line per kind of
    difference (the columns listed), said once: the summary's row points at stderr."""
    cli("init-db", "--db", db_url, check=True)
    p = cli("run", "--db", db_url, "--contract", "rec_lending", "--no-progress")
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.splitlines()) <= 8, p.stderr
    assert "app_base(" in p.stderr and "campaign_num" in p.stderr, p.stderr
    assert "campaign_num" not in p.stdout, p.stdout
    assert "(in full below)" in p.stdout, p.stdout


def test_a_rec_lending_document_run_as_credit_card_names_its_contract(db_url: str) -> None:
    cli("load-xml", str(SAMPLES / "sample-rl-600000.xml"), "--db", db_url, check=True)
    p = cli("run", "--db", db_url, "--no-progress")
    assert p.returncode == 1, p.stdout + p.stderr
    out = json.loads(cli("failures", "--db", db_url, "--format", "json", check=True).stdout)
    assert [(g["stage"], g["error_class"]) for g in out] == [("validate", "OtherContractDocument")]
    assert "this is a rec_lending document" in out[0]["reason"], out
    assert "--contract rec_lending" in out[0]["reason"], out


def test_a_document_over_libxml2s_limit_names_huge_tree(db_url: str, tmp_path: Path) -> None:
    """Nesting deeper than libxml2's 256 levels is a resource limit, not malformed XML: the
    reason names huge_tree and where to set it."""
    text = (SAMPLES / "app-1001.xml").read_text("utf-8-sig")
    deep = "<n>" * 300 + "</n>" * 300
    i = text.index("</application>")
    doc = tmp_path / "deep.xml"
    doc.write_text(text[:i] + deep + text[i:], "utf-8")
    cli("load-xml", str(doc), "--db", db_url, check=True)
    p = cli("run", "--db", db_url, "--no-progress")
    assert p.returncode == 1, p.stdout + p.stderr
    out = json.loads(cli("failures", "--db", db_url, "--format", "json", check=True).stdout)
    assert [(g["stage"], g["error_class"]) for g in out] == [("parse", "ResourceLimit")], out
    assert '"huge_tree": true' in out[0]["reason"] and "malformed" not in out[0]["reason"], out


def test_launch_says_a_configuration_error_once_with_its_own_command(db_url: str) -> None:
    """Three instances refused for the same reason: the refusal is printed by one, the others say
    whose it is; the hint is the launch command the user typed, not an instance's."""
    cli("init-db", "--db", db_url, check=True)
    p = cli("launch", "--instances", "3", "--db", db_url, "--contract", "rec_lending")
    assert p.returncode == 2, p.stdout + p.stderr
    errors = [ln.split("] ", 1)[1] for ln in p.stdout.splitlines() if "] error: " in ln]
    assert len(errors) == 3, p.stdout
    assert sum(e.startswith("error: the same as instance ") for e in errors) == 2, errors
    assert p.stdout.count("columns are in the database but not in the contract") == 1, p.stdout
    want = (
        f"run `xml-extractor launch --instances 3 --db {_quoted(db_url)} "
        "--contract credit_card --contract rec_lending`"
    )
    assert sum(want in e for e in errors) == 1, errors


def test_preflight_names_init_db_with_the_users_flags(db_url: str) -> None:
    """preflight's schema check tells the init-db to review with the database and contracts the
    preflight was given."""
    cli("init-db", "--db", db_url, check=True)
    p = cli("preflight", "--db", db_url, *SET, "--format", "json")
    (schema,) = [c for c in json.loads(p.stdout) if c["name"] == "schema"]
    want = f"xml-extractor init-db --dry-run --db {_quoted(db_url)} {' '.join(SET)}`"
    assert want in schema["fix"], schema
