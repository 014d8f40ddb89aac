import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { ServiceImpl } from "@connectrpc/connect";
import { Code, FetchFactsResponseSchema, Reason, rejection, type BoundaryService, type FetchFactsResponse, type PeerService } from "@bsfg/proto";
import type { FactPage } from "@bsfg/storage";
import { authorize, peerOf } from "@bsfg/service-kit";
import { tracingActive } from "@bsfg/telemetry";
import type { BoundaryDeps } from "./deps.js";

const DEFAULT_LIMIT = 100;

/** FetchFacts: the page right after a consumer's confirmed cursor, with a bounded long poll. */
export function egressHandlers({ store, policy, config, watch }: BoundaryDeps): Pick<ServiceImpl<typeof BoundaryService>, "fetchFacts"> {
  return {
    async fetchFacts(req, ctx) {
      if (req.consumerName === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "consumer_name is required", { field: "consumer_name" });
      // Policy first: a caller not bound to the name learns nothing about whether it exists.
      authorize(policy.mayUseConsumer(peerOf(ctx).names, req.consumerName), { consumer: req.consumerName });
      const consumer = await store.consumer(req.consumerName);
      // Binary codecs get the stored bytes as they are; JSON needs decoded messages.
      const json = (ctx.requestHeader.get("content-type") ?? "").includes("json");
      const limits = {
        limit: Math.min(req.limit || DEFAULT_LIMIT, config.fetch.maxLimit),
        maxBytes: config.fetch.maxBytes,
        messages: json ? "decoded" as const : "encoded" as const,
        // Stored trace contexts travel only in traced calls: reading them parses every fact's headers.
        traceContext: tracingActive(),
      };
      const deadline = Date.now() + Math.min(req.maxWaitMs, config.fetch.maxWait);
      for (;;) {
        const page = await store.readNext(consumer.name, limits, req.afterOffset === undefined ? undefined : Number(req.afterOffset));
        const startedAfter = Math.max(page.cursor, req.afterOffset === undefined ? 0 : Number(req.afterOffset));
        // Facts, or only skipped ones (last_offset moved): answer now so they can be confirmed.
        if (page.count > 0 || page.lastOffset > startedAfter || Date.now() >= deadline) return response(page);
        if (!await watch.waitBeyond(consumer.stream, page.highWater, deadline, ctx.signal)) return response(page);
      }
    },
  };
}

function response(page: FactPage & { cursor: number }): FetchFactsResponse {
  const message = create(FetchFactsResponseSchema, { facts: page.facts, cursor: BigInt(page.cursor), lastOffset: BigInt(page.lastOffset), highWater: BigInt(page.highWater) });
  // Encoded facts are written as they are: field 1, after the fields above (a decoder accepts any order).
  if (page.encodedFacts.length > 0) message.$unknown = page.encodedFacts.map((data) => ({ no: 1, wireType: WireType.LengthDelimited, data }));
  return message;
}

/** FetchObject and StatObject: peer-only artifact reads, by per-identity bucket policy. */
export function peerHandlers({ store, policy }: BoundaryDeps): ServiceImpl<typeof PeerService> {
  return {
    async *fetchObject(req, ctx) {
      authorize(policy.mayReadBucket(peerOf(ctx).names, req.bucket), { bucket: req.bucket, key: req.key });
      const reader = await store.getObject(req.bucket, req.key, req.offset === undefined ? 0 : Number(req.offset));
      yield { part: { case: "object", value: reader.object } };
      for await (const chunk of reader.chunks) yield { part: { case: "chunk", value: chunk } };
    },
    async statObject(req, ctx) {
      authorize(policy.mayReadBucket(peerOf(ctx).names, req.bucket), { bucket: req.bucket, key: req.key });
      const object = await store.statObject(req.bucket, req.key);
      if (!object) throw rejection(Code.NotFound, Reason.ObjectNotFound, `object ${req.bucket}/${req.key} does not exist`, { bucket: req.bucket, key: req.key });
      return { object };
    },
  };
}
