import { connect, type ClientHttp2Session } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppendStatus } from "@bsfg/proto";
import { OVER_CAP_GRACE_MS } from "@bsfg/service-kit";
import { pollUntil } from "@bsfg/testkit";
import { SMALL_REQUEST_BYTES } from "./routes.js";
import { producedFact, rawUnaryCall, startTestZoneServices, type Identity, type TestZoneServices } from "./test-support.js";

/*
 * Issue "Boundary hardening", part 1: besides authorization before the body is read, what one
 * identity may hold of a deployable is bounded — connections per identity, and per method the
 * size of a request message.
 */

function session(zone: TestZoneServices, identity: Identity): Promise<ClientHttp2Session> {
  const cert = zone.pki.certs[identity];
  const s = connect(zone.deployable.server.url, { ca: zone.pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, servername: "localhost" });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** The code and reason a raw Connect unary call was answered. */
const call = async (s: ClientHttp2Session, path: string, body?: Buffer) => {
  const { code, reason } = await rawUnaryCall(s, path, body);
  return { code, reason };
};

/** FetchFactsRequest { consumer_name: "enterprise-from-plant-a", limit: 1, max_wait_ms: 0 }, by hand. */
const fetchOne = Buffer.concat([Buffer.from([0x0a, 23]), Buffer.from("enterprise-from-plant-a"), Buffer.from([0x10, 1])]);

describe("what one identity may hold of a peer-facing deployable (egress)", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("egress", { connections: { perIdentity: 2 } });
  });
  afterAll(() => zone.dispose());

  const fetchFacts = "/bsfg.v1.BoundaryService/FetchFacts";

  it("answers calls on an identity's third connection resource_exhausted, closes it (an idle one after the grace), and admits a new one once another is gone", async () => {
    // Two connections, each proven admitted by an answer from the service itself.
    const held = [await session(zone, "enterprise-bsfg"), await session(zone, "enterprise-bsfg")];
    for (const s of held) expect((await call(s, fetchFacts, Buffer.from([0x0a, 0]))).reason).not.toBe("too_many_connections");
    const third = await session(zone, "enterprise-bsfg");
    const closed = new Promise<void>((resolve) => third.once("close", resolve));
    expect(await call(third, fetchFacts, Buffer.from([0x0a, 0]))).toEqual({ code: "resource_exhausted", reason: "too_many_connections" });
    await closed; // the server sent GOAWAY and closed it
    // Another identity is not counted against this one.
    const stranger = await session(zone, "mes-producer");
    expect((await call(stranger, fetchFacts)).reason).toBe("consumer_not_allowed");
    stranger.destroy();
    expect(zone.logs.filter((l) => l.event === "connection_refused" && l.identity === "enterprise-bsfg" && l.limit === 2)).toHaveLength(1);
    expect(zone.logs.some((l) => l.event === "rejected" && l.reason === "too_many_connections" && l.before === "request read")).toBe(true);

    // A connection over the cap that makes no call is not held either: the server closes it after the grace.
    const idle = await session(zone, "enterprise-bsfg");
    const idleClosed = new Promise<number>((resolve) => idle.once("close", () => resolve(performance.now())));
    const openedAt = performance.now();
    expect(await idleClosed - openedAt).toBeLessThan(OVER_CAP_GRACE_MS + 3_000);

    // One of the two goes; the server notices its close, and a new connection is served.
    held[0]!.destroy();
    await pollUntil(async () => {
      const s = await session(zone, "enterprise-bsfg");
      try {
        return (await call(s, fetchFacts, Buffer.from([0x0a, 0]))).reason !== "too_many_connections";
      } finally {
        s.destroy();
      }
    }, { timeoutMs: 5_000, intervalMs: 50, what: "a connection admitted after one of the two closed" });
    held[1]!.destroy();
  });

  it("reads at most 64 KiB of a request that carries no facts, answering more resource_exhausted / request_too_large", async () => {
    const s = await session(zone, "enterprise-bsfg");
    try {
      expect((await call(s, fetchFacts, fetchOne)).code).toBe("ok");
      // A consumer name of 100 KiB: field 1, length as a varint.
      const name = Buffer.alloc(100 * 1024, 0x61);
      const body = Buffer.concat([Buffer.from([0x0a, 0x80, 0xa0, 0x06]), name]);
      expect(await call(s, fetchFacts, body)).toEqual({ code: "resource_exhausted", reason: "request_too_large" });
      const line = zone.logs.find((l) => l.event === "rejected" && l.reason === "request_too_large");
      expect(line?.procedure).toBe("bsfg.v1.BoundaryService/FetchFacts");
    } finally {
      s.destroy();
    }
  });
});

describe("the producer-facing deployable (ingest)", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("ingest");
  });
  afterAll(() => zone.dispose());

  it("keeps the batch limit for AppendFact: a batch far above the small-request limit is appended", async () => {
    const producer = zone.client("mes-producer");
    const batch = Array.from({ length: 40 }, (_, i) => producedFact(i, { object: { pad: "x".repeat(4_000) } }));
    const results = await producer.appendFacts(batch);
    expect(results.every((r) => r.status === AppendStatus.APPENDED)).toBe(true);
    expect(40 * 4_000).toBeGreaterThan(2 * SMALL_REQUEST_BYTES);
  });
});
