import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { ensureDevPki, type DevPki } from "@bsfg/pki";
import { pollUntil } from "@bsfg/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startReverseDialer, type ReverseDialer } from "./dialer.js";
import { startReverseListener, type ReverseListener } from "./listener.js";
import type { ReverseRole } from "./hello.js";

/*
 * Reverse connect on loopback with real TLS: "plant-a" dials "idmz"'s listener and
 * serves HTTP/2 over the connection; idmz calls it as a client over that connection.
 */

const quiet = { info: () => {}, warn: () => {} };
let dir: string;
let pki: DevPki;
const tlsOf = (identity: string) => {
  const files = pki.files[identity]!;
  return { ca: readFileSync(pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key) };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bsfg-reverse-"));
  pki = await ensureDevPki(join(dir, "pki"), {
    identities: [
      { identity: "idmz-bsfg", usage: "both", dnsNames: ["localhost"] },
      { identity: "plant-a-bsfg", usage: "both", dnsNames: ["localhost"] },
      { identity: "intruder", usage: "both", dnsNames: ["localhost"] },
    ],
  });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** What the dialing side serves: who answered, and the caller as its certificate says. */
const echo = (replica: string) => (req: Http2ServerRequest, res: Http2ServerResponse) => {
  const socket = req.stream.session?.socket as unknown as { getPeerCertificate(): { subject: { CN: string } } };
  res.end(JSON.stringify({ replica, path: req.url, caller: socket.getPeerCertificate().subject.CN }));
};

/** A GET through the listener's session manager, as a Connect transport would send it. */
async function call(listener: ReverseListener, role: ReverseRole, path = "/bsfg.v1.BoundaryService/FetchFacts"): Promise<{ replica: string; path: string; caller: string }> {
  const stream = await listener.sessionManager("plant-a", role).request("GET", path, {}, {});
  stream.setEncoding("utf8");
  let body = "";
  for await (const chunk of stream) body += chunk as string;
  return JSON.parse(body) as { replica: string; path: string; caller: string };
}

describe("reverse connect", () => {
  const running: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) await r.close();
  });
  const listen = async (more: Partial<Parameters<typeof startReverseListener>[0]> = {}) => {
    const listener = await startReverseListener({ host: "127.0.0.1", port: 0, tls: tlsOf("idmz-bsfg"), peers: [{ zone: "plant-a", identity: "plant-a-bsfg" }], log: quiet, ...more });
    running.push(listener);
    return listener;
  };
  const dialer = (url: string, more: Partial<Parameters<typeof startReverseDialer>[0]> = {}): ReverseDialer => {
    const replica = more.replica ?? "plant-a-1";
    const d = startReverseDialer({
      zone: "plant-a", replica, roles: ["egress", "ledger"], targets: [{ peer: "idmz", url, identity: "idmz-bsfg" }],
      tls: () => tlsOf("plant-a-bsfg"), handler: echo(replica), backoff: { initialMs: 50, maxMs: 200 }, log: quiet, ...more,
    });
    running.push({ close: () => d.close(1_000) });
    return d;
  };

  it("the listening zone calls the dialing zone over the connection the dialer opened, authenticated both ways", async () => {
    const listener = await listen();
    const d = dialer(`https://localhost:${listener.port}`);
    const answer = await call(listener, "egress");
    expect(answer).toEqual({ replica: "plant-a-1", path: "/bsfg.v1.BoundaryService/FetchFacts", caller: "idmz-bsfg" });
    const [connection] = listener.connections();
    expect(connection).toMatchObject({ peer: "plant-a", identity: "plant-a-bsfg", replica: "plant-a-1", roles: ["egress", "ledger"] });
    expect(listener.inUse("plant-a", "egress")?.replica).toBe("plant-a-1");
    expect(d.status()).toEqual([expect.objectContaining({ peer: "idmz", state: "connected", dials: 1, failures: 0 })]);
  });

  it("refuses a certificate that is no inbound peer's identity", async () => {
    const events: string[] = [];
    const listener = await listen({ onConnection: (peer, event) => events.push(`${peer} ${event}`) });
    const d = dialer(`https://localhost:${listener.port}`, { tls: () => tlsOf("intruder") });
    await pollUntil(() => events.length >= 2, { timeoutMs: 10_000, what: "two refused dials" });
    // Refusals of a certificate no peer has are counted under "unknown" (a bounded metric label).
    expect(events.every((e) => e === "unknown refused")).toBe(true);
    expect(listener.connections()).toEqual([]);
    expect(d.status()[0]!.state).not.toBe("connected");
  });

  it("the dialer refuses a listener whose certificate is not the peer's identity", async () => {
    const listener = await listen();
    const outcomes: string[] = [];
    const d = dialer(`https://localhost:${listener.port}`, { targets: [{ peer: "idmz", url: `https://localhost:${listener.port}`, identity: "someone-else" }], onDial: (_, outcome) => outcomes.push(outcome) });
    await pollUntil(() => outcomes.length >= 2, { timeoutMs: 10_000, what: "two failed dials" });
    expect(outcomes.every((o) => o === "failed")).toBe(true);
    expect(d.status()[0]!.lastError).toMatch(/not someone-else/);
    expect(listener.connections()).toEqual([]);
  });

  it("calls go to one replica's connection and move to another's when it goes", async () => {
    const listener = await listen();
    const first = dialer(`https://localhost:${listener.port}`, { replica: "plant-a-1" });
    await pollUntil(() => listener.connections().length === 1, { timeoutMs: 10_000, what: "the first replica connected" });
    dialer(`https://localhost:${listener.port}`, { replica: "plant-a-2" });
    await pollUntil(() => listener.connections().length === 2, { timeoutMs: 10_000, what: "the second replica connected" });
    for (let i = 0; i < 3; i++) expect((await call(listener, "ledger")).replica).toBe("plant-a-1");
    await first.close(1_000);
    expect((await call(listener, "ledger")).replica).toBe("plant-a-2");
  });

  it("redials a listener that went away and came back on the same port", async () => {
    const listener = await listen();
    const { port } = listener;
    const d = dialer(`https://localhost:${port}`);
    await call(listener, "egress");
    await listener.close();
    running.splice(running.indexOf(listener), 1);
    await pollUntil(() => d.status()[0]!.state !== "connected", { timeoutMs: 10_000, what: "the dialer noticed" });
    const again = await listen({ port });
    expect((await call(again, "egress")).replica).toBe("plant-a-1");
    expect(d.status()[0]!.dials).toBeGreaterThanOrEqual(2);
  });

  it("a call with no connection from the peer waits a little, then fails unavailable", async () => {
    const listener = await listen({ waitForConnectionMs: 200 });
    const err = await call(listener, "egress").then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect((err as ConnectError).rawMessage).toMatch(/no connection from plant-a serves egress/);
  });

  it("closes at once while a connection is still in its TLS handshake (a dialer stalled or gone quiet)", async () => {
    const listener = await listen();
    running.splice(running.indexOf(listener), 1);
    // Connected, and silent: the TLS server would wait for its handshake (2 min by default).
    const silent = netConnect({ host: "127.0.0.1", port: listener.port });
    silent.on("error", () => undefined);
    await new Promise<void>((resolve) => silent.once("connect", () => resolve()));
    const closedIn = Date.now();
    await listener.close();
    expect(Date.now() - closedIn).toBeLessThan(1_000);
    silent.destroy();
  });

  it("a call made before the peer dials in waits for its connection", async () => {
    const listener = await listen({ waitForConnectionMs: 10_000 });
    const pending = call(listener, "egress");
    dialer(`https://localhost:${listener.port}`);
    expect((await pending).replica).toBe("plant-a-1");
  });
});
