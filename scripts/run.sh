#!/usr/bin/env bash
# The main job: a local estate (today one zone, plant-a) with its own nats-server
# (JetStream domain), the zone's services over mutual TLS and a dev PKI, all data
# in .bsfg/ so a second start resumes. Installs what is missing and builds first.
#   ./scripts/run.sh            all-in-one service per zone
#   ./scripts/run.sh --split    ingest, egress and ledger as separate processes
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
echo "==> building"
pnpm exec turbo run build --output-logs=errors-only >/dev/null
exec node apps/estate/dist/main.js "$@"
