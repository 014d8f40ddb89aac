import { create } from "@bufbuild/protobuf";
import { FactMessageSchema, type FactMessage } from "@bsfg/proto";

/** A fact whose stored protobuf encoding is `bytes` long (±2), like a small MES event. */
export function sizedFact(run: string, n: number, bytes: number): FactMessage {
  const message = create(FactMessageSchema, {
    envelope: { messageId: `${run}-${n}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
    fact: { subject: `batch:PlantA/B${n % 1000}`, predicate: "step_completed", objectJson: "" },
  });
  const base = JSON.stringify({ n, pad: "" });
  const overhead = 80 + message.envelope!.messageId.length + message.fact!.subject.length + base.length;
  message.fact!.objectJson = JSON.stringify({ n, pad: "x".repeat(Math.max(0, bytes - overhead)) });
  return message;
}

/** Runs `task` for indices 0..count-1 with at most `inFlight` running at once. */
export async function pipelined(count: number, inFlight: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
}
