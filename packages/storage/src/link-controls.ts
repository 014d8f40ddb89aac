import type { KV } from "@nats-io/kv";

/** An operator's standing instruction for a peer link: paused, by whom, when, why. */
export interface LinkControl {
  readonly paused: boolean;
  /** The operator identity that set it. */
  readonly by: string;
  readonly atMs: number;
  readonly note?: string | undefined;
}

/**
 * Operators' controls of the zone's peer links, in JetStream KV (bucket `bsfg-link-controls`,
 * key = link name): durable and shared, so every sync replica obeys a pause — the one holding
 * the link now and whichever takes it over later, across restarts — until it is resumed.
 */
export interface LinkControls {
  /** The link's control, or undefined when none was ever set (it runs). */
  get(link: string): Promise<LinkControl | undefined>;
  set(link: string, control: LinkControl): Promise<void>;
}

export function linkControls(kv: KV): LinkControls {
  return {
    async get(link) {
      const entry = await kv.get(link);
      if (entry?.operation !== "PUT") return undefined;
      const value = entry.json<Partial<LinkControl>>();
      return { paused: value.paused === true, by: String(value.by ?? ""), atMs: Number(value.atMs ?? 0), ...(typeof value.note === "string" ? { note: value.note } : {}) };
    },
    async set(link, control) {
      await kv.put(link, JSON.stringify(control));
    },
  };
}
