#!/usr/bin/env bash
# Make a Docker engine available, idempotently: install docker.io (Debian) when dockerd is
# missing, start dockerd in the background when nothing answers, and wait (with a deadline)
# until `docker info` succeeds. Safe to run again and again; prints what it did.
#
# Environment:
#   DOCKER_WAIT_SECONDS  how long to wait for the engine (default 60)
#   DOCKERD_LOG          where dockerd writes its log (default /var/log/dockerd.log)
set -uo pipefail

log() { printf 'docker: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

WAIT="${DOCKER_WAIT_SECONDS:-60}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"

engine_ready() { docker info >/dev/null 2>&1; }

# Nothing to do when an engine already answers (a local dockerd, Docker Desktop, $DOCKER_HOST).
if command -v docker >/dev/null 2>&1 && engine_ready; then
  log "engine ready ($(docker version --format 'server {{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

# --- install ----------------------------------------------------------------------------------
# mmdebstrap is what `modelyard base build` uses to make a base image without pulling one.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" containerd runc iptables ca-certificates >/dev/null
  else
    log "cannot install ${missing[*]}: no apt-get on this machine"
  fi
else
  log "docker.io and mmdebstrap already installed"
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "dockerd is not available; docker tests will skip (or fail under CI)"
  exit 1
fi

# --- start ------------------------------------------------------------------------------------
if pgrep -x dockerd >/dev/null 2>&1; then
  log "dockerd already running (pid $(pgrep -x dockerd | head -n1)); waiting for it"
else
  log "starting dockerd (log: $DOCKERD_LOG)"
  # No systemd on CI machines and containers: run it in the background, detached from us.
  # setsid: its own session, so it outlives the shell (or job) that started it.
  as_root setsid -f sh -c "exec dockerd >>'$DOCKERD_LOG' 2>&1 </dev/null"
fi

deadline=$(( $(date +%s) + WAIT ))
until engine_ready; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "engine not ready after ${WAIT}s; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/    /'
    exit 1
  fi
  sleep 0.5
done
log "engine ready ($(docker version --format 'server {{.Server.Version}}' 2>/dev/null))"
