/**
 * "Acknowledged" means on disk: a zone whose configuration says nats.sync: always (the
 * default) is not ready while its nats-server flushes on a timer instead of fsyncing each write.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBsfgClient } from "@bsfg/client";
import { Code, Reason, reasonOf } from "@bsfg/proto";
import { watchDurability } from "@bsfg/service-kit";
import { startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { startDeployable, type RunningDeployable } from "./run.js";
import { createTestPki, logCollector, producedFact, rejectionOf, testZoneConfig, type TestPki } from "./test-support.js";

interface Readyz {
  status: string;
  reason?: string;
}

const readyz = async (running: RunningDeployable) => {
  const response = await fetch(`${running.server.healthUrl!}/readyz`);
  return { code: response.status, body: (await response.json()) as Readyz };
};

describe("durability of acknowledged facts", () => {
  let pki: TestPki;
  let flushing: NatsServerHandle;
  let fsyncing: NatsServerHandle;

  beforeAll(async () => {
    pki = await createTestPki();
    // The server's own default: flush every two minutes.
    flushing = await startNatsServer({ domain: "plant-a", syncInterval: "2m" });
    fsyncing = await startNatsServer({ domain: "plant-a" });
  });
  afterAll(async () => {
    await flushing?.dispose();
    await fsyncing?.dispose();
  });

  it("refuses readiness and appends, naming the setting, when the zone asks for fsync and its server does not", async () => {
    const { stream, lines } = logCollector();
    const running = await startDeployable("zone", testZoneConfig(pki, flushing), { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: stream });
    try {
      const { code, body } = await readyz(running);
      expect(code).toBe(503);
      expect(body.status).toBe("not ready");
      expect(body.reason).toMatch(/does not fsync each write \(it flushes every 120 s\) while nats\.sync is always: set "sync_interval: always"/);
      expect(lines.find((l) => l.event === "durability")).toMatchObject({ level: 50, sync: "always", problem: body.reason });

      // A producer that calls anyway is refused, and nothing is stored that could be lost.
      const producer = createBsfgClient({ url: running.server.url, tls: { ca: pki.ca.certPem, cert: pki.certs["mes-producer"].certPem, key: pki.certs["mes-producer"].keyPem }, retry: { attempts: 1 } });
      try {
        const err = await rejectionOf(producer.appendFact(producedFact(1)));
        expect(err.code).toBe(Code.Unavailable);
        expect(reasonOf(err)).toBe(Reason.NotDurable);
        expect(err.rawMessage).toContain("this zone cannot promise durable writes");
      } finally {
        producer.close();
      }
      expect((await running.store.read({ stream: "operational", skipOrigins: [] }, 0)).facts).toEqual([]);
      expect(lines.some((l) => l.reason === Reason.NotDurable)).toBe(true);
    } finally {
      await running.stop();
    }
  });

  it("is ready on a server that fsyncs each write", async () => {
    const running = await startDeployable("zone", testZoneConfig(pki, fsyncing), { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: logCollector().stream });
    try {
      expect(await readyz(running)).toEqual({ code: 200, body: { status: "ready" } });
    } finally {
      await running.stop();
    }
  });

  it("accepts the server's periodic flush only when the zone says nats.sync: interval, and warns about it", async () => {
    const { stream, lines } = logCollector();
    const config = testZoneConfig(pki, flushing, { nats: { servers: [flushing.url], sync: "interval" } });
    const running = await startDeployable("zone", config, { listen: "127.0.0.1:0", healthListen: "127.0.0.1:0", logStream: stream });
    try {
      expect(await readyz(running)).toEqual({ code: 200, body: { status: "ready" } });
      expect(lines.find((l) => l.event === "durability")).toMatchObject({ level: 40, sync: "interval" });
    } finally {
      await running.stop();
    }
  });

  it("names a monitoring endpoint of another zone's server, or one that does not answer", async () => {
    const other = await startNatsServer({ domain: "idmz" });
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
    try {
      const wrong = await watchDurability({ servers: [fsyncing.url], domain: "plant-a", sync: "always", monitor: [other.monitorUrl] }, log);
      expect(wrong.problem()).toMatch(/serves JetStream domain "idmz", not this zone's "plant-a": nats\.monitor names the wrong server/);
      wrong.close();
      await other.stop();
      const silent = await watchDurability({ servers: [fsyncing.url], domain: "plant-a", sync: "always", monitor: [other.monitorUrl] }, log);
      expect(silent.problem()).toMatch(/cannot read http:\/\/127\.0\.0\.1:\d+\/varz .* cannot tell whether the server fsyncs each write/);
      silent.close();
    } finally {
      await other.dispose();
    }
  });
});
