import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, type TestEstate } from "@bsfg/estate-kit";
import { startSyncDeployable } from "@bsfg/replication";
import { createMetrics, metricValue, parseExposition, type Sample } from "@bsfg/telemetry";
import { pollUntil } from "@bsfg/testkit";
import { logOf, produce, withPrefix } from "./estate-support.js";

const LINK = "plant-a/idmz-from-plant-a-operational";
const CONSUMER = "idmz-from-plant-a-operational";

describe("replication metrics across the estate", () => {
  let dir: string;
  let estate: TestEstate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-e2e-metrics-"));
    estate = await startTestEstate({ dir, proxies: true, extra: () => ({ sync: { backoff: { initial: "100ms", max: "500ms" } } }) });
  });
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  /** A zone's all-in-one /metrics: its services and (sharing the registry) its sync worker. */
  const scrape = async (zone: string): Promise<Sample[]> => {
    const response = await fetch(`${estate.zones[zone]!.services.server.healthUrl!}/metrics`);
    expect(response.status).toBe(200);
    return parseExposition(await response.text());
  };
  const lag = async () => {
    const samples = await scrape("idmz");
    return {
      seconds: metricValue(samples, "bsfg_replication_lag_seconds", { link: LINK })!,
      facts: metricValue(samples, "bsfg_replication_lag_facts", { link: LINK })!,
      backingOff: metricValue(samples, "bsfg_link_state", { link: LINK, state: "backing_off" })!,
    };
  };
  const backlog = async () => metricValue(await scrape("plant-a"), "bsfg_consumer_backlog_facts", { consumer: CONSUMER })!;

  it("shows a cut link's lag in seconds rising, the sender's backlog growing by what was produced, and both back to ~0 after restore", async () => {
    const producer = estate.client("plant-a", "mes-producer");
    await produce(producer, "plant-a", "enterprise", 50, "before");
    await pollUntil(async () => withPrefix(await logOf(estate, "idmz"), "before").length === 50, { timeoutMs: 30_000, what: "the first facts in the IDMZ" });
    await pollUntil(async () => {
      const now = await lag();
      return now.seconds < 1 && now.facts === 0 && (await backlog()) === 0;
    }, { timeoutMs: 30_000, what: "the link caught up" });
    const replicated = await scrape("idmz");
    expect(metricValue(replicated, "bsfg_replication_facts_total", { link: LINK, result: "appended" })).toBeGreaterThanOrEqual(50);
    expect(metricValue(replicated, "bsfg_link_state", { link: LINK })).toBe(1);

    estate.proxy("idmz", "plant-a").cut();
    await produce(producer, "plant-a", "enterprise", 200, "during", { batch: 50 });
    // The sender knows exactly what waits: nothing can be confirmed while the link is cut.
    expect(await backlog()).toBe(200);
    // Each sample with the clock just before and after its scrape (the gauge is computed at scrape time).
    const timedLag = async () => {
      const from = Date.now();
      const value = await lag();
      return { ...value, from, to: Date.now() };
    };
    const first = await pollUntil(async () => {
      const now = await timedLag();
      return now.seconds > 1 ? now : undefined;
    }, { timeoutMs: 30_000, what: "the cut link's lag above 1 s" });
    const later = await pollUntil(async () => {
      const now = await timedLag();
      return now.seconds > first.seconds + 1 ? now : undefined;
    }, { timeoutMs: 10_000, what: "the cut link's lag another second higher" });
    // It rises with the clock: by the time that passed between the two scrapes.
    expect(later.seconds - first.seconds).toBeGreaterThanOrEqual((later.from - first.to) / 1000 - 0.001);
    expect(later.seconds - first.seconds).toBeLessThanOrEqual((later.to - first.from) / 1000 + 0.001);
    expect(await backlog()).toBe(200);
    // Failing, the link is backing off, or active again for the next attempt.
    const states = await scrape("idmz");
    expect(metricValue(states, "bsfg_link_state", { link: LINK, state: "active" })! + metricValue(states, "bsfg_link_state", { link: LINK, state: "backing_off" })!).toBe(1);
    await pollUntil(async () => (await lag()).backingOff === 1, { timeoutMs: 10_000, what: "the link backing off in the metrics" });

    estate.proxy("idmz", "plant-a").restore();
    await pollUntil(async () => withPrefix(await logOf(estate, "idmz"), "during").length === 200, { timeoutMs: 60_000, what: "the facts produced during the cut in the IDMZ" });
    const recovered = await pollUntil(async () => {
      const now = await lag();
      return now.seconds < 1 && now.facts === 0 ? now : undefined;
    }, { timeoutMs: 30_000, what: "the link's lag back to ~0" });
    expect(recovered.backingOff).toBe(0);
    expect(await backlog()).toBe(0);
    const samples = await scrape("idmz");
    expect(metricValue(samples, "bsfg_link_state", { link: LINK, state: "active" })).toBe(1);
    expect(metricValue(samples, "bsfg_replication_facts_total", { link: LINK, result: "appended" })).toBeGreaterThanOrEqual(250);
    // The IDMZ's own consumer toward Enterprise carries the same facts on: its frontier moved.
    expect(metricValue(samples, "bsfg_frontier_offset", { consumer: "enterprise-from-idmz-operational" })).toBeGreaterThan(0);
  });

  it("serves a sync deployable's own registry on its probe port, and none where it reports into the all-in-one's", async () => {
    const config = estate.zones.idmz!.config;
    const sink = () => new Writable({ write: (_chunk, _encoding, done) => done() });
    const own = await startSyncDeployable(config, { holder: "metrics-own", healthListen: "127.0.0.1:0", logStream: sink() });
    const shared = await startSyncDeployable(config, { holder: "metrics-shared", healthListen: "127.0.0.1:0", logStream: sink(), metrics: createMetrics({ zone: "idmz", service: "bsfg-zone" }) });
    try {
      const response = await fetch(`${own.probeUrl!}/metrics`);
      expect(response.status).toBe(200);
      const samples = parseExposition(await response.text());
      expect(samples.filter((s) => s.name.startsWith("bsfg_")).every((s) => s.labels.service === "bsfg-sync" && s.labels.zone === "idmz")).toBe(true);
      // Another replica holds the links' leases: this one stands by.
      await pollUntil(async () => metricValue(parseExposition(await (await fetch(`${own.probeUrl!}/metrics`)).text()), "bsfg_link_state", { link: LINK, state: "standby" }) === 1, { timeoutMs: 20_000, what: "the second replica standing by" });
      for (const certificate of ["sync-client", "ca"]) expect(metricValue(samples, "bsfg_certificate_expiry_seconds", { certificate })).toBeGreaterThan(86_400);
      expect(metricValue(samples, "bsfg_store_buffer_fill_percent", { stream: "operational" })).toBeGreaterThanOrEqual(0);
      expect((await fetch(`${shared.probeUrl!}/metrics`)).status).toBe(404);
      expect((await fetch(`${shared.probeUrl!}/links`)).status).toBe(200);
    } finally {
      await own.stop();
      await shared.stop();
    }
  });
});
