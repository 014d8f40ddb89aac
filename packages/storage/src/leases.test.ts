import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "@bsfg/testkit";
import { startTestZone, type TestZone } from "./test-support.js";

describe("leases: one holder per name, renewed by compare-and-set, aged out by the TTL", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone({ leaseTtl: 1_000 });
  });
  afterAll(() => zone.dispose());

  it("lets only one of two contenders hold a lease, and the holder renew it", async () => {
    const other = await zone.open();
    const [a, b] = await Promise.all([zone.store.leases.acquire("link-1", "replica-a"), other.leases.acquire("link-1", "replica-b")]);
    expect([a, b].filter((g) => g !== undefined)).toHaveLength(1);
    const grant = (a ?? b)!;
    const renewed = await zone.store.leases.renew(grant);
    expect(renewed?.revision).toBeGreaterThan(grant.revision);
    // A renewal with a stale revision means someone else wrote in between: the lease is lost.
    expect(await zone.store.leases.renew(grant)).toBeUndefined();
    expect(await zone.store.leases.holder("link-1")).toBe(grant.holder);
  });

  it("can be taken by another once the holder stops renewing it for the TTL", async () => {
    const first = await zone.store.leases.acquire("link-2", "replica-a");
    expect(first).toBeDefined();
    expect(await zone.store.leases.acquire("link-2", "replica-b")).toBeUndefined();
    const taken = await pollUntil(() => zone.store.leases.acquire("link-2", "replica-b"), { timeoutMs: 10_000, intervalMs: 100, what: "the expired lease taken" });
    expect(taken.holder).toBe("replica-b");
    expect(await zone.store.leases.renew(first!)).toBeUndefined();
  });

  it("can be taken at once after the holder releases it", async () => {
    const grant = (await zone.store.leases.acquire("link-3", "replica-a"))!;
    await zone.store.leases.release(grant);
    expect(await zone.store.leases.acquire("link-3", "replica-b")).toMatchObject({ holder: "replica-b" });
  });
});
