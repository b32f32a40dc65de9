#!/usr/bin/env bash
# Start the Redis and PostgreSQL the tests use (unless already up), export where they are as
# TEST_REDIS_URL and TEST_DATABASE_URL, then run the command given as arguments.
set -euo pipefail

REDIS_PORT=6379
PG_PORT=5432
# A throwaway role on loopback only, used by nothing but the tests.
PG_USER=contained
PG_PASSWORD=contained
PG_DB=contained_test

wait_for() {  # wait_for WHAT COMMAND...: up to 10 s
  local what=$1
  shift
  for _ in $(seq 100); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$what did not start" >&2
  exit 1
}

if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "Starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --logfile /tmp/contained-test-redis.log
  wait_for Redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
fi

if ! pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h | awk '{print $1 "/" $2}' | grep -qx "$version/main"; then
    pg_createcluster "$version" main >/dev/null
  fi
  echo "Starting PostgreSQL $version on 127.0.0.1:$PG_PORT"
  pg_ctlcluster "$version" main start
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
fi

psql_admin() {
  # From /, so psql does not complain that user postgres cannot enter the working directory.
  (cd / && runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -tAq "$@")
}
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" ]; then
  psql_admin -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
  psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
fi

export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1"
export TEST_DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
exec "$@"
