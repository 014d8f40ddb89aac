/**
 * What runs the suite is what ships: the pinned Node major and the pinned nats-server, with
 * no silent fallback to whatever the machine had (Node 20, bookworm's nats-server 2.9.10).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { startNatsServer } from "@bsfg/testkit";
import { repoPath } from "./docker-support.js";
import { pinnedToolchain } from "./toolchain.js";

const pinned = pinnedToolchain();

describe("the toolchain", () => {
  it("runs the tests on the pinned Node major, the one package.json's engines allows", () => {
    expect(process.versions.node.split(".")[0]).toBe(String(pinned.nodeMajor));
    const pkg = JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as { engines: { node: string }; packageManager: string };
    expect(pkg.engines.node).toBe(`>=${pinned.nodeMajor}.0.0 <${pinned.nodeMajor + 1}`);
    expect(pkg.packageManager).toBe(`pnpm@${pinned.pnpm}`);
  });

  it("starts the pinned nats-server, and it fsyncs every write by default", async () => {
    const nats = await startNatsServer({ domain: "toolchain" });
    try {
      const varz = (await (await fetch(`${nats.monitorUrl}/varz`)).json()) as { version: string; jetstream: { config: { sync_always?: boolean } } };
      expect(varz.version).toBe(pinned.natsServer);
      expect(varz.jetstream.config.sync_always).toBe(true);
    } finally {
      await nats.dispose();
    }
  });
});
