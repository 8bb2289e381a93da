# scripts/lib/apt.sh: installs missing Debian packages; sourced by scripts/demo and scripts/test.
#
#   source scripts/lib/apt.sh
#   ensure_packages "${RESERVOIR_BUILD_PACKAGES[@]}" libgtest-dev
#
# Packages already installed cost one dpkg-query each and nothing else: apt-get update runs only
# when something must be installed. Not root: uses sudo when there is one, else fails saying so.

# shellcheck shell=bash

# What building the library and the demo needs: the toolchain and the client libraries of the
# drivers (SQLite is the embedded default; libpq, Connector/C and unixODBC let the demo take
# postgresql://, mariadb:// and odbc: DSNs).
# shellcheck disable=SC2034  # used by the scripts that source this file
RESERVOIR_BUILD_PACKAGES=(build-essential g++ cmake ninja-build pkg-config libsqlite3-dev libpq-dev
  libmariadb-dev unixodbc-dev libasio-dev libssl-dev)

# Prints the given packages that are not fully installed, one per line.
missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || printf '%s\n' "$pkg"
  done
}

# ensure_packages PKG...: installs those of PKG... that are missing. Returns non-zero if that fails.
ensure_packages() {
  local -a missing sudo=()
  mapfile -t missing < <(missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    echo "apt: all $# packages present"
    return 0
  fi
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "apt: missing ${missing[*]}; run as root or install sudo" >&2
      return 1
    fi
  fi
  echo "apt: installing ${missing[*]}"
  # env, not an exported variable: sudo drops the caller's environment. The lock timeout rides out
  # an unattended upgrade or a second script installing at the same moment.
  local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
  "${apt[@]}" update
  "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
}
