#!/usr/bin/env bash
# Install everything the tests need (Python packages from the lock file, Chromium,
# PostgreSQL, Java for Spark) and run the whole suite: once on SQLite (every analytics
# test on DuckDB and on Spark in local mode), once on PostgreSQL.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)  # Apache Spark (analytics on Spark)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian…" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/bootstrap.sh --extra test --extra spark

# A throwaway PostgreSQL server on a private port, stopped on exit.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDIR=$(mktemp -d)
PGPORT=${SIYU_TEST_PGPORT:-55432}
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$PGDIR"; runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDIR"; }
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -w -l "$PGDIR/log" \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null

echo "== lint and migrations check ==" >&2
.venv/bin/ruff check src tests benchmarks scripts
SIYU_DATA_DIR=$(mktemp -d) .venv/bin/python -m django makemigrations --check --dry-run --settings=siyu.settings >/dev/null

echo "== test suite on SQLite ==" >&2
.venv/bin/python -m pytest "$@"
echo "== test suite on PostgreSQL ==" >&2
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/siyu" .venv/bin/python -m pytest -m "not browser and not spark" "$@"
