#!/usr/bin/env bash
# Build the execution environment (execution-environment.yml) as image
# vmfleet-ee:latest, with Docker, from the lab's local base image: the
# collection's artifact first, then `ansible-builder build`. Prints the time.
#   scripts/ee.sh            (after `make deps lab-images`)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
docker image inspect vmfleet-lab/base:bookworm >/dev/null 2>&1 || {
  echo "ee: the lab's base image is missing: run make lab-images" >&2; exit 1; }
rm -rf .cache/dist && mkdir -p .cache/dist
ansible-galaxy collection build --force --output-path .cache/dist >/dev/null
cp .cache/dist/vmfleet-deploy-*.tar.gz .cache/dist/vmfleet-deploy.tar.gz
# pip in the build trusts what this machine trusts (a TLS-inspecting proxy's CA, if any).
mkdir -p .cache/ee-ca
cp /etc/ssl/certs/ca-certificates.crt .cache/ee-ca/ca-certificates.crt
start=$(date +%s)
ansible-builder build --container-runtime docker --context .cache/ee --file execution-environment.yml -v 2 "$@"
echo "ee: vmfleet-ee:latest built in $(( $(date +%s) - start )) s"
