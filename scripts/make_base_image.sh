#!/usr/bin/env bash
# Builds a local stand-in for the base image the Dockerfile names (python:3.11-slim-bookworm) on a
# machine that cannot pull images but reaches Debian's archive.
#
# What it is: Debian bookworm (debootstrap minbase) with Debian's python3.11, python3-venv and
# ca-certificates, plus symlinks so that what the Dockerfile relies on looks as in the official
# image: `python`/`python3`/`python3.11` in /usr/local/bin, PATH and LANG as the official image
# sets them. It is NOT the official image (that one builds CPython 3.11.x from source into
# /usr/local); use it only to build and smoke-test the Dockerfile here.
#
# The machine's CA bundle is copied in (pip and apt inside the build go through this machine's
# TLS-intercepting network path and need its CA), and apt is told not to reject the archive's
# Release files for age, as this machine's own apt configuration does.
#
# Usage: scripts/make_base_image.sh [--force]
#   BASE_CACHE_DIR   where the rootfs is kept between runs (default /var/cache/ml-prod-api/base)
#   DEBIAN_MIRROR    default http://deb.debian.org/debian
# The rootfs lives outside the repository; a second run is a no-op once the image exists.
set -euo pipefail

IMAGE="docker.io/library/python:3.11-slim-bookworm"
STANDIN_LABEL="io.ml-prod-api.stand-in"
# Bump when the recipe below changes: an image with an older label is rebuilt.
RECIPE_VERSION="3"
CACHE_DIR="${BASE_CACHE_DIR:-/var/cache/ml-prod-api/base}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS="$CACHE_DIR/rootfs-bookworm-py311-v$RECIPE_VERSION"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

say() { echo "make_base_image: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "needs root (debootstrap and rootful podman); nothing done"
  exit 2
fi

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v runc >/dev/null || missing+=(runc)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    say "missing ${missing[*]} and no apt-get to install them"
    exit 2
  fi
  say "installing ${missing[*]} (and buildah, uidmap, fuse-overlayfs) with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman buildah debootstrap runc \
    fuse-overlayfs uidmap containernetworking-plugins >/dev/null
fi

existing_label="$(podman image inspect --format "{{ index .Labels \"$STANDIN_LABEL\" }}" \
  "$IMAGE" 2>/dev/null || true)"
if [ -n "$existing_label" ] && [ "$existing_label" != "<no value>" ]; then
  if [ "$existing_label" = "$RECIPE_VERSION" ] && [ "$FORCE" = 0 ]; then
    say "$IMAGE is already the stand-in (recipe $RECIPE_VERSION); nothing to do"
    exit 0
  fi
elif podman image exists "$IMAGE" && [ "$FORCE" = 0 ]; then
  say "$IMAGE exists and is not a stand-in (a real pull?): leaving it alone"
  exit 0
fi

if [ ! -f "$ROOTFS/.complete" ] || [ "$FORCE" = 1 ]; then
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  say "debootstrap bookworm (minbase) into $ROOTFS from $MIRROR"
  # python3-venv brings ensurepip's pip wheel; that is all the Dockerfile uses of pip.
  debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 || {
      say "debootstrap failed; last lines of $CACHE_DIR/debootstrap.log:"
      tail -n 20 "$CACHE_DIR/debootstrap.log" >&2
      exit 1
    }

  # What the official image has in /usr/local/bin.
  for name in python python3 python3.11; do
    ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/$name"
  done
  # apt sources as in the official image (main, updates, security).
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # This machine's archive path may serve Release files past their Valid-Until date.
  cat >"$ROOTFS/etc/apt/apt.conf.d/99stand-in" <<'EOF'
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
EOF
  # Slim, as the official image: no apt lists, docs or man pages.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
  touch "$ROOTFS/.complete"
fi

# The CA bundle of this machine (copied on every import: it may change). Also placed where
# update-ca-certificates picks it up, so a later ca-certificates trigger keeps it.
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
install -m 0644 /etc/ssl/certs/ca-certificates.crt \
  "$ROOTFS/usr/local/share/ca-certificates/build-host-bundle.crt"

say "importing $ROOTFS as $IMAGE"
podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
tar --numeric-owner --exclude=./.complete -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHON_VERSION=3.11' \
  --change 'CMD ["python3"]' \
  --change "LABEL $STANDIN_LABEL=$RECIPE_VERSION" \
  --change 'LABEL org.opencontainers.image.description="local stand-in for python:3.11-slim-bookworm (debootstrap + Debian python3.11), made by scripts/make_base_image.sh"' \
  --quiet - "$IMAGE" >/dev/null
podman image inspect --format '{{.Id}} {{.Size}}' "$IMAGE" | {
  read -r id size
  say "done: $IMAGE ${id:0:12} ($((size / 1024 / 1024)) MiB)"
}
