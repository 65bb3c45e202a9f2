#!/usr/bin/env bash
# Lint the repository with the pinned tools from .venv:
#   ruff check .        (Python; config in pyproject.toml)
#   yamllint -s .       (YAML; config in .yamllint; -s: warnings fail too)
#   ansible-lint        (production profile, offline; config in .ansible-lint)
# All three always run; the exit status is non-zero when any of them failed.
#
# ansible-lint must find this collection as vmfleet.deploy: the collection
# search path is .cache/collections (as in ansible.cfg), where
# ansible_collections/vmfleet/deploy is a symlink to the repository root.
# The tools never walk into .venv, .cache (that symlink would loop), .lab or
# tests/output: see the excludes in each tool's config.
#
# Usage: scripts/lint.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv"

log() { printf '[lint] %s\n' "$*" >&2; }

if [[ ! -x "${VENV}/bin/ansible-lint" ]]; then
    log "no ${VENV}/bin/ansible-lint; run scripts/venv.sh first"
    exit 2
fi
export PATH="${VENV}/bin:${PATH}"
cd "${ROOT}" || exit 2

# Make vmfleet.deploy resolvable (idempotent; the Makefile does the same).
mkdir -p .cache/collections/ansible_collections/vmfleet
ln -sfn ../../../.. .cache/collections/ansible_collections/vmfleet/deploy
export ANSIBLE_COLLECTIONS_PATH="${ROOT}/.cache/collections"
# Keep ansible-lint from installing anything or touching ~/.ansible.
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE=1

failed=()
run() {
    local name=$1; shift
    log "== ${name}: $*"
    local start=${SECONDS}
    if "$@"; then
        log "== ${name}: ok ($(( SECONDS - start ))s)"
    else
        log "== ${name}: FAILED ($(( SECONDS - start ))s)"
        failed+=("${name}")
    fi
}

run ruff ruff check .
run yamllint yamllint -s .
run ansible-lint ansible-lint --profile production

if (( ${#failed[@]} )); then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all linters passed"
