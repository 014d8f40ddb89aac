import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { locateNatsServerBinary } from "./nats-binary.js";

// Stand-in binaries in a scratch folder: the lookup must not depend on where this machine keeps
// its nats-server (/usr/sbin on Debian, .tools/nats-server after the bootstrap fetched the .deb).
const scratch = mkdtempSync(join(tmpdir(), "bsfg-nats-binary-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function fakeBinary(dir: string, mode = 0o755): string {
  mkdirSync(join(scratch, dir), { recursive: true });
  const path = join(scratch, dir, "nats-server");
  writeFileSync(path, "#!/bin/sh\n");
  chmodSync(path, mode);
  return path;
}

describe("locateNatsServerBinary", () => {
  test("finds the distribution's binary even when its folder is not on PATH", () => {
    const sbin = fakeBinary("sbin");
    expect(locateNatsServerBinary({ PATH: "/nonexistent" }, [sbin])).toBe(sbin);
  });

  test("prefers PATH over the fallbacks, and skips files that are not executable", () => {
    const onPath = fakeBinary("path");
    fakeBinary("plain", 0o644);
    const sbin = fakeBinary("sbin2");
    const PATH = [join(scratch, "plain"), join(scratch, "path")].join(":");
    expect(locateNatsServerBinary({ PATH }, [sbin])).toBe(onPath);
  });

  test("honours NATS_SERVER_BIN over PATH", () => {
    const explicit = fakeBinary("explicit");
    fakeBinary("path3");
    expect(locateNatsServerBinary({ NATS_SERVER_BIN: explicit, PATH: join(scratch, "path3") }, [])).toBe(explicit);
  });

  test("gives an actionable error when missing", () => {
    expect(() => locateNatsServerBinary({ PATH: "/nonexistent" }, [])).toThrow(/apt-get install nats-server/);
    expect(() => locateNatsServerBinary({ NATS_SERVER_BIN: "/nonexistent/nats-server" })).toThrow(/NATS_SERVER_BIN=.*apt-get install nats-server/);
  });
});
