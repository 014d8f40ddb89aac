import { once } from "node:events";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { createPolicy, type PeerLink } from "@bsfg/config";
import { FactMessageSchema, FetchFactsPageSchema, FetchFactsResponseSchema, type FactMessage, type FetchFactsPage } from "@bsfg/proto";
import { openZoneStore, parseStorageConfig, type ZoneStore } from "@bsfg/storage";
import { startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import type { PeerClient } from "./link.js";
import type { Logger } from "./logger.js";

/*
 * Two real zones, each on its own nats-server: the peer "plant-a", whose
 * consumer "to-enterprise" a link pulls, and "enterprise", which relays it.
 * The peer is served from its own store as its egress and ledger serve it
 * (the same wire bytes, decoded as the worker's client decodes them), so
 * these tests hold the relay's pieces to real JetStream on both sides.
 */

export const CONSUMER = "to-enterprise";
const streams = { operational: { maxBytes: "256MiB" }, audit: { maxBytes: "64MiB" }, documents: { maxBytes: "64MiB" } };

export interface TestZones {
  readonly peerStore: ZoneStore;
  readonly localStore: ZoneStore;
  readonly servers: readonly NatsServerHandle[];
  /** Opens another store on this zone's server (a second worker replica), with other limits if given. */
  openLocal(limits?: Record<string, unknown>): Promise<ZoneStore>;
  dispose(): Promise<void>;
}

export async function startTestZones(): Promise<TestZones> {
  const peerServer = await startNatsServer({ domain: "plant-a" });
  const localServer = await startNatsServer({ domain: "enterprise" });
  const peerConfig = parseStorageConfig({ zone: "plant-a", zones: ["enterprise"], streams, consumers: [{ name: CONSUMER, stream: "operational", identities: ["enterprise-bsfg"] }] });
  const localInput = { zone: "enterprise", zones: ["plant-a"], streams, leaseTtl: "3s" };
  const localConfig = parseStorageConfig(localInput);
  const stores = [await openZoneStore(peerConfig, { servers: peerServer.url }), await openZoneStore(localConfig, { servers: localServer.url })];
  return {
    peerStore: stores[0]!,
    localStore: stores[1]!,
    servers: [peerServer, localServer],
    async openLocal(limits) {
      const store = await openZoneStore(limits ? parseStorageConfig({ ...localInput, limits }) : localConfig, { servers: localServer.url });
      stores.push(store);
      return store;
    },
    async dispose() {
      await Promise.allSettled(stores.map((store) => store.close()));
      await Promise.allSettled([peerServer.dispose(), localServer.dispose()]);
    },
  };
}

export interface TestPeer extends PeerClient {
  /** The offset each fetch read after (undefined: after the confirmed cursor), in call order. */
  readonly fetches: (number | undefined)[];
  /** Fetches not answered yet. */
  readonly inFlight: () => number;
  readonly confirms: number[];
  /** Changes a page before it is handed to the link, as a faulty network or egress would. */
  tamper?: (page: FetchFactsPage) => void;
  /** When false, confirms are answered but not applied (a confirm lost on its way). */
  applyConfirms: boolean;
  /** An error FetchObject answers instead of the object (a peer that cannot serve it now). */
  objectFault?: () => Error;
  /** Objects served. */
  readonly objectsServed: string[];
}

/** The peer zone's egress and ledger, served from its store. An empty page waits a little, as a long poll does. */
export function testPeer(store: ZoneStore): TestPeer {
  let pending = 0;
  const peer: TestPeer = {
    fetches: [],
    inFlight: () => pending,
    confirms: [],
    applyConfirms: true,
    objectsServed: [],
    async fetchFactPage(consumer, { limit, maxWaitMs = 0, afterOffset } = {}) {
      peer.fetches.push(afterOffset === undefined ? undefined : Number(afterOffset));
      pending++;
      try {
        const page = await store.readNext(consumer, { limit: limit || 100, messages: "encoded" }, afterOffset === undefined ? undefined : Number(afterOffset));
        if (page.count === 0 && maxWaitMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(maxWaitMs, 50)));
        const response = create(FetchFactsResponseSchema, { cursor: BigInt(page.cursor), lastOffset: BigInt(page.lastOffset), highWater: BigInt(page.highWater) });
        response.$unknown = page.encodedFacts.map((data) => ({ no: 1, wireType: WireType.LengthDelimited, data }));
        const received = fromBinary(FetchFactsPageSchema, toBinary(FetchFactsResponseSchema, response));
        peer.tamper?.(received);
        return received;
      } finally {
        pending--;
      }
    },
    async confirmReceipt(consumer, offset) {
      peer.confirms.push(Number(offset));
      if (!peer.applyConfirms) return 0n;
      return BigInt(await store.confirm(consumer, Number(offset)));
    },
    async fetchObject(bucket, key, destination, { signal } = {}) {
      if (peer.objectFault) throw peer.objectFault();
      // The peer's real object store: a missing object is its not_found.
      const reader = await store.getObject(bucket, key);
      for await (const chunk of reader.chunks) {
        if (!destination.write(chunk)) await once(destination, "drain", signal ? { signal } : {});
      }
      peer.objectsServed.push(`${bucket}/${key}`);
      return reader.object;
    },
  };
  return peer;
}

export const testLink: PeerLink = {
  name: `plant-a/${CONSUMER}`, peer: "plant-a", consumer: CONSUMER, egressUrls: [], ledgerUrls: [], peerIdentity: "plant-a-bsfg", dial: "outbound",
};

/** Enterprise's policy: plant-a's worker may relay facts from plant-a to enterprise. */
export const testPolicy = createPolicy({ "plant-a-bsfg": { assertFromZones: ["plant-a"], targetZones: ["enterprise"], consumers: [], writeBuckets: ["batch-files"], readBuckets: [], quarantine: [] } });

export const silentLog: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

let sequence = 0;

/** Facts produced in plant-a for enterprise. */
export function producedFacts(count: number, overrides: { fromZone?: string; toZone?: string } = {}): FactMessage[] {
  return Array.from({ length: count }, () => {
    sequence++;
    return create(FactMessageSchema, {
      envelope: { messageId: `relay-test-${process.pid}-${sequence}`, fromZone: overrides.fromZone ?? "plant-a", toZone: overrides.toZone ?? "enterprise", producedAtUnixMs: 1_764_000_000_000n + BigInt(sequence) },
      fact: { subject: `batch:PlantA/B${sequence % 7}`, predicate: "step_completed", objectJson: JSON.stringify({ n: sequence }) },
    });
  });
}

/** Appends facts to the peer in batches of at most 1,000. */
export async function produce(store: ZoneStore, facts: readonly FactMessage[]): Promise<void> {
  for (let i = 0; i < facts.length; i += 1_000) await store.append(facts.slice(i, i + 1_000));
}
