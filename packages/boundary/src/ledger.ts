import type { ServiceImpl } from "@connectrpc/connect";
import { Code, Reason, rejection, type BoundaryService } from "@bsfg/proto";
import { authorize, peerOf } from "@bsfg/service-kit";
import type { BoundaryDeps } from "./deps.js";

/** ConfirmReceipt: moves a consumer's cursor forward, never back. */
export function ledgerHandlers({ store, policy }: BoundaryDeps): Pick<ServiceImpl<typeof BoundaryService>, "confirmReceipt"> {
  return {
    async confirmReceipt(req, ctx) {
      if (req.consumerName === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "consumer_name is required", { field: "consumer_name" });
      // Policy first: a caller not bound to the name learns nothing about whether it exists.
      authorize(policy.mayUseConsumer(peerOf(ctx).names, req.consumerName), { consumer: req.consumerName });
      const consumer = await store.consumer(req.consumerName);
      return { cursorAdvancedTo: BigInt(await store.confirm(consumer.name, Number(req.offset))) };
    },
  };
}
