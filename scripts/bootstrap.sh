#!/usr/bin/env bash
# Installs what BSFG needs on a fresh Debian/Ubuntu machine with Node >= 20:
# pnpm (pinned), nats-server (Debian package), promtool (extracted from Debian's
# prometheus package into .tools/) and docker-compose (Debian package, no engine: the suite
# only validates docker-compose.yml), then the workspace's dependencies.
# Sourced by scripts/test.sh (and later by the run command); safe to run repeatedly.
set -euo pipefail

PNPM_VERSION=12.4.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: '$*' needs root; run it as root or install sudo" >&2; exit 1
  fi
}

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "error: BSFG needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if ! command -v pnpm >/dev/null || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "==> installing pnpm $PNPM_VERSION"
  # corepack cannot fetch pnpm here; npm can.
  need_root npm install -g "pnpm@$PNPM_VERSION" >/dev/null
fi

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  echo "==> installing nats-server (Debian package)"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

# promtool checks the shipped alert rules in the test suite. It comes from Debian's prometheus
# package, but only the binary is extracted into .tools/: installing the package would also
# start a Prometheus server (on systemd machines, or wherever invoke-rc.d may start services).
if ! command -v promtool >/dev/null && [ ! -x "$root/.tools/promtool" ]; then
  echo "==> extracting promtool from Debian's prometheus package into .tools/"
  promtool_tmp="$(mktemp -d)"
  chmod 755 "$promtool_tmp"   # apt's download sandbox user must be able to write here
  if ! (cd "$promtool_tmp" && apt-get download prometheus >/dev/null 2>&1); then
    need_root apt-get update -qq
    (cd "$promtool_tmp" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb --fsys-tarfile "$promtool_tmp"/prometheus_*.deb | tar -x -C "$promtool_tmp" ./usr/bin/promtool
  mkdir -p "$root/.tools"
  mv "$promtool_tmp/usr/bin/promtool" "$root/.tools/promtool"
  rm -rf "$promtool_tmp"
fi

# docker-compose validates docker-compose.yml in the test suite (`docker-compose config` needs no
# engine). Debian's package (Compose 1.29) without its recommends: it brings no Docker engine
# (docker.io is only a recommendation) and starts no service. Set DOCKER_COMPOSE to use another.
if [ -z "${DOCKER_COMPOSE:-}" ] && ! command -v docker-compose >/dev/null; then
  echo "==> installing docker-compose (Debian package, without a Docker engine)"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

export TURBO_TELEMETRY_DISABLED=1
cd "$root"
echo "==> installing workspace dependencies"
pnpm install --frozen-lockfile --reporter=append-only | tail -n 3
