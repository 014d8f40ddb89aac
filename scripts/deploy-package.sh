#!/usr/bin/env bash
# deploy-package.sh <package> <dir> [pnpm deploy options…]
# Copies one built workspace package (a deployable such as @bsfg/ingest, or @bsfg/pki) into
# <dir> with only its production dependencies: its dist/, and a node_modules/ holding the
# @bsfg packages it depends on (their dist/) and their npm dependencies — nothing of the other
# deployables, no devDependencies. `node <dir>/dist/main.js` then runs on its own.
# The deployables' Dockerfiles run this, and so does test/src/images.test.ts: what the test
# proves about <dir> is what the image carries.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <package> <dir> [pnpm deploy options…]" >&2
  exit 2
fi
package=$1 out=$2
shift 2

# pnpm 12 deploys without inject-workspace-packages: the @bsfg packages are copied in as
# file: dependencies (node_modules/.pnpm/@bsfg+…), not linked back into the workspace.
pnpm --filter "$package" deploy --prod --reporter=append-only "$@" "$out"

# A package is copied whole (sources, build metadata); only dist/ and package.json are needed
# at run time. Trim the deployed package and every @bsfg package copied into it.
trim() {
  rm -rf "$1/src" "$1/.turbo" "$1/.vitest" "$1"/tsconfig*.json "$1"/*.tsbuildinfo "$1/vitest.config.ts" "$1/buf.gen.yaml"
}
trim "$out"
rm -f "$out/pnpm-workspace.yaml"
for dir in "$out"/node_modules/.pnpm/@bsfg+*/node_modules/@bsfg/*; do
  # Only the package's own copy (a directory), not the symlinks to its siblings.
  if [ -d "$dir" ] && [ ! -L "$dir" ]; then trim "$dir"; fi
done
