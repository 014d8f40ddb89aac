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
  /** The fact was in the log already (a link shipped it after all, or a crashed release appended it): not appended again. */
  readonly found: boolean;
}

export interface ActionOptions {
  /** Why (a release's note; a drop's reason, required by the operator verb). */
  readonly note?: string;
  /**
   * Runs after the fact is in the log (release) or before the entry is settled (drop), and
   * before the entry's settling record: the audit record of the action. If it fails, the
   * entry is not settled, and the next call does it again.
   */
  readonly beforeSettle?: (entry: QuarantineEntry, offset: number | undefined) => Promise<void>;
  /** A release not finished after this long crashed (default RELEASE_RESUME_AFTER_MS). */
  readonly resumeAfterMs?: number;
}

/**
 * Appends a quarantined fact to the log of its stream category, once. The entry
 * is marked "releasing" first (conditionally: two operators cannot both), then the
 * fact's subject is scanned from the moment it was set aside for a copy with its
 * origin position (Bsfg-Origin): one a crashed release appended, or one a link
 * shipped after all (a replica with another policy relayed the page again). Only
 * without one is the fact appended. The caller has checked that the cause no
 * longer holds (not again when resuming: that was decided).
 */
export async function releaseQuarantined(substrate: Substrate, id: number, by: string, kind: string, options: ActionOptions = {}): Promise<Released> {
  const found = await requireQuarantined(substrate, id);
  let { entry } = found;
  if (entry.state === "released") return { entry, offset: entry.releasedOffset ?? 0, already: true, found: false };
  if (entry.state === "dropped") throw settled(entry);
  // stateAtMs is the server's clock; a resume waits long enough that host clock skew does not matter.
  if (entry.state === "releasing" && Date.now() - entry.stateAtMs < (options.resumeAfterMs ?? RELEASE_RESUME_AFTER_MS)) throw busy(entry);
  const note = options.note;
  entry = await moveOn(substrate, entry, { state: "releasing", by, ...(note !== undefined ? { note } : {}) });
  const origin = `${entry.peer}/${entry.stream}/${entry.peerOffset}`;
  const subject = factSubject(entry.stream, kind);
  let offset = await findOrigin(substrate, factStreamName(entry.stream), subject, origin, new Date(entry.quarantinedAtMs - 1_000));
  const already = offset !== undefined;
  if (offset === undefined) {
    const h = natsHeaders();
    h.set("Bsfg-Origin", origin);
    h.set(RELEASED_FROM_HEADER, String(entry.id));
    // Within the stream's duplicate window, a second resume racing this one is deduplicated too.
    const ack = await substrate.js.publish(subject, found.fact, { headers: h, msgID: `bsfg-release/${entry.link}/${entry.peerOffset}` });
    offset = ack.seq;
  }
  await options.beforeSettle?.(entry, offset);
  entry = await moveOn(substrate, entry, { state: "released", by, releasedOffset: offset, ...(note !== undefined ? { note } : {}) });
  return { entry, offset, already: false, found: already };
}

/** Settles an entry without appending its fact. */
export async function dropQuarantined(substrate: Substrate, id: number, by: string, options: ActionOptions & { readonly note: string }): Promise<{ entry: QuarantineEntry; already: boolean }> {
  const { entry } = await requireQuarantined(substrate, id);
  if (entry.state === "dropped") return { entry, already: true };
  if (entry.state === "released") throw settled(entry);
  // A release in progress may have appended the fact already: it is finished (release), not dropped.
  if (entry.state === "releasing") throw busy(entry);
  await options.beforeSettle?.(entry, undefined);
  return { entry: await moveOn(substrate, entry, { state: "dropped", by, note: options.note }), already: false };
}

/** An entry and its fact's bytes, or not_found / quarantine_entry_not_found. */
export async function requireQuarantined(substrate: Substrate, id: number): Promise<{ entry: QuarantineEntry; fact: Uint8Array }> {
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

/** The offset of a fact with origin position `origin` on `subject` since `since`, if there is one. */
async function findOrigin(substrate: Substrate, stream: string, subject: string, origin: string, since: Date): Promise<number | undefined> {
  const reader = await openRange(substrate, stream, { filter: subject, startTime: since });
  try {
    for (;;) {
      const page = await reader.next(1_000);
      for (const m of page.messages) if (m.headers?.get("Bsfg-Origin") === origin) return m.seq;
      if (page.complete || page.messages.length === 0) return undefined;
    }
  } finally {
    reader.close();
  }
}
