import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, describe, expect, test } from "vitest";
import { disposeAllNatsServers, pollUntil, startNatsServer } from "./index.js";
import type { NatsServerHandle } from "./index.js";

const GiB = 1024 ** 3;
const SERVER_TEST = { timeout: 60_000 };

afterAll(disposeAllNatsServers);

async function withClient<T>(url: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: url, reconnect: false, timeout: 2_000 });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

function manager(nc: NatsConnection, domain: string): Promise<JetStreamManager> {
  return jetstreamManager(nc, { domain, timeout: 2_000 });
}

/** Zombies still answer kill(pid, 0), and orphans may linger as zombies here, so ask /proc. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function monitorJson(server: NatsServerHandle, path: string): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${server.monitorPort}${path}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function publishFacts(server: NatsServerHandle, stream: string, count: number): Promise<void> {
  await withClient(server.url, async (nc) => {
    const jsm = await manager(nc, server.domain);
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    const js = jetstream(nc, { domain: server.domain });
    for (let i = 1; i <= count; i++) {
      const ack = await js.publish(`${stream.toLowerCase()}.fact`, `fact-${i}`);
      expect(ack.seq).toBe(i);
      expect(ack.domain).toBe(server.domain);
    }
  });
}

describe("startNatsServer", () => {
  test("runs a real server with its own JetStream domain on loopback ports", SERVER_TEST, async () => {
    const server = await startNatsServer({ domain: "plant-a" });

    expect(server.domain).toBe("plant-a");
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.monitorPort).not.toBe(server.port);
    expect(server.pid).toBeDefined();
    expect(isRunning(server.pid!)).toBe(true);

    await withClient(server.url, async (nc) => {
      expect(nc.info?.version).toMatch(/^2\./);
      const info = await (await manager(nc, "plant-a")).getAccountInfo();
      expect(info.domain).toBe("plant-a");
      // The domain is part of the API subject, so a foreign domain gets no responder.
      await expect(jetstreamManager(nc, { domain: "plant-b", timeout: 1_000 })).rejects.toThrow();
    });

    const varz = await monitorJson(server, "/varz");
    expect(varz["server_name"]).toMatch(/^plant-a-[0-9a-f]{8}$/);
    const jsz = await monitorJson(server, "/jsz");
    const config = jsz["config"] as Record<string, unknown>;
    expect(config["domain"]).toBe("plant-a");
    expect(config["max_memory"]).toBe(1 * GiB);
    expect(config["max_storage"]).toBe(10 * GiB);
    // nats-server appends "jetstream" to the configured store_dir.
    expect(config["store_dir"]).toBe(join(server.storeDir, "jetstream"));

    await server.dispose();
  });

  test("kill() then restart() keeps streams and messages, on the same ports and store", SERVER_TEST, async () => {
    const server = await startNatsServer({ domain: "plant-a" });
    await publishFacts(server, "FACTS", 3);
    const before = { port: server.port, monitorPort: server.monitorPort, url: server.url, storeDir: server.storeDir };
    const killedPid = server.pid!;

    await server.kill();
    expect(server.pid).toBeUndefined();
    expect(isRunning(killedPid)).toBe(false);
    await expect(connect({ servers: before.url, reconnect: false, timeout: 1_000 })).rejects.toThrow();

    await server.restart();
    expect({ port: server.port, monitorPort: server.monitorPort, url: server.url, storeDir: server.storeDir }).toEqual(before);
    expect(server.pid).toBeDefined();
    expect(server.pid).not.toBe(killedPid);

    await withClient(server.url, async (nc) => {
      const jsm = await manager(nc, "plant-a");
      const info = await jsm.streams.info("FACTS");
      expect(info.state.messages).toBe(3);
      expect(info.state.last_seq).toBe(3);
      const second = await jsm.streams.getMessage("FACTS", { seq: 2 });
      expect(second?.string()).toBe("fact-2");
    });

    await server.dispose();
  });

  test("stop() is graceful and idempotent; rssBytes() reads the live process", SERVER_TEST, async () => {
    const server = await startNatsServer({ domain: "plant-a" });
    const rss = await server.rssBytes();
    expect(rss).toBeGreaterThan(1024 * 1024);
    expect(rss).toBeLessThan(1 * GiB);
    expect(rss % 1024).toBe(0);

    const stoppedPid = server.pid!;
    await server.stop();
    expect(server.pid).toBeUndefined();
    expect(isRunning(stoppedPid)).toBe(false);
    await expect(server.rssBytes()).rejects.toThrow(/not running/);
    await server.stop();

    await server.restart();
    expect(server.pid).toBeDefined();
    expect(await server.rssBytes()).toBeGreaterThan(0);
    await server.dispose();
  });

  test("two zones run side by side on different ports, isolated by domain", SERVER_TEST, async () => {
    const [a, b] = await Promise.all([startNatsServer({ domain: "plant-a" }), startNatsServer({ domain: "plant-b" })]);
    expect(new Set([a.port, a.monitorPort, b.port, b.monitorPort]).size).toBe(4);
    expect(a.storeDir).not.toBe(b.storeDir);

    await publishFacts(a, "ONLY_A", 1);
    await withClient(b.url, async (nc) => {
      const jsm = await manager(nc, "plant-b");
      expect((await jsm.getAccountInfo()).domain).toBe("plant-b");
      await expect(jsm.streams.info("ONLY_A")).rejects.toThrow(/stream not found/);
      await expect(jetstreamManager(nc, { domain: "plant-a", timeout: 1_000 })).rejects.toThrow();
    });

    await Promise.all([a.dispose(), b.dispose()]);
  });

  test("dispose() stops the server and removes the harness's store dir; idempotent", SERVER_TEST, async () => {
    const server = await startNatsServer({ domain: "plant-a" });
    await publishFacts(server, "FACTS", 1);
    const pid = server.pid!;
    expect(existsSync(join(server.storeDir, "jetstream"))).toBe(true);

    await Promise.all([server.dispose(), server.dispose()]);
    await server.dispose();

    expect(existsSync(server.storeDir)).toBe(false);
    expect(server.pid).toBeUndefined();
    expect(isRunning(pid)).toBe(false);
    await expect(server.restart()).rejects.toThrow(/disposed/);
  });

  test("a caller-provided storeDir survives dispose() and can be reused", SERVER_TEST, async () => {
    const storeDir = mkdtempSync(join(tmpdir(), "bsfg-testkit-store-"));
    try {
      const first = await startNatsServer({ domain: "plant-a", storeDir });
      expect(first.storeDir).toBe(storeDir);
      await publishFacts(first, "FACTS", 2);
      await first.dispose();
      expect(existsSync(join(storeDir, "jetstream"))).toBe(true);

      const second = await startNatsServer({ domain: "plant-a", storeDir });
      await withClient(second.url, async (nc) => {
        const info = await (await manager(nc, "plant-a")).streams.info("FACTS");
        expect(info.state.messages).toBe(2);
      });
      await second.dispose();
    } finally {
      rmSync(storeDir, { recursive: true, force: true });
    }
  });

  test("extraConfig and store limits reach the server", SERVER_TEST, async () => {
    const server = await startNatsServer({ domain: "plant-a", extraConfig: "max_payload: 65536", maxFileStore: "256MB", maxMemoryStore: 64 * 1024 * 1024 });
    await withClient(server.url, async (nc) => {
      expect(nc.info?.max_payload).toBe(65536);
    });
    const config = (await monitorJson(server, "/jsz"))["config"] as Record<string, unknown>;
    expect(config["max_storage"]).toBe(256 * 1024 * 1024);
    expect(config["max_memory"]).toBe(64 * 1024 * 1024);
    await server.dispose();
  });

  test("a server that cannot start rejects with its log tail and leaves no temp dir", SERVER_TEST, async () => {
    const domain = `broken-${process.pid}`;
    const start = startNatsServer({ domain, extraConfig: "this is not { valid" });
    await expect(start).rejects.toThrow(/exited \(code 1.*\)[\s\S]*nats-server log tail[\s\S]*Parse error/);
    expect(readdirSync(tmpdir()).filter((name) => name.startsWith(`bsfg-nats-${domain}-`))).toEqual([]);
  });

  test("rejects domains that cannot be a subject token", async () => {
    await expect(startNatsServer({ domain: "plant.a" })).rejects.toThrow(/Invalid JetStream domain/);
    await expect(startNatsServer({ domain: "" })).rejects.toThrow(/Invalid JetStream domain/);
  });

  test("disposeAllNatsServers() disposes every live server", SERVER_TEST, async () => {
    const servers = await Promise.all([startNatsServer({ domain: "zone-1" }), startNatsServer({ domain: "zone-2" })]);
    const pids = servers.map((s) => s.pid!);

    await disposeAllNatsServers();

    for (const server of servers) {
      expect(server.pid).toBeUndefined();
      expect(existsSync(server.storeDir)).toBe(false);
    }
    for (const pid of pids) expect(isRunning(pid)).toBe(false);
  });
});

describe("process exit cleanup", () => {
  // Runs the built package (what other workspace packages import); `tsc -b` runs before tests.
  const distIndex = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "index.js");

  test("a process that exits without disposing kills its servers and removes their temp dirs", SERVER_TEST, async () => {
    expect(existsSync(distIndex), `${distIndex} missing: run \`pnpm exec tsc -b\` first`).toBe(true);
    // No dispose and no explicit exit: the script must end on its own (children are unref'd)
    // and the 'exit' hook must do the cleanup.
    const script = `
      const { startNatsServer } = await import(${JSON.stringify(distIndex)});
      const s = await startNatsServer({ domain: "orphan" });
      console.log(JSON.stringify({ pid: s.pid, storeDir: s.storeDir }));
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
    const reported = (): { pid: number; storeDir: string } | undefined =>
      stdout.includes("\n") ? (JSON.parse(stdout) as { pid: number; storeDir: string }) : undefined;
    try {
      // If the script hangs (something keeps its event loop alive) this fails instead of waiting forever.
      await pollUntil(() => child.exitCode !== null || child.signalCode !== null, {
        timeoutMs: 20_000,
        what: "the script to exit on its own",
      });
      expect(await closed, stderr).toBe(0);

      const { pid, storeDir } = reported()!;
      expect(existsSync(storeDir)).toBe(false);
      // SIGKILL is sent synchronously, but the kernel tears the process down asynchronously.
      await pollUntil(() => !isRunning(pid), { timeoutMs: 5_000, what: `orphaned nats-server ${pid} to die` });
    } finally {
      // Only does anything after a failed assertion: don't leak what the script started.
      if (child.exitCode === null) child.kill("SIGKILL");
      const leaked = reported();
      if (leaked !== undefined && isRunning(leaked.pid)) process.kill(leaked.pid, "SIGKILL");
      if (leaked !== undefined) rmSync(dirname(leaked.storeDir), { recursive: true, force: true });
    }
  });
});
