import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, FactMessageSchema, errorInfoOf, reasonOf } from "@bsfg/proto";
import { park } from "@bsfg/storage";
import { rejectionOf, startTestZoneServices, testZoneDocument, type TestZoneServices } from "./test-support.js";

/*
 * The QuarantineService's verbs are the policy's to grant, one by one. (The whole
 * workflow — set aside by a link, released, dropped, exported through the CLI —
 * runs over a real estate in test/src/quarantine.test.ts.)
 */
describe("QuarantineService: each operator verb is granted per identity", () => {
  let zone: TestZoneServices;
  let id: bigint;
  beforeAll(async () => {
    const base = testZoneDocument({ url: "", monitorUrl: "" }) as { policy: Record<string, Record<string, unknown>> };
    // enterprise-bsfg may read the quarantine, nothing more; mes-producer may not even read it.
    zone = await startTestZoneServices("zone", { policy: { ...base.policy, "enterprise-bsfg": { ...base.policy["enterprise-bsfg"], quarantine: ["read"] } } });
    const fact = toBinary(FactMessageSchema, create(FactMessageSchema, {
      envelope: { messageId: "q-1", fromZone: "idmz", toZone: "plant-a", producedAtUnixMs: 1n }, fact: { subject: "batch:X", predicate: "p", objectJson: "{}" },
    }));
    const parked = await park(zone.deployable.store.substrate, {
      link: "idmz/plant-a-from-idmz-operational", peer: "idmz", stream: "operational", peerOffset: 7, messageId: "q-1",
      reason: "from_zone_not_allowed", detail: "idmz-bsfg may not assert from_zone \"idmz\"", peerStoredAtMs: 1, servedDigest: "00".repeat(32),
    }, fact);
    id = BigInt(parked.id);
  });
  afterAll(() => zone.dispose());

  it("refuses every verb to an identity the policy grants none, with operator_not_allowed and a log line", async () => {
    const producer = zone.client("mes-producer");
    for (const call of [producer.quarantine.list(), producer.quarantine.get(id), producer.quarantine.release(id), producer.quarantine.drop(id, "no")]) {
      const refused = await rejectionOf(call);
      expect([refused.code, reasonOf(refused)]).toEqual([Code.PermissionDenied, "operator_not_allowed"]);
      expect(errorInfoOf(refused)?.metadata.identity).toBe("mes-producer");
    }
    expect(zone.logs.some((l) => l.reason === "operator_not_allowed")).toBe(true);
  });

  it("lets a reading identity list and show, and refuses it release and drop", async () => {
    const reader = zone.client("enterprise-bsfg");
    const [entry] = await reader.quarantine.list();
    expect(entry).toMatchObject({ id, state: "parked", reason: "from_zone_not_allowed", messageId: "q-1", peerOffset: 7n });
    const shown = await reader.quarantine.get(id);
    expect(shown.fact?.envelope?.messageId).toBe("q-1");
    expect(shown.history.map((r) => r.state)).toEqual(["parked"]);
    for (const call of [reader.quarantine.release(id), reader.quarantine.drop(id, "not mine to drop")]) {
      expect(reasonOf(await rejectionOf(call))).toBe("operator_not_allowed");
    }
    // A missing entry is not_found for whoever may read.
    expect(reasonOf(await rejectionOf(reader.quarantine.get(id + 1_000n)))).toBe("quarantine_entry_not_found");
  });
});
