#!/usr/bin/env bash
# tests/support/with_fixture_env.sh STATE_FILE COMMAND [ARGS...]: runs COMMAND with the
# KEY=VALUE lines of a fixture's state file (pg_fixture.sh, mariadb_fixture.sh) in its
# environment, so that a program under ctest finds the throwaway server (e.g. the examples read
# RESERVOIR_PG_DSN). The values never appear on a command line, where ps would show passwords.
set -euo pipefail
state=$1
shift
[[ -r "$state" ]] || { echo "with_fixture_env: no state file $state (fixture not started?)" >&2; exit 1; }
while IFS='=' read -r key value; do
  [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] && export "$key=$value"
done <"$state"
exec "$@"
