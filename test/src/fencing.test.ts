import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTestEstate, type SyncReplica, type TestEstate } from "@bsfg/estate-kit";
import type { LinkStatus } from "@bsfg/replication";
import { readLinkPosition, type LinkPosition } from "@bsfg/storage";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, logOf, produce, syncBin, withPrefix } from "./estate-support.js";

/**
 * Two sync replicas writing one link at once: the lease is meant to prevent it, the position
 * marker's fence makes sure of it. Each test makes the lease fail on purpose and checks that
 * the receiving log still holds every fact exactly once, in order.
 */
const LINK = "plant-a/idmz-from-plant-a-operational";
const linkOf = async (replica: SyncReplica): Promise<LinkStatus | undefined> => (await replica.status()).find((s) => s.link === LINK);

async function expectExactlyOnce(estate: TestEstate, prefix: string, count: number) {
  await pollUntil(async () => withPrefix(await logOf(estate, "idmz"), prefix).length >= count, { timeoutMs: 120_000, intervalMs: 250, what: `${count} ${prefix} facts in idmz` });
  const crossed = checkCrossed(withPrefix(await logOf(estate, "plant-a"), prefix), withPrefix(await logOf(estate, "idmz"), prefix));
  expect({ missing: crossed.missing.length, duplicated: crossed.duplicated.length, altered: crossed.altered.length, outOfOrder: crossed.outOfOrder.length })
    .toEqual({ missing: 0, duplicated: 0, altered: 0, outOfOrder: 0 });
}

/** Facts every test moves PlantA → IDMZ: enough that the faults below land while the link works. */
const TOTAL = 30_000;

/** An estate without sync workers, TOTAL facts waiting in PlantA, and IDMZ's first worker started (in a child process). */
async function transferUnderWay(dir: string, prefix: string, leaseTtl: string, pageLimit = 100): Promise<{ estate: TestEstate; worker: SyncReplica }> {
  // Egress serves pages of up to 2,000 facts here, so a page can be shipped in several parts.
  const estate = await startTestEstate({ dir, sync: false, storage: { leaseTtl }, extra: () => ({ sync: { pageLimit }, fetch: { maxLimit: 2_000, maxBytes: 4 * 2 ** 20, maxWait: "30s" } }) });
  await produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", TOTAL, prefix, { batch: 500 });
  return { estate, worker: await estate.startSync("idmz", { child: { syncBin } }) };
}

/**
 * Freezes the worker (SIGSTOP), looks at where it stands, and kills it (SIGKILL, then a
 * restart) only when `inPhase` says it is in the phase under test at a position not killed
 * at before; otherwise lets it run on. Only the lease holder doing the work counts: active,
 * and it shipped since it started. Stops after `kills` landed kills or 90 s.
 */
async function killInPhase(estate: TestEstate, worker: SyncReplica, prefix: string, kills: number, jitterMs: number, inPhase: (position: LinkPosition) => Promise<boolean>) {
  const idmz = estate.zones.idmz!.services.store;
  let landed = 0;
  let looks = 0;
  let killedAtFence = 0;
  const deadline = Date.now() + 90_000;
  while (landed < kills && Date.now() < deadline) {
    await pollUntil(async () => {
      const status = await linkOf(worker);
      return status?.state === "active" && status.appended > 0;
    }, { timeoutMs: 30_000, intervalMs: 10, what: "the worker active and shipping" });
    if (jitterMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * jitterMs));
    worker.pause();
    looks++;
    const position = await readLinkPosition(idmz.substrate, "operational", LINK);
    if (position.fence > killedAtFence && await inPhase(position) && withPrefix(await logOf(estate, "idmz"), prefix).length < TOTAL) {
      await worker.kill();
      landed++;
      killedAtFence = position.fence;
      await worker.restart();
    } else {
      worker.resume();
    }
  }
  return { landed, looks };
}

describe("two writers on one peer link", () => {
  let dir: string;
  let estate: TestEstate | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-fence-"));
  });
  afterEach(async () => {
    await estate?.dispose();
    estate = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it("fences one of them when the lease is broken on purpose; the log has no duplicate", async () => {
    // A long lease: the first replica renews every 10 s, so it goes on shipping for seconds
    // after its lease is gone, while the second already ships too.
    let first: SyncReplica;
    ({ estate, worker: first } = await transferUnderWay(dir, "fence", "30s"));
    await pollUntil(async () => withPrefix(await logOf(estate!, "idmz"), "fence").length > 1_000, { timeoutMs: 30_000, what: "the first replica shipping" });

    // Break the lease: delete it while the first replica holds it, and start a second replica,
    // which takes it at once. Until the first one's next renewal fails, both believe they hold it.
    // A KV delete is a message with KV-Operation: DEL on the key's subject.
    await estate.zones.idmz!.services.store.substrate.publisher.publish(`$KV.bsfg-leases.${LINK}`, new Uint8Array(), { headers: { "KV-Operation": "DEL" } });
    const second = await estate.startSync("idmz", { child: { syncBin } });
    await pollUntil(async () => (await linkOf(second))?.state === "active", { timeoutMs: 10_000, what: "the second replica active" });

    await expectExactlyOnce(estate, "fence", TOTAL);
    await pollUntil(async () => [await linkOf(first), await linkOf(second)].filter((s) => s?.state === "active").length === 1, { timeoutMs: 60_000, what: "one replica active" });
    const statuses = [await linkOf(first), await linkOf(second)];
    const fenced = statuses.reduce((sum, s) => sum + (s?.fenced ?? 0), 0);
    const fencedLines = [...first.logLines, ...second.logLines].filter((l) => l.event === "link_fenced");
    console.info(`lease broken mid-transfer: ${fenced} shipment(s) fenced; states ${statuses.map((s) => s?.state).join(" / ")}`);
    // The loser tried to ship a page the winner had moved past, and the server refused it whole.
    expect(fenced).toBeGreaterThanOrEqual(1);
    expect(fencedLines.length).toBe(fenced);
  }, 180_000);

  it("loses and duplicates nothing when the worker is killed between a committed shipment and its confirm", async () => {
    let worker: SyncReplica;
    ({ estate, worker } = await transferUnderWay(dir, "phase", "1500ms"));
    const plantA = estate.zones["plant-a"]!.services.store;
    // The phase under test: its last shipment committed here (the position marker) but the peer's cursor is behind it.
    const { landed, looks } = await killInPhase(estate, worker, "phase", 5, 30, async (position) => position.peerOffset > await plantA.cursor("idmz-from-plant-a-operational"));
    console.info(`${landed} SIGKILLs after a committed shipment and before its confirm (${looks} looks)`);
    expect(landed).toBe(5);
    await expectExactlyOnce(estate, "phase", TOTAL);
  }, 180_000);

  it("loses and duplicates nothing when the worker is killed in the middle of a page (part shipped, the rest not)", async () => {
    // Pages of 1,999 facts are shipped as three atomic batches (999 + 999 + 1: a batch holds at
    // most 1,000 messages with the marker): a last marker that carried 999 facts means part of
    // its page is here and the rest is not.
    let worker: SyncReplica;
    ({ estate, worker } = await transferUnderWay(dir, "midpage", "1500ms", 1_999));
    const { landed, looks } = await killInPhase(estate, worker, "midpage", 3, 0, async (position) => position.facts === 999);
    console.info(`${landed} SIGKILLs in the middle of a page (${looks} looks)`);
    expect(landed).toBe(3);
    await expectExactlyOnce(estate, "midpage", TOTAL);
  }, 180_000);

  it("a worker stalled (SIGSTOP) past its lease writes nothing when it wakes; the standby has taken over", async () => {
    let stalled: SyncReplica;
    ({ estate, worker: stalled } = await transferUnderWay(dir, "stall", "1500ms"));
    await pollUntil(async () => withPrefix(await logOf(estate!, "idmz"), "stall").length > 1_000, { timeoutMs: 30_000, what: "the first replica shipping" });
    const standby = await estate.startSync("idmz", { child: { syncBin } });
    await pollUntil(async () => (await linkOf(standby))?.state === "standby", { what: "the second replica standing by" });

    // The fault lands on the lease holder while facts are moving.
    expect((await linkOf(stalled))?.state).toBe("active");
    const before = withPrefix(await logOf(estate, "idmz"), "stall").length;
    stalled.pause();
    try {
      await pollUntil(async () => (await linkOf(standby))?.state === "active", { timeoutMs: 15_000, what: "the standby taking over" });
      await pollUntil(async () => ((await linkOf(standby))?.appended ?? 0) > 0, { timeoutMs: 15_000, what: "the standby shipping" });
    } finally {
      stalled.resume();
    }
    expect(before).toBeLessThan(TOTAL);

    await expectExactlyOnce(estate, "stall", TOTAL);
    // Awake again, it found its lease gone (or was fenced) and stands by.
    await pollUntil(async () => (await linkOf(stalled))?.state === "standby", { timeoutMs: 15_000, what: "the stalled replica standing by" });
    expect((await linkOf(standby))?.state).toBe("active");
  }, 180_000);
});
