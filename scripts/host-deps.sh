#!/usr/bin/env bash
# Install the build machine's host packages and make sure a Docker daemon is
# running. For a fresh Debian (bookworm) host, run as root. Idempotent: apt
# only runs for missing packages, dockerd is only started when `docker info`
# fails, the inotify limit is only raised when it is lower.
#
# Usage: sudo scripts/host-deps.sh
set -euo pipefail

# chromium: headless, for the deploy_report page's browser test (Debian's
# package: tools that download a browser build of their own cannot reach it).
PACKAGES=(docker.io debootstrap haproxy python3-venv git curl openssl rsync chromium)
INOTIFY_INSTANCES=8192
DOCKER_WAIT=60

log() { printf '[host-deps] %s\n' "$*"; }

if [[ ${EUID} -ne 0 ]]; then
    log "ERROR: must run as root" >&2
    exit 1
fi

# --- packages --------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "${pkg}" 2>/dev/null || true)"
    [[ "${status}" == "installed" ]] || missing+=("${pkg}")
done
if (( ${#missing[@]} )); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "packages present: ${PACKAGES[*]}"
fi

# --- kernel limits -----------------------------------------------------------------
# Past ~20 systemd lab hosts the default (128) makes new hosts die at boot.
cur="$(sysctl -n fs.inotify.max_user_instances)"
if (( cur < INOTIFY_INSTANCES )); then
    sysctl -q -w "fs.inotify.max_user_instances=${INOTIFY_INSTANCES}"
    log "raised fs.inotify.max_user_instances from ${cur} to ${INOTIFY_INSTANCES}"
else
    log "fs.inotify.max_user_instances=${cur} (>= ${INOTIFY_INSTANCES}, unchanged)"
fi

# --- docker daemon -----------------------------------------------------------------
# /usr/local/bin/docker may be a newer client than Debian's dockerd; the client
# negotiates the API version, so that works.
if docker info >/dev/null 2>&1; then
    log "docker daemon is running"
else
    if [[ "$(cat /proc/1/comm 2>/dev/null)" == "systemd" ]]; then
        log "starting docker with systemctl"
        systemctl start docker
    else
        log "no systemd as PID 1; starting dockerd in the background (log: /var/log/dockerd.log)"
        nohup dockerd >/var/log/dockerd.log 2>&1 &
        disown || true
    fi
    deadline=$(( SECONDS + DOCKER_WAIT ))
    until docker info >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            log "ERROR: docker daemon not ready after ${DOCKER_WAIT}s" >&2
            [[ -f /var/log/dockerd.log ]] && tail -n 20 /var/log/dockerd.log >&2
            exit 1
        fi
        sleep 1
    done
    log "docker daemon is ready"
fi
docker version --format 'docker client {{.Client.Version}} / server {{.Server.Version}} (API {{.Server.APIVersion}})'
