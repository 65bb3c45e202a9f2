#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, offline-friendly.
#
# ansible-test only works from a directory named
# .../ansible_collections/<namespace>/<name>, and it resolves the working
# directory with os.getcwd(), which follows symlinks: a symlinked checkout is
# rejected ("The current working directory must be within the source tree
# being tested"). So the files git would commit (tracked + untracked but not
# ignored) are mirrored into
#     .cache/sanity/ansible_collections/vmfleet/deploy
# and ansible-test runs there. Stale files are deleted from the mirror, so
# tests/output, .venv, .lab etc. are never scanned. The mirror gets its own
# empty `git init` so ansible-test does not climb up to this checkout's .git
# (which ignores .cache/ and would leave it with no targets at all).
#
# Offline workaround: ansible-test bootstraps pip in each of its sanity venvs
# by downloading get-pip-<ver>.py from a host this machine cannot reach. A
# stand-in is placed at ~/.ansible/test/cache/get_pip_<ver>.py that uses
# ensurepip and then `pip install`s the requested pip from PyPI.
#
# The collections this one depends on (galaxy.yml `dependencies`) are
# symlinked next to the mirror from the `ansible` package in .venv, so import
# and validate-modules sanity can resolve their module_utils.
#
# Usage: scripts/sanity.sh [extra ansible-test sanity args, e.g. --test pep8 -v]
# Exit status is ansible-test's (non-zero when any sanity test fails).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv"
NAMESPACE=vmfleet
NAME=deploy
# SANITY_ROOT lets parallel runs use separate mirrors (default .cache/sanity).
COLLECTIONS_ROOT="${SANITY_ROOT:-${ROOT}/.cache/sanity}/ansible_collections"
DEST="${COLLECTIONS_ROOT}/${NAMESPACE}/${NAME}"
PY=3.11

log() { printf '[sanity] %s\n' "$*" >&2; }

if [[ ! -x "${VENV}/bin/ansible-test" ]]; then
    log "no ${VENV}/bin/ansible-test; run scripts/venv.sh first"
    exit 2
fi
export PATH="${VENV}/bin:${PATH}"

# --- 1. get-pip stand-in -----------------------------------------------------
# The pip version ansible-test bootstraps is hard-coded in its source
# (python_requirements.get_venv_packages: pip='24.2' for ansible-core 2.19).
req_py="$("${VENV}/bin/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"))')"
pip_version="$(sed -n "s/^ *pip='\([0-9][0-9.]*\)',\$/\1/p" "${req_py}" | head -n1)"
if [[ -z "${pip_version}" ]]; then
    log "ERROR: cannot find the bootstrap pip version in ${req_py}"
    exit 2
fi
get_pip="${HOME}/.ansible/test/cache/get_pip_${pip_version//./_}.py"
marker='# vmfleet.deploy offline get-pip stand-in'
# Keep a real get-pip script if one was downloaded; (re)write only ours.
if [[ ! -s "${get_pip}" ]] || grep -qF "${marker}" "${get_pip}"; then
    mkdir -p "$(dirname "${get_pip}")"
    tmp="$(mktemp "${get_pip}.XXXXXX")"
    cat > "${tmp}" <<EOF
${marker} (scripts/sanity.sh).
# ansible-test runs this in place of get-pip.py with pip's install arguments,
# e.g. ['--disable-pip-version-check', 'pip==${pip_version}', '--no-setuptools', '--no-wheel'].
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
EOF
    if ! cmp -s "${tmp}" "${get_pip}"; then
        mv "${tmp}" "${get_pip}"
        log "wrote get-pip stand-in ${get_pip}"
    else
        rm -f "${tmp}"
    fi
fi

# --- 2. mirror the checkout into .../ansible_collections/vmfleet/deploy ------
mkdir -p "${DEST}"
filelist="$(mktemp)"
trap 'rm -f "${filelist}"' EXIT
# Tracked + untracked-but-not-ignored files that still exist (a file deleted
# in the work tree but not yet in the index is still listed by ls-files).
git -C "${ROOT}" ls-files -z -co --exclude-standard \
    | while IFS= read -r -d '' f; do
        [[ -e "${ROOT}/${f}" || -L "${ROOT}/${f}" ]] && printf '%s\0' "${f}"
      done > "${filelist}"

if command -v rsync >/dev/null 2>&1; then
    # Filter rules: include every listed file and its parent directories,
    # exclude everything else; --delete-excluded removes stale files (and old
    # tests/output) from the mirror.
    rules="$(mktemp)"
    trap 'rm -f "${filelist}" "${rules}"' EXIT
    tr '\0' '\n' < "${filelist}" | awk '
        {
            n = split($0, p, "/"); d = ""
            for (i = 1; i < n; i++) { d = d "/" p[i]; if (!(d in seen)) { seen[d] = 1; print "+ " d "/" } }
            print "+ /" $0
        }
        END { print "- *" }' > "${rules}"
    rsync -a --delete --delete-excluded --filter='P /.git/' --filter="merge ${rules}" "${ROOT}/" "${DEST}/"
else
    log "rsync not found (scripts/host-deps.sh installs it); copying with tar"
    find "${DEST}" -mindepth 1 -delete
    tar -C "${ROOT}" --null --no-recursion -T "${filelist}" -cf - | tar -C "${DEST}" -xf -
fi
# ansible-test looks for a .git directory from the collection root upwards
# and would find this checkout's, which ignores .cache/ -> "All targets
# skipped". A (never committed) repo in the mirror makes it list the mirrored
# files itself (git ls-files --cached --others --exclude-standard).
[[ -d "${DEST}/.git" ]] || git -C "${DEST}" init -q
log "mirrored $(tr -cd '\0' < "${filelist}" | wc -c) files into ${DEST#"${ROOT}"/}"

# --- 3. dependency collections next to the mirror -----------------------------
site_collections="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ansible_collections"
"${VENV}/bin/python" - "${ROOT}/galaxy.yml" <<'EOF' | while read -r dep; do
import sys, yaml
with open(sys.argv[1]) as f:
    print("\n".join((yaml.safe_load(f) or {}).get("dependencies") or {}))
EOF
    [[ -n "${dep}" ]] || continue
    ns="${dep%%.*}"; coll="${dep#*.}"
    if [[ -d "${site_collections}/${ns}/${coll}" ]]; then
        mkdir -p "${COLLECTIONS_ROOT}/${ns}"
        ln -sfn "${site_collections}/${ns}/${coll}" "${COLLECTIONS_ROOT}/${ns}/${coll}"
    else
        log "WARNING: dependency ${dep} not found in ${site_collections}"
    fi
done

# --- 4. run ansible-test -------------------------------------------------------
cd "${DEST}"
log "ansible-test sanity --python ${PY} --local $*  (in ${PWD})"
set +e
ansible-test sanity --python "${PY}" --local "$@"
rc=$?
set -e
if [[ ${rc} -eq 0 ]]; then
    log "PASSED"
else
    log "FAILED (exit ${rc}); results in ${DEST}/tests/output"
fi
exit "${rc}"
