import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, type TestEstate } from "@bsfg/estate-kit";
import { Code, ConnectError, errorInfoOf } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, logOf, produce, readAll, withPrefix } from "./estate-support.js";

describe("replication through the three-zone estate (PlantA → IDMZ → Enterprise)", () => {
  let dir: string;
  let estate: TestEstate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-"));
    estate = await startTestEstate({ dir });
  });
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("carries 10,000 facts and 20 artifacts to Enterprise: each once, byte-identical, in order, artifacts first", async () => {
    const producer = estate.client("plant-a", "mes-producer");
    const enterprise = estate.zones.enterprise!.services.store;
    // Every artifact fact Enterprise shows must find its artifact there already.
    const artifactsSeenLate: string[] = [];
    let watching = true;
    const watcher = (async () => {
      const checked = new Set<string>();
      while (watching) {
        for (const fact of await readAll(enterprise, "documents")) {
          const id = fact.message!.envelope!.messageId;
          if (checked.has(id)) continue;
          checked.add(id);
          const ref = JSON.parse(fact.message!.fact!.objectJson) as { bucket: string; key: string; digest: string };
          const object = await enterprise.statObject(ref.bucket, ref.key);
          if (object?.digest !== ref.digest) artifactsSeenLate.push(id);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const artifacts = Array.from({ length: 20 }, (_, i) => randomBytes(16 * 1024 + i * 9_000));
    const producing = produce(producer, "plant-a", "enterprise", 10_000, "bulk");
    for (const [i, content] of artifacts.entries()) {
      const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
      const object = await producer.putObject({ bucket: "document-files", key: `reports/R${i}.pdf`, mediaType: "application/pdf", fileName: `R${i}.pdf` }, content);
      expect(object.digest).toBe(digest);
      await producer.appendFact({
        envelope: { messageId: `doc-${i}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()), objectMediaType: "application/pdf" },
        fact: { subject: `document:PlantA/R${i}`, predicate: "report_released", objectJson: JSON.stringify({ bucket: "document-files", key: `reports/R${i}.pdf`, digest, size: content.byteLength, media_type: "application/pdf" }) },
      });
    }
    await producing;

    const origin = withPrefix(await logOf(estate, "plant-a"), "bulk");
    expect(origin).toHaveLength(10_000);
    await pollUntil(async () => withPrefix(await logOf(estate, "enterprise"), "bulk").length >= 10_000 && (await readAll(enterprise, "documents")).length >= 20,
      { timeoutMs: 120_000, intervalMs: 250, what: "10,000 facts and 20 artifact facts in Enterprise" });
    watching = false;
    await watcher;

    for (const zone of ["idmz", "enterprise"]) {
      const crossed = checkCrossed(origin, withPrefix(await logOf(estate, zone), "bulk"));
      expect(crossed, zone).toEqual({ missing: [], duplicated: [], altered: [], outOfOrder: [] });
      const docs = checkCrossed(await readAll(estate.zones["plant-a"]!.services.store, "documents"), await readAll(estate.zones[zone]!.services.store, "documents"));
      expect(docs, `${zone} documents`).toEqual({ missing: [], duplicated: [], altered: [], outOfOrder: [] });
    }
    expect(artifactsSeenLate).toEqual([]);
    for (const [i, content] of artifacts.entries()) {
      const object = await enterprise.statObject("document-files", `reports/R${i}.pdf`);
      expect(object?.digest).toBe(`sha256:${createHash("sha256").update(content).digest("hex")}`);
      expect(object?.size).toBe(BigInt(content.byteLength));
    }
    // Nothing came back: PlantA holds only its own facts.
    expect((await logOf(estate, "plant-a")).every((f) => f.message!.envelope!.fromZone === "plant-a")).toBe(true);
  });

  it("carries payloads byte for byte over two hops, and refuses at the boundary a value JSON cannot carry, naming its path", async () => {
    const producer = estate.client("plant-a", "mes-producer");
    // Canonical (RFC 8785) text at the edges of what JSON carries exactly: read back as sent.
    const exact = [
      '{"max":9007199254740991,"min":-9007199254740991,"nested":{"readings":[{"value":1e+308},{"value":5e-324},{"value":-0.1}]}}',
      '{"controls":"\\u0000\\u001f\\t","emoji":"😀👩‍🔬","separators":"\u2028\u2029","surrogates":"𝄞"}',
    ];
    // Other spellings of exact values: read back as their canonical form, the same values.
    const respelt = ['{ "z": -0, "a": 1.0E3, "m": 4.50, "e": "\\ud83d\\ude00" }', '{"a":1000,"e":"😀","m":4.5,"z":0}'];
    const message = (n: number, objectJson: string) => ({
      envelope: { messageId: `exact-${n}`, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
      fact: { subject: "batch:PlantA/EXACT", predicate: "step_completed", objectJson },
    });
    await producer.appendFacts([...exact, respelt[0]!].map((objectJson, n) => message(n, objectJson)));

    const hostile = await producer.appendFacts([message(9, '{"readings":[{"value":1},{"value":9007199254740993}]}')]).catch((err: unknown) => err);
    expect(hostile).toBeInstanceOf(ConnectError);
    expect((hostile as ConnectError).code).toBe(Code.InvalidArgument);
    expect(errorInfoOf(hostile)).toMatchObject({ reason: "inexact_json", metadata: { path: "$.readings[1].value", problem: "integer_out_of_range", message_id: "exact-9" } });

    await pollUntil(async () => withPrefix(await logOf(estate, "enterprise"), "exact").length >= 3, { timeoutMs: 30_000, intervalMs: 50, what: "3 exact facts in Enterprise" });
    const origin = withPrefix(await logOf(estate, "plant-a"), "exact");
    expect(origin.map((f) => f.message!.fact!.objectJson)).toEqual([...exact, respelt[1]]);
    for (const zone of ["idmz", "enterprise"]) {
      const received = withPrefix(await logOf(estate, zone), "exact");
      expect(checkCrossed(origin, received), zone).toEqual({ missing: [], duplicated: [], altered: [], outOfOrder: [] });
      expect(received.map((f) => f.message!.fact!.objectJson), zone).toEqual([...exact, respelt[1]]);
    }
  });
});
