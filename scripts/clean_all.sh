#!/usr/bin/env bash
# Removes what `make test` (and `make up`) leave behind, beyond the checkout's caches:
#   - in the checkout: .venv, the tool caches (.pytest_cache, .mypy_cache, .ruff_cache,
#     .hypothesis), __pycache__ folders and the egg-info of the editable install;
#   - with podman: this project's containers, pods, volumes and networks (smoke test, compose
#     stack, kube play), its images (localhost/ml-prod-api:*, the Debian stand-ins for
#     python:3.11-slim-bookworm, redis and prom/prometheus, everything built on them) and the
#     build cache that only they use;
#   - /var/cache/ml-prod-api (the debootstrapped base rootfs) and leftover smoke-test logs in /tmp.
# It does not uninstall the Debian packages that scripts/install_test_services.sh installed
# (podman, prometheus, redis-server, wrk, ...): other software may use them. It prints them.
#
# Usage: scripts/clean_all.sh [--dry-run]   (--dry-run: print what would be removed)
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[ "${1:-}" = --dry-run ] && DRY_RUN=1
run() {
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@" || true; fi
}
disk_used() { df --output=used -B1M / | tail -n 1 | tr -d ' '; }
before=$(disk_used)

# ---- the checkout ----------------------------------------------------------------------------
run rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis src/ml_prod_api.egg-info
while IFS= read -r -d '' cache; do
  run rm -rf "$cache"
done < <(find src tests scripts training -type d -name __pycache__ -print0 2>/dev/null)

# ---- podman: containers, pods, volumes, networks, images ---------------------------------------
if command -v podman >/dev/null && podman info >/dev/null 2>&1; then
  # Names the smoke test, the compose projects and kube play give them.
  for pod in $(podman pod ps --format '{{.Name}}' | grep -E '^(ml-prod-api|mlpa-)' || true); do
    run podman pod rm -f -t 0 "$pod"
  done
  for c in $(podman ps -a --format '{{.Names}}' | grep -E '^(ml-prod-api|mlpa-)' || true); do
    run podman rm -f -t 0 "$c"
  done
  for v in $(podman volume ls --format '{{.Name}}' | grep -E '^(ml-prod-api|mlpa-)' || true); do
    run podman volume rm -f "$v"
  done
  for n in $(podman network ls --format '{{.Name}}' | grep -E '^(ml-prod-api|mlpa-)' || true); do
    run podman network rm -f "$n"
  done
  # Images: ours by name, the stand-ins by their label (images built on a stand-in base inherit
  # it, the intermediate build stages included).
  images=$(
    podman images --format '{{.Repository}}:{{.Tag}} {{.ID}}' \
      | awk '$1 ~ /^localhost\/ml-prod-api:/ { print $2 }'
    podman images --filter label=io.ml-prod-api.stand-in --format '{{.ID}}'
    podman images --filter label=io.ml-prod-api.image --format '{{.ID}}'
  )
  for id in $(echo "$images" | sort -u); do
    run podman rmi -f "$id"
  done
  # What is now dangling: the untagged build stages of those images.
  run podman image prune -f --filter label=io.ml-prod-api.image
fi

# ---- outside the checkout ----------------------------------------------------------------------
run rm -rf /var/cache/ml-prod-api
for logs in /tmp/ml-prod-api-smoke.*; do
  [ -e "$logs" ] && run rm -rf "$logs"
done

after=$(disk_used)
if [ "$DRY_RUN" = 0 ]; then
  echo "clean_all: freed $((before - after)) MB on /"
fi
echo "clean_all: Debian packages are left installed; scripts/install_test_services.sh installs" \
     "these when missing: prometheus redis-server wrk podman buildah runc catatonit debootstrap" \
     "containernetworking-plugins iptables uidmap golang-github-containernetworking-plugin-dnsname"
