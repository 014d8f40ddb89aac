import { connect, type ClientHttp2Session } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawUnaryCall, startTestZoneServices, type Identity, type TestZoneServices } from "./test-support.js";

/*
 * Issue "Boundary hardening", finding 1 (reproduced on a local estate): an identity with no
 * policy sent 60 bodies of 7 MiB on one connection; the zone read every one before checking
 * who sent it (the process grew from 145 to 1,000 MiB) and answered `internal`. Now the
 * caller's identity and its right to the method are checked before a byte of the body is read.
 */

const BODY = Buffer.alloc(7 * 2 ** 20, 0x41);

describe("authorization before any work", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  const session = (identity: Identity): ClientHttp2Session => {
    const cert = zone.pki.certs[identity];
    // An attacker does not hold back: its own session may queue as much as it likes.
    return connect(zone.deployable.server.url, { ca: zone.pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, servername: "localhost", maxSessionMemory: 2_000 });
  };

  // Only what flow control lets through is ever sent: a server that does not read stops it.
  const call = (s: ClientHttp2Session, path: string, body: Buffer) => rawUnaryCall(s, path, body, { end: false });

  it("refuses 60 bodies of 7 MiB from an identity without policy, on one connection, without reading them", async () => {
    const s = session("stranger");
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
    try {
      const answers = await Promise.all(Array.from({ length: 60 }, () => call(s, "/bsfg.v1.BoundaryService/AppendFact", BODY)));
      expect(answers.every((a) => a.code === "permission_denied" && a.reason === "unknown_identity")).toBe(true);
    } finally {
      clearInterval(sampler);
      s.destroy();
    }
    // 60 × 7 MiB = 420 MiB had the bodies been buffered; the bound is the HTTP/2 windows and
    // the process's own churn (client and server share this process).
    const grewMiB = (rssPeak - rssBefore) / 2 ** 20;
    console.info(`pre-auth flood: 60 bodies of 7 MiB from an identity without policy, all permission_denied; RSS grew ${grewMiB.toFixed(1)} MiB at its peak`);
    expect(grewMiB).toBeLessThan(120);
    const lines = zone.logs.filter((l) => l.event === "rejected" && l.reason === "unknown_identity" && l.before === "request read");
    expect(lines.length).toBeGreaterThanOrEqual(60);
  }, 60_000);

  it("refuses a known identity a method its policy grants nothing for, before reading the request", async () => {
    const s = session("mes-producer");
    try {
      // A producer has no consumer: FetchFacts and ConfirmReceipt are not its verbs, whatever the body says.
      for (const method of ["FetchFacts", "ConfirmReceipt"]) {
        const answer = await call(s, `/bsfg.v1.BoundaryService/${method}`, BODY);
        expect(answer).toEqual({ status: 403, code: "permission_denied", reason: "consumer_not_allowed" });
      }
      // … nor the quarantine's.
      expect(await call(s, "/bsfg.v1.QuarantineService/ListQuarantined", Buffer.alloc(0))).toMatchObject({ code: "permission_denied", reason: "operator_not_allowed" });
    } finally {
      s.destroy();
    }
  });
});
