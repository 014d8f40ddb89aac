import type { KV } from "@nats-io/kv";
import type { ConsumerDefinition } from "./config.js";

/**
 * The consumer registry: named, durable readers of this zone's log. Their
 * definitions come from configuration and are published to JetStream KV so
 * that every stateless service of the zone sees the same set.
 */
export interface ConsumerRegistry {
  get(name: string): Promise<ConsumerDefinition | undefined>;
  /** Stores a definition; says whether it was new, changed or already so. */
  register(definition: ConsumerDefinition): Promise<"created" | "updated" | "unchanged">;
}

export function consumerRegistry(kv: KV): ConsumerRegistry {
  return {
    async get(name) {
      const entry = await kv.get(name);
      return entry && entry.operation === "PUT" ? entry.json<ConsumerDefinition>() : undefined;
    },
    async register(definition) {
      const text = JSON.stringify(definition);
      const entry = await kv.get(definition.name);
      if (entry && entry.operation === "PUT") {
        if (entry.string() === text) return "unchanged";
        await kv.update(definition.name, text, entry.revision);
        return "updated";
      }
      await kv.put(definition.name, text);
      return "created";
    },
  };
}
