"""A password in a database URL the tool cannot parse is never printed or logged (issue 24, D28
and item 4): mistyped schemes (``postgresql//``, ``postgres ql://``), one or three slashes (the
user information would become the database name, which is logged), ``?password=``, ``odbc:``
strings, mssql URLs. The property: no 3 consecutive characters of the password (as typed, or
percent-encoded) appear in anything the tool says about the URL.

Many URLs go through the parse and mask functions (hypothesis); a few through the real CLI
in-process (click's CliRunner), whose stdout, stderr, run log and metrics files are all read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from xml_extractor.cli import cli
from xml_extractor.db.odbc import redact
from xml_extractor.db.url import mask_url, parse_url
from xml_extractor.errors import ConfigError

PREFIXES = [
    "postgresql",
    "postgres",
    "postgresql ",
    "postgres ql",
    "postgre",
    "mssql",
    "sqlserver",
    "sqlite",
    "pg",
    "odbc",
    "",
    "POSTGRESQL",
    "mysql",
]
SEPARATORS = ["://", "//", ":/", ":///", ":////", ":", "/", "", " ://", ":\\\\"]
SUFFIXES = [
    "@127.0.0.1:54351/x",
    "@h/db",
    "@host:5432/db?sslmode=require",
    "@[::1]:5432/db",
    "@h",
    "@h,1433/db",
    "@srv\\INST/db",
    "@h/db?x=1&y=2",
]
# password characters: printable ASCII and a few others, '@' included (the last '@' ends it); not
# '*', the mask's own character ('**@' would "appear" in '***@'), nor '%' (an escape's start)
PASSWORD = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="%*")
    | st.sampled_from("äß€ "),
    min_size=3,
    max_size=24,
)


def _grams(pw: str) -> set[str]:
    """Every 3 characters of the password as typed or percent-encoded. In an encoded form, a run
    that holds an escape's hex digits without its '%' is not one: 'ACT' of '%AC' + 'T' (from
    '€T') is not the password, and 'XML_EXTRACTOR' in a message would "leak" it."""
    grams = {pw[i : i + 3] for i in range(len(pw) - 2)}
    for encoded in (quote(pw, safe=""), quote(pw, safe="@:/")):
        # each character's escape: the index of its '%' if it belongs to one, else None
        owner: list[int | None] = [None] * len(encoded)
        for m in re.finditer(r"%[0-9A-F]{2}", encoded):
            owner[m.start()] = owner[m.start() + 1] = owner[m.start() + 2] = m.start()
        for i in range(len(encoded) - 2):
            cut = {owner[j] for j in range(i, i + 3)} - {None}
            if all(o >= i for o in cut):  # every escape it touches has its '%' inside the run
                grams.add(encoded[i : i + 3])
    return grams


def _leaks(pw: str, text: str) -> list[str]:
    return sorted(g for g in _grams(pw) if g in text)


def _what_is_said(url: str) -> str:
    """Everything the tool says about this URL: the error, or what it displays once parsed, and
    its repr (a DatabaseURL in a traceback)."""
    try:
        parsed = parse_url(url, "")
    except ConfigError as exc:
        return str(exc)
    except (
        ValueError
    ) as exc:  # urlsplit's own complaint (a bad IPv6 literal): the CLI shows it as an error
        return str(exc)
    return f"{parsed.display()} {parsed!r}"


def _mistyped(prefix: str, sep: str, user: str, pw: str, suffix: str, encode: bool) -> str:
    return f"{prefix}{sep}{user}:{quote(pw, safe='') if encode else pw}{suffix}"


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(PREFIXES),
    sep=st.sampled_from(SEPARATORS),
    user=st.sampled_from(["etl", "", "u_x", "a.b"]),
    pw=PASSWORD,
    suffix=st.sampled_from(SUFFIXES),
    encode=st.booleans(),
)
@example(  # '#' ends the URL there; 'ACT' of '%AC' + 'T' is in XML_EXTRACTOR, not a leak
    prefix="mssql", sep="://", user="etl", pw="#€T", suffix="@127.0.0.1:54351/x", encode=False
)
def test_no_three_characters_of_a_user_info_password_are_said(
    prefix, sep, user, pw, suffix, encode
):
    url = _mistyped(prefix, sep, user, pw, suffix, encode)
    rest = _mistyped(
        prefix, sep, user, "\0", suffix, False
    )  # not url.replace: pw may recur in the host
    # a password that shares 3 characters with the rest, or with what is said of a neutral one, proves nothing
    assume(
        not _leaks(pw, rest + _what_is_said(_mistyped(prefix, sep, user, "QQQQ", suffix, False)))
    )
    said = _what_is_said(url)
    assert not _leaks(pw, said), (url, said)
    assert not _leaks(pw, mask_url(url)), (url, mask_url(url))


@pytest.mark.slow
@settings(max_examples=800, deadline=None)
@given(
    head=st.sampled_from(
        [
            "127.0.0.1:54351/x?user=etl&",
            "postgresql//h/db?",
            "postgresql:/h/db?",
            "h/db?",
            "postgres ql://h/x?sslmode=require&",
            "mssql//h/db?",
            "x?",
        ]
    ),
    key=st.sampled_from(
        ["password", "PASSWORD", "pwd", "Pwd", "passwd", "password ", "password= "]
    ),
    pw=PASSWORD,
    tail=st.sampled_from(["", "&sslmode=require", ";Server=h"]),
)
def test_no_three_characters_of_a_password_parameter_are_said(head, key, pw, tail):
    url = f"{head}{key}={pw}{tail}"
    assume(not _leaks(pw, f"{head}{key}=\0{tail}" + _what_is_said(f"{head}{key}=QQQQ{tail}")))
    for said in (_what_is_said(url), mask_url(url)):
        assert not _leaks(pw, said), (url, said)


@pytest.mark.slow
@settings(max_examples=800, deadline=None)
@given(
    driver=st.sampled_from(
        ["{PostgreSQL Unicode}", "{ODBC Driver 18 for SQL Server}", "{Oracle}", "x"]
    ),
    key=st.sampled_from(["PWD", "pwd", "Password", "PASSWD"]),
    pw=PASSWORD,
    form=st.sampled_from(["plain", "braced", "unclosed", "after"]),
)
def test_no_three_characters_of_an_odbc_password_are_said(driver, key, pw, form):
    if form == "plain":
        assume(not any(c in pw for c in ";{} "))
        value = pw
    elif form == "braced":
        value = "{" + pw.replace("}", "}}") + "}"
    elif form == "unclosed":
        assume("}" not in pw)
        value = "{" + pw
    else:
        assume("}" not in pw)
        value = "{" + pw + "}junk"
    url = f"odbc:Driver={driver};Server=h;UID=etl;{key}={value};Database=x"
    neutral = f"odbc:Driver={driver};Server=h;UID=etl;{key}={value.replace(pw, 'QQQQ')};Database=x"
    # a password whose pieces are in the rest of the string (' 18' of 'ODBC Driver 18') proves nothing
    assume(not _leaks(pw, neutral + url.replace(pw, "\0") + _what_is_said(neutral)))
    for said in (_what_is_said(url), redact(url), mask_url(url)):
        assert not _leaks(pw, said), (url, said)


# -- the real CLI, in-process: stdout, stderr, logs and metrics -----------------------------------

SECRET = "S3crXet9Qz"
CLI_URLS = [
    f"postgresql//etl:{SECRET}@127.0.0.1:54351/x",
    f"postgresql:/etl:{SECRET}@127.0.0.1:1/x",
    f"postgresql:///etl:{SECRET}@127.0.0.1:1/x",
    f"//etl:{SECRET}@127.0.0.1:1/x",
    f"postgres ql://etl:{SECRET}@127.0.0.1:1/x",
    f"127.0.0.1:1/x?user=etl&password={SECRET}",
    f"postgresql://etl {SECRET}@127.0.0.1:1/x",
    f"postgresql//etl:{quote(SECRET + '/@:', safe='')}@127.0.0.1:1/x",
    f"mssql//sa:{SECRET}@127.0.0.1,1/x",
    f"mssql:/sa:{SECRET}@127.0.0.1/x",
    f"odbc:Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=1;UID=etl;PWD={{{SECRET}",
    f"postgresql://etl:{SECRET}@127.0.0.1:1/x",  # well-formed: nothing listens on port 1
]


def _everything_written(folder: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )


@pytest.mark.parametrize("url", CLI_URLS)
@pytest.mark.parametrize(
    "command", [["status"], ["run", "--no-progress", "--reconnect-seconds", "0"]]
)
def test_the_cli_never_says_the_password_of_a_mistyped_url(url, command, tmp_path, monkeypatch):
    """D28: before the fix `status --db 'postgresql//etl:PW@h/x'` printed the whole URL, and
    `run --db 'postgresql:/etl:PW@h/x'` logged it as the database name in logs/run-*.log."""
    monkeypatch.chdir(tmp_path)
    dirs = (
        ["--logs-dir", str(tmp_path / "logs"), "--metrics-dir", str(tmp_path / "metrics")]
        if command[0] == "run"
        else []
    )
    res = CliRunner().invoke(cli, [*command, "--db", url, *dirs], catch_exceptions=True)
    said = res.output + (
        res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else ""
    )
    said += (
        repr(res.exception)
        if res.exception is not None and not isinstance(res.exception, SystemExit)
        else ""
    )
    said += _everything_written(tmp_path)
    assert res.exit_code in (2, 3), said
    assert not _leaks(SECRET, said), said
    assert "S3c" not in said and SECRET not in said
    if os.path.isdir(tmp_path / "logs"):
        assert not _leaks(SECRET, _everything_written(tmp_path / "logs"))


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://etl:[{SECRET}@[::1]:5432/db",  # urlsplit's complaint quotes the host part
        f"postgresql:{SECRET}?@127.0.0.1:5432/x",  # no '//': the password read as the database
    ],
)
def test_urls_that_found_leaks_are_refused_without_their_password(url):
    with pytest.raises(ConfigError) as e:
        parse_url(url, "")
    assert not _leaks(SECRET, str(e.value)), str(e.value)
