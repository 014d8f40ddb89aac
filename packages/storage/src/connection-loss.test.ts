import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNatsCluster, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConnectionLost, unlessConnectionLost } from "./connection-loss.js";
import { publisher, PublishError } from "./publisher.js";
import { pullOnce, PullUnansweredError } from "./pull.js";

/*
 * A server killed while a request waits for its answer: the caller learns at once
 * that the outcome is not known, instead of after the request's timeout (which
 * here is a minute, longer than the test may take).
 */
describe("an answer lost with the connection is reported at once, not at the timeout", () => {
  const LONG = 60_000;
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeEach(async () => {
    server = await startNatsServer({ domain: "plant-a" });
    nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  });
  afterEach(async () => {
    await nc.close();
    await server.dispose();
  });

  it("a request whose responder never answers", async () => {
    nc.subscribe("silent.responder");
    await nc.flush();
    const answer = unlessConnectionLost(nc, nc.request("silent.responder", "ping", { timeout: LONG }), "request").then(() => undefined, (e: unknown) => e);
    await server.kill();
    expect(await answer).toBeInstanceOf(ConnectionLost);
  }, 20_000);

  it("a publish waiting for JetStream's acknowledgement", async () => {
    const pub = publisher(nc, LONG);
    // Someone listens on the subject, but no stream stores it: no acknowledgement is coming.
    nc.subscribe("nobody.stores.this");
    const ack = pub.publish("nobody.stores.this", new Uint8Array([1])).then(() => undefined, (e: unknown) => e);
    await nc.flush();
    await server.kill();
    const err = await ack;
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).message).toMatch(/connection to nats-server was lost, or the stream.s leader changed/);
    // Not a refusal: the message may or may not be stored, so the caller must read back.
    expect((err as PublishError).definite).toBe(false);
    pub.close();
  }, 20_000);

  it("a pull whose page never comes", async () => {
    // An API that listens and never sends the page.
    nc.subscribe("$JS.silent.API.>");
    const pull = pullOnce({ nc, apiPrefix: "$JS.silent.API" } as never, "facts-operational", "missing", { batch: 10, timeoutMs: LONG }).then(() => undefined, (e: unknown) => e);
    await nc.flush();
    await server.kill();
    const err = await pull;
    expect(err).toBeInstanceOf(PullUnansweredError);
    expect((err as Error).message).toMatch(/connection to nats-server was lost, or the stream.s leader changed/);
  }, 20_000);
});

describe("a write to a replicated stream whose leader died is reported once a new leader is elected", () => {
  it("a publish in flight at the leader when it died", async () => {
    const cluster = await startNatsCluster({ domain: "enterprise" });
    try {
      const admin = await connect({ servers: cluster.urls });
      const jsm = await jetstreamManager(admin, { domain: "enterprise" });
      await jsm.streams.add({ name: "LOSS", subjects: ["loss.>"], num_replicas: 3 });
      await admin.close();
      const leader = await cluster.streamLeader("LOSS");
      expect(leader).toBeDefined();
      // A connection to a node that survives: only the leader election can free the publish.
      const survivor = cluster.nodes.find((n) => n.name !== leader)!;
      const nc = await connect({ servers: survivor.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      const pub = publisher(nc, 60_000);
      // The leader takes the write and dies before it answers: frozen (SIGSTOP) while the
      // write reaches it, then killed. A write sent after its death would be refused at once.
      const node = cluster.node(leader!);
      process.kill(node.pid!, "SIGSTOP");
      const outcome = pub.publish("loss.one", new Uint8Array([1])).then(() => undefined, (e: unknown) => e);
      await nc.flush();
      await node.kill();
      const err = await outcome;
      expect(err).toBeInstanceOf(PublishError);
      expect((err as PublishError).message).toMatch(/leader changed/);
      expect((err as PublishError).definite).toBe(false);
      pub.close();
      await nc.close();
    } finally {
      await cluster.dispose();
    }
  }, 40_000);
});
