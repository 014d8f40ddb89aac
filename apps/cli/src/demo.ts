// bsfg demo: a producer in the plant zone, and the same facts arriving in the enterprise zone.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createBsfgClient, type BsfgClient, type FactMessageInit } from "@bsfg/client";
import { AppendStatus, type StoredFact } from "@bsfg/proto";
import { textPdf } from "./pdf.js";

export interface DemoOptions {
  readonly pki: string;
  /** The plant zone's all-in-one or ingest endpoint. */
  readonly plantUrl: string;
  /** The enterprise zone's all-in-one or egress endpoint … */
  readonly enterpriseUrl: string;
  /** … and its ledger endpoint, when split (default: enterpriseUrl). */
  readonly enterpriseLedgerUrl?: string;
  readonly producer: string;
  readonly viewer: string;
  /** The viewer's consumers in the enterprise zone, one per fact stream. */
  readonly consumers: readonly string[];
  readonly fromZone: string;
  readonly toZone: string;
  /** Sync worker status pages (GET …/links) to show at the end. */
  readonly links: readonly string[];
  readonly timeoutMs: number;
}

const bucket = "document-files";

function tlsOf(pki: string, identity: string) {
  return { ca: readFileSync(join(pki, "ca.crt")), cert: readFileSync(join(pki, `${identity}.crt`)), key: readFileSync(join(pki, `${identity}.key`)) };
}

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Appends a small batch story in the plant zone (one fact with a PDF artifact) and waits for it in the enterprise zone. */
export async function runDemo(opts: DemoOptions): Promise<boolean> {
  const plant = createBsfgClient({ url: opts.plantUrl, tls: tlsOf(opts.pki, opts.producer) });
  const enterprise = createBsfgClient({
    urls: { egress: opts.enterpriseUrl, ledger: opts.enterpriseLedgerUrl ?? opts.enterpriseUrl },
    tls: tlsOf(opts.pki, opts.viewer),
  });
  try {
    const batch = `B${String(Date.now()).slice(-6)}`;
    const scope = "PlantA";
    const at = (predicate: string) => `${opts.fromZone}/${batch}/${predicate}`;

    // 1. The artifact first: the fact that references it is appended only once it is stored.
    const pdf = textPdf(`Batch record ${scope}/${batch}`, [
      `Zone: ${opts.fromZone}   Line: L2   Product: amoxicillin-500`,
      "Step sterile_filter: ok",
      `Released by QA at ${new Date().toISOString()}`,
    ]);
    const digest = sha256(pdf);
    const key = `${scope}/${batch}/batch-record.pdf`;
    const stored = await plant.putObject({ bucket, key, mediaType: "application/pdf", fileName: "batch-record.pdf", expectedDigest: digest, size: BigInt(pdf.length) }, pdf);
    console.log(`${opts.fromZone}: stored artifact ${stored.bucket}/${stored.key}  ${stored.digest}  ${stored.size} bytes (as ${opts.producer})`);

    // 2. The facts, in one AppendFact batch; message ids follow from the business event.
    const envelope = (predicate: string, mediaType = "") => ({
      messageId: at(predicate), fromZone: opts.fromZone, toZone: opts.toZone, producedAtUnixMs: BigInt(Date.now()), objectMediaType: mediaType,
    });
    const messages: FactMessageInit[] = [
      { envelope: envelope("batch_started"), fact: { subject: `batch:${scope}/${batch}`, predicate: "batch_started", objectJson: JSON.stringify({ product: "amoxicillin-500", line: "L2" }) } },
      { envelope: envelope("step_completed"), fact: { subject: `batch:${scope}/${batch}`, predicate: "step_completed", objectJson: JSON.stringify({ result: "ok", step: "sterile_filter" }) } },
      {
        envelope: envelope("record_issued", "application/pdf"),
        fact: {
          subject: `document:${scope}/${batch}-record`,
          predicate: "record_issued",
          objectJson: JSON.stringify({ bucket, key, digest, size: pdf.length, media_type: "application/pdf", file_name: "batch-record.pdf" }),
        },
      },
      { envelope: envelope("batch_released"), fact: { subject: `batch:${scope}/${batch}`, predicate: "batch_released", objectJson: JSON.stringify({ by: "qa", record: `document:${scope}/${batch}-record` }) } },
    ];
    const appendedAt = Date.now();
    const results = await plant.appendFacts(messages);
    for (const [i, r] of results.entries()) {
      const fact = messages[i]!.fact!;
      console.log(`${opts.fromZone}: offset ${String(r.offset).padStart(5)}  ${r.stream.padEnd(11)}  ${r.messageId.padEnd(34)}  ${fact.subject} · ${fact.predicate}  ${AppendStatus[r.status]!.toLowerCase()}`);
    }
    if (results.some((r) => r.status === AppendStatus.CONFLICTING_DUPLICATE)) throw new Error("a demo message id was stored before with another payload");

    // 3. Watch them arrive in the enterprise zone through the viewer's own consumers.
    console.log(`\nwaiting for them in ${opts.toZone} (as ${opts.viewer}, consumers ${opts.consumers.join(", ")}) …`);
    const pending = new Set(messages.map((m) => m.envelope!.messageId!));
    const deadline = appendedAt + opts.timeoutMs;
    const done = new AbortController();
    const problems: string[] = [];
    const arrived = async (fact: StoredFact) => {
      const m = fact.message!;
      console.log(`${opts.toZone}: offset ${String(fact.offset).padStart(5)}  ${fact.stream.padEnd(11)}  ${m.envelope!.messageId.padEnd(34)}  ${m.fact!.subject} · ${m.fact!.predicate}  +${seconds(Date.now() - appendedAt)}`);
      if (m.envelope!.objectMediaType) problems.push(...await checkArtifact(enterprise, opts.toZone, JSON.parse(m.fact!.objectJson) as ArtifactJson));
    };
    const watch = async (consumer: string) => {
      while (pending.size > 0 && Date.now() < deadline && !done.signal.aborted) {
        const page = await enterprise.fetchFacts(consumer, { limit: 1_000, maxWaitMs: 1_000, signal: done.signal }).catch((err: unknown) => {
          if (done.signal.aborted) return undefined;
          throw err;
        });
        if (!page) return;
        for (const fact of page.facts) {
          const id = fact.message?.envelope?.messageId ?? "";
          if (pending.delete(id)) await arrived(fact);
        }
        // The viewer's cursor is the demo's bookmark: what it has seen is not shown again.
        if (page.lastOffset > page.cursor) await enterprise.confirmReceipt(consumer, page.lastOffset);
      }
      done.abort();
    };
    await Promise.all(opts.consumers.map(watch));

    for (const url of opts.links) await showLinks(url);
    if (pending.size > 0) {
      console.error(`\nnot in ${opts.toZone} after ${seconds(opts.timeoutMs)}: ${[...pending].join(", ")} — see the links above and the zones' logs`);
      return false;
    }
    if (problems.length > 0) {
      console.error(`\n${problems.join("\n")}`);
      return false;
    }
    console.log(`\nall ${messages.length} facts and the artifact arrived in ${opts.toZone} in ${seconds(Date.now() - appendedAt)}`);
    // Each sync worker's probe port serves its zone's console next to /links.
    const consoles = opts.links.map((url) => url.replace(/\/links$/, "/console"));
    if (consoles.length > 0) console.log(`watch the links live in each zone's console: ${consoles.join("  ")}`);
    return true;
  } finally {
    plant.close();
    enterprise.close();
  }
}

interface ArtifactJson { bucket: string; key: string; digest: string; size: number; media_type: string }

/** The artifact as the enterprise zone holds it: StatObject, then the bytes hashed here. */
async function checkArtifact(client: BsfgClient, zone: string, ref: ArtifactJson): Promise<string[]> {
  const stat = await client.statObject(ref.bucket, ref.key);
  const hash = createHash("sha256");
  let bytes = 0;
  await client.fetchObject(ref.bucket, ref.key, new Writable({
    write(chunk: Buffer, _encoding, next) {
      hash.update(chunk);
      bytes += chunk.length;
      next();
    },
  }));
  const local = `sha256:${hash.digest("hex")}`;
  const ok = stat.digest === ref.digest && Number(stat.size) === ref.size && local === ref.digest && bytes === ref.size;
  console.log(`${" ".repeat(zone.length + 2)}artifact ${stat.bucket}/${stat.key}  ${stat.mediaType}  ${stat.size} bytes`);
  console.log(`${" ".repeat(zone.length + 2)}  StatObject digest ${stat.digest}`);
  console.log(`${" ".repeat(zone.length + 2)}  fetched, hashed   ${local}  ${ok ? "= the fact's digest ✓" : "≠ the fact's digest ✗"}`);
  return ok ? [] : [`artifact ${ref.bucket}/${ref.key} in ${zone} does not match the fact: fact ${ref.digest}/${ref.size}, stat ${stat.digest}/${stat.size}, fetched ${local}/${bytes}`];
}

interface LinkView { link: string; state: string; cursor: number; highWater: number; lagFacts: number; lagSeconds: number; appended: number; artifactsCopied: number; lastError?: { code: string; message: string } }

async function showLinks(url: string): Promise<void> {
  try {
    const body = (await (await fetch(url)).json()) as { zone: string; links: LinkView[] };
    console.log(`\nsync worker of ${body.zone} (${url}):`);
    for (const l of body.links) {
      console.log(`  ${l.link.padEnd(42)} ${l.state.padEnd(11)} peer cursor ${String(l.cursor).padStart(5)} / high water ${String(l.highWater).padStart(5)}  lag ${l.lagFacts} facts ${l.lagSeconds.toFixed(1)} s  appended ${l.appended}  artifacts ${l.artifactsCopied}${l.lastError && l.state !== "active" ? `  last error: ${l.lastError.code} ${l.lastError.message}` : ""}`);
    }
  } catch (err) {
    console.log(`\n(could not read ${url}: ${(err as Error).message})`);
  }
}
