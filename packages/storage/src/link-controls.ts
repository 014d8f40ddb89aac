import type { KV } from "@nats-io/kv";
import type { JetStreamManager } from "@nats-io/jetstream";
import { ApiCode, apiCode } from "./substrate-errors.js";

/** An operator's standing instruction for a peer link: paused, by whom, when, why. */
export interface LinkControl {
  readonly paused: boolean;
  /** The operator identity that set it. */
  readonly by: string;
  readonly atMs: number;
  readonly note?: string | undefined;
}

/** A control as read back, with the bucket's revision of it: a later write has a higher one. */
export interface ReadLinkControl extends LinkControl {
  readonly revision: number;
}

/**
 * Operators' controls of the zone's peer links, in JetStream KV (bucket `bsfg-link-controls`,
 * key = link name): durable and shared, so every sync replica obeys a pause — the one holding
 * the link now and whichever takes it over later, across restarts — until it is resumed.
 */
export interface LinkControls {
  /**
   * The link's control, or undefined when none was ever set (it runs). Read from the bucket's
   * stream leader, not a direct get any replica may answer: a follower that lags would hand a
   * replica an older "running" just after an operator paused the link.
   */
  get(link: string): Promise<ReadLinkControl | undefined>;
  set(link: string, control: LinkControl): Promise<void>;
}

export function linkControls(kv: KV, jsm: JetStreamManager, bucket: string): LinkControls {
  return {
    async get(link) {
      let message;
      try {
        message = await jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${link}` });
      } catch (err) {
        if (apiCode(err) === ApiCode.NoMessageFound) return undefined;
        throw err;
      }
      const operation = message?.header?.get("KV-Operation");
      if (!message || operation === "DEL" || operation === "PURGE") return undefined;
      const value = message.json<Partial<LinkControl>>();
      return {
        paused: value.paused === true, by: String(value.by ?? ""), atMs: Number(value.atMs ?? 0), revision: message.seq,
        ...(typeof value.note === "string" ? { note: value.note } : {}),
      };
    },
    async set(link, control) {
      await kv.put(link, JSON.stringify(control));
    },
  };
}
