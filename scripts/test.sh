#!/usr/bin/env bash
# The whole test suite: installs what is missing, generates the contract code,
# lints (buf + TypeScript, tests included), builds, and runs every suite against
# real nats-server processes. CI runs exactly this (see .ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"

# The console's browser tests drive Debian's chromium with playwright-core (test/src/console.test.ts);
# Playwright's own browser download cannot work on these machines.
if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "==> installing chromium (Debian's package) for the browser tests"
  apt_install chromium
fi

# A breaking change to bsfg.v1 must be deliberate: compare against main when it exists.
if git rev-parse --verify --quiet main >/dev/null && [ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]; then
  echo "==> buf breaking against main"
  pnpm exec buf breaking proto --against '.git#branch=main,subdir=proto'
fi

echo "==> generate, lint, build, test"
rm -rf packages/*/.vitest apps/*/.vitest test/.vitest
pnpm exec turbo run generate lint build test --output-logs=new-only --concurrency=2

# One closing line over every suite, for humans and for CI.
node -e '
const fs = require("fs"), path = require("path");
let passed = 0, failed = 0, skipped = 0;
const workspaces = ["test", ...["packages", "apps"].flatMap((d) => fs.existsSync(d) ? fs.readdirSync(d).map((n) => path.join(d, n)) : [])];
for (const dir of workspaces) {
  const file = path.join(dir, ".vitest", "results.json");
  if (!fs.existsSync(file)) continue;
  const r = JSON.parse(fs.readFileSync(file, "utf8"));
  passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + (r.numTodoTests || 0);
}
console.log(`\n${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
if (passed === 0 || failed > 0) process.exit(1);
'

# The fault and hostile-input campaign, short (docs/reliability.md): a seeded schedule of kills,
# partitions and a full store against a live estate, and malformed input at every method. Its
# seed is printed; `pnpm campaign -- --quick --seed <seed>` replays a failing run.
echo "==> campaign --quick"
pnpm campaign -- --quick
