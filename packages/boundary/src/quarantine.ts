import { create, fromBinary } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { QuarantineVerb } from "@bsfg/config";
import { FactMessageSchema, QuarantinedFactSchema, type FactMessage, type QuarantinedFact, type QuarantineService } from "@bsfg/proto";
import { operatorActions } from "@bsfg/replication";
import { authorize, peerOf } from "@bsfg/service-kit";
import { historyOf, requireQuarantined, listQuarantine, messageDigest, type QuarantineEntry, type QuarantineRecord } from "@bsfg/storage";
import type { BoundaryDeps } from "./deps.js";

/**
 * The quarantine's operator verbs. Every action is authorized per verb by the
 * zone's policy, then carried out by the same operator actions the console uses:
 * logged, counted, and recorded as a fact in the zone's audit stream (see
 * docs/operations.md, "Quarantine").
 */
export function quarantineHandlers(deps: BoundaryDeps): ServiceImpl<typeof QuarantineService> {
  const { store, policy } = deps;
  const may = (ctx: HandlerContext, verb: QuarantineVerb, id?: bigint) =>
    authorize(policy.mayOperateQuarantine(peerOf(ctx).names, verb), id === undefined ? {} : { id: String(id) });

  const found = (id: bigint) => requireQuarantined(store.substrate, Number(id));
  const actions = operatorActions(deps);

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
      const released = await actions.releaseQuarantined(Number(req.id), by, req.note || undefined);
      return { fact: describe(released.entry, released.fact), offset: BigInt(released.offset), stream: released.entry.stream, alreadyReleased: released.already };
    },

    async dropQuarantined(req, ctx) {
      const by = may(ctx, "drop", req.id);
      const dropped = await actions.dropQuarantined(Number(req.id), by, req.reason);
      return { fact: describe(dropped.entry), alreadyDropped: dropped.already };
    },
  };
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

