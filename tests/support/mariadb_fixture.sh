#!/usr/bin/env bash
# tests/support/mariadb_fixture.sh: starts and stops a throwaway MariaDB server for the tests
# (see tests/support/README.md).
#
#   mariadb_fixture.sh start <state-file> [watch-pid]   install-db + start; writes the facts
#   mariadb_fixture.sh stop <state-file>                stops the server and deletes everything
#
# The server lives in a fresh directory under $TMPDIR, listens on 127.0.0.1 only (a free random
# port) and on a Unix socket in that directory, and is stopped by a watchdog as soon as
# watch-pid (default: the caller, e.g. ctest) is gone, so a crashed or killed run leaves
# nothing behind (the watchdog deletes the directory and the state file too).
# Exit status 77: no MariaDB server binaries (install mariadb-server).
set -euo pipefail

self=$(readlink -f "$0")

die() {
  echo "mariadb_fixture: $*" >&2
  exit 1
}

find_bin() {  # find_bin <name>...: the first that exists, in PATH or /usr/sbin
  local n
  for n in "$@"; do
    if command -v "$n" >/dev/null 2>&1; then
      command -v "$n"
      return
    fi
    if [[ -x "/usr/sbin/$n" ]]; then
      echo "/usr/sbin/$n"
      return
    fi
  done
}

state_value() {  # state_value <file> <KEY>
  sed -n "s/^$2=//p" "$1" | head -n 1
}

# Stops the server of directory dir (if it runs) and deletes dir.
stop_dir() {
  local dir=$1
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/mariadbd.pid" ]]; then
    local pid
    pid=$(cat "$dir/mariadbd.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}

random_hex() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  local state=$1 watch=${2:-$PPID}
  [[ -n "$state" ]] || die "usage: mariadb_fixture.sh start <state-file> [watch-pid]"
  # A state file left by an earlier run that was not stopped: stop that server first.
  [[ -f "$state" ]] && cmd_stop "$state"

  local server install client
  server=$(find_bin mariadbd mysqld)
  install=$(find_bin mariadb-install-db mysql_install_db)
  client=$(find_bin mariadb mysql)
  if [[ -z "$server" || -z "$install" || -z "$client" ]]; then
    echo "mariadb_fixture: no MariaDB server binaries (apt-get install mariadb-server)" >&2
    exit 77
  fi
  # mariadbd refuses to run as root unless told to: as root, run it as the mysql user.
  local run_as=()
  if [[ $(id -u) == 0 ]]; then
    if id mysql >/dev/null 2>&1; then run_as=(--user=mysql); else run_as=(--user=root); fi
  fi

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/reservoir-mariadb.XXXXXX")
  chmod 700 "$dir"
  [[ "${run_as[0]:-}" == "--user=mysql" ]] && chown mysql: "$dir"
  # From here on, a failure removes the directory again.
  trap 'stop_dir "$dir"' ERR

  if ! "$install" --no-defaults --datadir="$dir/data" "${run_as[@]}" \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
    >"$dir/install.log" 2>&1; then
    cat "$dir/install.log" >&2
    stop_dir "$dir"
    die "mariadb-install-db failed"
  fi

  local port="" pid=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$port" && continue
    # --no-defaults: nothing from /etc/mysql. Durability off for speed (the data is thrown away).
    setsid "$server" --no-defaults "${run_as[@]}" --datadir="$dir/data" \
      --socket="$dir/mariadbd.sock" --pid-file="$dir/mariadbd.pid" --log-error="$dir/server.log" \
      --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
      --max-connections=300 --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=0 \
      --innodb-doublewrite=0 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
      </dev/null >/dev/null 2>&1 &
    pid=$!
    local up=0
    for _ in $(seq 1 600); do
      if "$client" --no-defaults -uroot --socket="$dir/mariadbd.sock" -e "SELECT 1" \
        >/dev/null 2>&1; then
        up=1
        break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    [[ $up == 1 ]] && break
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if ! grep -q -e "Address already in use" -e "Can't start server: Bind" "$dir/server.log" \
      2>/dev/null; then
      cat "$dir/server.log" >&2 || true
      stop_dir "$dir"
      die "the server did not start"
    fi
    rm -f "$dir/server.log"
    port=""
  done
  if [[ -z "$port" ]]; then
    stop_dir "$dir"
    die "found no free port"
  fi

  local app_pw other_pw
  app_pw=$(random_hex)
  other_pw=$(random_hex)
  # reservoir_app may use every database named reservoir_*, so that a missing one is "unknown
  # database" (1049) rather than "access denied" (1044) for the tests.
  "$client" --no-defaults -uroot --socket="$dir/mariadbd.sock" >/dev/null <<EOSQL
DROP USER IF EXISTS ''@'localhost';
DROP USER IF EXISTS ''@'$(hostname)';
CREATE USER 'reservoir_app'@'%' IDENTIFIED BY '$app_pw';
CREATE USER 'reservoir_other'@'%' IDENTIFIED BY '$other_pw';
CREATE DATABASE reservoir_test CHARACTER SET utf8mb4;
GRANT ALL ON \`reservoir\\_%\`.* TO 'reservoir_app'@'%';
GRANT ALL ON reservoir_test.* TO 'reservoir_other'@'%';
FLUSH PRIVILEGES;
EOSQL

  # The watchdog: in its own session, with no inherited descriptors (ctest waits for its
  # test's output pipes to close).
  setsid "$self" watchdog "$dir" "$watch" "$state" </dev/null >/dev/null 2>&1 &

  local tmp="$state.tmp.$$"
  (
    umask 077
    cat >"$tmp" <<EOF2
RESERVOIR_MARIADB_DIR=$dir
RESERVOIR_MARIADB_HOST=127.0.0.1
RESERVOIR_MARIADB_PORT=$port
RESERVOIR_MARIADB_SOCKET=$dir/mariadbd.sock
RESERVOIR_MARIADB_DATABASE=reservoir_test
RESERVOIR_MARIADB_USER=reservoir_app
RESERVOIR_MARIADB_PASSWORD=$app_pw
RESERVOIR_MARIADB_OTHER_USER=reservoir_other
RESERVOIR_MARIADB_OTHER_PASSWORD=$other_pw
RESERVOIR_MARIADB_DSN=mariadb://reservoir_app:$app_pw@127.0.0.1:$port/reservoir_test
RESERVOIR_MARIADB_OTHER_DSN=mariadb://reservoir_other:$other_pw@127.0.0.1:$port/reservoir_test
RESERVOIR_MARIADB_ADMIN_DSN=mariadb://root@localhost/reservoir_test?unix_socket=$dir/mariadbd.sock
EOF2
  )
  mv "$tmp" "$state"
  trap - ERR
  echo "mariadb_fixture: MariaDB $("$server" --version | awk '{print $3}') on 127.0.0.1:$port ($dir), state in $state"
}

cmd_stop() {
  local state=$1
  [[ -n "$state" ]] || die "usage: mariadb_fixture.sh stop <state-file>"
  [[ -f "$state" ]] || return 0
  local dir
  dir=$(state_value "$state" RESERVOIR_MARIADB_DIR)
  if [[ -n "$dir" && -f "$dir/watchdog.pid" ]]; then
    kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
  fi
  # Only ever a directory this script made.
  if [[ "$dir" == */reservoir-mariadb.* ]]; then stop_dir "$dir"; fi
  rm -f "$state"
}

cmd_watchdog() {
  local dir=$1 watch=$2 state=$3
  echo $$ >"$dir/watchdog.pid"
  trap 'exit 0' TERM
  while [[ -d "/proc/$watch" && -d "$dir/data" ]]; do sleep 1; done
  [[ -d "$dir/data" ]] || exit 0  # stopped the normal way
  stop_dir "$dir"
  # The state file too, unless it already describes another server.
  if [[ -f "$state" && "$(state_value "$state" RESERVOIR_MARIADB_DIR)" == "$dir" ]]; then
    rm -f "$state"
  fi
}

case "${1:-}" in
  start) cmd_start "${2:-}" "${3:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  watchdog) cmd_watchdog "$2" "$3" "$4" ;;
  *) die "usage: mariadb_fixture.sh start <state-file> [watch-pid] | stop <state-file>" ;;
esac
