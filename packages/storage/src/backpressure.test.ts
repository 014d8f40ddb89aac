import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppendStatus, Code, ConnectError, reasonOf, type AppendResult } from "@bsfg/proto";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

describe("backpressure", () => {
  let zone: TestZone;
  beforeAll(async () => {
    // A tiny stream and a fill estimate refreshed on every append, so the threshold is crossed exactly.
    zone = await startTestZone({
      streams: { operational: { maxBytes: 256 * 1024 } },
      backpressure: { rejectAtPercent: 80, refreshInterval: 1 },
    });
  });
  afterAll(() => zone.dispose());

  it("rejects appends with resource_exhausted from 80 % fill and keeps every acknowledged fact", async () => {
    const acknowledged: AppendResult[] = [];
    let rejection: ConnectError | undefined;
    for (let i = 0; i < 1_000 && !rejection; i++) {
      try {
        acknowledged.push(...await zone.store.append(Array.from({ length: 10 }, () => factMessage({ object: { pad: "p".repeat(200), i } }))));
      } catch (err) {
        rejection = err as ConnectError;
      }
    }
    expect(rejection?.code).toBe(Code.ResourceExhausted);
    expect(reasonOf(rejection)).toBe("store_full");
    const fill = await zone.store.fillPercent("operational");
    expect(fill).toBeGreaterThanOrEqual(80);
    expect(fill).toBeLessThan(100);

    // Still refused while nothing changes, and nothing earlier was dropped to make room.
    const again = await zone.store.append([factMessage()]).catch((e: unknown) => e);
    expect(reasonOf(again)).toBe("store_full");
    expect(acknowledged.every((r) => r.status === AppendStatus.APPENDED)).toBe(true);
    const page = await zone.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 10_000, maxBytes: 8 * 2 ** 20 });
    expect(page.facts.map((f) => f.message!.envelope!.messageId)).toEqual(acknowledged.map((r) => r.messageId));
    expect(page.facts.map((f) => f.offset)).toEqual(acknowledged.map((r) => r.offset));
  });
});
