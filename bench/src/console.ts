/**
 * What the zone console costs the zone: CPU of a zone process (ingest, egress, ledger and the
 * sync worker in one, as `./scripts/run.sh` runs it) over the same idle interval with nobody
 * watching, with one viewer, and with ten — each viewer asking for the snapshot every 2 s, as
 * the page does (the browser's own work is not the zone's). The baseline is the same process
 * in the same run. Target: the console adds under 1 % of one core.
 *
 *   pnpm --filter @bsfg/bench run console [-- --seconds 60]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startTestEstate } from "@bsfg/estate-kit";
import { benchArgs, printTable, procCpuMs, writeResults } from "./report.js";

const { values } = parseArgs({ args: benchArgs(), options: { seconds: { type: "string", default: "60" }, quick: { type: "boolean", default: false } } });
const seconds = values.quick ? 15 : Number(values.seconds);
const zoneBin = fileURLToPath(new URL("../../apps/zone/dist/main.js", import.meta.url));

const dir = await mkdtemp(join(tmpdir(), "bsfg-bench-console-"));
const estate = await startTestEstate({ dir, childZones: { zones: ["idmz"], zoneBin } });
try {
  const zone = estate.childZones.idmz!;
  const snapshotUrl = `${zone.syncUrl}/console/snapshot`;
  // The page itself, once: what a viewer loads before it starts polling.
  const page = await fetch(`${zone.syncUrl}/console`);
  if (!page.ok || !(await page.text()).includes("BSFG zone console")) throw new Error(`no console at ${zone.syncUrl}/console`);

  const measure = async (viewers: number) => {
    const stop = new AbortController();
    let asked = 0;
    const poll = async () => {
      while (!stop.signal.aborted) {
        const answer = await fetch(snapshotUrl, { signal: stop.signal }).catch(() => undefined);
        if (answer) {
          await answer.json();
          asked++;
        }
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
    };
    const before = procCpuMs(zone.pid)!;
    const started = performance.now();
    const viewing = Array.from({ length: viewers }, poll);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1_000));
    stop.abort();
    await Promise.allSettled(viewing);
    const cpuMs = procCpuMs(zone.pid)! - before;
    const wallMs = performance.now() - started;
    return { viewers, snapshots: asked, cpuMs, percentOfCore: (cpuMs / wallMs) * 100 };
  };

  const idle = await measure(0);
  const one = await measure(1);
  const ten = await measure(10);
  const rows = [idle, one, ten].map((m) => ({
    name: m.viewers === 0 ? "zone process, nobody watching" : `zone process, ${m.viewers} viewer${m.viewers === 1 ? "" : "s"} (snapshot every 2 s each)`,
    seconds,
    snapshots: m.snapshots,
    "CPU ms": Math.round(m.cpuMs),
    "% of one core": Number(m.percentOfCore.toFixed(3)),
    "× nobody watching": idle.cpuMs > 0 ? Number((m.cpuMs / idle.cpuMs).toFixed(3)) : 0,
  }));
  printTable("The zone console's cost to the zone (IDMZ, all-in-one process, idle estate)", rows);
  const added = one.percentOfCore - idle.percentOfCore;
  console.log(`one viewer adds ${added.toFixed(3)} % of one core (target < 1 %): ${added < 1 ? "met" : `MISSED by ${(added / 1).toFixed(2)}×`}`);
  console.log(`results: ${writeResults("console", { seconds, idle, one, ten, addedPercentOfCore: added })}`);
} finally {
  await estate.dispose();
  await rm(dir, { recursive: true, force: true });
}
