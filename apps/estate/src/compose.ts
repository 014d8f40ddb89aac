#!/usr/bin/env node
// bsfg-compose-configs [--out deploy/compose] [--check]: writes the zone configurations that
// docker-compose.yml mounts, from the same @bsfg/estate-kit topology as ./scripts/run.sh.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { composeDocuments, composeEstate, composeYaml } from "./compose-estate.js";

const repo = resolve(fileURLToPath(import.meta.url), "../../../..");
const { values } = parseArgs({
  options: { out: { type: "string", default: join(repo, "deploy", "compose") }, check: { type: "boolean", default: false } },
});
const out = resolve(values.out!);

const documents = composeDocuments(composeEstate);
let stale = 0;
for (const [zone, document] of Object.entries(documents)) {
  const file = join(out, `${zone}.yaml`);
  const text = composeYaml(document);
  if (values.check) {
    let have: string | undefined;
    try {
      have = readFileSync(file, "utf8");
    } catch {
      have = undefined;
    }
    if (have !== text) {
      console.error(`${file} is not what the estate kit generates: run node apps/estate/dist/compose.js`);
      stale++;
    }
    continue;
  }
  mkdirSync(out, { recursive: true });
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
process.exitCode = stale === 0 ? 0 : 1;
