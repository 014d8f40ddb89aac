import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppendStatus } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { dedupeIndex } from "./dedupe-index.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
import { prepareBatch } from "./validate.js";

describe("a duplicate of a committed fact is answered promptly, whatever the commit cache holds", () => {
  let zone: TestZone;
  beforeAll(async () => {
    // The default pending timeout (15 s): what a stale cached commit made a duplicate wait for.
    zone = await startTestZone();
  });
  afterAll(() => zone.dispose());

  it("re-reads a batch's commit that was cached before the batch committed its later facts", async () => {
    const { substrate, config } = zone.store;
    const index = dedupeIndex(substrate);
    const [a1, x, a2] = [factMessage(), factMessage(), factMessage()];
    const [, px] = prepareBatch(config, [a1, x, a2]);
    const [pa1] = prepareBatch(config, [a1]);

    // Another writer holds x's claim: the batch below commits a1, waits for x, then commits a1 and a2.
    await index.claim(px!.key, { m: px!.messageId, h: px!.legacyHash, i: px!.hash, t: String(px!.producedAt), s: px!.stream, j: px!.subject, b: "slow-owner" }, 5_000);
    const writer = zone.store.append([a1, x, a2]);
    await pollUntil(async () => {
      const claim = await index.read(pa1!.key);
      return claim !== undefined && await index.committedOffset(pa1!.key, claim) !== undefined;
    }, { timeoutMs: 5_000, intervalMs: 10, what: "the batch's first commit (a1)" });

    // A second gateway answers a retry of a1 from that first commit, and caches it.
    const other = await zone.open({ name: "second-gateway" });
    const [retryA1] = await other.append([a1]);
    expect(retryA1!.status).toBe(AppendStatus.DUPLICATE);

    // x's owner finishes; the batch goes on, stores a2 and commits again.
    const stored = await substrate.publisher.publish(px!.subject, px!.payload, { msgId: px!.messageId });
    await index.commit("slow-owner", { [px!.key]: stored.seq });
    const results = await writer;
    expect(results.map((r) => r.status)).toEqual([AppendStatus.APPENDED, AppendStatus.DUPLICATE, AppendStatus.APPENDED]);

    // A retry of a2 on the second gateway: its cached commit lacks a2. It used to take a2 for
    // pending and wait out the pending timeout (15 s) before recovery found it.
    const started = performance.now();
    const [retryA2] = await other.append([a2]);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect([retryA2!.status, retryA2!.offset]).toEqual([AppendStatus.DUPLICATE, results[2]!.offset]);
  });
});
