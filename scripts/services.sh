#!/usr/bin/env bash
# Start, idempotently, the services the test suite needs. Safe to run again and again.
# On a machine without them the tests skip with a reason; under CI=true they fail instead.
set -uo pipefail

log() { printf 'services: %s\n' "$*"; }

# --- PostgreSQL (127.0.0.1:5432, trust auth, database "test") -------------------------------
# The tests use postgresql+psycopg://postgres@127.0.0.1:5432/test.
PG_USER="${PG_TEST_USER:-postgres}"
PG_DB="${PG_TEST_DB:-test}"

# -w: never prompt for a password (without trust auth this fails instead of hanging).
pg() { psql -w -h 127.0.0.1 -p 5432 -U "$PG_USER" -d postgres "$@" 2>/dev/null; }

# Create the test database unless it exists; safe to run again, or twice at once.
ensure_database() {
  if ! [[ "$PG_DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    log "PG_TEST_DB=$PG_DB is not a plain database name"
    return 1
  fi
  if ! command -v psql >/dev/null 2>&1; then
    log "psql not found; cannot check for the $PG_DB database"
    return 1
  fi
  local exists="SELECT 1 FROM pg_database WHERE datname = '$PG_DB'"
  if [ "$(pg -tAc "$exists")" = "1" ]; then
    log "database $PG_DB exists"
  elif pg -qc "CREATE DATABASE $PG_DB" >/dev/null || [ "$(pg -tAc "$exists")" = "1" ]; then
    log "created database $PG_DB"
  else
    log "could not create database $PG_DB as $PG_USER; PostgreSQL tests will skip (or fail under CI)"
    return 1
  fi
}

if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      log "starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
      for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
    fi
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    log "PostgreSQL ready on 127.0.0.1:5432"
    ensure_database
  else
    log "PostgreSQL is not available; its tests will skip (or fail under CI)"
  fi
else
  log "pg_isready not found; PostgreSQL tests will skip (or fail under CI)"
fi

# --- Docker engine, and the OCI registries on 127.0.0.1:5000 (open) / :5001 (htpasswd) --------
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if bash "$SCRIPTS_DIR/docker.sh"; then
  bash "$SCRIPTS_DIR/registry.sh" || log "registries not available; their tests will skip (or fail under CI)"
  # The base and proxy images, with a budget of their own (not inside one test's timeout).
  bash "$SCRIPTS_DIR/images.sh" || log "test images not built; the first test needing them builds them"
else
  log "Docker engine not available; docker tests will skip (or fail under CI)"
fi

# --- S3 protocol server (moto's standalone server) on 127.0.0.1:5002, for the bucket tests ---
# moto_server comes with the dev extra (moto[server]); it keeps objects in memory and spills
# large ones to temporary files. Started detached, so it outlives this script.
S3_PORT="${MODELYARD_TEST_S3_PORT:-5002}"
s3_up() { (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null; }
if ! s3_up; then
  MOTO="$(cd "$SCRIPTS_DIR/.." && pwd)/.venv/bin/moto_server"
  command -v moto_server >/dev/null 2>&1 && [ ! -x "$MOTO" ] && MOTO="$(command -v moto_server)"
  if [ -x "$MOTO" ]; then
    log "starting moto_server on 127.0.0.1:$S3_PORT"
    setsid nohup "$MOTO" -H 127.0.0.1 -p "$S3_PORT" >"${TMPDIR:-/tmp}/modelyard-moto.log" 2>&1 < /dev/null &
    for _ in $(seq 1 60); do s3_up && break; sleep 0.5; done
  fi
fi
if s3_up; then
  log "S3 (moto_server) ready on 127.0.0.1:$S3_PORT"
else
  log "no S3 server on 127.0.0.1:$S3_PORT (pip install 'moto[server]'); bucket tests will skip (or fail under CI)"
fi

# --- HAProxy on the host: the two-replica team-server test balances through it --------------
if ! command -v haproxy >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing haproxy"
    apt-get install -y haproxy >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y haproxy >/dev/null 2>&1; } || true
  fi
fi
if command -v haproxy >/dev/null 2>&1; then
  log "haproxy ready ($(command -v haproxy))"
else
  log "haproxy not available; the two-replica server test will skip (or fail under CI)"
fi

# --- Chromium for the dashboard's browser test (Debian's package; Playwright drives it) -------
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing chromium"
    apt-get install -y chromium >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1; } || true
  fi
fi
# --- promtool, to check both servers' /metrics (Debian ships it in the prometheus package) -------
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    log "installing promtool (Debian package prometheus; its daemon is not started)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; } || true
  fi
fi
if command -v promtool >/dev/null 2>&1; then
  log "promtool ready: $(promtool --version 2>&1 | head -1)"
else
  log "promtool not available; the /metrics checks will skip (or fail under CI)"
fi

# --- Client venvs (kserve, azure-ai-ml, kfp; see tests/_client_venvs.py): made here, with a time
# budget of their own, so no test waits for pip inside its timeout.
PROJECT_DIR="$(cd "$SCRIPTS_DIR/.." && pwd)"
if [ -x "$PROJECT_DIR/.venv/bin/python" ]; then
  if timeout "${MODELYARD_CLIENT_VENV_BUDGET_S:-1800}" "$PROJECT_DIR/.venv/bin/python" "$PROJECT_DIR/tests/_client_venvs.py"; then
    log "client venvs ready"
  else
    log "client venvs not all made; the tests needing them make them (or fail under CI)"
  fi
fi

if [ -x /usr/bin/chromium ]; then
  log "chromium ready at /usr/bin/chromium"
else
  log "chromium not available; the dashboard browser test will skip (or fail under CI)"
fi
