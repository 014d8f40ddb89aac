import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { QuarantineVerb } from "@bsfg/config";
import {
  Code, ConnectError, FactMessageSchema, QuarantinedFactSchema, Reason, reasonOf, rejection, StoredFactBytesSchema,
  type FactMessage, type QuarantinedFact, type QuarantineService,
} from "@bsfg/proto";
import { admitFact } from "@bsfg/replication";
import { authorize, peerOf } from "@bsfg/service-kit";
import {
  dropQuarantined, historyOf, requireQuarantined, listQuarantine, messageDigest, releaseQuarantined,
  type QuarantineEntry, type QuarantineRecord,
} from "@bsfg/storage";
import type { BoundaryDeps } from "./deps.js";

/**
 * The quarantine's operator verbs. Every action is authorized per verb by the
 * zone's policy, logged, counted, and recorded as a fact in the zone's audit
 * stream (see docs/operations.md, "Quarantine").
 */
export function quarantineHandlers(deps: BoundaryDeps): ServiceImpl<typeof QuarantineService> {
  const { store, policy, config } = deps;
  const may = (ctx: HandlerContext, verb: QuarantineVerb, id?: bigint) =>
    authorize(policy.mayOperateQuarantine(peerOf(ctx).names, verb), id === undefined ? {} : { id: String(id) });

  const found = (id: bigint) => requireQuarantined(store.substrate, Number(id));

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

  /** The action as a fact in the zone's audit stream (its default stream when it has none), addressed to the zone itself. */
  async function recordAction(action: "released" | "dropped", entry: QuarantineEntry, by: string, extra: Record<string, unknown>): Promise<void> {
    const category = Object.hasOwn(config.storage.streams, "audit") ? "audit" : config.storage.defaultStream;
    const messageId = `quarantine-${action}-${config.zone}-${entry.id}`;
    const fact: FactMessage = create(FactMessageSchema, {
      envelope: { messageId, fromZone: config.zone, toZone: config.zone, producedAtUnixMs: BigInt(Date.now()), labels: { operator: by } },
      fact: {
        subject: `quarantine:${entry.id}`,
        predicate: `quarantine_${action}`,
        objectJson: JSON.stringify({ entry: entry.id, link: entry.link, peer: entry.peer, stream: entry.stream, peer_offset: entry.peerOffset, message_id: entry.messageId, reason: entry.reason, by, ...extra }),
      },
    });
    // Published as it is (the id deduplicates a repeated action within the stream's window): the
    // record of an action is the gateway's own, not a producer's claim.
    await store.substrate.js.publish(`facts.${category}.quarantine`, toBinary(FactMessageSchema, fact), { msgID: messageId });
    deps.metrics?.quarantineEvents.inc({ link: entry.link, action });
    deps.log?.({ event: `quarantine_${action}`, id: entry.id, link: entry.link, message_id: entry.messageId, reason: entry.reason, by, ...extra }, `quarantine entry ${entry.id} ${action} by ${by}`);
  }

  return {
    async listQuarantined(req, ctx) {
      may(ctx, "read");
      const entries = await listQuarantine(store.substrate, { settled: req.includeSettled });
      return { facts: entries.map((entry) => describe(entry)) };
    },

    async getQuarantined(req, ctx) {
      may(ctx, "read", req.id);
      const { entry, fact } = await found(req.id);
      return { fact: describe(entry, fact, await historyOf(store.substrate, entry)) };
    },

    async releaseQuarantined(req, ctx) {
      const by = may(ctx, "release", req.id);
      const { entry, fact } = await found(req.id);
      // The cause is checked when a release starts; resuming one that crashed carries out what was decided.
      const kind = entry.state === "parked" ? await requireCauseGone(entry, fact) : kindOf(fact);
      const note = req.note || undefined;
      const released = await releaseQuarantined(store.substrate, entry.id, by, kind, {
        ...(note !== undefined ? { note } : {}),
        // Recorded before the entry is settled: a failed record leaves the release to be finished by the next call.
        beforeSettle: (settling, offset) => recordAction("released", settling, by, { offset, ...(note !== undefined ? { note } : {}) }),
      });
      return { fact: describe(released.entry, fact), offset: BigInt(released.offset), stream: released.entry.stream, alreadyReleased: released.already };
    },

    async dropQuarantined(req, ctx) {
      const by = may(ctx, "drop", req.id);
      if (req.reason.trim() === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "a drop needs a reason (--reason): it is recorded with the entry and in the audit stream", { field: "reason" });
      const dropped = await dropQuarantined(store.substrate, Number(req.id), by, {
        note: req.reason,
        beforeSettle: (settling) => recordAction("dropped", settling, by, { note: req.reason }),
      });
      return { fact: describe(dropped.entry), alreadyDropped: dropped.already };
    },
  };
}

function kindOf(fact: Uint8Array): string {
  try {
    return fromBinary(FactMessageSchema, fact).fact?.subject.split(":")[0] ?? "";
  } catch {
    return "";
  }
}

function describe(entry: QuarantineEntry, fact?: Uint8Array, history?: readonly QuarantineRecord[]): QuarantinedFact {
  let decoded: FactMessage | undefined;
  if (fact) {
    try {
      decoded = fromBinary(FactMessageSchema, fact);
    } catch {
      decoded = undefined;
    }
  }
  return create(QuarantinedFactSchema, {
    id: BigInt(entry.id),
    state: entry.state,
    link: entry.link,
    peer: entry.peer,
    stream: entry.stream,
    peerOffset: BigInt(entry.peerOffset),
    messageId: entry.messageId,
    reason: entry.reason,
    detail: entry.detail,
    quarantinedAtUnixMs: BigInt(entry.quarantinedAtMs),
    peerStoredAtUnixMs: BigInt(entry.peerStoredAtMs),
    servedSha256: Buffer.from(entry.servedDigest, "hex"),
    stateAtUnixMs: BigInt(entry.stateAtMs),
    ...(entry.releasedOffset !== undefined ? { releasedOffset: BigInt(entry.releasedOffset) } : {}),
    ...(fact ? { message: fact, messageSha256: messageDigest(fact) } : {}),
    ...(decoded ? { fact: decoded } : {}),
    history: (history ?? []).map((record) => ({
      state: record.state, atUnixMs: BigInt(record.atMs), by: record.by ?? "", note: record.note ?? "",
      ...(record.releasedOffset !== undefined ? { releasedOffset: BigInt(record.releasedOffset) } : {}),
    })),
  });
}

