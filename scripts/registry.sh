#!/usr/bin/env bash
# Start, idempotently, two OCI registries for the tests (Debian's docker-registry, run directly
# with our own config files, not the packaged service, whose config enables htpasswd auth):
#   127.0.0.1:5000  open
#   127.0.0.1:5001  htpasswd auth, user $REGISTRY_TEST_USER / $REGISTRY_TEST_PASSWORD
# Safe to run again and again; prints what it did.
#
# Environment:
#   REGISTRY_STATE_DIR      configs, data and logs (default /tmp/modelyard-registry)
#   REGISTRY_TEST_USER      default "modelyard"
#   REGISTRY_TEST_PASSWORD  default "modelyard-test-password"
#   OPEN_REGISTRY_PORT      default 5000 (the tests expect 5000 and 5001; no REGISTRY_ prefix:
#   AUTH_REGISTRY_PORT      default 5001  docker-registry reads REGISTRY_* as config overrides)
set -uo pipefail

log() { printf 'registry: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

STATE="${REGISTRY_STATE_DIR:-/tmp/modelyard-registry}"
USER_NAME="${REGISTRY_TEST_USER:-modelyard}"
PASSWORD="${REGISTRY_TEST_PASSWORD:-modelyard-test-password}"
OPEN_PORT="${OPEN_REGISTRY_PORT:-5000}"
AUTH_PORT="${AUTH_REGISTRY_PORT:-5001}"
WAIT=30

# HTTP status of GET /v2/ (200 open, 401 auth) or 000 when nothing answers.
status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/v2/" 2>/dev/null || true; }

if ! command -v docker-registry >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing docker-registry"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker-registry curl >/dev/null
  fi
fi
if ! command -v docker-registry >/dev/null 2>&1; then
  log "docker-registry is not available; registry tests will skip (or fail under CI)"
  exit 1
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  # Debian's package starts its own registry on :5000 with htpasswd auth; the tests need an
  # open one there, started below with our own config.
  log "stopping the packaged docker-registry service (it holds :5000 with auth)"
  as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

bcrypt() { # user password -> one htpasswd line
  # docker-registry's htpasswd accepts bcrypt only (not openssl passwd's MD5/SHA-crypt), and
  # Python's crypt module is gone in 3.13: use Apache's htpasswd, installed here when missing,
  # or the bcrypt package of whatever python3 is on the PATH.
  if ! command -v htpasswd >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    log "installing apache2-utils (htpasswd)" >&2  # stdout is the htpasswd line
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      apache2-utils >/dev/null 2>&1 \
      || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          --no-install-recommends apache2-utils >/dev/null; }
  fi
  if command -v htpasswd >/dev/null 2>&1; then
    printf '%s\n' "$2" | htpasswd -niB "$1" | head -n1  # password on stdin, not argv
  elif python3 -c 'import bcrypt' 2>/dev/null; then
    printf '%s' "$2" | python3 -c 'import bcrypt, sys
print(sys.argv[1] + ":" + bcrypt.hashpw(sys.stdin.buffer.read(), bcrypt.gensalt()).decode())' "$1"
  else
    log "cannot make a bcrypt htpasswd entry: install apache2-utils (htpasswd) or python3 bcrypt" >&2
    return 1
  fi
}

start() { # name port expected-status [auth]
  local name="$1" port="$2" expect="$3" auth="${4:-}"
  local dir="$STATE/$name"
  local now
  now="$(status "$port")"
  if [ "$now" = "$expect" ]; then
    log "$name registry already answering on 127.0.0.1:$port"
    return 0
  fi
  if [ "$now" != "000" ]; then
    log "something else answers on 127.0.0.1:$port (HTTP $now); not starting the $name registry"
    return 1
  fi
  mkdir -p "$dir/data"
  local auth_block=""
  if [ -n "$auth" ]; then
    bcrypt "$USER_NAME" "$PASSWORD" >"$dir/htpasswd.new" || return 1
    mv "$dir/htpasswd.new" "$dir/htpasswd"
    auth_block="auth:
  htpasswd:
    realm: modelyard-test
    path: $dir/htpasswd"
  fi
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: modelyard-test-$name
$auth_block
EOF
  log "starting the $name registry on 127.0.0.1:$port (state: $dir)"
  # docker-registry takes REGISTRY_* variables as overrides of its config: keep ours out of it.
  env -u REGISTRY_STATE_DIR -u REGISTRY_TEST_USER -u REGISTRY_TEST_PASSWORD \
    setsid -f docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null
  local deadline=$(( $(date +%s) + WAIT ))
  until [ "$(status "$port")" = "$expect" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "the $name registry did not answer in ${WAIT}s; last log lines:"
      tail -n 10 "$dir/registry.log" | sed 's/^/    /'
      return 1
    fi
    sleep 0.2
  done
  log "$name registry ready on 127.0.0.1:$port"
}

rc=0
start open "$OPEN_PORT" 200 || rc=1
start auth "$AUTH_PORT" 401 auth || rc=1
[ "$rc" -eq 0 ] && log "auth registry user: $USER_NAME (password from REGISTRY_TEST_PASSWORD)"
exit "$rc"
