import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Policy, ZoneConfig } from "@bsfg/config";
import { Code, ConnectError, FactMessageSchema, Reason, reasonOf, rejection, StoredFactBytesSchema, type FactMessage } from "@bsfg/proto";
import { dropQuarantined, releaseQuarantined, requireQuarantined, type QuarantineEntry, type ZoneStore } from "@bsfg/storage";
import type { BsfgMetrics } from "@bsfg/telemetry";
import { admitFact } from "./admission.js";

export interface OperatorActionDeps {
  readonly config: ZoneConfig;
  readonly store: ZoneStore;
  readonly policy: Policy;
  /** Counts each action (quarantine events, link controls). */
  readonly metrics?: BsfgMetrics | undefined;
  readonly log?: ((fields: Record<string, unknown>, message: string) => void) | undefined;
}

export interface ReleaseOutcome {
  readonly entry: QuarantineEntry;
  readonly fact: Uint8Array;
  /** Where the fact now is in this zone's log. */
  readonly offset: number;
  readonly already: boolean;
}

export interface DropOutcome {
  readonly entry: QuarantineEntry;
  readonly already: boolean;
}

/**
 * What an operator can do to the zone, whether from the CLI (the QuarantineService) or the
 * console: release or drop a quarantined fact, pause or resume a peer link. The caller has
 * authorized the operator (`by`); each action is logged, counted and recorded as a fact in
 * the zone's audit stream before it is reported done.
 */
export interface OperatorActions {
  /** Admits a set-aside fact into the log once what set it aside no longer holds (failed_precondition while it does). */
  releaseQuarantined(id: number, by: string, note?: string): Promise<ReleaseOutcome>;
  /** Settles an entry without admitting it; the reason is kept with it. */
  dropQuarantined(id: number, by: string, reason: string): Promise<DropOutcome>;
  /** Holds a link: every sync replica stops pulling it, until resumed (durable, across restarts). */
  pauseLink(link: string, by: string, note?: string): Promise<void>;
  resumeLink(link: string, by: string, note?: string): Promise<void>;
}

export function operatorActions(deps: OperatorActionDeps): OperatorActions {
  const { store, policy, config } = deps;

  /** Refuses the release while what set the fact aside still holds: the same admission a link runs, and the artifact here. */
  async function requireCauseGone(entry: QuarantineEntry, fact: Uint8Array): Promise<string> {
    const holds = (cause: string, message: string): never => {
      throw rejection(Code.FailedPrecondition, Reason.QuarantineCauseHolds, `quarantine entry ${entry.id} cannot be released yet: ${message}`, { id: String(entry.id), cause });
    };
    const link = config.sync.links.find((l) => l.name === entry.link);
    const peerIdentity = link?.peerIdentity ?? config.peers[entry.peer]?.identity;
    if (peerIdentity === undefined) holds("unknown_link", `link ${entry.link} and peer ${entry.peer} are no longer configured here, so no identity relays it`);
    if (!Object.hasOwn(config.storage.streams, entry.stream)) holds(Reason.UnknownStream, `this zone has no stream "${entry.stream}" (storage.streams)`);
    const stored = create(StoredFactBytesSchema, {
      offset: BigInt(entry.peerOffset), message: fact, stream: entry.stream, storedAtUnixMs: BigInt(entry.peerStoredAtMs), messageSha256: Buffer.from(entry.servedDigest, "hex"),
    });
    const verdict = admitFact(stored, { zone: config.zone, peer: entry.peer, peerIdentity: peerIdentity!, policy });
    if (verdict === undefined) holds("own_zone", `it is this zone's own fact (from_zone ${config.zone})`);
    if (verdict instanceof ConnectError) holds(reasonOf(verdict) ?? "unknown", verdict.rawMessage);
    const { artifact, kind } = verdict as Exclude<typeof verdict, ConnectError | undefined>;
    if (artifact) {
      const here = await store.statObject(artifact.bucket, artifact.key);
      if (!here) holds(Reason.ArtifactMissing, `its artifact ${artifact.bucket}/${artifact.key} is not in this zone: put it here (bsfg put, with digest ${artifact.digest}) first`);
      if (here!.digest !== artifact.digest || Number(here!.size) !== artifact.size) holds(Reason.ArtifactDigestMismatch, `its artifact ${artifact.bucket}/${artifact.key} is here with digest ${here!.digest}, the fact references ${artifact.digest}`);
    }
    return kind;
  }

  /**
   * The action as a fact in the zone's audit stream (its default stream when it has none),
   * addressed to the zone itself. Published as it is — the record of an action is the
   * gateway's own, not a producer's claim — under an id that deduplicates a repeated record
   * within the stream's window.
   */
  async function record(subject: string, predicate: string, messageId: string, by: string, object: Record<string, unknown>): Promise<void> {
    const category = Object.hasOwn(config.storage.streams, "audit") ? "audit" : config.storage.defaultStream;
    const fact: FactMessage = create(FactMessageSchema, {
      envelope: { messageId, fromZone: config.zone, toZone: config.zone, producedAtUnixMs: BigInt(Date.now()), labels: { operator: by } },
      fact: { subject, predicate, objectJson: JSON.stringify({ ...object, by }) },
    });
    await store.substrate.js.publish(`facts.${category}.${subject.split(":")[0]}`, toBinary(FactMessageSchema, fact), { msgID: messageId });
  }

  async function recordQuarantineAction(action: "released" | "dropped", entry: QuarantineEntry, by: string, extra: Record<string, unknown>): Promise<void> {
    await record(`quarantine:${entry.id}`, `quarantine_${action}`, `quarantine-${action}-${config.zone}-${entry.id}`, by,
      { entry: entry.id, link: entry.link, peer: entry.peer, stream: entry.stream, peer_offset: entry.peerOffset, message_id: entry.messageId, reason: entry.reason, ...extra });
    deps.metrics?.quarantineEvents.inc({ link: entry.link, action });
    deps.log?.({ event: `quarantine_${action}`, id: entry.id, link: entry.link, message_id: entry.messageId, reason: entry.reason, by, ...extra }, `quarantine entry ${entry.id} ${action} by ${by}`);
  }

  async function control(link: string, paused: boolean, by: string, note: string | undefined): Promise<void> {
    if (!config.sync.links.some((l) => l.name === link)) {
      throw rejection(Code.NotFound, Reason.UnknownLink, `this zone has no peer link "${link}" (sync.links)`, { link });
    }
    const atMs = Date.now();
    const action = paused ? "paused" : "resumed";
    // Recorded first: a control that is set is always in the audit stream (a failed record sets nothing).
    await record(`link:${link}`, `link_${action}`, `link-${action}-${config.zone}-${link}-${atMs}`, by, { link, ...(note !== undefined ? { note } : {}) });
    await store.linkControls.set(link, { paused, by, atMs, ...(note !== undefined ? { note } : {}) });
    deps.metrics?.linkControls.inc({ link, action });
    deps.log?.({ event: `link_${action}`, link, by, ...(note !== undefined ? { note } : {}) }, `link ${link} ${action} by ${by}`);
  }

  return {
    async releaseQuarantined(id, by, note) {
      const { entry, fact } = await requireQuarantined(store.substrate, id);
      // The cause is checked when a release starts; resuming one that crashed carries out what was decided.
      const kind = entry.state === "parked" ? await requireCauseGone(entry, fact) : kindOf(fact);
      const released = await releaseQuarantined(store.substrate, entry.id, by, kind, {
        ...(note !== undefined ? { note } : {}),
        // Recorded before the entry is settled: a failed record leaves the release to be finished by the next call.
        beforeSettle: (settling, offset) => recordQuarantineAction("released", settling, by, { offset, ...(note !== undefined ? { note } : {}) }),
      });
      return { entry: released.entry, fact, offset: released.offset, already: released.already };
    },
    async dropQuarantined(id, by, reason) {
      if (reason.trim() === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "a drop needs a reason (--reason): it is recorded with the entry and in the audit stream", { field: "reason" });
      const dropped = await dropQuarantined(store.substrate, id, by, {
        note: reason,
        beforeSettle: (settling) => recordQuarantineAction("dropped", settling, by, { note: reason }),
      });
      return { entry: dropped.entry, already: dropped.already };
    },
    pauseLink: (link, by, note) => control(link, true, by, note),
    resumeLink: (link, by, note) => control(link, false, by, note),
  };
}

function kindOf(fact: Uint8Array): string {
  try {
    return fromBinary(FactMessageSchema, fact).fact?.subject.split(":")[0] ?? "";
  } catch {
    return "";
  }
}
