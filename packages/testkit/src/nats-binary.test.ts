import { describe, expect, test } from "vitest";
import { locateNatsServerBinary } from "./nats-binary.js";

describe("locateNatsServerBinary", () => {
  test("finds the Debian binary even when /usr/sbin is not on PATH", () => {
    expect(locateNatsServerBinary({ PATH: "/nonexistent" })).toBe("/usr/sbin/nats-server");
  });

  test("honours NATS_SERVER_BIN", () => {
    expect(locateNatsServerBinary({ NATS_SERVER_BIN: "/usr/sbin/nats-server", PATH: "" }, [])).toBe("/usr/sbin/nats-server");
  });

  test("gives an actionable error when missing", () => {
    expect(() => locateNatsServerBinary({ PATH: "/nonexistent" }, [])).toThrow(/apt-get install nats-server/);
    expect(() => locateNatsServerBinary({ NATS_SERVER_BIN: "/nonexistent/nats-server" })).toThrow(/NATS_SERVER_BIN=.*apt-get install nats-server/);
  });
});
