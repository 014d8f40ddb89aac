import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { context } from "@opentelemetry/api";
import { Code, ConnectError, reasonOf, type FetchFactsPage } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { admit } from "./admission.js";
import { confirmer } from "./confirmer.js";
import { startLink } from "./link.js";
import { pager } from "./pager.js";
import { CONSUMER, produce, producedFacts, silentLog, startTestZones, testLink, testPeer, testPolicy, type TestZones } from "./test-support.js";

/*
 * The relay's pieces — pager, admission, confirmer, and the link that runs
 * them with the shipper — against two real zones (see test-support.ts).
 */

let zones: TestZones;
beforeAll(async () => {
  zones = await startTestZones();
});
afterAll(async () => {
  await zones?.dispose();
});

const rules = { zone: "enterprise", peer: "plant-a", peerIdentity: "plant-a-bsfg", policy: testPolicy };
const linkOptions = { pageLimit: 100, prefetch: 1, maxWait: 200, backoff: { initial: 20, max: 200 } };
const pagerOptions = (prefetch: number, signal = new AbortController().signal) => ({
  consumer: CONSUMER, pageLimit: 100, maxWait: 200, prefetch, signal, span: { attributes: {}, parent: context.active() },
});

/** What the local zone holds of the relayed stream, facts only (position markers excluded). */
async function localFacts() {
  const page = await zones.localStore.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100_000, maxBytes: 256 * 2 ** 20, messages: "decoded" });
  return page.facts;
}
async function peerBytes(offset: number): Promise<Uint8Array> {
  return (await zones.peerStore.substrate.jsm.streams.getMessage("facts-operational", { seq: offset }))!.data;
}
async function localStoredFacts() {
  const jsm = zones.localStore.substrate.jsm;
  const last = (await jsm.streams.info("facts-operational")).state.last_seq;
  const out: { subject: string; data: Uint8Array; origin: string | undefined }[] = [];
  for (let seq = 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage("facts-operational", { seq });
    if (m && !m.subject.includes("._relay.")) out.push({ subject: m.subject, data: m.data, origin: m.header?.get("Bsfg-Origin") });
  }
  return out;
}

describe("pager: pages in offset order, read ahead while one is shipped", () => {
  beforeEach(async () => {
    await produce(zones.peerStore, producedFacts(1_000));
  });

  it("keeps `prefetch` pages on their way, each read after the last, and no more", async () => {
    const peer = testPeer(zones.peerStore);
    const pages = pager(peer, pagerOptions(3));
    const first = await pages.next();
    expect(first.moved).toBe(true);
    // One page handed out, three read ahead of it, then nothing until the link asks for more.
    await pollUntil(() => peer.fetches.length === 4 && peer.inFlight() === 0, { timeoutMs: 5_000, what: "three pages read ahead" });
    expect(peer.fetches).toHaveLength(4);
    const rest = [await pages.next(), await pages.next(), await pages.next()];
    const lastOffsets = [first, ...rest].map((p) => Number(p.page.lastOffset));
    // Each fetch read after the page before it (the first after the confirmed cursor).
    expect(peer.fetches.slice(0, 4)).toEqual([undefined, ...lastOffsets.slice(0, 3)]);
    expect(lastOffsets.every((offset, i) => i === 0 || offset === lastOffsets[i - 1]! + 100)).toBe(true);
    pages.reset();
  });

  it("reads ahead of nothing with prefetch 0, and reads after the confirmed cursor again after reset()", async () => {
    const peer = testPeer(zones.peerStore);
    const pages = pager(peer, pagerOptions(0));
    const first = await pages.next();
    expect(peer.inFlight()).toBe(0);
    expect(peer.fetches).toEqual([undefined]);
    await pages.next();
    expect(peer.fetches).toEqual([undefined, Number(first.page.lastOffset)]);
    pages.reset();
    await pages.next();
    expect(peer.fetches).toEqual([undefined, Number(first.page.lastOffset), undefined]);
  });
});

describe("admission: only what this zone takes, and only bytes that match their digest", () => {
  let page: FetchFactsPage;
  beforeAll(async () => {
    await produce(zones.peerStore, [...producedFacts(3), ...producedFacts(1, { fromZone: "enterprise" })]);
    page = await testPeer(zones.peerStore).fetchFactPage(CONSUMER, { afterOffset: (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq - 4 });
  });

  it("takes the peer's facts with their stored bytes, and leaves this zone's own facts out", async () => {
    const admitted = admit(page, rules);
    expect(admitted).toHaveLength(3);
    for (const fact of admitted) {
      expect(fact.stored.message).toEqual(await peerBytes(Number(fact.stored.offset)));
      expect(fact.kind).toBe("batch");
      expect(fact.head.fromZone).toBe("plant-a");
    }
  });

  it("refuses the whole page when one fact's bytes do not match their digest", () => {
    const tampered = structuredClone(page);
    tampered.facts[1]!.message[5]! ^= 0x01;
    const refusal = catchError(() => admit(tampered, rules));
    expect(refusal.code).toBe(Code.DataLoss);
    expect(reasonOf(refusal)).toBe("corrupt_fact");
    expect(refusal.rawMessage).toContain(`offset ${page.facts[1]!.offset}`);
    // A fact served without its digest is refused the same way.
    const undigested = structuredClone(page);
    undigested.facts[0]!.messageSha256 = new Uint8Array();
    expect(reasonOf(catchError(() => admit(undigested, rules)))).toBe("corrupt_fact");
  });

  it("stops at a fact the peer may not relay, by this zone's policy", () => {
    const refusal = catchError(() => admit(page, { ...rules, peerIdentity: "stranger" }));
    expect(refusal.code).toBe(Code.PermissionDenied);
    expect(reasonOf(refusal)).toBe("unknown_identity");
  });
});

describe("confirmer: one confirm in flight, never backwards", () => {
  it("sends a confirm only after the previous one landed, and none at or below the cursor", async () => {
    const sent: number[] = [];
    const answers: (() => void)[] = [];
    const peer = {
      confirmReceipt: (_: string, offset: bigint | number) => new Promise<bigint>((resolve) => {
        sent.push(Number(offset));
        answers.push(() => resolve(BigInt(offset)));
      }),
    };
    const confirms = confirmer(peer, CONSUMER);
    const first = await confirms.confirm(100);
    const second = confirms.confirm(200);
    await Promise.resolve();
    expect(sent).toEqual([100]);
    answers.shift()!();
    await first.landed;
    const { landed } = await second;
    expect(sent).toEqual([100, 200]);
    answers.shift()!();
    await landed;
    expect(confirms.cursor).toBe(200);
    await (await confirms.confirm(150)).landed;
    expect(sent).toEqual([100, 200]);
  });
});

describe("link: fetch → admit → ship → confirm, with real zones on both sides", () => {
  it("relays every fact once, byte for byte and in order, with its origin, and confirms it", async () => {
    await produce(zones.peerStore, producedFacts(1_234));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const peer = testPeer(zones.peerStore);
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the peer's cursor at its last offset" });
      const status = link.status();
      expect(status.confirmLag).toBe(0);
      expect(status.fenced).toBe(0);
    } finally {
      await link.stop();
    }
    const stored = await localStoredFacts();
    const fromPeer = stored.filter((f) => f.origin?.startsWith("plant-a/"));
    // Everything the peer's consumer serves and this zone takes: all plant-a facts (not enterprise's own).
    const origins = fromPeer.map((f) => Number(f.origin!.split("/")[2]));
    expect(new Set(origins).size).toBe(origins.length);
    expect(origins).toEqual([...origins].sort((a, b) => a - b));
    expect(origins.at(-1)).toBe(peerLast);
    for (const fact of fromPeer.slice(-50)) expect(fact.data).toEqual(await peerBytes(Number(fact.origin!.split("/")[2])));
    // Offsets without a local copy are the facts this zone leaves out (its own, from the admission test).
    const missing = Array.from({ length: peerLast }, (_, i) => i + 1).filter((offset) => !origins.includes(offset));
    for (const offset of missing) expect((await zones.peerStore.read({ stream: "operational", skipOrigins: [] }, offset - 1, { limit: 1 })).facts[0]!.message!.envelope!.fromZone).toBe("enterprise");
  });

  it("after confirms were lost, a new worker finds the position in the log: it ships nothing twice", async () => {
    await produce(zones.peerStore, producedFacts(300));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const cursorBefore = (await zones.peerStore.readNext(CONSUMER, { limit: 1 })).cursor;
    const lossy = testPeer(zones.peerStore);
    lossy.applyConfirms = false;
    const first = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer: lossy, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    await pollUntil(() => first.status().appended === 300, { timeoutMs: 30_000, what: "300 facts shipped" });
    await first.stop();
    const before = (await localFacts()).length;
    // The peer still has its cursor where it was: the next worker is served those pages again.
    expect((await zones.peerStore.readNext(CONSUMER, { limit: 1 })).cursor).toBe(cursorBefore);

    const second = startLink({ zone: "enterprise", link: testLink, store: await zones.openLocal(), peer: testPeer(zones.peerStore), policy: testPolicy, options: linkOptions, holder: "worker-2", log: silentLog });
    try {
      await pollUntil(() => second.status().cursor === peerLast, { timeoutMs: 30_000, what: "the second worker confirming the peer's last offset" });
      expect(second.status().appended).toBe(0);
      expect(second.status().duplicates).toBe(300);
    } finally {
      await second.stop();
    }
    expect((await localFacts()).length).toBe(before);
  });

  it("refuses a corrupted page, stores nothing of it, and relays it once the peer serves it intact", async () => {
    await produce(zones.peerStore, producedFacts(50));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const before = (await localFacts()).length;
    const peer = testPeer(zones.peerStore);
    let corrupted = 0;
    peer.tamper = (page) => {
      if (page.facts.length === 0) return;
      page.facts.at(-1)!.message[3]! ^= 0x40;
      corrupted++;
    };
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().lastError?.reason === "corrupt_fact" && corrupted >= 2, { timeoutMs: 10_000, what: "the corrupted page refused (twice)" });
      expect(link.status().lastError!.code).toBe("data_loss");
      expect((await localFacts()).length).toBe(before);
      expect(link.status().cursor).toBeLessThan(peerLast);
      delete peer.tamper;
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the intact page relayed" });
    } finally {
      await link.stop();
    }
    expect((await localFacts()).length).toBe(before + 50);
  });
});

function catchError(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected an error");
}
