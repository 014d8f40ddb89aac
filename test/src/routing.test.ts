import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceEstate, startTestEstate, type EstateTopology, type TestEstate } from "@bsfg/estate-kit";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, logOf, produce, withPrefix } from "./estate-support.js";

/** The reference estate (what run.sh runs): PlantA and PlantB side by side behind the IDMZ; operational facts only. */
const topology: EstateTopology = { ...referenceEstate, categories: ["operational"] };

/** What each flow is: where it is appended, where it is addressed, how many facts. */
const flows = [
  { prefix: "a2e", from: "plant-a", to: "enterprise", producer: "mes-producer", count: 300 },
  { prefix: "b2e", from: "plant-b", to: "enterprise", producer: "mes-b-producer", count: 300 },
  { prefix: "e2a", from: "enterprise", to: "plant-a", producer: "erp-producer", count: 200 },
  { prefix: "a2b", from: "plant-a", to: "plant-b", producer: "mes-producer", count: 100 },
  { prefix: "a2i", from: "plant-a", to: "idmz", producer: "mes-producer", count: 50 },
  { prefix: "a2a", from: "plant-a", to: "plant-a", producer: "mes-producer", count: 50 },
] as const;

/** The zones a fact passes through from `from` to `to` in this tree, both ends included. */
const path: Record<string, readonly string[]> = {
  a2e: ["plant-a", "idmz", "enterprise"],
  b2e: ["plant-b", "idmz", "enterprise"],
  e2a: ["enterprise", "idmz", "plant-a"],
  a2b: ["plant-a", "idmz", "plant-b"],
  a2i: ["plant-a", "idmz"],
  a2a: ["plant-a"],
};

describe("an estate with two plants behind one IDMZ: facts travel toward their to_zone only", () => {
  let dir: string;
  let estate: TestEstate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-routing-"));
    estate = await startTestEstate({ dir, topology });
  }, 60_000);
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("delivers each fact to every zone on its path, exactly once and in order, and to no other zone", async () => {
    await Promise.all(flows.map((f) => produce(estate.client(f.from, f.producer), f.from, f.to, f.count, f.prefix)));
    for (const flow of flows) {
      for (const zone of path[flow.prefix]!.slice(1)) {
        await pollUntil(async () => withPrefix(await logOf(estate, zone), flow.prefix).length >= flow.count, { timeoutMs: 60_000, intervalMs: 100, what: `${flow.count} ${flow.prefix} facts in ${zone}` });
      }
    }
    // Every link has caught up with its consumer: anything still missing or extra now stays so.
    await pollUntil(async () => {
      const links = (await Promise.all(topology.zones.map((zone) => estate.zones[zone]!.syncs[0]!.status()))).flat();
      return links.length === 6 && links.every((l) => l.state === "active" && l.lagFacts === 0);
    }, { timeoutMs: 30_000, intervalMs: 100, what: "every link caught up" });

    const seen: Record<string, Record<string, number>> = {};
    for (const zone of topology.zones) {
      const log = await logOf(estate, zone);
      seen[zone] = Object.fromEntries(flows.map((f) => [f.prefix, withPrefix(log, f.prefix).length]));
    }
    const expected = Object.fromEntries(topology.zones.map((zone) => [zone, Object.fromEntries(flows.map((f) => [f.prefix, path[f.prefix]!.includes(zone) ? f.count : 0]))]));
    expect(seen).toEqual(expected);

    for (const flow of flows) {
      const origin = withPrefix(await logOf(estate, flow.from), flow.prefix);
      for (const zone of path[flow.prefix]!.slice(1)) {
        const crossed = checkCrossed(origin, withPrefix(await logOf(estate, zone), flow.prefix));
        expect({ flow: flow.prefix, zone, missing: crossed.missing.length, duplicated: crossed.duplicated.length, altered: crossed.altered.length, outOfOrder: crossed.outOfOrder.length })
          .toEqual({ flow: flow.prefix, zone, missing: 0, duplicated: 0, altered: 0, outOfOrder: 0 });
      }
    }
  }, 120_000);

  it("derives from the tree what keeps PlantA's facts out of PlantB: the IDMZ's consumer for PlantB and PlantB's policy for the IDMZ", () => {
    // PlantB accepts from the IDMZ only facts bound for PlantB (a second line of defence behind the consumer's filter).
    const doc = estate.zones["plant-b"]!.config.policy["idmz-bsfg"]!;
    expect([...doc.targetZones].sort()).toEqual(["plant-b"]);
    expect([...doc.assertFromZones].sort()).toEqual(["enterprise", "idmz", "plant-a"]);
    const consumer = estate.zones.idmz!.config.storage.consumers.find((c) => c.name === "plant-b-from-idmz-operational")!;
    expect({ skipOrigins: consumer.skipOrigins, targets: consumer.targets }).toEqual({ skipOrigins: ["plant-b"], targets: ["plant-b"] });
  });
});
