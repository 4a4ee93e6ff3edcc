#!/usr/bin/env bash
# Throwaway PostgreSQL cluster on loopback for the tests and benchmarks.
#   source scripts/pg_cluster.sh; pg_cluster_start; ...; pg_cluster_stop
# Installs Debian's postgresql, odbc-postgresql and unixodbc when missing (needs root), runs
# initdb/pg_ctl as the postgres user (they refuse root), and exports XML_EXTRACTOR_TEST_PG.
#
# Safe beside another checkout or another shell doing the same: the port is XE_PG_PORT when given,
# else a free one picked at start; the directory is XE_PG_DIR when given, else
# /tmp/xml-extractor-pg-<XE_PG_PORT> when a port is given, else a new one under /tmp. A port that
# already answers, or a directory that holds anything but a stopped cluster of this script, is
# refused, never stopped or removed. pg_cluster_stop stops and removes the cluster this shell
# started, or (from a shell that started none) the one of this script at the XE_PG_DIR / XE_PG_PORT
# given.
PG_PORT="${XE_PG_PORT:-}"
PG_DIR="${XE_PG_DIR:-}"
PG_STARTED_DIR=""  # the directory of the cluster this shell started
PG_START_TRIED=""  # set by pg_cluster_start: from then on pg_cluster_stop stops only PG_STARTED_DIR
PG_MARK=".xml-extractor-pg-cluster"  # written by pg_cluster_start: the directory is this script's

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

pg_free_port() {
  # a port nobody listens on now, from the kernel's ephemeral range
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_port_in_use() {
  python3 -c 'import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

pg_as() {
  # run a PostgreSQL program as the postgres user when root (initdb and pg_ctl refuse root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_given_dir() {
  # the directory named by XE_PG_DIR, or derived from XE_PG_PORT; empty when neither is given
  if [ -n "${XE_PG_DIR:-}" ]; then echo "$XE_PG_DIR"
  elif [ -n "${XE_PG_PORT:-}" ]; then echo "/tmp/xml-extractor-pg-$XE_PG_PORT"; fi
}

pg_ours_and_stopped() {
  # whether directory $1 holds a cluster of this script that no server runs on (a leftover)
  local bin; bin=$(pg_bin) || return 1
  [ -f "$1/$PG_MARK" ] || return 1
  [ ! -f "$1/postmaster.pid" ] || ! pg_as "$bin/pg_ctl" -D "$1" status >/dev/null 2>&1
}

pg_choose_place() {
  # PG_PORT and PG_DIR for this start: the given ones (refused when taken), else fresh ones
  if [ -z "${XE_PG_PORT:-}" ]; then PG_PORT=$(pg_free_port) || return 1; else PG_PORT="$XE_PG_PORT"; fi
  if pg_port_in_use "$PG_PORT"; then
    echo "port $PG_PORT is in use (another cluster?): not touched; set XE_PG_PORT to a free port" >&2; return 1
  fi
  PG_DIR=$(pg_given_dir)
  if [ -z "$PG_DIR" ]; then PG_DIR=$(mktemp -d /tmp/xml-extractor-pg-XXXXXX) || return 1; return 0; fi
  if [ -n "$(ls -A "$PG_DIR" 2>/dev/null)" ]; then
    if ! pg_ours_and_stopped "$PG_DIR"; then
      echo "$PG_DIR holds something else than a stopped cluster of this script: not touched; set XE_PG_DIR to a new directory" >&2
      return 1
    fi
    rm -rf "$PG_DIR"
  fi
  mkdir -p "$PG_DIR"
}

pg_cluster_start() {
  PG_START_TRIED=1
  pg_install || return 1
  local bin; bin=$(pg_bin) || return 1
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  pg_choose_place || return 1
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  PG_STARTED_DIR="$PG_DIR"  # ours from here on: initdb fills it, pg_cluster_stop removes it
  "${as[@]}" "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
  "${as[@]}" touch "$PG_DIR/$PG_MARK"
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
     -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=${XE_PG_FSYNC:-off} -c synchronous_commit=${XE_PG_SYNC:-off}" start >/dev/null || {
       cat "$PG_DIR/server.log" >&2; return 1; }
  "${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE xe_test" >/dev/null || return 1
  export XML_EXTRACTOR_TEST_PG="postgresql://postgres@127.0.0.1:$PG_PORT/xe_test"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

pg_cluster_stop() {
  # the cluster this shell started; from a shell that did not try to start one, the one of this
  # script at the given XE_PG_DIR / XE_PG_PORT; any other (another checkout's, one a refused start
  # found in the way, a system cluster) is left alone
  local dir="$PG_STARTED_DIR"
  if [ -z "$dir" ] && [ -z "$PG_START_TRIED" ]; then
    dir=$(pg_given_dir)
    [ -n "$dir" ] && [ -f "$dir/$PG_MARK" ] || return 0
  fi
  local bin; bin=$(pg_bin) || return 0
  pg_as "$bin/pg_ctl" -D "$dir" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$dir"
  PG_STARTED_DIR=""
}
