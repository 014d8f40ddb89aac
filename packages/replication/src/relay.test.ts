import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { context } from "@opentelemetry/api";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, FactMessageSchema, reasonOf, type FetchFactsPage } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { admit } from "./admission.js";
import { classifyRelayError } from "./relay-errors.js";
import { confirmer } from "./confirmer.js";
import { CORRUPT_FETCHES_BEFORE_SET_ASIDE, startLink, type PeerClient } from "./link.js";
import { getQuarantined, listQuarantine } from "@bsfg/storage";
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
    const { admitted, refused } = admit(page, rules);
    expect(admitted).toHaveLength(3);
    expect(refused).toEqual([]);
    for (const fact of admitted) {
      expect(fact.stored.message).toEqual(await peerBytes(Number(fact.stored.offset)));
      expect(fact.kind).toBe("batch");
      expect(fact.head.fromZone).toBe("plant-a");
    }
  });

  it("refuses a fact whose bytes do not match their digest on its own, and a page served without digests whole", () => {
    const tampered = structuredClone(page);
    tampered.facts[1]!.message[5]! ^= 0x01;
    const { admitted, refused } = admit(tampered, rules);
    expect(admitted.map((f) => f.stored.offset)).toEqual([page.facts[0]!.offset, page.facts[2]!.offset]);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.stored.offset).toBe(page.facts[1]!.offset);
    expect(refused[0]!.error.code).toBe(Code.DataLoss);
    expect(reasonOf(refused[0]!.error)).toBe("corrupt_fact");
    expect(classifyRelayError(refused[0]!.error)).toBe("set_aside");
    // A page served without digests comes from an egress older than this worker: refused whole, retried.
    const undigested = structuredClone(page);
    undigested.facts[0]!.messageSha256 = new Uint8Array();
    expect(reasonOf(catchError(() => admit(undigested, rules)))).toBe("corrupt_fact");
  });

  it("refuses each fact the peer may not relay, by this zone's policy", () => {
    const { admitted, refused } = admit(page, { ...rules, peerIdentity: "stranger" });
    expect(admitted).toEqual([]);
    expect(refused).toHaveLength(3);
    for (const fact of refused) {
      expect(fact.error.code).toBe(Code.PermissionDenied);
      expect(reasonOf(fact.error)).toBe("unknown_identity");
      expect(fact.messageId).toMatch(/^relay-test-/);
    }
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

  it("a confirm that fails while the link waits in a long poll is sent again at once, not when the poll answers", async () => {
    await produce(zones.peerStore, producedFacts(40));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const inner = testPeer(zones.peerStore);
    let confirmsToFail = 1;
    const peer: PeerClient = {
      ...inner,
      // The peer's ledger restarts just as the page's confirm reaches it.
      async confirmReceipt(consumer, offset) {
        if (confirmsToFail-- > 0) throw new ConnectError("the ledger is restarting", Code.Unavailable);
        return inner.confirmReceipt(consumer, offset);
      },
      // An empty page waits the whole long poll (a minute here), as an egress does, unless cancelled.
      async fetchFactPage(consumer, options = {}) {
        const page = await inner.fetchFactPage(consumer, { ...options, maxWaitMs: 0 });
        if (page.facts.length === 0 && options.maxWaitMs) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, options.maxWaitMs);
            options.signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
          });
          options.signal?.throwIfAborted();
        }
        return page;
      },
    };
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: { ...linkOptions, maxWait: 60_000 }, holder: "worker-1", log: silentLog });
    try {
      // The page is shipped, its confirm fails in the background while the next long poll waits a minute.
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 15_000, what: "the confirm sent again, well before the long poll's minute" });
      expect(confirmsToFail).toBeLessThan(0);
      expect(link.status().lastError?.message).toMatch(/ledger is restarting/);
    } finally {
      await link.stop();
    }
  });

  it("fetches a page again while a fact does not match its digest, and relays it once it arrives intact", async () => {
    await produce(zones.peerStore, producedFacts(50));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const before = (await localFacts()).length;
    const peer = testPeer(zones.peerStore);
    // Damaged on the first CORRUPT_FETCHES_BEFORE_SET_ASIDE − 1 fetches only: a transient fault.
    let corrupted = 0;
    peer.tamper = (page) => {
      if (page.facts.length === 0 || corrupted >= CORRUPT_FETCHES_BEFORE_SET_ASIDE - 1) return;
      page.facts.at(-1)!.message[3]! ^= 0x40;
      corrupted++;
    };
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the intact page relayed" });
      expect(link.status().lastError?.reason).toBe("corrupt_fact");
      expect(link.status().quarantined).toBe(0);
    } finally {
      await link.stop();
    }
    expect(corrupted).toBe(CORRUPT_FETCHES_BEFORE_SET_ASIDE - 1);
    expect((await localFacts()).length).toBe(before + 50);
    expect(await listQuarantine(zones.localStore.substrate)).toEqual([]);
  });
});

describe("quarantine: a fact that can never be admitted is set aside, and the facts behind it flow", () => {
  it("parks a fact policy denies and one corrupt at its source, with reason and origin, and relays the rest in order", async () => {
    const good = producedFacts(40);
    const denied = producedFacts(1, { toZone: "plant-a" })[0]!;
    await produce(zones.peerStore, [...good.slice(0, 10), denied, ...good.slice(10, 30)]);
    const corruptAt = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    await produce(zones.peerStore, good.slice(30));
    const deniedAt = corruptAt - 20;
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const before = await localFacts();
    const peer = testPeer(zones.peerStore);
    let damaged = 0;
    // The peer serves the fact at corruptAt damaged every time: it is corrupt where it is stored.
    peer.tamper = (page) => {
      for (const fact of page.facts) {
        if (Number(fact.offset) === corruptAt) {
          fact.message[3]! ^= 0x40;
          damaged++;
        }
      }
    };
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the link past both poison facts" });
      expect(link.status().quarantined).toBe(2);
    } finally {
      await link.stop();
    }
    expect(damaged).toBeGreaterThanOrEqual(CORRUPT_FETCHES_BEFORE_SET_ASIDE);
    const after = (await localFacts()).slice(before.length);
    const expected = good.filter((_, i) => i !== 29).map((f) => f.envelope!.messageId);
    expect(after.map((f) => f.message!.envelope!.messageId)).toEqual(expected);

    const entries = await listQuarantine(zones.localStore.substrate);
    expect(entries.map((e) => [e.peerOffset, e.reason, e.state, e.link])).toEqual([
      [deniedAt, "to_zone_not_allowed", "parked", testLink.name],
      [corruptAt, "corrupt_fact", "parked", testLink.name],
    ]);
    expect(entries[0]!.messageId).toBe(denied.envelope!.messageId);
    const parked = await getQuarantined(zones.localStore.substrate, entries[0]!.id);
    // The fact as the peer stored it, byte for byte.
    expect(parked!.fact).toEqual(await peerBytes(deniedAt));
  });

  it("parks a fact once however often its page is fetched again: a second worker after lost confirms adds nothing", async () => {
    await produce(zones.peerStore, [...producedFacts(5), ...producedFacts(1, { toZone: "plant-a" }), ...producedFacts(5)]);
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const parkedBefore = (await listQuarantine(zones.localStore.substrate)).length;
    const lossy = testPeer(zones.peerStore);
    lossy.applyConfirms = false;
    const first = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer: lossy, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    await pollUntil(() => first.status().quarantined === 1 && first.status().appended === 10, { timeoutMs: 30_000, what: "one fact parked, ten shipped" });
    await first.stop();
    const second = startLink({ zone: "enterprise", link: testLink, store: await zones.openLocal(), peer: testPeer(zones.peerStore), policy: testPolicy, options: linkOptions, holder: "worker-2", log: silentLog });
    try {
      await pollUntil(() => second.status().cursor === peerLast, { timeoutMs: 30_000, what: "the second worker at the peer's last offset" });
      expect(second.status().quarantined).toBe(0);
      expect(second.status().appended).toBe(0);
    } finally {
      await second.stop();
    }
    expect((await listQuarantine(zones.localStore.substrate)).length).toBe(parkedBefore + 1);
  });
});

describe("artifacts: retried while the peer cannot serve them, set aside when it says they do not exist", () => {
  it("never parks a fact whose artifact is only unreachable, and parks one whose artifact the peer does not have", async () => {
    const store = async (key: string, text: string) => {
      const ref = await zones.peerStore.putObject({ bucket: "batch-files", key, mediaType: "text/plain" }, (async function* () {
        yield new TextEncoder().encode(text);
      })());
      return create(FactMessageSchema, {
        envelope: { messageId: `artifact-${key}-${process.pid}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: 1_764_000_000_000n, objectMediaType: "text/plain" },
        fact: { subject: `batch:${key}`, predicate: "report_attached", objectJson: JSON.stringify({ bucket: ref.bucket, key: ref.key, digest: ref.digest, size: Number(ref.size), media_type: "text/plain" }) },
      });
    };
    const present = await store(`present-${process.pid}`, "the report");
    const lost = await store(`lost-${process.pid}`, "a report the peer will lose");
    const good = producedFacts(5);
    await produce(zones.peerStore, [present, lost, ...good]);
    // The peer loses the second artifact after its fact was appended (an operator deleted it).
    // (Its description is purged: the object store then answers not found, as after a delete.)
    const paddedBase64Url = Buffer.from(`lost-${process.pid}`).toString("base64").replaceAll("+", "-").replaceAll("/", "_");
    await zones.peerStore.substrate.jsm.streams.purge("OBJ_batch-files", { filter: `$O.batch-files.M.${paddedBase64Url}` });
    expect(await zones.peerStore.statObject("batch-files", `lost-${process.pid}`)).toBeUndefined();
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const parkedBefore = (await listQuarantine(zones.localStore.substrate)).length;
    const before = (await localFacts()).length;

    const peer = testPeer(zones.peerStore);
    let refusedFetches = 0;
    peer.objectFault = () => {
      refusedFetches++;
      return new ConnectError("connect ECONNREFUSED", Code.Unavailable);
    };
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => refusedFetches >= 3, { timeoutMs: 10_000, what: "the artifact fetch failing three times" });
      // Unreachable is transient: the link waits with the fact, nothing is parked or shipped past it.
      expect(link.status().lastError?.code).toBe("unavailable");
      expect(link.status().quarantined).toBe(0);
      expect((await listQuarantine(zones.localStore.substrate)).length).toBe(parkedBefore);
      expect((await localFacts()).length).toBe(before);
      delete peer.objectFault;
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the link past the lost artifact" });
      expect(link.status().quarantined).toBe(1);
      expect(link.status().artifactsCopied).toBe(1);
    } finally {
      await link.stop();
    }
    expect(await zones.localStore.statObject("batch-files", `present-${process.pid}`)).toBeDefined();
    // The fact whose artifact was copied, then the five behind the lost one, in order; not the lost one.
    expect((await localFacts()).slice(before).map((f) => f.message!.envelope!.messageId)).toEqual([present, ...good].map((f) => f.envelope!.messageId));
    const parked = (await listQuarantine(zones.localStore.substrate)).at(-1)!;
    expect([parked.messageId, parked.reason]).toEqual([lost.envelope!.messageId, "object_not_found"]);
  });
});

describe("artifacts: one larger than this zone takes is set aside, not retried for ever", () => {
  it("parks the fact whose artifact exceeds storage.limits.maxObjectBytes, stores none of it, and relays the facts behind", async () => {
    const key = `large-${process.pid}`;
    const ref = await zones.peerStore.putObject({ bucket: "batch-files", key, mediaType: "application/octet-stream" }, (async function* () {
      yield new Uint8Array(96 * 1024).fill(7);
    })());
    const large = create(FactMessageSchema, {
      envelope: { messageId: `artifact-${key}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: 1_764_000_000_000n, objectMediaType: "application/octet-stream" },
      fact: { subject: `batch:${key}`, predicate: "report_attached", objectJson: JSON.stringify({ bucket: ref.bucket, key: ref.key, digest: ref.digest, size: Number(ref.size), media_type: "application/octet-stream" }) },
    });
    const good = producedFacts(3);
    await produce(zones.peerStore, [large, ...good]);
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const before = (await localFacts()).length;
    // This zone takes artifacts of at most 64 KiB.
    const local = await zones.openLocal({ maxObjectBytes: "64KiB" });
    const link = startLink({ zone: "enterprise", link: testLink, store: local, peer: testPeer(zones.peerStore), policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the link past the large artifact" });
      expect(link.status().quarantined).toBe(1);
    } finally {
      await link.stop();
    }
    expect(await local.statObject("batch-files", key)).toBeUndefined();
    expect((await localFacts()).slice(before).map((f) => f.message!.envelope!.messageId)).toEqual(good.map((f) => f.envelope!.messageId));
    const parked = (await listQuarantine(local.substrate)).at(-1)!;
    expect([parked.messageId, parked.reason]).toEqual([large.envelope!.messageId, "object_too_large"]);
  });
});

describe("artifacts: written only into a bucket the relaying identity may write", () => {
  it("parks a fact whose artifact names a bucket outside the peer's writeBuckets, and writes nothing there", async () => {
    const key = `elsewhere-${process.pid}`;
    // The peer stored it in document-files; this zone lets plant-a-bsfg write batch-files only.
    const ref = await zones.peerStore.putObject({ bucket: "document-files", key, mediaType: "text/plain" }, (async function* () {
      yield new TextEncoder().encode("a report for a bucket the relay may not write");
    })());
    const elsewhere = create(FactMessageSchema, {
      envelope: { messageId: `artifact-${key}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: 1_764_000_000_000n, objectMediaType: "text/plain" },
      fact: { subject: `batch:${key}`, predicate: "report_attached", objectJson: JSON.stringify({ bucket: ref.bucket, key: ref.key, digest: ref.digest, size: Number(ref.size), media_type: "text/plain" }) },
    });
    const good = producedFacts(2);
    await produce(zones.peerStore, [elsewhere, ...good]);
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const before = (await localFacts()).length;
    const peer = testPeer(zones.peerStore);
    const link = startLink({ zone: "enterprise", link: testLink, store: zones.localStore, peer, policy: testPolicy, options: linkOptions, holder: "worker-1", log: silentLog });
    try {
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 30_000, what: "the link past the fact" });
    } finally {
      await link.stop();
    }
    // Refused before the copy: nothing fetched from the peer, nothing written here.
    expect(peer.objectsServed).not.toContain(`document-files/${key}`);
    expect(await zones.localStore.statObject("document-files", key)).toBeUndefined();
    expect((await localFacts()).slice(before).map((f) => f.message!.envelope!.messageId)).toEqual(good.map((f) => f.envelope!.messageId));
    const parked = (await listQuarantine(zones.localStore.substrate)).at(-1)!;
    expect([parked.messageId, parked.reason]).toEqual([elsewhere.envelope!.messageId, "bucket_not_allowed"]);
  });
});

describe("lease: renewals one at a time", () => {
  it("keeps the link when renewals are slower than their interval: no spurious takeover", async () => {
    await produce(zones.peerStore, producedFacts(20));
    const peerLast = (await zones.peerStore.substrate.jsm.streams.info("facts-operational")).state.last_seq;
    const store = await zones.openLocal();
    const ttl = store.leases.ttlMs;
    let inFlight = 0;
    let mostInFlight = 0;
    let renewals = 0;
    // The second renewal takes half the TTL, longer than the ttl/3 between renewals (a slow
    // JetStream moment): the next one is due while it is still on its way.
    const slowLeases = {
      ...store.leases,
      ttlMs: ttl,
      renew: async (grant: Parameters<typeof store.leases.renew>[0]) => {
        inFlight++;
        mostInFlight = Math.max(mostInFlight, inFlight);
        try {
          if (renewals === 1) await new Promise((resolve) => setTimeout(resolve, ttl / 2));
          return await store.leases.renew(grant);
        } finally {
          inFlight--;
          renewals++;
        }
      },
    };
    const events: string[] = [];
    const states: string[] = [];
    const log = {
      ...silentLog,
      warn: (fields: object) => void events.push(String((fields as { event?: string }).event)),
      info: (fields: object) => {
        const { event, to } = fields as { event?: string; to?: string };
        if (event === "link_state" && to) states.push(to);
      },
    };
    let acquired = 0;
    const countingLeases = { ...slowLeases, acquire: (...args: Parameters<typeof store.leases.acquire>) => (acquired++, store.leases.acquire(...args)) };
    const link = startLink({ zone: "enterprise", link: testLink, store: { ...store, leases: countingLeases }, peer: testPeer(zones.peerStore), policy: testPolicy, options: linkOptions, holder: "slow-renewer", log });
    try {
      await pollUntil(() => renewals >= 5, { timeoutMs: 4 * ttl, what: "five renewals answered" });
      expect(mostInFlight).toBe(1);
      expect(events).not.toContain("lease_lost");
      // The gap the slow renewal left was waited out, not taken for a lost lease: taken once, never standby.
      expect(acquired).toBe(1);
      expect(states).not.toContain("standby");
      expect(link.status().state).toBe("active");
      expect(await store.leases.holder(testLink.name)).toBe("slow-renewer");
      await pollUntil(() => link.status().cursor === peerLast, { timeoutMs: 10_000, what: "the link caught up" });
    } finally {
      await link.stop();
    }
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
