import { describe, expect, it } from "vitest";
import { consolePage, escapeHtml } from "./page.js";
import { linkRates } from "./rates.js";
import { takeSnapshot, viewedBy, type ConsoleLink, type ConsoleSource } from "./snapshot.js";

const link = (over: Partial<ConsoleLink> = {}): ConsoleLink => ({
  link: "plant-a/idmz-from-plant-a-operational", peer: "plant-a", consumer: "idmz-from-plant-a-operational", state: "active",
  connection: { dial: "outbound", peerIdentity: "plant-a-bsfg" }, cursor: 0, highWater: 0, lagFacts: 0, lagSeconds: 0, appended: 0, quarantined: 0, lastError: undefined,
  ...over,
});

describe("the link history behind the console's chart and 'no progress for'", () => {
  it("turns appended totals into facts per second, one point per window, and forgets what is older than the history", () => {
    const rates = linkRates(10_000, 30_000);
    for (const [at, appended] of [[0, 0], [5_000, 50], [10_000, 100], [20_000, 300], [30_000, 300], [40_000, 400], [50_000, 400]] as const) rates.sample([link({ appended })], at);
    // 10, 20, 0, 10, 0 facts/s (the sample at 5 s falls inside the first window); the history holds the last 3.
    expect(rates.series(link().link)).toEqual([0, 10, 0]);
  });

  it("never shows a negative rate when a restarted worker counts from zero again", () => {
    const rates = linkRates(10_000);
    rates.sample([link({ appended: 500 })], 0);
    rates.sample([link({ appended: 20 })], 10_000);
    expect(rates.series(link().link)).toEqual([0]);
  });

  it("counts how long a link with facts waiting has not moved, and 0 once it moves or has nothing waiting", () => {
    const rates = linkRates();
    rates.sample([link({ cursor: 10, lagFacts: 5 })], 0);
    rates.sample([link({ cursor: 10, lagFacts: 5 })], 42_000);
    expect(rates.sinceProgressSeconds(link().link, 42_000)).toBe(42);
    rates.sample([link({ cursor: 12, lagFacts: 3 })], 43_000);
    expect(rates.sinceProgressSeconds(link().link, 44_000)).toBe(1);
    rates.sample([link({ cursor: 12, lagFacts: 0 })], 60_000);
    expect(rates.sinceProgressSeconds(link().link, 60_000)).toBe(0);
  });
});

describe("the console's snapshot", () => {
  const source = (over: Partial<ConsoleSource> = {}): ConsoleSource => ({
    zone: "idmz", version: "test", certificatePem: "not a certificate",
    streams: [{ name: "operational", maxBytes: 2 ** 30, maxAgeMs: 30 * 86_400_000 }], rejectAtPercent: 80,
    fillPercent: async () => 12.5, highWater: async () => 100,
    consumers: [{ name: "enterprise-from-idmz-operational", stream: "operational" }], cursor: async () => 60,
    links: () => [link({ cursor: 40, highWater: 100, lagFacts: 60 })],
    leaseHolder: async () => "idmz-sync-1:7:a1b2c3",
    storedAfter: async (_stream, offset) => (offset === 60 ? 400 : undefined),
    quarantine: async () => [1, 2].map((id) => ({ id, link: "plant-a/x", reason: "artifact_missing", messageId: `m-${id}`, peerOffset: 10 + id, state: "parked", quarantinedAtMs: id * 100 })),
    ...over,
  });

  it("reads streams, consumers, links and the quarantine", async () => {
    const s = await takeSnapshot(source(), linkRates(), 1_000);
    // The oldest unconfirmed fact is the one after the consumer's cursor (60), stored at 400 ms: 0.6 s before 1 s.
    expect(s.streams).toEqual([{ name: "operational", fillPercent: 12.5, rejectAtPercent: 80, maxBytes: 2 ** 30, maxAgeDays: 30, highWater: 100, oldestUnconfirmedSeconds: 1 }]);
    expect(s.consumers).toEqual([{ name: "enterprise-from-idmz-operational", stream: "operational", cursor: 60, highWater: 100, behind: 40 }]);
    expect(s.links.map((l) => [l.link, l.lagFacts, l.sinceProgressSeconds, l.holder])).toEqual([["plant-a/idmz-from-plant-a-operational", 60, 0, "idmz-sync-1:7:a1b2c3"]]);
    expect(s.quarantine.counts).toEqual([{ link: "plant-a/x", reason: "artifact_missing", count: 2 }]);
    expect(s.quarantine.entries.map((q) => [q.id, q.ageSeconds])).toEqual([[2, 1], [1, 1]]);
    expect([s.certificate, s.problems]).toEqual([undefined, []]);
  });

  it("shows a link's last error until the link moves again", async () => {
    const rates = linkRates();
    const failed = { code: "unavailable", reason: undefined, at: new Date(10_000).toISOString() };
    const at = async (now: number, over: Partial<ConsoleLink>) => (await takeSnapshot(source({ links: () => [link({ lastError: failed, ...over })] }), rates, now)).links[0]!.lastError;
    expect(await at(11_000, { state: "backing_off", cursor: 40, lagFacts: 60 })).toEqual(failed);
    // Active again but not moved yet: the error still explains the standstill.
    expect(await at(12_000, { state: "active", cursor: 40, lagFacts: 60 })).toEqual(failed);
    expect(await at(13_000, { state: "active", cursor: 70, lagFacts: 30 })).toBeUndefined();
    // Paused by an operator afterwards: the old error does not come back.
    expect(await at(14_000, { state: "paused", cursor: 70, lagFacts: 30 })).toBeUndefined();
  });

  it("shows error text only to operators and a quarantine entry's detail only to viewers who may read the quarantine", async () => {
    const failed = { code: "unavailable", reason: undefined, at: new Date(10_000).toISOString(), message: "connect ECONNREFUSED 10.1.2.3:8445" };
    const whole = await takeSnapshot(source({
      links: () => [link({ lastError: failed, state: "backing_off" })],
      quarantine: async () => [{ id: 1, link: "plant-a/x", reason: "from_zone_not_allowed", messageId: "m-1", peerOffset: 11, state: "parked", quarantinedAtMs: 0, detail: "idmz-bsfg may not assert from_zone \"idmz\"" }],
    }), linkRates(), 11_000);
    const seen = (viewer: Parameters<typeof viewedBy>[1]) => {
      const s = viewedBy(whole, viewer);
      return { error: s.links[0]!.lastError?.message, detail: s.quarantine.entries[0]!.detail, viewer: s.viewer?.identity };
    };
    expect(seen(undefined)).toEqual({ error: undefined, detail: undefined, viewer: undefined });
    expect(seen({ identity: "plant-viewer", operate: false, quarantine: [] })).toEqual({ error: undefined, detail: undefined, viewer: "plant-viewer" });
    expect(seen({ identity: "auditor", operate: false, quarantine: ["read"] })).toEqual({ error: undefined, detail: whole.quarantine.entries[0]!.detail, viewer: "auditor" });
    expect(seen({ identity: "estate-operator", operate: true, quarantine: ["read", "release", "drop"] })).toEqual({ error: failed.message, detail: whole.quarantine.entries[0]!.detail, viewer: "estate-operator" });
    // Codes, reasons and the time stay for everyone.
    expect(viewedBy(whole, undefined).links[0]!.lastError).toEqual({ code: "unavailable", reason: undefined, at: failed.at });
  });

  it("keeps an operator's note on a pause, and the text of what could not be read, to operators", async () => {
    const paused = { by: "estate-operator", at: new Date(0).toISOString(), note: "call 0171 555 0100 before resuming", checkedAt: new Date(1).toISOString() };
    const whole = await takeSnapshot(source({
      links: () => [link({ state: "paused", paused })],
      fillPercent: async () => { throw new Error("nats: timeout talking to 10.1.2.3:4222"); },
    }), linkRates(), 11_000);
    const anonymous = viewedBy(whole, undefined);
    expect(anonymous.links[0]!.paused).toEqual({ by: "estate-operator", at: paused.at, checkedAt: paused.checkedAt });
    expect(anonymous.problems).toEqual(["stream operational"]);
    const operator = viewedBy(whole, { identity: "estate-operator", operate: true, quarantine: [] });
    expect(operator.links[0]!.paused).toEqual(paused);
    expect(operator.problems).toEqual(["stream operational: nats: timeout talking to 10.1.2.3:4222"]);
  });

  it("shows what it could not read instead of failing the page", async () => {
    const s = await takeSnapshot(source({ fillPercent: async () => { throw new Error("JetStream did not answer"); } }), linkRates());
    expect(s.problems).toEqual(["stream operational: JetStream did not answer"]);
    expect(s.links).toHaveLength(1);
  });
});

describe("the console page", () => {
  it("is one self-contained document: no script, style or font from anywhere, the zone name escaped", () => {
    const html = consolePage("<img src=x onerror=alert(1)>");
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html).toContain("&#60;img src=x onerror=alert(1)&#62;");
    expect(html).toContain("Content-Security-Policy");
    expect(escapeHtml(`"'&`)).toBe("&#34;&#39;&#38;");
  });
});
