import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "@bsfg/testkit";
import type { LinkControls, ZoneStore } from "@bsfg/storage";
import { startLink, type RunningLink } from "./link.js";
import { produce, producedFacts, silentLog, startTestZones, testLink, testPeer, testPolicy, type TestPeer, type TestZones } from "./test-support.js";

/*
 * An operator's pause (store.linkControls, what the console's Pause writes) against two real
 * zones: every replica of the link obeys it, none holds the lease or fetches while it stands,
 * it outlives the workers, and a resume lets the facts that waited cross once each.
 */

let zones: TestZones;
beforeAll(async () => {
  zones = await startTestZones();
});
afterAll(async () => {
  await zones?.dispose();
});

const linkOptions = { pageLimit: 100, prefetch: 1, maxWait: 200, backoff: { initial: 20, max: 200 } };

/** The local store, counting the link's reads of its control: proof that a link looked and stayed paused. */
function counted(store: ZoneStore): { store: ZoneStore; reads: () => number } {
  let reads = 0;
  const linkControls: LinkControls = {
    get: (link) => {
      reads++;
      return store.linkControls.get(link);
    },
    set: (link, control) => store.linkControls.set(link, control),
  };
  return { store: { ...store, linkControls }, reads: () => reads };
}

async function relayedIds(): Promise<string[]> {
  const page = await zones.localStore.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100_000, messages: "decoded" });
  return page.facts.map((f) => f.message!.envelope!.messageId);
}

describe("a paused link", () => {
  it("stops on every replica, holds no lease and fetches nothing until resumed; then the facts that waited cross once", async () => {
    const peers: TestPeer[] = [testPeer(zones.peerStore), testPeer(zones.peerStore)];
    const replicas = [counted(zones.localStore), counted(await zones.openLocal())];
    const links: RunningLink[] = replicas.map((r, i) => startLink({
      zone: "enterprise", link: testLink, store: r.store, peer: peers[i]!, policy: testPolicy, options: linkOptions, holder: `worker-${i + 1}`, log: silentLog,
    }));
    try {
      const before = producedFacts(100);
      await produce(zones.peerStore, before);
      await pollUntil(async () => (await relayedIds()).length >= 100 && links.some((l) => l.status().state === "active"), { timeoutMs: 30_000, what: "the first 100 facts relayed" });

      await zones.localStore.linkControls.set(testLink.name, { paused: true, by: "estate-operator", atMs: Date.now(), note: "plant shutdown" });
      await pollUntil(() => links.every((l) => l.status().state === "paused"), { timeoutMs: 10_000, what: "both replicas paused" });
      expect(links.map((l) => l.status().paused)).toEqual([0, 1].map(() => expect.objectContaining({ by: "estate-operator", note: "plant shutdown" })));
      expect(await zones.localStore.leases.holder(testLink.name)).toBeUndefined();

      // Facts arrive in the peer zone; each replica looks at its control twice more and stays put.
      const fetchesBefore = peers.map((p) => p.fetches.length);
      const waiting = producedFacts(50);
      await produce(zones.peerStore, waiting);
      const readsBefore = replicas.map((r) => r.reads());
      await pollUntil(() => replicas.every((r, i) => r.reads() >= readsBefore[i]! + 2), { timeoutMs: 10_000, what: "two more control reads on each replica" });
      expect(peers.map((p) => p.fetches.length)).toEqual(fetchesBefore);
      expect(await relayedIds()).toHaveLength(100);
      expect(links.map((l) => l.status().state)).toEqual(["paused", "paused"]);

      await zones.localStore.linkControls.set(testLink.name, { paused: false, by: "estate-operator", atMs: Date.now() });
      await pollUntil(async () => (await relayedIds()).length >= 150, { timeoutMs: 30_000, what: "the 50 facts that waited relayed" });
      const ids = await relayedIds();
      expect(ids.slice(100)).toEqual(waiting.map((f) => f.envelope!.messageId));
      expect(new Set(ids).size).toBe(ids.length);
      await pollUntil(() => links.filter((l) => l.status().state === "active").length === 1, { timeoutMs: 10_000, what: "one replica active again" });
      expect(links.every((l) => l.status().paused === undefined)).toBe(true);
    } finally {
      await Promise.all(links.map((l) => l.stop()));
    }
  });

  it("pauses a link that is waiting out a failure at once, not when its backoff ends", async () => {
    const peer = testPeer(zones.peerStore);
    peer.tamper = () => {
      throw new Error("the peer's egress is down");
    };
    // After its first failure the link would wait 20 s before trying again.
    const link = startLink({ zone: "enterprise", link: testLink, store: await zones.openLocal(), peer, policy: testPolicy, options: { ...linkOptions, backoff: { initial: 20_000, max: 20_000 } }, holder: "worker-4", log: silentLog });
    try {
      await produce(zones.peerStore, producedFacts(1));
      await pollUntil(() => link.status().state === "backing_off", { timeoutMs: 10_000, what: "the link backing off" });
      await zones.localStore.linkControls.set(testLink.name, { paused: true, by: "estate-operator", atMs: Date.now() });
      // Within a control read or two, not after 20 s; and the lease it held is given up.
      await pollUntil(() => link.status().state === "paused", { timeoutMs: 5_000, what: "the backing-off link paused" });
      expect(await zones.localStore.leases.holder(testLink.name)).toBeUndefined();
    } finally {
      await link.stop();
      await zones.localStore.linkControls.set(testLink.name, { paused: false, by: "estate-operator", atMs: Date.now() });
    }
  });

  it("stays paused across a worker's restart: a new worker never fetches", async () => {
    await zones.localStore.linkControls.set(testLink.name, { paused: true, by: "estate-operator", atMs: Date.now() });
    await produce(zones.peerStore, producedFacts(10));
    const peer = testPeer(zones.peerStore);
    const replica = counted(await zones.openLocal());
    const link = startLink({ zone: "enterprise", link: testLink, store: replica.store, peer, policy: testPolicy, options: linkOptions, holder: "worker-3", log: silentLog });
    try {
      await pollUntil(() => link.status().state === "paused" && replica.reads() >= 3, { timeoutMs: 10_000, what: "the new worker paused, having read its control three times" });
      expect(peer.fetches).toEqual([]);
      expect(await zones.localStore.leases.holder(testLink.name)).toBeUndefined();
    } finally {
      await link.stop();
      await zones.localStore.linkControls.set(testLink.name, { paused: false, by: "estate-operator", atMs: Date.now() });
    }
  });
});
