import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { startTestEstate, type TestEstate } from "@bsfg/estate-kit";
import { clientTracing, startTracing, type Tracing } from "@bsfg/telemetry";
import { pollUntil } from "@bsfg/testkit";
import { appendInTrace, logOf } from "./estate-support.js";

describe("one trace across zones", () => {
  let dir: string;
  let estate: TestEstate;
  let tracing: Tracing;
  const exporter = new InMemorySpanExporter();
  beforeAll(async () => {
    // Every zone of the estate runs in this process: one provider collects all their spans.
    tracing = startTracing({ serviceName: "bsfg-e2e", zone: "estate", spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-"));
    // Enterprise's worker is started by the test, once the fact has waited in IDMZ (see bsfg.dwell_ms).
    estate = await startTestEstate({ dir, sync: false });
    await estate.startSync("idmz");
    await estate.startSync("plant-a");
  });
  afterAll(async () => {
    await estate?.dispose();
    await tracing?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it("follows a fact from its AppendFact in PlantA through IDMZ to its append in Enterprise", async () => {
    const producer = estate.client("plant-a", "mes-producer", { interceptors: [clientTracing("plant-a")] });
    const messageId = `traced-${Date.now()}`;
    const traceId = await appendInTrace(producer, messageId);
    const stored = (zone: string) => async () => (await logOf(estate, zone)).find((f) => f.message!.envelope!.messageId === messageId);
    const inPlantA = (await stored("plant-a")())!;
    const inIdmz = await pollUntil(stored("idmz"), { timeoutMs: 30_000, what: "the fact in IDMZ" });
    // The fact waits in IDMZ until Enterprise's worker starts, at least HELD_MS: a dwell Enterprise must report.
    const HELD_MS = 500;
    await pollUntil(() => Date.now() >= Number(inIdmz.storedAtUnixMs) + HELD_MS, { what: `the fact ${HELD_MS} ms in IDMZ` });
    const enterpriseStartedAt = Date.now();
    await estate.startSync("enterprise");
    const inEnterprise = await pollUntil(stored("enterprise"), { timeoutMs: 30_000, what: "the fact in Enterprise" });

    const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const zoneOf = (s: ReadableSpan) => s.attributes["bsfg.zone"];
    await pollUntil(() => inTrace().some((s) => s.name === "relay append" && zoneOf(s) === "enterprise"), { what: "Enterprise's relay span in the producer's trace" });
    const spans = inTrace();
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? "");

    // Connected: every span but the producer's root has its parent in the same trace.
    const roots = spans.filter((s) => s.name === "mes: batch step");
    expect(roots).toHaveLength(1);
    const root = roots[0]!;
    for (const span of spans) if (span !== root) expect(parentOf(span), `${span.name} (${String(zoneOf(span))})`).toBeDefined();

    // PlantA: the producer's call, the service's span, the JetStream write under it.
    const server = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes["rpc.method"] === "AppendFact")!;
    expect(server.attributes).toMatchObject({ "bsfg.zone": "plant-a", "bsfg.peer.identity": "mes-producer", "rpc.system": "connect_rpc", "rpc.service": "bsfg.v1.BoundaryService" });
    expect(parentOf(server)?.kind).toBe(SpanKind.CLIENT);
    expect(parentOf(parentOf(server)!)).toBe(root);
    const write = spans.find((s) => s.name === "jetstream append" && parentOf(s) === server)!;
    expect(write.attributes).toMatchObject({ "bsfg.zone": "plant-a", "bsfg.facts": 1 });

    // IDMZ relays under the write that stored the fact; Enterprise under IDMZ's relay.
    const idmz = spans.find((s) => s.name === "relay append" && zoneOf(s) === "idmz")!;
    expect(parentOf(idmz)).toBe(write);
    const enterprise = spans.find((s) => s.name === "relay append" && zoneOf(s) === "enterprise")!;
    expect(parentOf(enterprise)).toBe(idmz);
    expect(enterprise.attributes["bsfg.link"]).toBe("idmz/enterprise-from-idmz-operational");
    // Dwell: how long the fact waited in the zone it was relayed from, from its storing there to
    // its relay here. Enterprise's relay started after it was held HELD_MS in IDMZ, and ended
    // before Enterprise stored it; IDMZ's relayed it after PlantA stored it, before IDMZ did.
    const dwellInIdmz = Number(enterprise.attributes["bsfg.dwell_ms"]);
    expect(dwellInIdmz).toBeGreaterThanOrEqual(Math.max(HELD_MS, enterpriseStartedAt - Number(inIdmz.storedAtUnixMs)));
    expect(dwellInIdmz).toBeLessThanOrEqual(Number(inEnterprise.storedAtUnixMs - inIdmz.storedAtUnixMs) + 1);
    const dwellInPlantA = Number(idmz.attributes["bsfg.dwell_ms"]);
    expect(dwellInPlantA).toBeLessThanOrEqual(Number(inIdmz.storedAtUnixMs - inPlantA.storedAtUnixMs) + 1);

    // Each relay span links to its worker's append, in the page's own trace: fetch, append, confirm.
    const pageOf = (relay: ReadableSpan) => {
      const all = exporter.getFinishedSpans();
      const append = all.find((s) => s.spanContext().spanId === relay.links[0]!.context.spanId);
      const page = all.find((s) => s.spanContext().spanId === append?.parentSpanContext?.spanId);
      return append && page ? { all, append, page } : undefined;
    };
    for (const relay of [idmz, enterprise]) {
      // The page ends after its confirm, a moment after the relay span.
      const { all, append, page } = await pollUntil(() => pageOf(relay), { what: "the relay's page span" });
      expect(append.name).toBe("append");
      expect(page.name).toBe("sync page");
      const pageId = page.spanContext().spanId;
      const children = all.filter((s) => s.parentSpanContext?.spanId === pageId);
      expect(children.map((c) => c.name).sort()).toEqual(["append", "bsfg.v1.BoundaryService/ConfirmReceipt", "bsfg.v1.BoundaryService/FetchFacts"]);
    }
  });
});
