#!/usr/bin/env bash
# Build, idempotently, the images the test suite reuses: modelyard's Debian base image and the
# HAProxy proxy image of the Docker deploy target. Each takes ~30-60 s cold on a 2-core machine,
# so they are built here, with a budget of their own, never inside one test's timeout. An
# existing tag is verified (its programs must run) and rebuilt if it does not.
#
# Environment:
#   IMAGES_BUDGET_SECONDS  time allowed for both builds (default 900)
#   MODELYARD_PYTHON       the interpreter with modelyard installed (default .venv/bin/python)
set -uo pipefail

log() { printf 'images: %s\n' "$*"; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MODELYARD_PYTHON:-$ROOT/.venv/bin/python}"
BUDGET="${IMAGES_BUDGET_SECONDS:-900}"

if [ ! -x "$PY" ]; then
  log "no interpreter at $PY (run 'make install' first); the tests will build the images"
  exit 1
fi
started=$(date +%s)
timeout "$BUDGET" "$PY" - <<'PY'
from modelyard.deploy.docker import ensure_proxy_image
from modelyard.images import DEFAULT_BASE_TAG, build_base_image


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


say(f"{DEFAULT_BASE_TAG} ready ({build_base_image(DEFAULT_BASE_TAG, progress=say).id[:19]})")
say(f"{ensure_proxy_image()} ready")
PY
code=$?
if [ "$code" -ne 0 ]; then
  log "building the test images failed (exit $code after $(( $(date +%s) - started )) s)"
  exit "$code"
fi
log "base and proxy images ready in $(( $(date +%s) - started )) s"
