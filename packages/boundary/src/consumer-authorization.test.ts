import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectError } from "@connectrpc/connect";
import { Code, errorInfoOf } from "@bsfg/proto";
import { rejectionOf, startTestZoneServices, testZoneDocument, type TestZoneServices } from "./test-support.js";

/** What a caller can tell from a refusal, with the name it asked for blanked out. */
function answer(error: ConnectError, name: string) {
  const info = errorInfoOf(error);
  return { code: error.code, reason: info?.reason, metadata: { ...info?.metadata, consumer: "<asked>" }, message: error.rawMessage.replaceAll(name, "<asked>") };
}

describe("FetchFacts and ConfirmReceipt authorize the caller before they look the consumer up", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    // "enterprise-retired" is configured and bound to enterprise-bsfg; its registry entry is removed below.
    const base = testZoneDocument({ url: "", monitorUrl: "" }) as { storage: Record<string, unknown>; policy: Record<string, Record<string, unknown>> };
    zone = await startTestZoneServices("zone", {
      storage: { ...base.storage, consumers: [...(base.storage.consumers as unknown[]), { name: "enterprise-retired", stream: "operational" }] },
      policy: { ...base.policy, "enterprise-bsfg": { ...base.policy["enterprise-bsfg"], consumers: ["enterprise-from-plant-a", "enterprise-retired"] } },
    });
  });
  afterAll(() => zone.dispose());

  it("gives a caller not bound to a name the same answer whether a consumer of that name exists or not", async () => {
    const producer = zone.client("mes-producer");
    const existing = "enterprise-from-plant-a";
    const unknown = "no-such-consumer";
    const fetchExisting = answer(await rejectionOf(producer.fetchFacts(existing)), existing);
    const fetchUnknown = answer(await rejectionOf(producer.fetchFacts(unknown)), unknown);
    expect(fetchExisting).toEqual(fetchUnknown);
    expect(fetchExisting).toMatchObject({ code: Code.PermissionDenied, reason: "consumer_not_allowed" });

    const confirmExisting = answer(await rejectionOf(producer.confirmReceipt(existing, 1n)), existing);
    const confirmUnknown = answer(await rejectionOf(producer.confirmReceipt(unknown, 1n)), unknown);
    expect(confirmExisting).toEqual(confirmUnknown);
    expect(confirmExisting).toEqual(fetchExisting);
  });

  it("refuses a bound caller's other names without looking them up, and tells it only of a missing consumer it is bound to", async () => {
    const peer = zone.client("enterprise-bsfg");
    const other = await rejectionOf(peer.fetchFacts("no-such-consumer"));
    expect([other.code, errorInfoOf(other)?.reason]).toEqual([Code.PermissionDenied, "consumer_not_allowed"]);

    // A registry that lost a bound consumer (configuration drift between deployables).
    await zone.deployable.store.substrate.jsm.streams.purge("KV_bsfg-consumers", { filter: "$KV.bsfg-consumers.enterprise-retired" });
    const gone = await rejectionOf(peer.fetchFacts("enterprise-retired"));
    expect([gone.code, errorInfoOf(gone)?.reason]).toEqual([Code.NotFound, "unknown_consumer"]);
    const goneConfirm = await rejectionOf(peer.confirmReceipt("enterprise-retired", 1n));
    expect([goneConfirm.code, errorInfoOf(goneConfirm)?.reason]).toEqual([Code.NotFound, "unknown_consumer"]);
  });

  it("answers a caller not bound to the name without touching the store, even while JetStream does not answer", async () => {
    const producer = zone.client("mes-producer");
    const pid = zone.nats.pid!;
    // A stopped nats-server answers nothing: a lookup would hang; the policy answers alone.
    process.kill(pid, "SIGSTOP");
    try {
      const started = performance.now();
      const refused = await rejectionOf(producer.fetchFacts("not-looked-up"));
      expect([refused.code, errorInfoOf(refused)?.reason]).toEqual([Code.PermissionDenied, "consumer_not_allowed"]);
      const confirm = await rejectionOf(producer.confirmReceipt("not-looked-up", 1n));
      expect([confirm.code, errorInfoOf(confirm)?.reason]).toEqual([Code.PermissionDenied, "consumer_not_allowed"]);
      expect(performance.now() - started).toBeLessThan(1_000);
    } finally {
      process.kill(pid, "SIGCONT");
    }
  });
});
