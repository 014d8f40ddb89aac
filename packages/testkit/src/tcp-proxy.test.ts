import { randomBytes } from "node:crypto";
import { connect as netConnect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";
import { disposeAll, disposeAllProxies, freePort, pollUntil, startNatsServer, startTcpProxy } from "./index.js";
import type { TcpProxy } from "./index.js";

afterAll(disposeAll);

/**
 * Proving that something did NOT happen cannot be polled for. Where a test does, it first
 * waits (with pollUntil) for a positive signal that the data is in the proxy (`held`),
 * then gives a wrongly forwarding proxy this long to show itself. Loopback delivery
 * takes well under a millisecond, so this is generous, and it is never used to wait
 * FOR something.
 */
const ABSENCE_WINDOW_MS = 200;

/** A TCP echo server that records what it received. */
interface EchoServer {
  readonly port: number;
  /** Everything received, over all connections, in arrival order. */
  received(): Buffer;
  readonly accepted: number;
  readonly open: number;
  close(): Promise<void>;
}

async function startEchoServer(): Promise<EchoServer> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("echo server has no port");
  return {
    port: address.port,
    received: () => Buffer.concat(chunks),
    get accepted() {
      return accepted;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Closed {
  hadError: boolean;
  code: string | undefined;
}

/** A plain TCP client that records what it received and how it ended. */
interface TestClient {
  readonly socket: Socket;
  received(): Buffer;
  readonly closed: Promise<Closed>;
  readonly isClosed: boolean;
}

function dial(port: number): TestClient {
  const socket = netConnect({ host: "127.0.0.1", port });
  const chunks: Buffer[] = [];
  let error: NodeJS.ErrnoException | undefined;
  let isClosed = false;
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", (err: NodeJS.ErrnoException) => (error = err));
  const closed = new Promise<Closed>((resolve) =>
    socket.on("close", (hadError) => {
      isClosed = true;
      resolve({ hadError, code: error?.code });
    }),
  );
  return {
    socket,
    received: () => Buffer.concat(chunks),
    closed,
    get isClosed() {
      return isClosed;
    },
  };
}

const clients: TestClient[] = [];
function track(client: TestClient): TestClient {
  clients.push(client);
  return client;
}

/** A client connected through `proxy` that has completed one echo round trip. */
async function establishedClient(proxy: TcpProxy, echo: EchoServer): Promise<TestClient> {
  const client = track(dial(proxy.port));
  const before = echo.received().length;
  client.socket.write("hello");
  await pollUntil(() => client.received().toString() === "hello", { what: "the first echo", timeoutMs: 5_000 });
  expect(echo.received().length).toBe(before + 5);
  return client;
}

let echo: EchoServer;
let proxy: TcpProxy;

beforeEach(async () => {
  echo = await startEchoServer();
  proxy = await startTcpProxy({ targetPort: echo.port });
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.socket.destroy();
  await proxy.close();
  await echo.close();
});

describe("startTcpProxy", () => {
  test("forwards bytes both ways and counts them", async () => {
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(echo.port);
    expect(proxy.url("nats")).toBe(`nats://127.0.0.1:${proxy.port}`);
    expect(proxy.url("http://")).toBe(`http://127.0.0.1:${proxy.port}`);
    expect(proxy.connections).toBe(0);

    const client = await establishedClient(proxy, echo);
    client.socket.write(" world");
    await pollUntil(() => client.received().toString() === "hello world", { what: "the second echo" });

    expect(echo.received().toString()).toBe("hello world");
    expect(echo.accepted).toBe(1);
    expect(proxy.connections).toBe(1);
    expect(proxy.bytes).toEqual({ upstream: 11, downstream: 11 });
    expect(proxy.held).toEqual({ upstream: 0, downstream: 0 });

    client.socket.end();
    await client.closed;
    await pollUntil(() => proxy.connections === 0 && echo.open === 0, { what: "the connection to close on both sides" });
  });

  test("shape() delays every chunk and caps the bandwidth, in order; {} takes it away", async () => {
    const client = await establishedClient(proxy, echo);
    proxy.shape({ delayMs: 150 });
    let sentAt = performance.now();
    client.socket.write("-delayed");
    await pollUntil(() => client.received().toString() === "hello-delayed", { what: "the delayed echo" });
    // Delayed on the way there and on the way back.
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(290);

    proxy.shape({ bytesPerSecond: 20_000 });
    const payload = Buffer.alloc(10_000, 0x61);
    sentAt = performance.now();
    client.socket.write(payload);
    await pollUntil(() => client.received().length === 5 + 8 + payload.length, { timeoutMs: 5_000, what: "the capped payload echoed" });
    // 10,000 bytes at 20,000 B/s each way: at least half a second (chunks may pass the cap together at its start).
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(450);
    expect(client.received().subarray(13).equals(payload)).toBe(true);

    proxy.shape({});
    sentAt = performance.now();
    client.socket.write("!");
    await pollUntil(() => client.received().length === 5 + 8 + payload.length + 1, { what: "the unshaped echo" });
    expect(performance.now() - sentAt).toBeLessThan(150);
  });

  test("pause() holds data without closing; resume() delivers it in order, exactly once", async () => {
    const client = await establishedClient(proxy, echo);
    proxy.pause();

    const parts = Array.from({ length: 20 }, (_, i) => `<message ${i}>`);
    for (const part of parts) client.socket.write(part);
    const payload = parts.join("");
    await pollUntil(() => proxy.held.upstream === payload.length, { what: "the proxy to hold the whole payload" });

    await sleep(ABSENCE_WINDOW_MS); // absence only, see ABSENCE_WINDOW_MS
    expect(echo.received().toString()).toBe("hello");
    expect(client.received().toString()).toBe("hello");
    expect(proxy.bytes).toEqual({ upstream: 5, downstream: 5 });
    expect(proxy.held).toEqual({ upstream: payload.length, downstream: 0 });
    expect(client.isClosed).toBe(false);
    expect(proxy.connections).toBe(1);

    proxy.resume();
    await pollUntil(() => client.received().length >= 5 + payload.length, { what: "the held payload to echo back" });
    expect(echo.received().toString()).toBe(`hello${payload}`);
    expect(client.received().toString()).toBe(`hello${payload}`);
    expect(proxy.bytes).toEqual({ upstream: 5 + payload.length, downstream: 5 + payload.length });
    expect(proxy.held).toEqual({ upstream: 0, downstream: 0 });

    // Nothing extra shows up later (no duplicate delivery), and the link keeps working.
    client.socket.write("!");
    await pollUntil(() => client.received().toString().endsWith("!"), { what: "a post-resume echo" });
    expect(client.received().toString()).toBe(`hello${payload}!`);
  });

  test("an end-of-stream sent while paused is held behind the data", async () => {
    const client = await establishedClient(proxy, echo);
    proxy.pause();
    client.socket.end("bye");
    await pollUntil(() => proxy.held.upstream === 3, { what: "the proxy to hold the last bytes" });
    await sleep(ABSENCE_WINDOW_MS); // absence only, see ABSENCE_WINDOW_MS
    expect(echo.open).toBe(1); // the FIN did not overtake the held data either

    proxy.resume();
    // The echo server echoes, then ends when it sees our FIN; that arrives only after "bye".
    expect(await client.closed).toEqual({ hadError: false, code: undefined });
    expect(echo.received().toString()).toBe("hellobye");
    expect(client.received().toString()).toBe("hellobye");
  });

  test("pauseDirection() holds one direction only", async () => {
    const client = await establishedClient(proxy, echo);

    proxy.pauseDirection("downstream");
    client.socket.write("ping");
    // Upstream still flows: the echo server gets it, its echo is held on the way back.
    await pollUntil(() => echo.received().toString() === "helloping", { what: "the upstream bytes" });
    await pollUntil(() => proxy.held.downstream === 4, { what: "the proxy to hold the echo" });
    await sleep(ABSENCE_WINDOW_MS); // absence only, see ABSENCE_WINDOW_MS
    expect(client.received().toString()).toBe("hello");
    proxy.resumeDirection("downstream");
    await pollUntil(() => client.received().toString() === "helloping", { what: "the held echo" });

    proxy.pauseDirection("upstream");
    client.socket.write("pong");
    await pollUntil(() => proxy.held.upstream === 4, { what: "the proxy to hold the upstream bytes" });
    await sleep(ABSENCE_WINDOW_MS); // absence only, see ABSENCE_WINDOW_MS
    expect(echo.received().toString()).toBe("helloping");
    proxy.resumeDirection("upstream");
    await pollUntil(() => client.received().toString() === "hellopingpong", { what: "the echo after resuming upstream" });
    expect(proxy.bytes).toEqual({ upstream: 13, downstream: 13 });
  });

  test("a paused proxy stops reading at maxHeldBytes (backpressure) and still delivers everything in order", async () => {
    const limit = 64 * 1024;
    const limited = await startTcpProxy({ targetPort: echo.port, maxHeldBytes: limit });
    try {
      limited.pause();
      const client = track(dial(limited.port));
      // Larger than loopback socket buffers can absorb, so the client's own buffer fills up.
      const payload = randomBytes(32 * 1024 * 1024);
      client.socket.write(payload);
      await pollUntil(() => limited.held.upstream >= limit && client.socket.writableLength > 0, {
        what: "the proxy to hold up to its limit and the client to be backpressured",
      });
      // One read (at most 64 KiB) may land after the limit is reached, no more.
      expect(limited.held.upstream).toBeLessThanOrEqual(limit + 64 * 1024);
      expect(echo.received().length).toBe(0);

      limited.resume();
      await pollUntil(() => client.received().length >= payload.length, { what: "the whole payload to echo back", timeoutMs: 30_000 });
      expect(echo.received().equals(payload)).toBe(true);
      expect(client.received().equals(payload)).toBe(true);
      expect(limited.bytes).toEqual({ upstream: payload.length, downstream: payload.length });
    } finally {
      await limited.close();
    }
  });

  test("cut() resets open connections and new ones until restore()", async () => {
    const client = await establishedClient(proxy, echo);
    const heldBack = await establishedClient(proxy, echo);
    proxy.pause();
    heldBack.socket.write("dropped");
    await pollUntil(() => proxy.held.upstream === 7, { what: "the proxy to hold data" });

    proxy.cut();
    expect(proxy.connections).toBe(0);
    expect(await client.closed).toEqual({ hadError: true, code: "ECONNRESET" });
    expect(await heldBack.closed).toEqual({ hadError: true, code: "ECONNRESET" });
    // The server side is reset too; held data died with its connection.
    await pollUntil(() => echo.open === 0, { what: "the server side of the connections to close" });
    expect(echo.received().toString()).toBe("hellohello");

    proxy.resume();
    const accepted = echo.accepted;
    for (let i = 0; i < 3; i++) {
      const attempt = track(dial(proxy.port));
      attempt.socket.write("anyone?");
      expect(await attempt.closed).toMatchObject({ hadError: true });
      expect(attempt.received().length).toBe(0);
    }
    expect(echo.accepted).toBe(accepted);
    expect(proxy.connections).toBe(0);

    proxy.restore();
    const after = await establishedClient(proxy, echo);
    expect(after.isClosed).toBe(false);
    expect(echo.accepted).toBe(accepted + 1);
    expect(proxy.connections).toBe(1);
  });

  test("a client is reset when the target refuses the connection", async () => {
    const nowhere = await startTcpProxy({ targetPort: await freePort() });
    try {
      const client = track(dial(nowhere.port));
      expect(await client.closed).toMatchObject({ hadError: true });
      await pollUntil(() => nowhere.connections === 0, { what: "the failed connection to be forgotten" });
    } finally {
      await nowhere.close();
    }
  });

  test("close() drops connections and frees the port; disposeAllProxies() closes every proxy", async () => {
    const client = await establishedClient(proxy, echo);
    await proxy.close();
    await proxy.close(); // idempotent
    await client.closed;
    expect(proxy.connections).toBe(0);
    expect(await track(dial(proxy.port)).closed).toEqual({ hadError: true, code: "ECONNREFUSED" });

    const others = await Promise.all([startTcpProxy({ targetPort: echo.port }), startTcpProxy({ targetPort: echo.port })]);
    await disposeAllProxies();
    for (const other of others) {
      expect(await track(dial(other.port)).closed).toEqual({ hadError: true, code: "ECONNREFUSED" });
    }
  });

  test("rejects bad options", async () => {
    await expect(startTcpProxy({ targetPort: 0 })).rejects.toThrow(/targetPort/);
    await expect(startTcpProxy({ targetPort: 4222, listenPort: 70_000 })).rejects.toThrow(/listenPort/);
    await expect(startTcpProxy({ targetPort: 4222, listenPort: proxy.port })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe("startTcpProxy with nats-server", () => {
  test("a NATS client sees cut() as a link failure and reconnects after restore()", { timeout: 60_000 }, async () => {
    const server = await startNatsServer({ domain: "proxy-test" });
    const natsProxy = await startTcpProxy({ targetPort: server.port });
    const nc = await connect({
      servers: natsProxy.url("nats"),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      // The client must only ever know the proxy's address.
      ignoreClusterUpdates: true,
    });
    const events: string[] = [];
    const watching = (async () => {
      for await (const status of nc.status()) events.push(status.type);
    })();
    try {
      nc.subscribe("echo", { callback: (_err, msg) => void msg.respond(msg.data) });
      expect((await nc.request("echo", "one", { timeout: 2_000 })).string()).toBe("one");
      expect(natsProxy.connections).toBe(1);

      // A stalled link: no disconnect, the request just gets no answer in time.
      natsProxy.pause();
      await expect(nc.request("echo", "stalled", { timeout: 250 })).rejects.toThrow();
      expect(events).not.toContain("disconnect");
      natsProxy.resume();
      expect((await nc.request("echo", "two", { timeout: 2_000 })).string()).toBe("two");

      natsProxy.cut();
      await pollUntil(() => events.includes("disconnect"), { what: "a disconnect status" });
      // The reconnect loop keeps failing while the link is down.
      await pollUntil(() => events.filter((e) => e === "reconnecting").length >= 2, { what: "failed reconnect attempts" });
      expect(events).not.toContain("reconnect");
      expect(natsProxy.connections).toBe(0);

      natsProxy.restore();
      await pollUntil(() => events.includes("reconnect"), { what: "a reconnect status" });
      expect((await nc.request("echo", "three", { timeout: 2_000 })).string()).toBe("three");
      expect(natsProxy.connections).toBe(1);
    } finally {
      await nc.close();
      await watching;
      await natsProxy.close();
      await server.dispose();
    }
  });
});
