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
set -uo pipefail

log() { printf 'registry: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

STATE="${REGISTRY_STATE_DIR:-/tmp/modelyard-registry}"
USER_NAME="${REGISTRY_TEST_USER:-modelyard}"
PASSWORD="${REGISTRY_TEST_PASSWORD:-modelyard-test-password}"
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

bcrypt() {
  # docker-registry's htpasswd accepts bcrypt only; libxcrypt (Debian's libcrypt) makes it.
  if command -v htpasswd >/dev/null 2>&1; then
    printf '%s\n' "$2" | htpasswd -niB "$1" | head -n1  # password on stdin, not argv
  else
    python3 -W ignore -c 'import crypt, sys; print(sys.argv[1] + ":" + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1" "$2"
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
    bcrypt "$USER_NAME" "$PASSWORD" >"$dir/htpasswd"
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
start open 5000 200 || rc=1
start auth 5001 401 auth || rc=1
[ "$rc" -eq 0 ] && log "auth registry user: $USER_NAME (password from REGISTRY_TEST_PASSWORD)"
exit "$rc"
