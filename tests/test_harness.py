"""The suite's own machinery: the in-process command line answers as the real process does, and a
database copied from a session template is the template's content and the test's own."""

from __future__ import annotations

import pytest
from conftest import ROOT, cli, cli_in_process, open_db

SAMPLE = ROOT / "tests" / "data" / "app-1001.xml"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("no-such-command",),
        ("validate-contract",),
        ("map", str(SAMPLE), "--app-id", "1"),
        ("status", "--db", "sqlite:///missing.db"),
        ("run", "--db", "mysql://h/db"),
    ],
)
def test_in_process_answers_like_the_real_process(args: tuple[str, ...]) -> None:
    """Exit code, stdout and stderr are the same, byte for byte (0, 1 and 2 among them)."""
    real, here = cli(*args), cli_in_process(*args)
    assert (here.returncode, here.stdout, here.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )


def test_in_process_refuses_what_only_a_real_process_honours() -> None:
    with pytest.raises(ValueError, match="XML_EXTRACTOR_FAULTS"):
        cli_in_process("--version", env={"XML_EXTRACTOR_FAULTS": "fail_app=1"})


def _build(url: str) -> None:
    cli_in_process("init-db", "--db", url, check=True)
    cli_in_process("generate-mock", "--db", url, "--count", "5", "--faulty-share", "0", check=True)


def _source_ids(url: str) -> list[int]:
    db = open_db(url)
    try:
        n = db.names
        return [
            r[0] for r in db.autocommit_query(f"SELECT {n['src_id']} FROM {n['src']} ORDER BY 1")
        ]
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, 2])
def test_a_template_copy_holds_the_template_and_is_the_tests_own(
    db_url: str, database_templates, step: int
) -> None:
    """Both steps get five source rows although the first deleted two of its own."""
    url = database_templates.fill(db_url, "test_harness.five", _build)
    assert _source_ids(url) == [1, 2, 3, 4, 5]
    db = open_db(url)
    try:
        n = db.names
        db.execute_outside_transaction([f"DELETE FROM {n['src']} WHERE {n['src_id']} <= 2"])
    finally:
        db.close()
    assert _source_ids(url) == [3, 4, 5]
