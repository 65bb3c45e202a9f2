#!/usr/bin/env bash
# Create (or refresh) the developer/CI virtualenv at <repo>/.venv from
# requirements.txt.
#
# Idempotent: pip only runs when the sha256 of requirements.txt differs from
# the one recorded in .venv/.requirements.sha256 (written after a successful
# install). A venv built by another Python minor version is rebuilt.
#
# Usage: scripts/venv.sh            (PYTHON=/path/to/python3.11 to override)
#        VENV_FORCE=1 scripts/venv.sh  to reinstall regardless of the stamp
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv"
REQ="${ROOT}/requirements.txt"
STAMP="${VENV}/.requirements.sha256"
PYTHON="${PYTHON:-python3}"
WANT_PY="3.11"

log() { printf '[venv] %s\n' "$*"; }

have_py="$("${PYTHON}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "${have_py}" != "${WANT_PY}" ]]; then
    log "ERROR: ${PYTHON} is Python ${have_py}, need ${WANT_PY} (set PYTHON=...)" >&2
    exit 1
fi

if [[ -x "${VENV}/bin/python" ]]; then
    venv_py="$("${VENV}/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    if [[ "${venv_py}" != "${WANT_PY}" ]]; then
        log "existing .venv is Python '${venv_py:-broken}', rebuilding"
        rm -rf "${VENV}"
    fi
fi

if [[ ! -x "${VENV}/bin/python" ]]; then
    log "creating ${VENV} with $("${PYTHON}" -c 'import sys; print(sys.executable)')"
    "${PYTHON}" -m venv "${VENV}"
fi

want_sum="$(sha256sum "${REQ}" | awk '{print $1}')"
have_sum="$(cat "${STAMP}" 2>/dev/null || true)"
if [[ "${want_sum}" == "${have_sum}" && -z "${VENV_FORCE:-}" ]]; then
    log "up to date (requirements.txt sha256 ${want_sum:0:12})"
    exit 0
fi

log "installing requirements.txt into .venv (this takes a few minutes)"
rm -f "${STAMP}"
start=$(date +%s)
"${VENV}/bin/python" -m pip install --disable-pip-version-check -r "${REQ}"
"${VENV}/bin/python" -m pip check
echo "${want_sum}" > "${STAMP}"
log "done in $(( $(date +%s) - start ))s; activate with: source .venv/bin/activate"
