#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) are here for the tests that start a
# throwaway server of their own (tests/postgres_server.py). Installs them with apt-get when run
# as root (CI); otherwise says how, and those tests skip. Exits 0 except when
# JAXDL_REQUIRE_POSTGRES=1 and the binaries are still missing at the end (exit 1).
set -euo pipefail

have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  local candidate
  for candidate in /usr/lib/postgresql/*/bin/initdb; do
    [[ -x "$candidate" ]] && return 0
  done
  return 1
}

if have_initdb; then
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_postgres: PostgreSQL server binaries not found; installing them (apt-get install -y postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  # Only the binaries are wanted: without this, the package creates (and may start) a system
  # cluster on port 5432 that no test uses.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/jaxdl-no-main-cluster.conf
  apt_log="$(mktemp)"
  # A fresh image has no package lists: update them only when the install cannot find the package.
  if ! apt-get install -y -q postgresql >"$apt_log" 2>&1; then
    if ! { apt-get update -q && apt-get install -y -q postgresql; } >"$apt_log" 2>&1; then
      echo "ensure_postgres: apt-get install postgresql failed:" >&2
      tail -n 20 "$apt_log" >&2
    fi
  fi
  rm -f "$apt_log"
else
  echo "ensure_postgres: PostgreSQL server binaries not found; the PostgreSQL tests will be skipped (install them with: apt-get install -y postgresql, as root)"
fi

if ! have_initdb && [[ "${JAXDL_REQUIRE_POSTGRES:-}" == "1" ]]; then
  echo "ensure_postgres: JAXDL_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb) were found" >&2
  exit 1
fi
exit 0
