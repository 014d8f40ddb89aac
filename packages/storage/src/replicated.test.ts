import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AppendStatus } from "@bsfg/proto";
import { pollUntil, startNatsCluster, type NatsClusterHandle } from "@bsfg/testkit";
import { parseStorageConfig, type StorageConfig } from "./config.js";
import { factMessage } from "./test-support.js";
import { openZoneStore, type ZoneStore } from "./zone-store.js";

/**
 * A zone store at replicas 3 on a three-node JetStream cluster, and the conditional publishes
 * the store relies on, raced on the server the project ships. Before 2.10.19 nats-server
 * checked "expected last subject sequence" only before proposing a message to the stream's
 * Raft group (nats-server#4320, #5794), so concurrent compare-and-sets could all be accepted
 * and a cursor could step back; the store now refuses servers older than 2.12.
 */
const ROUNDS = 100;
const RACERS = 9;

describe("a zone store at replicas 3 on a three-node cluster", () => {
  let cluster: NatsClusterHandle;
  let config: StorageConfig;
  let store: ZoneStore;
  let version: string;
  /** RACERS connections, spread over the three nodes. */
  let connections: NatsConnection[];
  let clients: JetStreamClient[];
  const stores: ZoneStore[] = [];

  beforeAll(async () => {
    cluster = await startNatsCluster({ domain: "plant-a", maxFileStore: "2GB" });
    const streams = { operational: { maxBytes: "256MiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } };
    const buckets = { "batch-files": { maxBytes: "64MiB" }, "document-files": { maxBytes: "64MiB" } };
    config = parseStorageConfig({ zone: "plant-a", zones: ["enterprise"], replicas: 3, streams, buckets, consumers: [{ name: "racing", stream: "operational" }] });
    store = await openZoneStore(config, { servers: cluster.urls });
    stores.push(store);
    version = store.connection.info?.version ?? "0.0.0";
    connections = await Promise.all(Array.from({ length: RACERS }, (_, i) => connect({ servers: cluster.nodes[i % cluster.nodes.length]!.url })));
    clients = connections.map((nc) => jetstream(nc, { domain: "plant-a" }));
  }, 60_000);
  afterAll(async () => {
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await Promise.allSettled(stores.map((s) => s.close()));
    await cluster?.dispose();
  });

  it("creates every stream and bucket at replicas 3", async () => {
    const jsm = await jetstream(store.connection, { domain: "plant-a" }).jetstreamManager();
    for (const name of ["facts-operational", "facts-audit", "facts-documents", "bsfg-dedupe", "KV_bsfg-cursors", "KV_bsfg-consumers", "KV_bsfg-leases", "KV_bsfg-link-controls"]) {
      const info = await jsm.streams.info(name);
      expect({ name, replicas: info.config.num_replicas, peers: 1 + (info.cluster?.replicas?.length ?? 0) }).toEqual({ name, replicas: 3, peers: 3 });
    }
  });

  it("stores a message_id once when 50 appends of it race on connections to every node (claims are put-if-absent: expected sequence 0)", async () => {
    const racing = await Promise.all(Array.from({ length: 5 }, (_, i) => openZoneStore(config, { servers: cluster.nodes[i % 3]!.url })));
    stores.push(...racing);
    for (let round = 0; round < 10; round++) {
      const message = factMessage({ id: `race-${round}` });
      const results = (await Promise.all(Array.from({ length: 50 }, (_, i) => racing[i % racing.length]!.append([message])))).flat();
      expect(results.filter((r) => r.status === AppendStatus.APPENDED)).toHaveLength(1);
      expect(new Set(results.map((r) => r.offset)).size).toBe(1);
    }
  });

  it("holds put-if-absent, Nats-Msg-Id and KV compare-and-set to one winner when writers race on every node", async () => {
    const jsm = await clients[0]!.jetstreamManager();
    await jsm.streams.add({ name: "PROBE", subjects: ["probe.>"], num_replicas: 3, duplicate_window: 60_000_000_000 });
    let putIfAbsent = 0;
    let msgId = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const claims = await Promise.allSettled(clients.map((js, i) => js.publish(`probe.claim.${round}`, `w${i}`, { expect: { lastSubjectSequence: 0 } })));
      if (claims.filter((c) => c.status === "fulfilled").length !== 1) putIfAbsent++;
      const copies = await Promise.allSettled(clients.map((js, i) => js.publish("probe.fact", `w${i}`, { msgID: `m-${round}` })));
      const stored = copies.filter((c) => c.status === "fulfilled" && !c.value.duplicate).length;
      if (stored !== 1) msgId++;
    }
    await new Kvm(clients[0]!).create("probe-cas", { replicas: 3, history: 1 });
    const buckets = await Promise.all(clients.map((js) => new Kvm(js).open("probe-cas")));
    let revision = await buckets[0]!.put("cursor", "0");
    let compareAndSet = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const writes = await Promise.allSettled(buckets.map((kv, i) => kv.update("cursor", `${round}-${i}`, revision)));
      if (writes.filter((w) => w.status === "fulfilled").length > 1) compareAndSet++;
      revision = (await buckets[0]!.get("cursor"))!.revision;
    }
    console.info(`nats-server ${version}, R3, ${RACERS} racing writers on 3 nodes, ${ROUNDS} rounds each: rounds with more than one winner — `
      + `put-if-absent (expected sequence 0): ${putIfAbsent}; Nats-Msg-Id (not exactly one stored): ${msgId}; KV compare-and-set (expected revision): ${compareAndSet}`);
    expect(putIfAbsent).toBe(0);
    expect(msgId).toBe(0);
    expect(compareAndSet).toBe(0);
  });

  it("never moves a cursor backwards when confirms race on connections to every node", async () => {
    const confirmers = await Promise.all(Array.from({ length: 8 }, (_, i) => openZoneStore(config, { servers: cluster.nodes[i % 3]!.url })));
    stores.push(...confirmers);
    const kv = await new Kvm(clients[0]!).open("bsfg-cursors");
    const seen: number[] = [];
    const watch = await kv.watch({ key: "racing" });
    const watching = (async () => {
      for await (const entry of watch) if (entry.operation === "PUT") seen.push(Number(entry.string()));
    })();
    // What the stream's leader holds. A KV get may be answered by any replica (direct get) and
    // lag the last update for a moment; that is a stale read, not a cursor that stepped back.
    const jsm = await clients[0]!.jetstreamManager();
    const committed = async () => Number(new TextDecoder().decode((await jsm.streams.getMessage("KV_bsfg-cursors", { last_by_subj: "$KV.bsfg-cursors.racing" }))!.data));
    let endedBelowMax = 0;
    for (let round = 0; round < 10; round++) {
      const offsets = (await store.append(Array.from({ length: 40 }, () => factMessage()))).map((r) => Number(r.offset));
      const shuffled = [...offsets].sort(() => Math.random() - 0.5);
      await Promise.all(shuffled.map((offset, i) => confirmers[i % confirmers.length]!.confirm("racing", offset)));
      if ((await committed()) < Math.max(...offsets)) endedBelowMax++;
    }
    const final = await committed();
    await pollUntil(() => seen.at(-1) === final, { what: "the watch seeing the cursor's last value" });
    watch.stop();
    await watching;
    const backwards = seen.filter((value, i) => i > 0 && value < seen[i - 1]!).length;
    console.info(`nats-server ${version}, R3: 10 rounds of 40 confirms racing on 8 connections: the cursor took ${seen.length} values, moved backwards ${backwards} time(s), `
      + `ended ${endedBelowMax} round(s) below the highest confirmed offset`);
    expect(seen.length).toBeGreaterThan(10);
    expect(backwards).toBe(0);
    expect(endedBelowMax).toBe(0);
  });

  it("reads while a node is down: read consumers placed on the dead node are created again elsewhere", async () => {
    const offsets = (await store.append(Array.from({ length: 12 }, () => factMessage()))).map((r) => Number(r.offset));
    const leaders = [await cluster.metaLeader(), await cluster.streamLeader("facts-operational")];
    // Neither the meta leader (consumer creates go through it) nor the stream's leader: no
    // election, only the dead peer that the server may still place a consumer on.
    const victim = cluster.nodes.find((n) => !leaders.includes(n.name))!;
    const reader = await openZoneStore(config, { servers: cluster.nodes.filter((n) => n !== victim).map((n) => n.url) });
    stores.push(reader);
    await victim.kill();
    try {
      // Each read from another offset creates a fresh reader consumer; on 2.9.10 about one create
      // in three lands on the dead node and is never answered unless it is tried again.
      for (const [i, offset] of [...offsets].reverse().entries()) {
        const page = await reader.read({ stream: "operational", skipOrigins: [] }, offset - 1, { limit: 1 });
        expect({ i, offset: page.facts[0]?.offset }).toEqual({ i, offset: BigInt(offset) });
      }
    } finally {
      await victim.restart();
    }
  }, 90_000);
});
