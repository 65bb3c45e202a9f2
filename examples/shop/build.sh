#!/usr/bin/env bash
# Build (and optionally push) the demo shop images.
#
# Every service and version is the same app with different baked-in ENV, so all
# images share their filesystem layers; after the first build each further image
# costs a second or so, and a second run of this script is served from the cache.
#
# Environment:
#   BASE_IMAGE  base image (default vmfleet-lab/base:bookworm; debian:bookworm works too)
#   REGISTRY    registry host[:port]; images are tagged REGISTRY/shop/<svc>:<ver>.
#               Unset: tagged vmfleet-shop/<svc>:<ver> (local only)
#   PUSH        1 to push each image to REGISTRY (credentials come from DOCKER_CONFIG)
#   SERVICES    space-separated services (default "catalog cart search payment")
#   VERSIONS    space-separated versions (default "1.0.0 1.1.0 1.2.0-bad");
#               a version ending in "-bad" bakes FAIL_HEALTH=1: health never passes;
#               "-errors" bakes ERROR_RATE=0.3 (health passes, 30% of GET / answer 500);
#               "-slow" bakes LATENCY_MS=250 (health passes, GET / takes 250 ms more)
#   DOCKER      container CLI to use (default docker)
#
# Examples:
#   examples/shop/build.sh
#   REGISTRY=registry.lab:5000 PUSH=1 DOCKER_CONFIG=/path/to/cfg examples/shop/build.sh
#   SERVICES=cart VERSIONS=2.0.0 examples/shop/build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BASE_IMAGE=${BASE_IMAGE:-vmfleet-lab/base:bookworm}
REGISTRY=${REGISTRY:-}
REGISTRY=${REGISTRY%/}
PUSH=${PUSH:-0}
SERVICES=${SERVICES:-catalog cart search payment}
VERSIONS=${VERSIONS:-1.0.0 1.1.0 1.2.0-bad}
DOCKER=${DOCKER:-docker}

die() { echo "build.sh: $*" >&2; exit 1; }

case "$PUSH" in
  1|true|yes) PUSH=1 ;;
  0|false|no|'') PUSH=0 ;;
  *) die "PUSH must be 0 or 1, got '$PUSH'" ;;
esac
if [[ $PUSH == 1 && -z $REGISTRY ]]; then
  die "PUSH=1 needs REGISTRY (refusing to push vmfleet-shop/* to a default registry)"
fi
read -r -a services <<<"$SERVICES"
read -r -a versions <<<"$VERSIONS"
((${#services[@]})) || die "SERVICES is empty"
((${#versions[@]})) || die "VERSIONS is empty"
name_re='^[a-z0-9]+([._-][a-z0-9]+)*$'
tag_re='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
for svc in "${services[@]}"; do [[ $svc =~ $name_re ]] || die "invalid service name '$svc'"; done
for ver in "${versions[@]}"; do [[ $ver =~ $tag_re ]] || die "invalid version tag '$ver'"; done

command -v "$DOCKER" >/dev/null || die "'$DOCKER' not found"
"$DOCKER" info >/dev/null 2>&1 || die "cannot reach the container engine ('$DOCKER info' failed)"
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "build.sh: base image $BASE_IMAGE is not local; the engine will try to pull it" >&2
fi

image_name() {
  if [[ -n $REGISTRY ]]; then echo "$REGISTRY/shop/$1:$2"; else echo "vmfleet-shop/$1:$2"; fi
}
image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

started=$SECONDS
summary=()
for svc in "${services[@]}"; do
  for ver in "${versions[@]}"; do
    image=$(image_name "$svc" "$ver")
    fail_health=0 error_rate=0 latency_ms=0
    [[ $ver == *-bad ]] && fail_health=1
    [[ $ver == *-errors ]] && error_rate=0.3
    [[ $ver == *-slow ]] && latency_ms=250
    before=$(image_id "$image")
    t0=$SECONDS
    if ! "$DOCKER" build \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "SERVICE_NAME=$svc" \
        --build-arg "VERSION=$ver" \
        --build-arg "FAIL_HEALTH=$fail_health" \
        --build-arg "ERROR_RATE=$error_rate" \
        --build-arg "LATENCY_MS=$latency_ms" \
        --tag "$image" \
        "$here" >"$log" 2>&1; then
      cat "$log" >&2
      die "build of $image failed"
    fi
    after=$(image_id "$image")
    if [[ -n $before && $before == "$after" ]]; then state=unchanged; else state=built; fi
    echo "build.sh: $state $image ($((SECONDS - t0))s)"
    if [[ $PUSH == 1 ]]; then
      "$DOCKER" push "$image" >"$log" 2>&1 || { cat "$log" >&2; die "push of $image failed"; }
      digest=$("$DOCKER" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" \
        | grep -F "$REGISTRY/shop/$svc@" | head -n1 || true)
      state="$state, pushed ${digest#*@}"
      echo "build.sh: pushed $image ${digest#*@}"
    fi
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
    short=${after#sha256:}
    summary+=("$(printf '%-44s %-12s %6s MB  %s' "$image" "${short:0:12}" "$((size / 1000000))" "$state")")
  done
done

echo
printf '%-44s %-12s %9s  %s\n' IMAGE ID SIZE STATE
printf '%s\n' "${summary[@]}"
echo "build.sh: ${#summary[@]} image(s) in $((SECONDS - started))s (base $BASE_IMAGE$([[ $PUSH == 1 ]] && echo ", pushed to $REGISTRY"))"
