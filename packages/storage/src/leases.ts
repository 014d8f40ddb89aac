import type { KV } from "@nats-io/kv";
import { isWrongLastSequence } from "./substrate-errors.js";

/** A lease this process holds: valid until it fails to renew it. */
export interface LeaseGrant {
  readonly name: string;
  readonly holder: string;
  readonly revision: number;
}

/**
 * Leases in JetStream KV (bucket `bsfg-leases`, TTL = `leaseTtl`): at most one
 * holder per name. Taking is a create (only if nobody holds it), renewing a
 * compare-and-set on the revision the holder last wrote, so a holder that was
 * too slow and lost its lease to another learns so on its next renewal. An
 * unrenewed lease ages out of the bucket after the TTL and can then be taken.
 */
export interface Leases {
  readonly ttlMs: number;
  /** Takes the lease if nobody holds it; undefined when someone does. */
  acquire(name: string, holder: string): Promise<LeaseGrant | undefined>;
  /** Extends a held lease; undefined when it was lost. */
  renew(grant: LeaseGrant): Promise<LeaseGrant | undefined>;
  /** Gives the lease up so a standby can take it at once. */
  release(grant: LeaseGrant): Promise<void>;
  /** Who holds a lease now, if anyone. */
  holder(name: string): Promise<string | undefined>;
}

export function leases(kv: KV, ttlMs: number): Leases {
  return {
    ttlMs,
    async acquire(name, holder) {
      try {
        return { name, holder, revision: await kv.create(name, holder) };
      } catch (err) {
        if (isConflict(err)) return undefined;
        throw err;
      }
    },
    async renew(grant) {
      try {
        return { ...grant, revision: await kv.update(grant.name, grant.holder, grant.revision) };
      } catch (err) {
        if (isConflict(err)) return undefined;
        throw err;
      }
    },
    async release(grant) {
      await kv.delete(grant.name, { previousSeq: grant.revision }).catch((err: unknown) => {
        // Lost already: nothing to give up.
        if (!isConflict(err)) throw err;
      });
    },
    async holder(name) {
      const entry = await kv.get(name);
      return entry?.operation === "PUT" ? entry.string() : undefined;
    },
  };
}

/** Someone else holds or moved the lease: a lost compare-and-set, or a create of a key that exists. */
function isConflict(err: unknown): boolean {
  return isWrongLastSequence(err) || (err instanceof Error && /key exists/i.test(err.message));
}
