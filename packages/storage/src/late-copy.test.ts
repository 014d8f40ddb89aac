import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AppendStatus } from "@bsfg/proto";
import { pollUntil, startTcpProxy, type TcpProxy } from "@bsfg/testkit";
import { dedupeIndex } from "./dedupe-index.js";
import { publisher, type Ack } from "./publisher.js";
import { factMessage, startTestZone, type TestZone } from "./test-support.js";
import { prepareBatch } from "./validate.js";

describe("a fact publish that arrives after its claim was taken over", () => {
  let zone: TestZone;
  let proxy: TcpProxy;
  beforeAll(async () => {
    zone = await startTestZone({ dedupe: { pendingTimeout: "1s", inflightWindow: "10s" } });
    proxy = await startTcpProxy({ targetPort: zone.server.port });
  });
  afterAll(async () => {
    await proxy.close();
    await zone.dispose();
  });

  it("is discarded by JetStream's in-flight window, so the log holds the message once", async () => {
    const message = factMessage();
    const [prepared] = prepareBatch(zone.store.config, [message]);

    // An owner claims the message, then its fact publish (Nats-Msg-Id = the dedupe key) stalls on the link.
    const ownerLink = await connect({ servers: proxy.url("nats"), ignoreClusterUpdates: true });
    const direct = await connect({ servers: zone.server.url });
    const jsm = await jetstreamManager(direct, { domain: "plant-a" });
    const index = dedupeIndex({ nc: direct, js: undefined as never, jsm, apiPrefix: "$JS.plant-a.API", publisher: publisher(direct, 5_000) });
    expect(await index.claim(prepared!.key, { m: prepared!.messageId, z: prepared!.fromZone, h: prepared!.hash, s: prepared!.stream, j: prepared!.subject, b: "stalled-owner" }, 5_000)).toBeGreaterThan(0);
    proxy.pauseDirection("upstream");
    const lateCopy: Promise<Ack> = publisher(ownerLink, 60_000).publish(prepared!.subject, prepared!.payload, { msgId: prepared!.key });
    await pollUntil(() => proxy.held.upstream > 0, { what: "the proxy to hold the owner's publish" });

    // The producer's retry waits out the pending claim, finds no fact, takes the claim over.
    const [retry] = await zone.store.append([message]);
    expect(retry!.status).toBe(AppendStatus.APPENDED);

    // The link recovers and the stalled copy reaches the server.
    proxy.resumeDirection("upstream");
    const late = await lateCopy;
    expect(late.duplicate).toBe(true);
    expect(late.seq).toBe(Number(retry!.offset));
    const info = await jsm.streams.info("facts-operational", { subjects_filter: prepared!.subject });
    expect(info.state.messages).toBe(1);
    const [again] = await zone.store.append([message]);
    expect([again!.status, again!.offset]).toEqual([AppendStatus.DUPLICATE, retry!.offset]);

    await ownerLink.close();
    await direct.close();
  });
});
