import { existsSync, readFileSync } from "node:fs";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, test } from "vitest";
import { disposeAllNatsServers, pollUntil, startNatsCluster } from "./index.js";

afterAll(disposeAllNatsServers);

const TEST = { timeout: 90_000 };

describe("startNatsCluster", () => {
  test("runs three clustered nats-servers with one JetStream domain; replicated streams survive losing any one node", TEST, async () => {
    const cluster = await startNatsCluster({ domain: "enterprise", maxFileStore: "1GB" });
    expect(cluster.nodes.map((n) => n.name)).toEqual(["enterprise-alpha", "enterprise-beta", "enterprise-gamma"]);
    expect(cluster.urls).toEqual(cluster.nodes.map((n) => `nats://127.0.0.1:${n.port}`));
    expect(new Set(cluster.nodes.flatMap((n) => [n.port, n.monitorPort, n.clusterPort])).size).toBe(9);
    expect(await cluster.metaLeader()).toMatch(/^enterprise-(alpha|beta|gamma)$/);
    for (const node of cluster.nodes) {
      const varz = (await (await fetch(`http://127.0.0.1:${node.monitorPort}/varz`)).json()) as { server_name: string; cluster: { name: string } };
      expect(varz).toMatchObject({ server_name: node.name, cluster: { name: "enterprise-cluster" } });
      const config = readFileSync(`${node.storeDir}/../nats-server.conf`, "utf8");
      expect(config).toContain(`listen: 127.0.0.1:${node.clusterPort}`);
      for (const other of cluster.nodes.filter((o) => o !== node)) expect(config).toContain(`nats-route://127.0.0.1:${other.clusterPort}`);
    }

    // A client that lists every node, as a zone's nats.servers does.
    const nc = await connect({ servers: cluster.urls, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    try {
      const jsm = await jetstreamManager(nc, { domain: "enterprise" });
      await jsm.streams.add({ name: "FACTS", subjects: ["facts.>"], num_replicas: 3 });
      const js = jetstream(nc, { domain: "enterprise" });
      for (let i = 1; i <= 10; i++) expect((await js.publish("facts.x", `f${i}`)).seq).toBe(i);
      const leaderName = await cluster.streamLeader("FACTS");
      expect(cluster.nodes.map((n) => n.name)).toContain(leaderName);

      // SIGKILL the stream's leader: the two others elect a new one and keep every message.
      const leader = cluster.node(leaderName!);
      await leader.kill();
      expect(leader.pid).toBeUndefined();
      expect(cluster.running()).toHaveLength(2);
      const next = await pollUntil(async () => {
        const name = await cluster.streamLeader("FACTS").catch(() => undefined);
        return name !== undefined && name !== leaderName ? name : undefined;
      }, { timeoutMs: 30_000, intervalMs: 100, what: "a new stream leader" });
      expect(next).not.toBe(leaderName);
      // With a msgID: an attempt whose ack was lost in the election and is sent again is stored once.
      const seq = await pollUntil(() => js.publish("facts.x", "after", { msgID: "after-the-kill" }).then((ack) => ack.seq), { timeoutMs: 30_000, intervalMs: 100, what: "a publish with two of three nodes" });
      expect(seq).toBe(11);
      expect((await jsm.streams.info("FACTS")).state.messages).toBe(11);

      // restart() resolves once the node is current again: it holds every message.
      await leader.restart();
      expect(leader.pid).toBeDefined();
      const jsz = (await (await fetch(`http://127.0.0.1:${leader.monitorPort}/jsz?streams=true`)).json()) as { account_details?: Array<{ stream_detail?: Array<{ name: string; state: { messages: number } }> }> };
      expect(jsz.account_details?.[0]?.stream_detail?.find((s) => s.name === "FACTS")?.state.messages).toBe(11);
      await cluster.waitUntilHealthy();
    } finally {
      await nc.close();
    }

    const dirs = cluster.nodes.map((n) => n.storeDir);
    await Promise.all([cluster.dispose(), cluster.dispose()]);
    expect(cluster.running()).toEqual([]);
    for (const dir of dirs) expect(existsSync(dir)).toBe(false);
  });

  test("refuses a cluster of fewer than three nodes", async () => {
    await expect(startNatsCluster({ domain: "enterprise", nodes: 1 })).rejects.toThrow(/3 to 5 nodes/);
  });
});
