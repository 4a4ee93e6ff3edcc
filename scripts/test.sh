#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Python packages; Debian's
# postgresql, odbc-postgresql, unixodbc, shellcheck, chromium), starts a throwaway PostgreSQL on loopback, runs pytest
# against SQLite and PostgreSQL, stops the cluster. Non-interactive. Extra args go to pytest.
# Safe beside another checkout running it: the cluster gets a free port and its own directory
# (XE_PG_PORT / XE_PG_DIR choose them) and only that cluster is stopped (scripts/pg_cluster.sh).
# The body is one function called on the last line: bash reads a script while it runs it, so an
# edit of this file (a git checkout, a merge) during a run cannot change what the run does.
set -uo pipefail

run_tests() {
  python3 -m pip install -q --disable-pip-version-check -e '.[test,report]' 2>&1 | grep -v -i "warning" || true
  # Debian's shellcheck, which actionlint (a test extra) runs on the workflows' run: blocks (tests/test_ci_workflows.py)
  if ! command -v shellcheck >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } ||
      echo "WARNING: could not install shellcheck" >&2
  fi
  # Debian's chromium: tests/test_report.py renders the report page in it, headless (CI fails without
  # it); a machine that has Google Chrome (a hosted Ubuntu runner) uses that
  if ! command -v chromium >/dev/null && ! command -v google-chrome >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "WARNING: could not install chromium" >&2
  fi
  # bytecode outside the tree, in a folder of this run: the suite starts thousands of Python
  # processes, and with PYTHONDONTWRITEBYTECODE set (as on the CI machine) each one compiled the
  # whole package from source (0.7 s of a 1.2 s start on a loaded 2-core machine)
  pycache=$(mktemp -d "${TMPDIR:-/tmp}/xe-pycache-XXXXXX")
  export PYTHONPYCACHEPREFIX="$pycache"
  unset PYTHONDONTWRITEBYTECODE
  # shellcheck source=scripts/pg_cluster.sh
  source scripts/pg_cluster.sh
  trap 'pg_cluster_stop; rm -rf "$pycache"' EXIT
  if ! pg_cluster_start; then
    if [ "${CI:-}" = "true" ]; then echo "FATAL: PostgreSQL could not be started; CI does not skip it" >&2; exit 1; fi
    echo "WARNING: PostgreSQL could not be started: its tests will be skipped" >&2
  fi
  # static types first (config: [tool.mypy] in pyproject.toml); a type error fails the run, but
  # the tests still run so one report shows both
  python3 -m mypy
  mypy_rc=$?
  # lint and format (config: [tool.ruff] in pyproject.toml), same rule: reported, then the tests run
  python3 -m ruff check . && python3 -m ruff format --check . >/dev/null || { echo "ruff: run 'ruff check --fix . && ruff format .'" >&2; mypy_rc=1; }
  # tests in parallel (pytest-xdist): most of a test's time is spent waiting on real processes,
  # signals and leases, so more test processes than cores keep the machine busy; XE_TEST_WORKERS
  # (or -n N / -n 0 among the extra args) chooses
  workers=${XE_TEST_WORKERS:-$(( $(nproc) * 3 / 2 ))}
  python3 -m pytest -q -p no:cacheprovider -rs -n "$workers" --dist worksteal "$@"
  rc=$?
  if [ $rc -eq 5 ]; then echo "pytest ran no tests" >&2; rc=1; fi
  if [ $rc -eq 0 ] && [ $mypy_rc -ne 0 ]; then echo "mypy or ruff found problems" >&2; rc=1; fi
  return $rc
}

cd "$(dirname "$0")/.." || exit 2
run_tests "$@"
exit $?
