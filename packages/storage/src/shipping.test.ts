import { toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FactMessageSchema } from "@bsfg/proto";
import { factStreamName } from "./routing.js";
import { LinkFenced, linkMarkerSubject, readLinkPosition, shipPage, type ShippedFact } from "./shipping.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";

/** A page of relayed facts as the peer stored them: bytes, origin position, digest. */
function page(peerOffsets: number[]): ShippedFact[] {
  return peerOffsets.map((offset) => ({
    subject: "facts.operational.batch",
    data: toBinary(FactMessageSchema, factMessage({ fromZone: "idmz", toZone: "plant-a" })),
    headers: { "Bsfg-Origin": `idmz/operational/${offset}` },
  }));
}

describe("log shipping: a page and its link position as one atomic, fenced write", () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await startTestZone();
  });
  afterAll(() => zone.dispose());
  const request = (link: string, fence: number, peerOffset: number, facts: ShippedFact[]) =>
    ({ category: "operational", link, peer: "idmz", peerStream: "operational", peerOffset, fence, facts });

  it("appends the facts byte for byte after the marker, and the marker is the link's position", async () => {
    const { substrate } = zone.store;
    expect(await readLinkPosition(substrate, "operational", "from-idmz")).toEqual({ peerOffset: 0, fence: 0, facts: 0 });
    const facts = page([3, 4, 7]);
    const position = await shipPage(substrate, request("from-idmz", 0, 9, facts));
    expect(position.peerOffset).toBe(9);
    expect(await readLinkPosition(substrate, "operational", "from-idmz")).toEqual(position);

    const stream = factStreamName("operational");
    const marker = await substrate.jsm.streams.getMessage(stream, { seq: position.fence });
    expect(marker!.subject).toBe(linkMarkerSubject("operational", "from-idmz"));
    for (const [i, fact] of facts.entries()) {
      const stored = await substrate.jsm.streams.getMessage(stream, { seq: position.fence + 1 + i });
      expect(Buffer.from(stored!.data).equals(Buffer.from(fact.data))).toBe(true);
      expect(stored!.header.get("Bsfg-Origin")).toBe(fact.headers["Bsfg-Origin"]);
    }
    // Readers of the log see the facts, never the marker.
    const read = await zone.store.read({ stream: "operational", skipOrigins: [] }, position.fence - 1);
    expect(read.facts.map((f) => Number(f.offset))).toEqual([position.fence + 1, position.fence + 2, position.fence + 3]);
  });

  it("lets only one of two writers holding the same position commit; the other writes nothing", async () => {
    const { substrate } = zone.store;
    const before = await readLinkPosition(substrate, "operational", "raced");
    const lastBefore = (await substrate.jsm.streams.info(factStreamName("operational"))).state.last_seq;
    const outcomes = await Promise.allSettled([
      shipPage(substrate, request("raced", before.fence, 20, page([11, 12]))),
      shipPage(substrate, request("raced", before.fence, 20, page([11, 12]))),
    ]);
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    const refused = outcomes.find((o) => o.status === "rejected");
    expect((refused as PromiseRejectedResult).reason).toBeInstanceOf(LinkFenced);
    // One marker and two facts: the loser's batch left no trace.
    const lastAfter = (await substrate.jsm.streams.info(factStreamName("operational"))).state.last_seq;
    expect(lastAfter - lastBefore).toBe(3);
  });

  it("refuses a writer that resumes from a position another writer has since moved", async () => {
    const { substrate } = zone.store;
    const stale = await readLinkPosition(substrate, "operational", "resumed");
    const moved = await shipPage(substrate, request("resumed", stale.fence, 5, page([5])));
    await expect(shipPage(substrate, request("resumed", stale.fence, 6, page([6])))).rejects.toBeInstanceOf(LinkFenced);
    // Reading the position again is how a writer that may continue learns where to.
    expect(await readLinkPosition(substrate, "operational", "resumed")).toEqual(moved);
    const next = await shipPage(substrate, request("resumed", moved.fence, 6, page([6])));
    expect(next.fence).toBeGreaterThan(moved.fence);
  });
});
