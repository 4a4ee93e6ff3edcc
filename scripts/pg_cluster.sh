#!/usr/bin/env bash
# Throwaway PostgreSQL cluster on loopback for the tests and benchmarks.
#   source scripts/pg_cluster.sh; pg_cluster_start; ...; pg_cluster_stop
# Installs Debian's postgresql, odbc-postgresql and unixodbc when missing (needs root), runs
# initdb/pg_ctl as the postgres user (they refuse root), and exports XML_EXTRACTOR_TEST_PG.
PG_PORT="${XE_PG_PORT:-54329}"
PG_DIR="${XE_PG_DIR:-/tmp/xml-extractor-pg-$PG_PORT}"

pg_install() {
  local need=()
  for p in postgresql odbc-postgresql unixodbc; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install ${need[*]}" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql" >&2; return 1; }
  echo "$d"
}

pg_cluster_start() {
  pg_install || return 1
  local bin; bin=$(pg_bin) || return 1
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  if [ -f "$PG_DIR/postmaster.pid" ]; then "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR" stop -m immediate >/dev/null 2>&1 || true; fi
  rm -rf "$PG_DIR"; mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  "${as[@]}" "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
     -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=${XE_PG_FSYNC:-off} -c synchronous_commit=${XE_PG_SYNC:-off}" start >/dev/null || {
       cat "$PG_DIR/server.log" >&2; return 1; }
  "${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE xe_test" >/dev/null || return 1
  export XML_EXTRACTOR_TEST_PG="postgresql://postgres@127.0.0.1:$PG_PORT/xe_test"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

pg_cluster_stop() {
  local bin; bin=$(pg_bin) || return 0
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
