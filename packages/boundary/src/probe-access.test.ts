import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestZoneServices, type TestZoneServices } from "./test-support.js";

/*
 * health.allowFrom: a probe port that must listen where others can reach it (a container on
 * the boundary network and the observability network) answers only the addresses it lists.
 */

describe("a probe port with health.allowFrom", () => {
  let refusing: TestZoneServices;
  let admitting: TestZoneServices;
  beforeAll(async () => {
    // This test reaches the port from 127.0.0.1: outside the first list, inside the second.
    refusing = await startTestZoneServices("zone", { health: { allowFrom: ["10.0.0.0/8", "172.29.14.1"] } });
    admitting = await startTestZoneServices("zone", { health: { allowFrom: ["10.0.0.0/8", "127.0.0.0/8"] } });
  });
  afterAll(async () => {
    await refusing?.dispose();
    await admitting?.dispose();
  });

  it("refuses an address it does not list, on every route, with a reason, and logs it once a minute", async () => {
    for (const path of ["/metrics", "/readyz", "/healthz"]) {
      const answer = await fetch(`${refusing.deployable.server.healthUrl!}${path}`);
      expect([answer.status, await answer.json()]).toEqual([403, expect.objectContaining({ code: "permission_denied", reason: "probe_not_allowed" })]);
    }
    // One line per address and minute, however many requests it made.
    expect(refusing.logs.filter((l) => l.event === "probe_refused").map((l) => [l.remote, l.path])).toEqual([["127.0.0.1", "/metrics"]]);
  });

  it("answers an address inside a range it lists", async () => {
    const answer = await fetch(`${admitting.deployable.server.healthUrl!}/metrics`);
    expect(answer.status).toBe(200);
    expect(await answer.text()).toContain("bsfg_");
  });
});
