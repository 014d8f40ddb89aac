import type { Claim } from "./dedupe-index.js";
import { fromBinary } from "@bufbuild/protobuf";
import { FactMessageSchema } from "@bsfg/proto";
import { readRange } from "./read-range.js";
import { factStreamName } from "./routing.js";

import type { Substrate } from "./substrate.js";

const PAGE = 500;

/**
 * Looks for the fact of an abandoned claim. Its owner publishes only within a
 * third of the pending timeout after claiming, so the fact, if it exists, was
 * stored within that window of the claim's time: scan the claim's subject from
 * one timeout before to one timeout after, which allows for clock skew between
 * the gateway hosts and the server. This runs only after a crash.
 */
export async function findStoredFact(substrate: Substrate, claim: Claim, pendingTimeoutMs: number): Promise<number | undefined> {
  const stream = factStreamName(claim.s);
  const until = claim.claimedAtMs + pendingTimeoutMs;
  let startTime: Date | undefined = new Date(claim.claimedAtMs - pendingTimeoutMs);
  let startSeq = 0;
  for (;;) {
    const range = await readRange(substrate, stream, { filter: claim.j, limit: PAGE, ...(startTime ? { startTime } : { startSeq }) });
    for (const m of range.messages) {
      if (m.storedAtMs > until) return undefined;
      if (fromBinary(FactMessageSchema, m.data).envelope?.messageId === claim.m) return m.seq;
    }
    const lastMessage = range.messages.at(-1);
    if (!lastMessage || range.remaining === 0) return undefined;
    startTime = undefined;
    startSeq = lastMessage.seq + 1;
  }
}
