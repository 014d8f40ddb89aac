import type { ServiceImpl } from "@connectrpc/connect";
import { Code, Reason, rejection, type BoundaryService, type PutObjectRequest } from "@bsfg/proto";
import { authorize, peerOf } from "@bsfg/service-kit";
import { traceContextOf, withSpan } from "@bsfg/telemetry";
import type { BoundaryDeps } from "./deps.js";

/** AppendFact and PutObject: writes into the local zone. */
export function ingestHandlers({ store, policy, config, notDurable }: BoundaryDeps): Pick<ServiceImpl<typeof BoundaryService>, "appendFact" | "putObject"> {
  // An acknowledgement promises the write is on disk; refuse rather than promise what the servers do not keep.
  const refuseUnlessDurable = () => {
    const problem = notDurable?.();
    if (problem !== undefined) throw rejection(Code.Unavailable, Reason.NotDurable, `this zone cannot promise durable writes: ${problem}`);
  };
  return {
    async appendFact(req, ctx) {
      const peer = peerOf(ctx);
      refuseUnlessDurable();
      req.messages.forEach((message, index) => {
        const envelope = message.envelope;
        // Missing zones are the validator's to report (invalid_argument), not the policy's.
        if (!envelope || envelope.fromZone === "" || envelope.toZone === "") return;
        authorize(policy.mayAppend(peer.names, envelope.fromZone, envelope.toZone), { index: String(index), message_id: envelope.messageId });
      });
      // The facts keep the context of the write that stored them: a zone relaying them later continues this trace.
      const results = await withSpan("jetstream append", { "bsfg.zone": config.zone, "bsfg.facts": req.messages.length }, () => {
        const traceContext = traceContextOf();
        return store.append(req.messages, traceContext ? { traceContext: () => traceContext } : {});
      });
      return { results };
    },

    async putObject(requests, ctx) {
      const peer = peerOf(ctx);
      const parts = requests[Symbol.asyncIterator]();
      const first = await parts.next();
      if (first.done || first.value.part.case !== "header") {
        throw rejection(Code.InvalidArgument, Reason.MissingField, "the first PutObject message must be an ObjectHeader");
      }
      const header = first.value.part.value;
      authorize(policy.mayWriteBucket(peer.names, header.bucket), { bucket: header.bucket, key: header.key });
      refuseUnlessDurable();
      return {
        object: await store.putObject({
          bucket: header.bucket,
          key: header.key,
          mediaType: header.mediaType,
          fileName: header.fileName,
          expectedDigest: header.expectedDigest,
          size: header.size === undefined ? undefined : Number(header.size),
        }, chunksOf(parts)),
      };
    },
  };
}

async function* chunksOf(parts: AsyncIterator<PutObjectRequest>): AsyncGenerator<Uint8Array> {
  for (;;) {
    const next = await parts.next();
    if (next.done) return;
    if (next.value.part.case !== "chunk") throw rejection(Code.InvalidArgument, Reason.InvalidField, "after the ObjectHeader, every PutObject message must be a chunk");
    yield next.value.part.value;
  }
}
