#!/usr/bin/env bash
# `make up` / `make down`: the stack of docker-compose.yml (api, redis, prometheus; grafana with
# GRAFANA=1) with whichever engine is here: Docker Compose v2, or podman with podman-compose.
#
#   scripts/stack.sh up     build the API image, start the stack, wait until every service's
#                           health check passes and the API's /readyz answers 200; exit 1 with
#                           the failing service's last log lines when one does not start
#   scripts/stack.sh down   stop and remove the stack's containers, pod and network (the
#                           Prometheus volume is kept; DOWN_VOLUMES=1 removes it too)
#
# Environment: API_PORT, PROMETHEUS_PORT, GRAFANA_PORT (published on 127.0.0.1; 8000, 9090,
# 3000), GRAFANA=1 (the compose file's `grafana` profile), COMPOSE_PROJECT_NAME (ml-prod-api),
# API_IMAGE (an image to run instead of building one), ENGINE=docker|podman (default: Docker when
# its daemon answers and it has Compose v2, else podman), UP_TIMEOUT (seconds, default 240),
# PODMAN_COMPOSE (default: from PATH, else the pinned one installed into .venv).
#
# Why not just `podman-compose up`: it exits 0 when a container fails to start, and podman
# before 4.6 runs no health checks without systemd timers, so it cannot wait for `service_healthy`
# either. With podman this script runs each health check itself, in the compose file's order.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ACTION="${1:-}"
PROJECT="${COMPOSE_PROJECT_NAME:-ml-prod-api}"
UP_TIMEOUT="${UP_TIMEOUT:-240}"
API_PORT="${API_PORT:-8000}"
export API_PORT PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}" GRAFANA_PORT="${GRAFANA_PORT:-3000}"
SERVICES=(redis api prometheus)
PROFILE=()
if [ "${GRAFANA:-0}" = 1 ]; then
  SERVICES+=(grafana)
  PROFILE=(--profile grafana)
fi
START=$(date +%s)

say() { echo "[stack] $*"; }
die() { echo "[stack] FAILED: $*" >&2; exit 1; }

engine() {
  if [ -n "${ENGINE:-}" ]; then echo "$ENGINE"; return; fi
  if command -v docker >/dev/null && docker compose version >/dev/null 2>&1 \
     && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null; then
    echo podman
  else
    die "neither Docker (with Compose v2) nor podman is installed"
  fi
}

podman_compose() {
  local tool
  tool="${PODMAN_COMPOSE:-$(command -v podman-compose || true)}"
  if [ -z "$tool" ]; then
    # The version pinned for the test suite, into the project's venv.
    make --no-print-directory .venv/.compose-installed >&2
    tool="$ROOT/.venv/bin/podman-compose"
  fi
  "$tool" -p "$PROJECT" -f docker-compose.yml "${PROFILE[@]}" "$@"
}

# ---- podman -----------------------------------------------------------------------------------
container_of() {  # container_of SERVICE: the name of the stack's container for it
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

wait_healthy() {  # wait_healthy SERVICE DEADLINE: run its health check by hand until it passes
  local name
  name="$(container_of "$1")"
  [ -n "$name" ] || die "service $1 has no container (see the podman-compose output above)"
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      podman logs --tail 20 "$name" >&2 || true
      die "service $1 is not running ($name: $(podman inspect --format '{{.State.Status}} {{.State.Error}}' "$name"))"
    fi
    if [ "$(date +%s)" -ge "$2" ]; then
      podman logs --tail 20 "$name" >&2 || true
      die "service $1 not healthy within ${UP_TIMEOUT} s"
    fi
    sleep 1
  done
  say "$1 healthy ($name, $(( $(date +%s) - START )) s)"
}

podman_up() {
  local image="${API_IMAGE:-localhost/ml-prod-api:latest}"
  local images=()
  [ "${GRAFANA:-0}" = 1 ] && images=(--grafana)
  "$ROOT/scripts/compose_images.sh" "${images[@]}" \
    || die "the images of the compose file are missing and could not be made"
  if [ -z "${API_IMAGE:-}" ]; then
    if ! podman image exists docker.io/library/python:3.11-slim-bookworm \
       && ! timeout 120 podman pull -q docker.io/library/python:3.11-slim-bookworm >/dev/null 2>&1; then
      say "python:3.11-slim-bookworm cannot be pulled here; making the stand-in base image"
      "$ROOT/scripts/make_base_image.sh" || die "no base image (scripts/make_base_image.sh)"
    fi
    say "building $image"
    # --format docker keeps the HEALTHCHECK; --isolation=chroot builds where the engine cannot
    # create namespaces for RUN steps (inside a container or a minimal VM); the ulimits as in the
    # compose file.
    podman build --isolation=chroot --format docker --label io.ml-prod-api.image=1 \
      --ulimit nofile=16384:16384 --ulimit nproc=16384:16384 -t "$image" . \
      || die "podman build failed"
  fi
  API_IMAGE="$image" podman_compose up -d --no-build "${SERVICES[@]}" || die "podman-compose up failed"
  local deadline=$(( START + UP_TIMEOUT )) service
  for service in "${SERVICES[@]}"; do
    wait_healthy "$service" "$deadline"
  done
}

podman_down() {
  podman_compose down -t 30 ${DOWN_VOLUMES:+-v}
  local left
  left="$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}')"
  [ -z "$left" ] || die "containers left after down: $left"
}

# ---- docker -----------------------------------------------------------------------------------
docker_up() {
  # Compose v2 builds, starts and waits for every health check, and fails when one fails.
  local build=(--build)
  [ -n "${API_IMAGE:-}" ] && build=(--no-build)
  docker compose -p "$PROJECT" -f docker-compose.yml "${PROFILE[@]}" up -d "${build[@]}" \
    --wait --wait-timeout "$UP_TIMEOUT" "${SERVICES[@]}" \
    || { docker compose -p "$PROJECT" logs --tail 20 >&2 || true; die "docker compose up failed"; }
}

docker_down() {
  docker compose -p "$PROJECT" -f docker-compose.yml "${PROFILE[@]}" down -t 30 ${DOWN_VOLUMES:+-v}
}

# ---- main -------------------------------------------------------------------------------------
case "$ACTION" in
  up)
    e="$(engine)"
    say "engine: $e; project $PROJECT"
    "${e}_up"
    # The API answers predictions: what a user comes for.
    code=000
    until [ "$code" = 200 ]; do
      code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$API_PORT/readyz" || true)"
      [ "$code" = 200 ] && break
      [ "$(date +%s)" -lt $(( START + UP_TIMEOUT )) ] || die "/readyz on 127.0.0.1:$API_PORT answered $code"
      sleep 1
    done
    say "up in $(( $(date +%s) - START )) s: API http://127.0.0.1:$API_PORT," \
        "Prometheus http://127.0.0.1:$PROMETHEUS_PORT" \
        "$( [ "${GRAFANA:-0}" = 1 ] && echo ", Grafana http://127.0.0.1:$GRAFANA_PORT")"
    ;;
  down)
    e="$(engine)"
    "${e}_down"
    say "down"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
