#!/usr/bin/env bash
# Start the local PostgreSQL the tests use, idempotently.
#
# Where the Debian cluster (15/main) exists: start it, give role `postgres` the password
# `postgres` and create database `test`. Elsewhere (a server you run yourself, or none) it
# says what it found and exits 0: the tests then read FLOWSTONE_TEST_PG_DSN, and skip
# without a server unless CI=true.
set -euo pipefail

VERSION="${FLOWSTONE_PG_VERSION:-15}"
CLUSTER="${FLOWSTONE_PG_CLUSTER:-main}"
PASSWORD="${FLOWSTONE_PG_PASSWORD:-postgres}"
DATABASE="${FLOWSTONE_PG_DATABASE:-test}"

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d "/etc/postgresql/$VERSION/$CLUSTER" ]; then
    if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
        && ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "setup-postgres: installing postgresql from the distribution"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        VERSION="$(ls /etc/postgresql | sort -n | tail -1)"
    else
        echo "setup-postgres: no Debian cluster $VERSION/$CLUSTER here; using FLOWSTONE_TEST_PG_DSN as given"
        exit 0
    fi
fi

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -c "$1"
    else
        sudo -u postgres sh -c "$1"
    fi
}

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
    echo "setup-postgres: starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start
fi

for _ in $(seq 1 50); do
    if as_postgres "psql -qAtc 'select 1'" >/dev/null 2>&1; then break; fi
    sleep 0.2
done

as_postgres "psql -qc \"ALTER ROLE postgres WITH PASSWORD '$PASSWORD'\"" >/dev/null
if ! as_postgres "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = '$DATABASE'\"" | grep -q 1; then
    as_postgres "createdb $DATABASE"
fi
# Enough connections for the multi-process tests and benchmarks.
current=$(as_postgres "psql -qAtc 'show max_connections'")
if [ "$current" -lt 200 ]; then
    as_postgres "psql -qc 'ALTER SYSTEM SET max_connections = 200'" >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" restart
fi
echo "setup-postgres: ready at postgresql://postgres:***@127.0.0.1:5432/$DATABASE"
