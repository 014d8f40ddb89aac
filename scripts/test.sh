#!/usr/bin/env bash
# The whole test suite: installs what is missing, generates the contract code,
# lints (buf + TypeScript, tests included), builds, and runs every suite against
# real nats-server processes. CI runs exactly this (see .ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"

# A breaking change to bsfg.v1 must be deliberate: compare against main when it exists.
if git rev-parse --verify --quiet main >/dev/null && [ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]; then
  echo "==> buf breaking against main"
  pnpm exec buf breaking proto --against '.git#branch=main,subdir=proto'
fi

echo "==> generate, lint, build, test"
pnpm exec turbo run generate lint build test --output-logs=new-only --concurrency=2
