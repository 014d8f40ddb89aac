import { describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "@bsfg/pki";
import { metricValue, parseExposition } from "./exposition.js";
import { createMetrics, tlsFailureCode } from "./metrics.js";
import { earliestNotAfter, observeCertificates, observeLinks, observeStore, type StoreGaugeSource } from "./metric-sources.js";

const scrape = async (metrics: ReturnType<typeof createMetrics>) => parseExposition(await metrics.scrape());

describe("createMetrics", () => {
  it("gives every deployable a registry of its own: two in one process count apart", async () => {
    const a = createMetrics({ zone: "plant-a", service: "bsfg-zone", processMetrics: false });
    const b = createMetrics({ zone: "idmz", service: "bsfg-zone", processMetrics: false });
    a.appendRequests.inc();
    a.appendRequests.inc();
    b.appendRequests.inc();
    expect(metricValue(await scrape(a), "bsfg_append_requests_total", { zone: "plant-a" })).toBe(2);
    expect(metricValue(await scrape(b), "bsfg_append_requests_total", { zone: "idmz" })).toBe(1);
  });

  it("starts counters whose first increase matters at 0: every TLS failure code, both object directions", async () => {
    const samples = await scrape(createMetrics({ zone: "z", service: "s", processMetrics: false }));
    expect(metricValue(samples, "bsfg_tls_failures_total", { code: "CERT_HAS_EXPIRED" })).toBe(0);
    expect(metricValue(samples, "bsfg_tls_failures_total", { code: "OTHER" })).toBe(0);
    expect(metricValue(samples, "bsfg_object_bytes_total", { direction: "out" })).toBe(0);
    expect(tlsFailureCode("CERT_HAS_EXPIRED")).toBe("CERT_HAS_EXPIRED");
    expect(tlsFailureCode("SOMETHING_NEW")).toBe("OTHER");
    expect(tlsFailureCode(undefined)).toBe("OTHER");
  });

  it("runs collectors at scrape time; one that fails or hangs is counted and the scrape still answers", async () => {
    const metrics = createMetrics({ zone: "z", service: "s", processMetrics: false });
    let runs = 0;
    const stop = metrics.onScrape("counting", () => {
      runs++;
      metrics.fillPercent.set({ stream: "operational" }, runs);
    });
    const stopFailing = metrics.onScrape("failing", async () => {
      throw new Error("JetStream did not answer");
    });
    const stopHanging = metrics.onScrape("hanging", () => new Promise<void>(() => undefined));
    const started = Date.now();
    const samples = await scrape(metrics);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(metricValue(samples, "bsfg_store_buffer_fill_percent", { stream: "operational" })).toBe(1);
    expect(metricValue(samples, "bsfg_metrics_collect_errors_total", { source: "failing" })).toBe(1);
    expect(metricValue(samples, "bsfg_metrics_collect_errors_total", { source: "hanging" })).toBe(1);
    for (const remove of [stop, stopFailing, stopHanging]) remove();
    await metrics.scrape();
    expect(runs).toBe(1);
  }, 10_000);
});

describe("scrape-time sources", () => {
  it("reads fill per stream, and frontier and backlog per consumer from the store, leaving out what fails", async () => {
    const metrics = createMetrics({ zone: "z", service: "s", processMetrics: false });
    const store: StoreGaugeSource = {
      config: { streams: { operational: {}, documents: {} }, consumers: [{ name: "peer-ops", stream: "operational" }, { name: "peer-docs", stream: "documents" }, { name: "gone", stream: "operational" }] },
      fillPercent: async (stream) => (stream === "operational" ? 12.5 : 3),
      highWater: async (stream) => (stream === "operational" ? 120 : 7),
      cursor: async (name) => {
        if (name === "gone") throw new Error("no cursor");
        return name === "peer-ops" ? 100 : 7;
      },
    };
    observeStore(metrics, store);
    const samples = await scrape(metrics);
    expect(metricValue(samples, "bsfg_store_buffer_fill_percent", { stream: "operational" })).toBe(12.5);
    expect(metricValue(samples, "bsfg_frontier_offset", { consumer: "peer-ops" })).toBe(100);
    expect(metricValue(samples, "bsfg_consumer_backlog_facts", { consumer: "peer-ops" })).toBe(20);
    expect(metricValue(samples, "bsfg_consumer_backlog_facts", { consumer: "peer-docs" })).toBe(0);
    expect(metricValue(samples, "bsfg_frontier_offset", { consumer: "gone" })).toBeUndefined();
    expect(metricValue(samples, "bsfg_metrics_collect_errors_total", { source: "store" })).toBe(1);
  });

  it("shows each link's lag, its state as one of six, and its totals as counters", async () => {
    const metrics = createMetrics({ zone: "idmz", service: "s", processMetrics: false });
    let status = { link: "plant-a/ops", state: "active", lagFacts: 3, lagSeconds: 0.25, appended: 10, duplicates: 2, conflicts: 1, artifactsCopied: 4 };
    observeLinks(metrics, () => [status]);
    let samples = await scrape(metrics);
    expect(metricValue(samples, "bsfg_replication_lag_facts", { link: "plant-a/ops" })).toBe(3);
    expect(metricValue(samples, "bsfg_replication_lag_seconds", { link: "plant-a/ops" })).toBe(0.25);
    expect(metricValue(samples, "bsfg_link_state", { link: "plant-a/ops", state: "active" })).toBe(1);
    expect(metricValue(samples, "bsfg_link_state", { link: "plant-a/ops" })).toBe(1);
    expect(samples.filter((s) => s.name === "bsfg_link_state")).toHaveLength(6);
    expect(metricValue(samples, "bsfg_replication_facts_total", { link: "plant-a/ops", result: "conflicting_duplicate" })).toBe(1);
    status = { ...status, state: "backing_off", appended: 15 };
    samples = await scrape(metrics);
    expect(metricValue(samples, "bsfg_link_state", { state: "backing_off" })).toBe(1);
    expect(metricValue(samples, "bsfg_link_state", { state: "active" })).toBe(0);
    expect(metricValue(samples, "bsfg_replication_facts_total", { result: "appended" })).toBe(15);
    expect(metricValue(samples, "bsfg_replication_artifacts_copied_total")).toBe(4);
    status = { ...status, state: "paused" };
    samples = await scrape(metrics);
    expect(metricValue(samples, "bsfg_link_state", { state: "paused" })).toBe(1);
    expect(metricValue(samples, "bsfg_link_state", { state: "backing_off" })).toBe(0);
  });

  it("shows the seconds until each certificate expires, by the earliest notAfter of its PEM", async () => {
    const metrics = createMetrics({ zone: "z", service: "s", processMetrics: false });
    const ca = await createCertificateAuthority({ name: "Metrics Test CA" });
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 90 * 86_400_000);
    const certificate = (await issueCertificate(ca, { identity: "zone", usage: "server", notAfter })).certPem;
    observeCertificates(metrics, { server: certificate, ca: `${certificate}\n${certificate}`, missing: undefined });
    const expected = (notAfter.getTime() - Date.now()) / 1000;
    const samples = await scrape(metrics);
    expect(Math.abs(metricValue(samples, "bsfg_certificate_expiry_seconds", { certificate: "server" })! - expected)).toBeLessThan(5);
    expect(Math.abs(metricValue(samples, "bsfg_certificate_expiry_seconds", { certificate: "ca" })! - expected)).toBeLessThan(5);
    expect(metricValue(samples, "bsfg_certificate_expiry_seconds", { certificate: "missing" })).toBeUndefined();
    expect(earliestNotAfter(certificate)).toBe(notAfter.getTime());
    expect(earliestNotAfter(`${certificate}\n${ca.certPem}`)).toBe(notAfter.getTime());
  });
});

describe("parseExposition", () => {
  it("reads names, escaped label values and special values", () => {
    const samples = parseExposition([
      "# HELP x_total a counter",
      "# TYPE x_total counter",
      'x_total{a="1",b="quote \\" and \\\\ and \\n"} 3',
      "y 4.5",
      'h_bucket{le="+Inf"} +Inf',
      "",
    ].join("\n"));
    expect(samples).toEqual([
      { name: "x_total", labels: { a: "1", b: 'quote " and \\ and \n' }, value: 3 },
      { name: "y", labels: {}, value: 4.5 },
      { name: "h_bucket", labels: { le: "+Inf" }, value: Infinity },
    ]);
    expect(metricValue(samples, "x_total", { a: "1" })).toBe(3);
    expect(metricValue(samples, "x_total", { a: "2" })).toBeUndefined();
  });
});
