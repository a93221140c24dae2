#!/usr/bin/env bash
# Installs the Debian packages that the integration tests drive for real: Prometheus and promtool,
# redis-server (shared rate limits) and wrk (the benchmark's smoke test).
# Idempotent and quick when they are present; called by `make test` (and so by CI).
# Without root or apt-get it installs nothing and says so; the tests that need a missing binary
# are then skipped with that reason.
set -euo pipefail

need=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
# The container smoke test: rootful podman with runc and CNI port publishing, catatonit (the
# pause process of the pods `podman kube play` makes), and debootstrap for the stand-in base
# image (scripts/make_base_image.sh).
{ command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
  && command -v catatonit >/dev/null; } \
  || need+=(podman buildah runc catatonit debootstrap containernetworking-plugins iptables uidmap)
# ... and name resolution between compose services on podman's CNI networks.
[ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
command -v wrk >/dev/null || need+=(wrk)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_test_services: cannot install ${need[*]} (needs root and apt-get);" \
       "the tests that need them will be skipped" >&2
  exit 0
fi
echo "install_test_services: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
