import { headers as natsHeaders } from "@nats-io/nats-core";
import { Code, Reason, rejection } from "@bsfg/proto";
import { getQuarantined, QuarantineEntryMoved, transition, type QuarantineEntry } from "./quarantine.js";
import { openRange } from "./read-range.js";
import { factStreamName, factSubject } from "./routing.js";
import type { Substrate } from "./substrate.js";

/*
 * What an operator does with a quarantined fact. Release appends the fact's
 * stored bytes to this zone's log exactly once; drop settles the entry without
 * appending. Both are transitions of the entry (see quarantine.ts), each
 * conditional on the entry's last record, so two operators cannot both act.
 */

/** Header on a released fact: the quarantine entry it came from (the origin position stays in Bsfg-Origin). */
export const RELEASED_FROM_HEADER = "Bsfg-Released-From";
/** A release that has not finished after this long crashed: the next release resumes it. */
export const RELEASE_RESUME_AFTER_MS = 30_000;

export interface Released {
  readonly entry: QuarantineEntry;
  readonly offset: number;
  /** It had been released already (a repeated call): nothing was appended now. */
  readonly already: boolean;
}

/**
 * Appends a quarantined fact to the log of its stream category, once: the entry
 * is marked "releasing" first; a release that crashed after that is resumed by
 * the next call, which first looks for the copy the crashed one may have
 * appended (scanning the log from the moment it was marked) and only appends
 * when there is none. The caller has checked that the cause no longer holds.
 */
export async function releaseQuarantined(substrate: Substrate, id: number, by: string, kind: string, note?: string, resumeAfterMs = RELEASE_RESUME_AFTER_MS): Promise<Released> {
  const found = await requireEntry(substrate, id);
  let { entry } = found;
  if (entry.state === "released") return { entry, offset: entry.releasedOffset ?? 0, already: true };
  if (entry.state === "dropped") throw settled(entry);
  if (entry.state === "releasing" && Date.now() - entry.stateAtMs < resumeAfterMs) throw busy(entry);
  const resuming = entry.state === "releasing";
  const markedAtMs = resuming ? entry.stateAtMs : Date.now();
  entry = await moveOn(substrate, entry, { state: "releasing", by, ...(note !== undefined ? { note } : {}) });
  const stream = factStreamName(entry.stream);
  const marker = `${entry.link}/${entry.peerOffset}`;
  let offset = resuming ? await findReleased(substrate, stream, marker, new Date(markedAtMs - 1_000)) : undefined;
  if (offset === undefined) {
    const h = natsHeaders();
    h.set("Bsfg-Origin", `${entry.peer}/${entry.stream}/${entry.peerOffset}`);
    h.set(RELEASED_FROM_HEADER, marker);
    const ack = await substrate.js.publish(factSubject(entry.stream, kind), found.fact, { headers: h });
    offset = ack.seq;
  }
  entry = await moveOn(substrate, entry, { state: "released", by, releasedOffset: offset, ...(note !== undefined ? { note } : {}) });
  return { entry, offset, already: false };
}

/** Settles an entry without appending its fact; `note` says why (required by the operator verb). */
export async function dropQuarantined(substrate: Substrate, id: number, by: string, note: string): Promise<{ entry: QuarantineEntry; already: boolean }> {
  const { entry } = await requireEntry(substrate, id);
  if (entry.state === "dropped") return { entry, already: true };
  if (entry.state === "released") throw settled(entry);
  // A release in progress may have appended the fact already: it is finished (release), not dropped.
  if (entry.state === "releasing") throw busy(entry);
  return { entry: await moveOn(substrate, entry, { state: "dropped", by, note }), already: false };
}

async function requireEntry(substrate: Substrate, id: number) {
  const found = await getQuarantined(substrate, id);
  if (!found) throw rejection(Code.NotFound, Reason.QuarantineEntryNotFound, `there is no quarantine entry ${id} (bsfg quarantine list shows the entries)`, { id: String(id) });
  return found;
}

async function moveOn(substrate: Substrate, entry: QuarantineEntry, next: Parameters<typeof transition>[2]): Promise<QuarantineEntry> {
  try {
    return await transition(substrate, entry, next);
  } catch (err) {
    if (err instanceof QuarantineEntryMoved) {
      throw rejection(Code.Aborted, Reason.QuarantineEntryBusy, `quarantine entry ${entry.id} changed while this action was in progress (another operator acted): show it again`, { id: String(entry.id) });
    }
    throw err;
  }
}

function settled(entry: QuarantineEntry) {
  return rejection(Code.FailedPrecondition, Reason.QuarantineEntrySettled, `quarantine entry ${entry.id} was ${entry.state} by ${entry.by ?? "an operator"}; it can no longer be ${entry.state === "released" ? "dropped" : "released"}`, {
    id: String(entry.id), state: entry.state,
  });
}

function busy(entry: QuarantineEntry) {
  return rejection(Code.Aborted, Reason.QuarantineEntryBusy, `quarantine entry ${entry.id} is being released by ${entry.by ?? "an operator"} since ${new Date(entry.stateAtMs).toISOString()}; a release that does not finish within ${RELEASE_RESUME_AFTER_MS / 1000} s is resumed by the next one`, {
    id: String(entry.id), state: entry.state,
  });
}

/** The offset of a copy released from `marker` since `since`, if a crashed release appended one. */
async function findReleased(substrate: Substrate, stream: string, marker: string, since: Date): Promise<number | undefined> {
  const reader = await openRange(substrate, stream, { startTime: since });
  try {
    for (;;) {
      const page = await reader.next(1_000);
      for (const m of page.messages) if (m.headers?.get(RELEASED_FROM_HEADER) === marker) return m.seq;
      if (page.complete || page.messages.length === 0) return undefined;
    }
  } finally {
    reader.close();
  }
}
