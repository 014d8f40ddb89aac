import { create } from "@bufbuild/protobuf";
import { FactMessageSchema, type FactMessage } from "@bsfg/proto";
import { startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { parseStorageConfig, type StorageConfigInput } from "./config.js";
import { openZoneStore, type OpenOptions, type ZoneStore } from "./zone-store.js";

export interface TestZone {
  readonly server: NatsServerHandle;
  readonly store: ZoneStore;
  open(opts?: Partial<OpenOptions>): Promise<ZoneStore>;
  dispose(): Promise<void>;
}

/** A real nats-server with a JetStream domain for zone "plant-a", and a store over it. */
export async function startTestZone(config: Partial<StorageConfigInput> = {}, opts: Partial<OpenOptions> = {}): Promise<TestZone> {
  const server = await startNatsServer({ domain: "plant-a" });
  // JetStream reserves each stream's max_bytes from the server's file store limit.
  const streams = { operational: { maxBytes: "1GiB" }, audit: { maxBytes: "1GiB" }, documents: { maxBytes: "1GiB" } };
  const cfg = parseStorageConfig({ zone: "plant-a", zones: ["idmz", "enterprise"], streams, ...config });
  const stores: ZoneStore[] = [];
  const open = async (more: Partial<OpenOptions> = {}) => {
    const store = await openZoneStore(cfg, { servers: server.url, ...opts, ...more });
    stores.push(store);
    return store;
  };
  const store = await open();
  return {
    server,
    store,
    open,
    async dispose() {
      await Promise.allSettled(stores.map((s) => s.close()));
      await server.dispose();
    },
  };
}

let sequence = 0;

/** A valid fact message; override any part. */
export function factMessage(overrides: { id?: string; subject?: string; predicate?: string; object?: unknown; objectJson?: string; fromZone?: string; toZone?: string; producedAt?: bigint } = {}): FactMessage {
  sequence++;
  return create(FactMessageSchema, {
    envelope: {
      messageId: overrides.id ?? `test-${process.pid}-${Date.now()}-${sequence}`,
      fromZone: overrides.fromZone ?? "plant-a",
      toZone: overrides.toZone ?? "enterprise",
      producedAtUnixMs: overrides.producedAt ?? 1_764_000_000_000n,
      correlationId: "corr-1",
    },
    fact: {
      subject: overrides.subject ?? "batch:PlantA/B1042",
      predicate: overrides.predicate ?? "step_completed",
      objectJson: overrides.objectJson ?? JSON.stringify(overrides.object ?? { result: "ok", step: "sterile_filter", n: sequence }),
    },
  });
}
