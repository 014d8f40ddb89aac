import { createHash } from "node:crypto";
import type { BsfgClient, FactMessageInit } from "@bsfg/client";
import { AppendStatus, reasonOf } from "@bsfg/proto";
import type { Random } from "./random.js";

/**
 * A producer that keeps appending numbered facts from one zone to another,
 * retrying each batch until it is acknowledged — through killed services,
 * restarted servers and a full store — and remembers what was acknowledged.
 * Every `artifactEvery`-th batch also stores an artifact (PutObject first) and
 * appends a document fact referencing it.
 */
export interface Producer {
  readonly from: string;
  readonly to: string;
  /** message_ids acknowledged (APPENDED or DUPLICATE), in order. */
  readonly acknowledged: string[];
  /** Failed attempts by Connect code and reason, e.g. "resource_exhausted/store_full". */
  readonly refusals: Map<string, number>;
  readonly artifacts: number;
  /** Runs until at least `facts` facts are acknowledged and `keepGoing()` says stop. */
  run(): Promise<void>;
}

export interface ProducerOptions {
  readonly client: BsfgClient;
  readonly from: string;
  readonly to: string;
  readonly prefix: string;
  /** At least this many facts; then more while `keepGoing()` (faults still need facts moving). */
  readonly facts: number;
  readonly keepGoing: () => boolean;
  /** The pace: facts stay moving through the whole schedule without a backlog that only grows. */
  readonly factsPerSecond: number;
  readonly batch: number;
  readonly subjects: number;
  readonly artifactEvery: number;
  readonly random: Random;
  readonly signal: AbortSignal;
}

export function producer(opts: ProducerOptions): Producer {
  const acknowledged: string[] = [];
  const refusals = new Map<string, number>();
  let artifacts = 0;
  const place = opts.from === "plant-a" ? "PlantA" : "Enterprise";

  /** Until it succeeds: every failure here is one of the campaign's faults. */
  async function untilAcknowledged<T>(attempt: () => Promise<T>): Promise<T> {
    for (let wait = 50; ; wait = Math.min(wait * 2, 1_000)) {
      if (opts.signal.aborted) throw new Error("campaign stopped");
      try {
        return await attempt();
      } catch (err) {
        const code = (err as { code?: number }).code;
        const key = `${code ?? "?"}/${reasonOf(err) ?? (err as Error).message.slice(0, 40)}`;
        refusals.set(key, (refusals.get(key) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, wait * (0.5 + opts.random.next() / 2)));
      }
    }
  }

  async function run(): Promise<void> {
    let n = 0;
    const started = performance.now();
    for (let batchNo = 0; n < opts.facts || opts.keepGoing(); batchNo++) {
      const messages: FactMessageInit[] = [];
      const size = opts.batch;
      for (let i = 0; i < size; i++, n++) {
        messages.push({
          envelope: { messageId: `${opts.prefix}-${n}`, fromZone: opts.from, toZone: opts.to, producedAtUnixMs: BigInt(Date.now()) },
          fact: { subject: `batch:${place}/C${n % opts.subjects}`, predicate: "step_completed", objectJson: JSON.stringify({ n, pad: "x".repeat(120) }) },
        });
      }
      if (batchNo % opts.artifactEvery === opts.artifactEvery - 1) {
        const content = Buffer.from(`${opts.prefix} report ${batchNo} `.repeat(200 + Math.floor(opts.random.next() * 2_000)));
        const key = `${opts.prefix}/R${batchNo}.txt`;
        const object = await untilAcknowledged(() => opts.client.putObject({ bucket: "document-files", key, mediaType: "text/plain" }, content));
        const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
        if (object.digest !== digest) throw new Error(`PutObject answered digest ${object.digest}, expected ${digest}`);
        messages.push({
          envelope: { messageId: `${opts.prefix}-doc-${batchNo}`, fromZone: opts.from, toZone: opts.to, producedAtUnixMs: BigInt(Date.now()), objectMediaType: "text/plain" },
          fact: { subject: `document:${place}/R${batchNo}`, predicate: "report_released", objectJson: JSON.stringify({ bucket: "document-files", key, digest, size: content.byteLength, media_type: "text/plain" }) },
        });
        artifacts++;
      }
      const due = started + (n / opts.factsPerSecond) * 1000;
      if (due > performance.now()) await new Promise((resolve) => setTimeout(resolve, due - performance.now()));
      const results = await untilAcknowledged(() => opts.client.appendFacts(messages));
      for (const [i, result] of results.entries()) {
        if (result.status !== AppendStatus.APPENDED && result.status !== AppendStatus.DUPLICATE) {
          throw new Error(`message ${messages[i]!.envelope!.messageId} answered ${AppendStatus[result.status]}: a retry of the same batch must never conflict`);
        }
        acknowledged.push(messages[i]!.envelope!.messageId!);
      }
    }
  }

  return {
    from: opts.from,
    to: opts.to,
    acknowledged,
    refusals,
    get artifacts() {
      return artifacts;
    },
    run,
  };
}
