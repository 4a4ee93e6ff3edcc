"""Passwords with every kind of character (issue 11, reproductions 1 and 2): one quoting function
puts every value into an ODBC connection string, the string parses back to the same attributes,
redaction understands brace-quoted values, and no part of a password reaches what the tool prints,
logs or stores. The live test proves it against a PostgreSQL cluster the test starts itself with
password (SCRAM) authentication, so a password that did not arrive intact could not connect."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_throwaway import Cluster, throwaway_cluster

from xml_extractor.db.odbc import connection_string, parse_connection_string, quote_value, redact
from xml_extractor.db.url import PASSWORD_ENV, parse_url

TRICKY = "p;Database=master{x}=y"

# any printable character, the ODBC-special ones often (and no NUL/control/surrogate: not text)
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
SECRET = st.text(
    st.one_of(PRINTABLE, st.sampled_from(list(";{}= \t=}}{"))), min_size=1, max_size=40
)
NAME = st.text(
    st.one_of(st.characters(whitelist_categories=("L", "N")), st.sampled_from(list(";{}= _-."))),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s and "/" not in s)
PROPS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def attrs(cs: str) -> dict[str, str]:
    pairs = parse_connection_string(cs)
    keys = [k.lower() for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"an attribute appears twice: {keys}"
    return {k.lower(): v for k, v in pairs}


def grams(secret: str, n: int = 3) -> set[str]:
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


# -- reproductions ----------------------------------------------------------------------------------


def test_reproduction_1_an_odbc_password_cannot_inject_an_attribute(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "p;Database=master")
    u = parse_url("odbc:Driver={PostgreSQL Unicode};Server=db;Database=apps;Uid=etl")
    a = attrs(u.odbc_connection_string())
    assert a["database"] == "apps" and a["pwd"] == "p;Database=master"
    assert "master" not in u.display()


def test_reproduction_2_redaction_covers_a_braced_value_whole():
    assert redact("PWD={se;cr=et}") == "PWD=***"
    assert redact("Driver={x};PWD={se;cr=et};Uid=u") == "Driver={x};PWD=***;Uid=u"
    assert redact("Password={a}};b=c};Database=d") == "Password=***;Database=d"
    assert redact("pwd={never closed; Database=x") == "pwd=***"  # unclosed: to the end
    assert redact("PWD=plain;Uid=u") == "PWD=***;Uid=u"


# -- properties -------------------------------------------------------------------------------------


@pytest.mark.slow
@PROPS
@given(value=SECRET)
def test_quoting_parses_back(value):
    cs = connection_string(
        [("Driver", "PostgreSQL Unicode"), ("Database", "d"), ("Pwd", value), ("Uid", "u")]
    )
    assert attrs(cs) == {"driver": "PostgreSQL Unicode", "database": "d", "pwd": value, "uid": "u"}
    assert quote_value(value) == value or quote_value(value).startswith("{")


@pytest.mark.slow
@PROPS
@given(password=SECRET, user=NAME, database=NAME)
def test_every_url_form_parses_back_to_the_same_attributes(monkeypatch, password, user, database):
    from xml_extractor.cli.common import resolve_url

    monkeypatch.setenv(PASSWORD_ENV, password)
    forms = {
        "postgresql, password from the environment": parse_url(
            f"postgresql://{quote(user, safe='')}@h:5432/{quote(database, safe='')}"
        ),
        "postgresql, password in the URL": parse_url(
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@h:5432/{quote(database, safe='')}",
            password="",
        ),
        "mssql": parse_url(
            f"mssql://{quote(user, safe='')}@h:1433/{quote(database, safe='')}?driver=ODBC Driver 18 for SQL Server"
        ),
        "--server/--database/--username": resolve_url(None, "h,1433", database, user),
        "odbc: + environment": parse_url(
            "odbc:"
            + connection_string(
                [
                    ("Driver", "PostgreSQL Unicode"),
                    ("Server", "h"),
                    ("Database", database),
                    ("Uid", user),
                ]
            )
        ),
    }
    for form, u in forms.items():
        a = attrs(u.odbc_connection_string())
        assert a.get("pwd") == password, form
        assert a.get("database") == database and a.get("uid") == user, form


def _outputs(password: str, user: str, database: str) -> list[str]:
    """Everything printable about a URL of every form: display(), the redacted connection
    string, and a driver error message that echoes the connection string."""
    out = []
    for url, pw in (
        (f"postgresql://{quote(user, safe='')}@h/{quote(database, safe='')}", password),
        (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@h/{quote(database, safe='')}",
            "",
        ),
        (f"mssql://{quote(user, safe='')}@h/{quote(database, safe='')}?driver=X", password),
        (
            "odbc:"
            + connection_string(
                [("Driver", "PostgreSQL Unicode"), ("Database", database), ("Uid", user)]
            ),
            password,
        ),
        (
            "odbc:"
            + connection_string(
                [
                    ("Driver", "PostgreSQL Unicode"),
                    ("Database", database),
                    ("PWD", password),
                    ("Uid", user),
                ]
            ),
            "",
        ),
    ):
        u = parse_url(url, password=pw)
        cs = u.odbc_connection_string()
        out += [u.display(), repr(u), redact(cs), redact(f"[08001] (101) cannot connect with {cs}")]
    return out


@pytest.mark.slow
@PROPS
@given(password=SECRET, other=SECRET, user=NAME, database=NAME)
def test_nothing_printed_depends_on_the_password(password, other, user, database):
    """What is printed is the same whatever the password: no part of it can be in there."""
    assert _outputs(password, user, database) == _outputs(other, user, database)


@pytest.mark.slow
@PROPS
@given(password=SECRET, user=NAME, database=NAME)
def test_no_three_characters_of_the_password_are_printed(password, user, database):
    neutral = "\x01" * len(password)  # same shape, shares no character with any password
    allowed = "".join(_outputs(neutral, user, database))
    printed = "".join(_outputs(password, user, database))
    assert not {g for g in grams(password) if g in printed and g not in allowed}


def test_a_malformed_odbc_string_is_refused_without_echoing_it():
    from xml_extractor.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_url("odbc:Driver={PostgreSQL Unicode};PWD={s3cr3t-never-closed")
    assert "s3c" not in str(e.value)


# -- live: a cluster with password authentication ---------------------------------------------------


@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL whose pg_hba demands SCRAM passwords for every connection (the
    suite's own cluster trusts everyone, so it could not tell whether a password arrived)."""
    with throwaway_cluster(password=True) as cluster:
        yield cluster


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _make_role(cluster: Cluster, role: str, password: str, databases: list[str]) -> None:
    conn = cluster.admin()
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD {_sql_literal(password)}")
    for d in databases:
        conn.execute(f"CREATE DATABASE {d} OWNER {role}")
    conn.close()


def _session(url: str, password: str, folder: Path) -> list[str]:
    """The tool's whole life against one database: everything it printed and wrote to files."""
    env = {PASSWORD_ENV: password}
    folder.mkdir()
    logs = ["--logs-dir", str(folder / "logs"), "--metrics-dir", str(folder / "metrics")]
    steps = [
        ["init-db", "--db", url],
        ["generate-mock", "--db", url, "--count", "12", "--faulty-share", "0.25"],
        ["run", "--db", url, "--no-progress", "--workers", "1", *logs],
        ["status", "--db", url],
        ["failures", "--db", url],
        ["reconcile", "--db", url],
        ["quality", "--db", url],
    ]
    texts = []
    for args in steps:
        p = cli(*args, env=env)
        assert p.returncode in (0, 1), (args[0], p.stdout, p.stderr)
        texts += [p.stdout, p.stderr]
    texts += [f.read_text(errors="replace") for f in folder.rglob("*") if f.is_file()]
    return texts


def _stored(cluster: Cluster, database: str) -> list[str]:
    """What the tool stored beside the mapped rows: log, events, progress."""
    conn = cluster.admin(database)
    out = []
    for (table,) in conn.execute(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM "
        "information_schema.tables WHERE table_name IN "
        "('processing_log', 'data_quality_event', 'run_progress', 'work_queue')"
    ).fetchall():
        out += [str(r) for r in conn.execute(f"SELECT * FROM {table}").fetchall()]
    conn.close()
    return out


def _log_rows(cluster: Cluster, database: str) -> int | None:
    """processing_log rows in ``database`` (None: the tool never created the table there)."""
    conn = cluster.admin(database)
    try:
        found = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM "
            "information_schema.tables WHERE table_name = 'processing_log'"
        ).fetchall()
        return (
            int(conn.execute(f"SELECT count(*) FROM {found[0][0]}").fetchone()[0])
            if found
            else None
        )
    finally:
        conn.close()


BENIGN = "Kq7Kq7Kq7Kq7Kq7Kq7Kq7K"  # shares no three characters with TRICKY or with anything the tool prints


@pytest.mark.postgres
@pytest.mark.slow
def test_live_the_tricky_password_connects_to_the_right_database_and_never_leaks(
    scram_cluster, tmp_path
):
    """`p;Database=master{x}=y` through odbc: (password from the environment) and postgresql://
    (from the environment, and percent-encoded in the URL): the tool works in the database it was
    given, not in `master`; no three characters of the password appear in anything it printed,
    logged, wrote to metrics or stored, beyond what the same session with a benign password shows."""
    c = scram_cluster
    base = f"127.0.0.1:{c.port}"
    _make_role(c, "tricky", TRICKY, ["xe_odbc", "xe_url_env", "xe_url_inline", "master"])
    _make_role(c, "benign", BENIGN, ["bn_odbc", "bn_url_env", "bn_url_inline"])

    def odbc(user: str, db: str) -> str:
        return "odbc:" + connection_string(
            [
                ("Driver", "PostgreSQL Unicode"),
                ("Server", "127.0.0.1"),
                ("Port", str(c.port)),
                ("Database", db),
                ("Uid", user),
            ]
        )

    forms = {  # name -> (database, url), for the tricky and the benign role; password in the environment?
        "odbc": (
            ("xe_odbc", odbc("tricky", "xe_odbc")),
            ("bn_odbc", odbc("benign", "bn_odbc")),
            True,
        ),
        "url_env": (
            ("xe_url_env", f"postgresql://tricky@{base}/xe_url_env"),
            ("bn_url_env", f"postgresql://benign@{base}/bn_url_env"),
            True,
        ),
        "url_inline": (
            ("xe_url_inline", f"postgresql://tricky:{quote(TRICKY, safe='')}@{base}/xe_url_inline"),
            ("bn_url_inline", f"postgresql://benign:{BENIGN}@{base}/bn_url_inline"),
            False,
        ),
    }
    # the cluster really checks the password: a wrong one is refused, and nothing of it is echoed
    wrong = cli("status", "--db", forms["odbc"][0][1], env={PASSWORD_ENV: TRICKY + "!"})
    wrong_b = cli("status", "--db", forms["odbc"][1][1], env={PASSWORD_ENV: BENIGN + "!"})
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr, wrong.stderr
    said = wrong.stdout + wrong.stderr
    assert not {g for g in grams(TRICKY) if g in said and g not in wrong_b.stdout + wrong_b.stderr}

    # the six sessions are independent (a database each): run side by side, asserted in order
    sessions = {}
    with ThreadPoolExecutor(max_workers=len(forms) * 2) as pool:
        for name, ((db, url), (bdb, burl), via_env) in forms.items():
            sessions[name] = (
                pool.submit(_session, url, TRICKY if via_env else "", tmp_path / f"t-{name}"),
                pool.submit(_session, burl, BENIGN if via_env else "", tmp_path / f"b-{name}"),
            )
    for name, ((db, url), (bdb, burl), via_env) in forms.items():
        said_all = "\n".join(sessions[name][0].result() + _stored(c, db))
        allowed = "\n".join(sessions[name][1].result() + _stored(c, bdb))
        assert TRICKY not in said_all, name
        leaked = {g for g in grams(TRICKY) if g in said_all and g not in allowed}
        assert not leaked, (name, leaked)
        assert _log_rows(c, db) == 12, f"{name}: the tool did not work in {db}"
    assert (
        _log_rows(c, "master") is None
    )  # the password's "Database=master" never became an attribute
