#!/usr/bin/env bash
# Make sure the PostgreSQL server the ordinary tests use is up, idempotently.
#
# Where the Debian cluster $FLOWSTONE_PG_VERSION/$FLOWSTONE_PG_CLUSTER (15/main) exists, it
# changes only what the tests cannot do without, and prints each change it makes:
#   - starts the cluster when it is down (with max_connections=200 for that start only,
#     for the multi-process tests and benchmarks; no configuration file is written);
#   - sets the password of role `postgres` to $FLOWSTONE_PG_PASSWORD (`postgres`), only
#     when logging in with that password over TCP fails;
#   - creates the database $FLOWSTONE_PG_DATABASE (`test`) when it is missing.
# It never restarts a running cluster nor changes its settings (a low max_connections is
# only reported). Elsewhere (a server you run yourself, or none) it says what it found and
# exits 0: the tests then read FLOWSTONE_TEST_PG_DSN, and skip without a server unless
# CI=true; under CI=true, as root, it installs the distribution's postgresql first.
#
# The tests that restart or stop a server never use this one: they make a throwaway
# cluster of their own (tests/throwaway_pg.py).
set -euo pipefail

VERSION="${FLOWSTONE_PG_VERSION:-15}"
CLUSTER="${FLOWSTONE_PG_CLUSTER:-main}"
PASSWORD="${FLOWSTONE_PG_PASSWORD:-postgres}"
DATABASE="${FLOWSTONE_PG_DATABASE:-test}"
WANTED_CONNECTIONS=200

say() { echo "setup-postgres: $*"; }
change() { echo "setup-postgres: changing: $*"; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d "/etc/postgresql/$VERSION/$CLUSTER" ]; then
    if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
        && ! command -v pg_ctlcluster >/dev/null 2>&1; then
        change "installing postgresql from the distribution (apt-get)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        VERSION="$(ls /etc/postgresql | sort -n | tail -1)"
    else
        say "no Debian cluster $VERSION/$CLUSTER here; using FLOWSTONE_TEST_PG_DSN as given"
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

cluster_field() {  # the field $1 (3: port, 4: status) of the cluster's pg_lsclusters line
    pg_lsclusters -h 2>/dev/null | awk -v v="$VERSION" -v c="$CLUSTER" -v f="$1" \
        '$1==v && $2==c {print $f}'
}

PORT="$(cluster_field 3)"
if ! cluster_field 4 | grep -q online; then
    change "starting cluster $VERSION/$CLUSTER on port $PORT" \
        "(max_connections=$WANTED_CONNECTIONS for this start only)"
    pg_ctlcluster --skip-systemctl-redirect -o "-c max_connections=$WANTED_CONNECTIONS" \
        "$VERSION" "$CLUSTER" start
fi

psql_as_postgres() { as_postgres "psql -p $PORT -qAt -d postgres -c \"$1\""; }

for _ in $(seq 1 50); do
    if psql_as_postgres "SELECT 1" >/dev/null 2>&1; then break; fi
    sleep 0.2
done
psql_as_postgres "SELECT 1" >/dev/null  # a clear error when it still does not answer

if ! PGPASSWORD="$PASSWORD" PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=5 \
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtc "SELECT 1" >/dev/null 2>&1; then
    change "setting the password of role postgres (it could not log in with" \
        "FLOWSTONE_PG_PASSWORD over TCP)"
    psql_as_postgres "ALTER ROLE postgres WITH PASSWORD '$PASSWORD'" >/dev/null
fi

if ! psql_as_postgres "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
    change "creating database $DATABASE"
    as_postgres "createdb -p $PORT $DATABASE"
fi

current="$(psql_as_postgres "SHOW max_connections")"
if [ "$current" -lt "$WANTED_CONNECTIONS" ]; then
    say "note: max_connections is $current; the multi-process tests and benchmarks may want" \
        "$WANTED_CONNECTIONS (left as it is: this script leaves a running server alone)"
fi
say "ready at postgresql://postgres:***@127.0.0.1:$PORT/$DATABASE"
