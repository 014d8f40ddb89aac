import { factHeadOf } from "@bsfg/proto";
import type { Claim } from "./dedupe-index.js";
import { openRange } from "./read-range.js";
import { factStreamName } from "./routing.js";
import { isLinkMarker } from "./shipping.js";
import type { Substrate } from "./substrate.js";

const PAGE = 1_000;
const PAGE_BYTES = 8 * 2 ** 20;

/**
 * Finds the facts of abandoned claims in the log. An owner publishes within a
 * third of the pending timeout after claiming, and JetStream's duplicate window
 * (the in-flight window) catches anything that arrives later still; so a fact of
 * an abandoned claim, if it exists, was stored between just before the claim and
 * the end of that window. One scan per abandoned batch and stream serves every
 * claim of that batch: after a crash, a retried batch of a thousand messages
 * costs one scan, not a thousand.
 */
export interface Recovery {
  /** The offset of the claim's fact, if it was stored. */
  find(claim: Claim): Promise<number | undefined>;
}

export function recovery(substrate: Substrate, windowMs: number): Recovery {
  const scans = new Map<string, Promise<Map<string, number>>>();

  async function scan(stream: string, claimedAtMs: number): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    const until = claimedAtMs + windowMs;
    // One consumer for the whole scan: while other writers keep appending, the window can
    // hold many pages, and a consumer per page cost a round trip through the meta leader each.
    const reader = await openRange(substrate, factStreamName(stream), { startTime: new Date(claimedAtMs - 1_000) });
    try {
      for (;;) {
        const range = await reader.next(PAGE, PAGE_BYTES);
        for (const m of range.messages) {
          if (m.storedAtMs > until) return found;
          if (isLinkMarker(m.subject)) continue;
          const head = headOf(m.data);
          if (head === undefined) continue;
          // By scope and id for scoped claims, by id alone for an older gateway's zone-wide claim.
          for (const key of [scopedId(head.fromZone, head.messageId), head.messageId]) if (!found.has(key)) found.set(key, m.seq);
        }
        if (range.messages.length === 0 || range.complete) return found;
      }
    } finally {
      reader.close();
    }
  }

  return {
    async find(claim) {
      const key = `${claim.s}|${claim.b}`;
      let pending = scans.get(key);
      if (!pending) {
        pending = scan(claim.s, claim.claimedAtMs);
        scans.set(key, pending);
        pending.catch(() => scans.delete(key));
        // Forget old scans: a batch is recovered once, shortly after a crash.
        setTimeout(() => scans.delete(key), windowMs).unref();
      }
      return (await pending).get(claim.z === undefined ? claim.m : scopedId(claim.z, claim.m));
    },
  };
}

/** A scoped id never equals a bare message_id: a newline is not valid in one. */
const scopedId = (fromZone: string, messageId: string) => `${fromZone}\n${messageId}`;

/** The fact's scope and id; undefined for bytes written past the gateway that are not a fact. */
function headOf(data: Uint8Array): { fromZone: string; messageId: string } | undefined {
  try {
    const { fromZone, messageId } = factHeadOf(data);
    return messageId === "" ? undefined : { fromZone, messageId };
  } catch {
    return undefined;
  }
}
