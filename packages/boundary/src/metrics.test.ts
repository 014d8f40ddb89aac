import { X509Certificate } from "node:crypto";
import { connect } from "node:tls";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { AppendStatus, reasonOf } from "@bsfg/proto";
import { metricValue, parseExposition, type Sample } from "@bsfg/telemetry";
import { pollUntil } from "@bsfg/testkit";
import { producedFact, rejectionOf, startTestZoneServices, type TestZoneServices } from "./test-support.js";

describe("/metrics on the probe port: exact counts after known actions", () => {
  let zone: TestZoneServices;
  let scrapeUrl: string;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
    scrapeUrl = `${zone.deployable.server.healthUrl!}/metrics`;
  });
  afterAll(() => zone.dispose());

  const scrape = async (): Promise<Sample[]> => {
    const response = await fetch(scrapeUrl);
    expect(response.status).toBe(200);
    return parseExposition(await response.text());
  };
  const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) => metricValue(samples, name, labels) ?? 0;

  it("serves the Prometheus text format with the zone and service on every series, process metrics included", async () => {
    const response = await fetch(scrapeUrl);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = parseExposition(await response.text());
    expect(samples.every((s) => s.labels.zone === "plant-a" && s.labels.service === "bsfg-zone")).toBe(true);
    expect(metricValue(samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(metricValue(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("counts 10 AppendFact calls as +10 requests, +10 appended facts and +10 latency observations", async () => {
    const producer = zone.client("mes-producer");
    const before = await scrape();
    for (let i = 0; i < 10; i++) await producer.appendFacts([producedFact(100 + i)]);
    const after = await scrape();
    expect(value(after, "bsfg_append_requests_total") - value(before, "bsfg_append_requests_total")).toBe(10);
    expect(value(after, "bsfg_append_facts_total", { result: "appended" }) - value(before, "bsfg_append_facts_total", { result: "appended" })).toBe(10);
    expect(value(after, "bsfg_append_latency_seconds_count") - value(before, "bsfg_append_latency_seconds_count")).toBe(10);
    expect(value(after, "bsfg_append_latency_seconds_bucket", { le: "+Inf" }) - value(before, "bsfg_append_latency_seconds_bucket", { le: "+Inf" })).toBe(10);
    expect(value(after, "bsfg_append_failures_total") - value(before, "bsfg_append_failures_total")).toBe(0);
  });

  it("counts a batch of 5 as one request and 5 facts, and a repeat as 5 duplicates", async () => {
    const producer = zone.client("mes-producer");
    const batch = Array.from({ length: 5 }, (_, i) => producedFact(200 + i));
    const before = await scrape();
    await producer.appendFacts(batch);
    await producer.appendFacts(batch);
    const after = await scrape();
    expect(value(after, "bsfg_append_requests_total") - value(before, "bsfg_append_requests_total")).toBe(2);
    expect(value(after, "bsfg_append_facts_total", { result: "appended" }) - value(before, "bsfg_append_facts_total", { result: "appended" })).toBe(5);
    expect(value(after, "bsfg_append_facts_total", { result: "duplicate" }) - value(before, "bsfg_append_facts_total", { result: "duplicate" })).toBe(5);
  });

  it("counts one conflicting duplicate as one failure with reason conflicting_duplicate, and logs it once with its message_id", async () => {
    const producer = zone.client("mes-producer");
    const original = await producer.appendFact(producedFact(300));
    const before = await scrape();
    const logsBefore = zone.logs.length;
    const [result] = await producer.appendFacts([producedFact(300, { id: original.messageId, object: { changed: true } })]);
    expect(result!.status).toBe(AppendStatus.CONFLICTING_DUPLICATE);
    const after = await scrape();
    expect(value(after, "bsfg_append_failures_total", { reason: "conflicting_duplicate" }) - value(before, "bsfg_append_failures_total", { reason: "conflicting_duplicate" })).toBe(1);
    expect(value(after, "bsfg_append_failures_total") - value(before, "bsfg_append_failures_total")).toBe(1);
    expect(value(after, "bsfg_append_facts_total", { result: "conflicting_duplicate" }) - value(before, "bsfg_append_facts_total", { result: "conflicting_duplicate" })).toBe(1);
    expect(value(after, "bsfg_append_requests_total") - value(before, "bsfg_append_requests_total")).toBe(1);
    const lines = zone.logs.slice(logsBefore).filter((l) => l.event === "rejected");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ reason: "conflicting_duplicate", code: "AlreadyExists", identity: "mes-producer", message_id: original.messageId });
  });

  it("counts a denied call under its reason, for append failures and for rejections", async () => {
    const producer = zone.client("mes-producer");
    const before = await scrape();
    const denied = await rejectionOf(producer.appendFacts([producedFact(400, { fromZone: "enterprise" })]));
    expect(reasonOf(denied)).toBe("from_zone_not_allowed");
    const stranger = await rejectionOf(zone.client("stranger").fetchFacts("enterprise-from-plant-a"));
    expect(reasonOf(stranger)).toBe("unknown_identity");
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(delta("bsfg_append_failures_total", { reason: "from_zone_not_allowed" })).toBe(1);
    expect(delta("bsfg_append_failures_total", {})).toBe(1);
    expect(delta("bsfg_rejections_total", { method: "AppendFact", code: "permission_denied", reason: "from_zone_not_allowed" })).toBe(1);
    expect(delta("bsfg_rejections_total", { method: "FetchFacts", code: "permission_denied", reason: "unknown_identity" })).toBe(1);
    expect(delta("bsfg_rejections_total", {})).toBe(2);
    expect(delta("bsfg_fetch_requests_total", {})).toBe(1);
  });

  it("counts fetches and confirms, and shows a consumer's frontier and backlog", async () => {
    const producer = zone.client("mes-producer");
    const peer = zone.client("enterprise-bsfg");
    await producer.appendFacts([producedFact(500), producedFact(501)]);
    const before = await scrape();
    const page = await peer.fetchFacts("enterprise-from-plant-a", { limit: 3 });
    await peer.fetchFacts("enterprise-from-plant-a", { limit: 3 });
    const confirmed = await peer.confirmReceipt("enterprise-from-plant-a", page.lastOffset);
    const after = await scrape();
    expect(value(after, "bsfg_fetch_requests_total") - value(before, "bsfg_fetch_requests_total")).toBe(2);
    expect(value(after, "bsfg_confirm_requests_total") - value(before, "bsfg_confirm_requests_total")).toBe(1);
    expect(metricValue(after, "bsfg_frontier_offset", { consumer: "enterprise-from-plant-a" })).toBe(Number(confirmed));
    const highWater = Number((await peer.fetchFacts("enterprise-from-plant-a", { limit: 1 })).highWater);
    expect(metricValue(after, "bsfg_consumer_backlog_facts", { consumer: "enterprise-from-plant-a" })).toBe(highWater - Number(confirmed));
  });

  it("shows the fill of every configured stream", async () => {
    const samples = await scrape();
    for (const stream of Object.keys(zone.config.storage.streams)) {
      const fill = metricValue(samples, "bsfg_store_buffer_fill_percent", { stream });
      expect(fill, stream).toBeGreaterThanOrEqual(0);
      expect(fill, stream).toBeLessThan(100);
    }
    expect(metricValue(samples, "bsfg_store_buffer_fill_percent", { stream: "operational" })).toBeGreaterThan(0);
  });

  it("shows the seconds until the server certificate and the CA expire", async () => {
    const samples = await scrape();
    const now = Date.now();
    for (const [certificate, pem] of [["server", zone.pki.certs["plant-a-bsfg"].certPem], ["ca", zone.pki.ca.certPem]] as const) {
      const expected = (Date.parse(new X509Certificate(pem).validTo) - now) / 1000;
      expect(Math.abs(metricValue(samples, "bsfg_certificate_expiry_seconds", { certificate })! - expected), certificate).toBeLessThan(30);
    }
  });

  it("counts artifact bytes in (PutObject) and out (FetchObject) exactly", async () => {
    const producer = zone.client("mes-producer");
    const peer = zone.client("enterprise-bsfg");
    const content = Buffer.alloc(300 * 1024 + 17, 3);
    const before = await scrape();
    await producer.putObject({ bucket: "batch-files", key: "metrics/B1.pdf", mediaType: "application/pdf", fileName: "B1.pdf" }, content);
    const sink = new PassThrough();
    sink.resume();
    await peer.fetchObject("batch-files", "metrics/B1.pdf", sink);
    const after = await scrape();
    expect(value(after, "bsfg_object_bytes_total", { direction: "in" }) - value(before, "bsfg_object_bytes_total", { direction: "in" })).toBe(content.byteLength);
    expect(value(after, "bsfg_object_bytes_total", { direction: "out" }) - value(before, "bsfg_object_bytes_total", { direction: "out" })).toBe(content.byteLength);
  });

  it("logs and counts a denied FetchObject (a streaming call, refused on its first read) exactly once", async () => {
    const producer = zone.client("mes-producer");
    const before = await scrape();
    const logsBefore = zone.logs.length;
    const sink = new PassThrough();
    sink.resume();
    const error = await rejectionOf(producer.fetchObject("batch-files", "metrics/B1.pdf", sink));
    expect([error.code, reasonOf(error)]).toEqual([Code.PermissionDenied, "bucket_not_allowed"]);
    const after = await scrape();
    expect(value(after, "bsfg_rejections_total", { method: "FetchObject", reason: "bucket_not_allowed" }) - value(before, "bsfg_rejections_total", { method: "FetchObject", reason: "bucket_not_allowed" })).toBe(1);
    const lines = zone.logs.slice(logsBefore).filter((l) => l.event === "rejected");
    expect(lines).toHaveLength(1);
    // A producer may read no bucket at all: refused before the request was read, so without bucket and key.
    expect(lines[0]).toMatchObject({ identity: "mes-producer", reason: "bucket_not_allowed", code: "PermissionDenied", before: "request read" });
  });

  it("counts a refused TLS handshake under its code", async () => {
    const before = await scrape();
    const socket = connect({ host: "127.0.0.1", port: zone.deployable.server.port, ca: zone.pki.ca.certPem, servername: "localhost", ALPNProtocols: ["h2"] });
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.once("close", resolve));
    const counted = await pollUntil(async () => {
      const after = await scrape();
      const delta = value(after, "bsfg_tls_failures_total", { code: "NO_CLIENT_CERTIFICATE" }) - value(before, "bsfg_tls_failures_total", { code: "NO_CLIENT_CERTIFICATE" });
      return delta > 0 ? delta : undefined;
    }, { what: "bsfg_tls_failures_total to count the handshake" });
    expect(counted).toBe(1);
  });

  it("keeps label values bounded: no message ids, keys or addresses", async () => {
    const samples = await scrape();
    const labelNames = new Set(samples.filter((s) => s.name.startsWith("bsfg_")).flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(expect.arrayContaining(["service", "zone"]));
    for (const name of labelNames) expect(["certificate", "code", "consumer", "direction", "le", "link", "method", "reason", "result", "service", "source", "state", "stream", "zone"]).toContain(name);
    expect(samples.some((s) => Object.values(s.labels).some((v) => v.startsWith("mes-") || v.includes("metrics/")))).toBe(false);
  });
});

describe("/metrics of a split deployable", () => {
  it("serves its own registry: ingest counts appends, and still shows the zone's gauges", async () => {
    const zone = await startTestZoneServices("ingest");
    try {
      await zone.client("mes-producer").appendFacts([producedFact(1), producedFact(2)]);
      const samples = parseExposition(await (await fetch(`${zone.deployable.server.healthUrl!}/metrics`)).text());
      expect(metricValue(samples, "bsfg_append_requests_total", { service: "bsfg-ingest" })).toBe(1);
      expect(metricValue(samples, "bsfg_append_facts_total", { result: "appended" })).toBe(2);
      expect(metricValue(samples, "bsfg_frontier_offset", { consumer: "enterprise-from-plant-a" })).toBe(0);
      expect(metricValue(samples, "bsfg_store_buffer_fill_percent", { stream: "operational" })).toBeGreaterThan(0);
    } finally {
      await zone.dispose();
    }
  });
});
