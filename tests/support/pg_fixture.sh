#!/usr/bin/env bash
# tests/support/pg_fixture.sh: starts and stops a throwaway PostgreSQL server for the tests
# (see tests/support/README.md).
#
#   pg_fixture.sh start <state-file> [watch-pid]   initdb + start; writes the connection facts
#   pg_fixture.sh restart <state-file>             pg_ctl restart -m fast -w: ends every session,
#                                                  same port and credentials
#   pg_fixture.sh stop <state-file>                stops the server and deletes everything
#
# The server lives in a fresh directory under $TMPDIR, listens on 127.0.0.1 only (a free random
# port) and on a Unix socket in that directory, and is stopped by a watchdog as soon as
# watch-pid (default: the caller, e.g. ctest) is gone, so a crashed or killed run leaves
# nothing behind (the watchdog deletes the directory and the state file too).
# Exit status 77: no PostgreSQL server binaries (install postgresql).
# Set RESERVOIR_PG_BINDIR to choose the binaries (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

self=$(readlink -f "$0")

die() {
  echo "pg_fixture: $*" >&2
  exit 1
}

find_bindir() {
  if [[ -n "${RESERVOIR_PG_BINDIR:-}" ]]; then
    echo "$RESERVOIR_PG_BINDIR"
    return
  fi
  local d
  d=$(printf "%s\n" /usr/lib/postgresql/*/bin | grep -v "\*" | sort -V | tail -n 1 || true)
  if [[ -z "$d" ]] && command -v pg_ctl >/dev/null; then d=$(dirname "$(command -v pg_ctl)"); fi
  echo "$d"
}

# initdb and postgres refuse to run as root: as root, run them as the postgres user.
as_owner() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

state_value() {  # state_value <file> <KEY>
  sed -n "s/^$2=//p" "$1" | head -n 1
}

# Stops the server of directory dir (if it runs) and deletes dir.
stop_dir() {
  local dir=$1 bindir=$2
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/data/postmaster.pid" && -x "$bindir/pg_ctl" ]]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

random_hex() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  local state=$1 watch=${2:-$PPID}
  [[ -n "$state" ]] || die "usage: pg_fixture.sh start <state-file> [watch-pid]"
  # A state file left by an earlier run that was not stopped: stop that server first.
  [[ -f "$state" ]] && cmd_stop "$state"

  local bindir
  bindir=$(find_bindir)
  if [[ -z "$bindir" || ! -x "$bindir/initdb" || ! -x "$bindir/pg_ctl" ]]; then
    echo "pg_fixture: no PostgreSQL server binaries (apt-get install postgresql)" >&2
    exit 77
  fi
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    die "running as root but there is no 'postgres' user to run the server as"
  fi

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/reservoir-pg.XXXXXX")
  chmod 700 "$dir"
  [[ $(id -u) == 0 ]] && chown postgres: "$dir"
  # From here on, a failure removes the directory again.
  trap 'stop_dir "$dir" "$bindir"' ERR

  if ! as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    stop_dir "$dir" "$bindir"
    die "initdb failed"
  fi
  cat >>"$dir/data/postgresql.conf" <<EOF

# reservoir test fixture
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
password_encryption = 'scram-sha-256'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  cat >"$dir/data/pg_hba.conf" <<EOF
# reservoir test fixture: trust on the Unix socket for set-up, passwords over TCP.
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF

  local port=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$port" && continue
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 \
      start </dev/null >/dev/null 2>&1; then
      break
    fi
    if ! grep -q -e "could not bind" -e "already in use" "$dir/server.log" 2>/dev/null; then
      cat "$dir/server.log" >&2 || true
      stop_dir "$dir" "$bindir"
      die "the server did not start"
    fi
    port=""
  done
  if [[ -z "$port" ]]; then
    stop_dir "$dir" "$bindir"
    die "found no free port"
  fi

  local app_pw other_pw
  app_pw=$(random_hex)
  other_pw=$(random_hex)
  as_owner "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres \
    >/dev/null <<EOF
CREATE ROLE reservoir_app LOGIN PASSWORD '$app_pw';
CREATE ROLE reservoir_other LOGIN PASSWORD '$other_pw';
CREATE DATABASE reservoir_test OWNER reservoir_app;
EOF
  as_owner "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres \
    -d reservoir_test -c "GRANT ALL ON SCHEMA public TO reservoir_other" >/dev/null

  # The watchdog: in its own session, with no inherited descriptors (ctest waits for its
  # test's output pipes to close).
  setsid "$self" watchdog "$dir" "$watch" "$bindir" "$state" </dev/null >/dev/null 2>&1 &

  local tmp="$state.tmp.$$"
  (
    umask 077
    cat >"$tmp" <<EOF
RESERVOIR_PG_DIR=$dir
RESERVOIR_PG_BINDIR=$bindir
RESERVOIR_PG_HOST=127.0.0.1
RESERVOIR_PG_PORT=$port
RESERVOIR_PG_DATABASE=reservoir_test
RESERVOIR_PG_USER=reservoir_app
RESERVOIR_PG_PASSWORD=$app_pw
RESERVOIR_PG_OTHER_USER=reservoir_other
RESERVOIR_PG_OTHER_PASSWORD=$other_pw
RESERVOIR_PG_DSN=postgresql://reservoir_app:$app_pw@127.0.0.1:$port/reservoir_test
RESERVOIR_PG_OTHER_DSN=postgresql://reservoir_other:$other_pw@127.0.0.1:$port/reservoir_test
RESERVOIR_PG_ADMIN_DSN=postgresql://postgres@/reservoir_test?host=$dir&port=$port
EOF
  )
  mv "$tmp" "$state"
  trap - ERR
  echo "pg_fixture: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir), state in $state"
}

cmd_stop() {
  local state=$1
  [[ -n "$state" ]] || die "usage: pg_fixture.sh stop <state-file>"
  [[ -f "$state" ]] || return 0
  local dir bindir
  dir=$(state_value "$state" RESERVOIR_PG_DIR)
  bindir=$(state_value "$state" RESERVOIR_PG_BINDIR)
  if [[ -n "$dir" && -f "$dir/watchdog.pid" ]]; then
    kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
  fi
  # Only ever a directory this script made.
  if [[ "$dir" == */reservoir-pg.* ]]; then stop_dir "$dir" "${bindir:-$(find_bindir)}"; fi
  rm -f "$state"
}

# Restarts the server of a state file: a fast shutdown (every session is ended, as in a real
# restart), then a start on the same port, returning once the server accepts connections again.
cmd_restart() {
  local state=$1
  [[ -n "$state" ]] || die "usage: pg_fixture.sh restart <state-file>"
  [[ -f "$state" ]] || die "no state file $state"
  local dir bindir port
  dir=$(state_value "$state" RESERVOIR_PG_DIR)
  bindir=$(state_value "$state" RESERVOIR_PG_BINDIR)
  port=$(state_value "$state" RESERVOIR_PG_PORT)
  [[ "$dir" == */reservoir-pg.* && -d "$dir/data" ]] || die "$state names no server of this script"
  # -l: the server must not inherit pg_ctl's output (the caller may be reading it through a pipe).
  if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -m fast -w \
    -t 60 restart </dev/null >/dev/null 2>&1; then
    tail -n 20 "$dir/server.log" >&2 || true
    die "the server did not restart"
  fi
}

cmd_watchdog() {
  local dir=$1 watch=$2 bindir=$3 state=$4
  echo $$ >"$dir/watchdog.pid"
  trap 'exit 0' TERM
  while [[ -d "/proc/$watch" && -d "$dir/data" ]]; do sleep 1; done
  [[ -d "$dir/data" ]] || exit 0  # stopped the normal way
  stop_dir "$dir" "$bindir"
  # The state file too, unless it already describes another server.
  if [[ -f "$state" && "$(state_value "$state" RESERVOIR_PG_DIR)" == "$dir" ]]; then
    rm -f "$state"
  fi
}

case "${1:-}" in
  start) cmd_start "${2:-}" "${3:-}" ;;
  restart) cmd_restart "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  watchdog) cmd_watchdog "$2" "$3" "$4" "$5" ;;
  *) die "usage: pg_fixture.sh start <state-file> [watch-pid] | restart <state-file> | stop <state-file>" ;;
esac
