#!/usr/bin/env bash
# Makes the images docker-compose.yml runs besides the API available to podman: present already,
# pulled, or, where nothing can be pulled (this repository's build machine), a stand-in with the
# same name built from Debian's packages on the stand-in base image (scripts/make_base_image.sh).
# Used by scripts/stack.sh (`make up`) and scripts/container_smoke.sh.
#
# Usage: scripts/compose_images.sh [--grafana]
#   --grafana      grafana/grafana too (pull only: Debian does not package Grafana)
#   PULL_TIMEOUT   seconds to try each pull (default 60; 0: do not try)
# A stand-in carries the label io.ml-prod-api.stand-in=1, so it is never taken for the real image
# and scripts/clean_all.sh finds it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# This machine's hard limits are below podman's default nofile (1048576): see container_smoke.sh.
ULIMITS=(--ulimit nofile=16384:16384 --ulimit nproc=16384:16384)
say() { echo "compose_images: $*" >&2; }

pulled() {  # pulled IMAGE: present, or pulled within PULL_TIMEOUT
  podman image exists "$1" && return 0
  [ "${PULL_TIMEOUT:-60}" != 0 ] || return 1
  timeout "${PULL_TIMEOUT:-60}" podman pull -q "$1" >/dev/null 2>&1
}

# standin IMAGE PACKAGES SETUP [CONTAINERFILE LINES...]
standin() {
  local image="$1" packages="$2" setup="$3" dir
  shift 3
  pulled "$image" && return 0
  say "$image cannot be pulled here; building a stand-in from Debian's $packages"
  "$ROOT/scripts/make_base_image.sh"
  dir="$(mktemp -d /tmp/ml-prod-api-standin.XXXXXX)"
  printf '%s\n' "FROM docker.io/library/python:3.11-slim-bookworm" \
    "RUN apt-get update && apt-get install -y --no-install-recommends $packages && rm -rf /var/lib/apt/lists/* && $setup" \
    "$@" >"$dir/Containerfile"
  timeout 900 podman build --isolation=chroot --format docker "${ULIMITS[@]}" \
    --label io.ml-prod-api.stand-in=1 -t "$image" -f "$dir/Containerfile" "$dir" >&2 \
    || { rm -rf "$dir"; say "could not build a stand-in for $image"; return 1; }
  rm -rf "$dir"
}

standin docker.io/library/redis:7.2.7-bookworm redis-server \
  "mkdir -p /data && chown 999:999 /data" "WORKDIR /data" 'CMD ["redis-server"]'
standin docker.io/prom/prometheus:v2.55.1 "prometheus wget" \
  "mkdir -p /prometheus && chown 65534:65534 /prometheus" "USER 65534" "WORKDIR /prometheus" \
  'ENTRYPOINT ["/usr/bin/prometheus"]'
if [ "${1:-}" = --grafana ] && ! pulled docker.io/grafana/grafana:11.3.0; then
  say "docker.io/grafana/grafana:11.3.0 cannot be pulled and has no Debian stand-in"
  exit 1
fi
