import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, threeZoneEstate, type TestEstate } from "@bsfg/estate-kit";
import { produce } from "./estate-support.js";

/*
 * The zone console (docs/operations.md, "Console") in a real browser: Debian's chromium,
 * driven by playwright-core, against a live estate. scripts/test.sh installs chromium.
 */

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
/** Where the screenshots of each state go, with the test results. */
const SHOTS = join(import.meta.dirname, "..", ".vitest", "console");
const LINK = "plant-a/idmz-from-plant-a-operational";

describe("the zone console, in a browser", () => {
  let dir: string;
  let estate: TestEstate;
  let browser: Browser;
  let page: Page;
  let origin: string;
  const requests: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-console-"));
    await mkdir(SHOTS, { recursive: true });
    estate = await startTestEstate({
      dir,
      proxies: true,
      // An IDMZ producer whose facts Enterprise's policy does not let IDMZ relay: each is set aside there.
      topology: { ...threeZoneEstate, producers: { ...threeZoneEstate.producers, idmz: ["idmz-producer"] } },
      extra: (zone) => ({
        sync: { backoff: { initial: "100ms", max: "1s" } },
        ...(zone === "enterprise" ? { policy: { "idmz-bsfg": { assertFromZones: ["plant-a"] } } } : {}),
      }),
    });
    origin = estate.zones.idmz!.syncs[0]!.probeUrl!;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // As root chromium needs --no-sandbox; the rest keeps it from calling out (this machine's network is closed).
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(`${origin}/console`);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await estate?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const row = () => page.locator("#links tbody tr", { hasText: LINK });
  const column = async (n: number) => (await row().locator("td").nth(n).textContent()) ?? "";
  const until = (what: () => Promise<boolean>, message: string, timeout = 30_000) => expect.poll(what, { timeout, interval: 250, message }).toBe(true);

  it("shows the zone, its streams and each link it pulls, moving", async () => {
    await until(async () => (await page.locator("#zone").textContent()) === "idmz" && (await row().count()) === 1, "the IDMZ console listing the link from PlantA");
    await until(async () => (await column(1)) === "active", "the link active");
    expect(await page.locator("#streams tbody tr").count()).toBe(3);
    expect(await page.locator("#facts").textContent()).toMatch(/certificate valid \d+ more days/);
    await page.screenshot({ path: join(SHOTS, "1-idle.png"), fullPage: true });
  });

  it("shows the lag rise while facts cross a slow link, then fall to zero", async () => {
    const proxy = estate.proxy("idmz", "plant-a");
    proxy.shape({ bytesPerSecond: 48 * 1024 });
    try {
      const producing = produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 3_000, "console-lag");
      await until(async () => /^[1-9]\d* facts/.test(await column(3)), "a lag of some facts on the page");
      await page.screenshot({ path: join(SHOTS, "2-lagging.png"), fullPage: true });
      await producing;
    } finally {
      proxy.shape({});
    }
    await until(async () => (await column(3)).startsWith("0 facts"), "the lag back at zero", 60_000);
    // How long the facts took to cross, from their storage in PlantA to their append in the IDMZ.
    await until(async () => /^\d+ (ms|s) \/ \d+ (ms|s)$/.test(await column(5)), "the crossing latency's p50 and p99");
    // The link's facts/s chart has points once two samples 10 s apart were taken.
    expect(await row().locator("svg title").textContent()).toMatch(/facts\/s|no samples yet/);
  }, 120_000);

  it("shows a cut link backing off with its error, and moving again once restored, the error gone", async () => {
    const proxy = estate.proxy("idmz", "plant-a");
    proxy.cut();
    try {
      await produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 10, "console-cut");
      await until(async () => (await column(1)) === "backing off" && /^(unavailable|aborted|deadline_exceeded)/.test(await column(7)), "the link backing off with its error's code");
      await page.screenshot({ path: join(SHOTS, "3-cut.png"), fullPage: true });
    } finally {
      proxy.restore();
    }
    // Moving again, the link no longer shows the error that stopped it.
    await until(async () => (await column(1)) === "active" && (await column(3)).startsWith("0 facts") && (await column(7)) === "—", "the link active, caught up and without its error again", 60_000);
    await page.screenshot({ path: join(SHOTS, "4-restored.png"), fullPage: true });
  }, 120_000);

  it("lists a relayed fact its zone set aside, with its reason, and counts it by link and reason", async () => {
    const messageId = `console-poison-${Date.now()}`;
    await estate.client("idmz", "idmz-producer").appendFact({
      envelope: { messageId, fromZone: "idmz", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
      fact: { subject: "batch:IDMZ/P1", predicate: "step_completed", objectJson: '{"step":"poison"}' },
    });
    const enterprise = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    enterprise.on("request", (request) => requests.push(request.url()));
    const enterpriseOrigin = estate.zones.enterprise!.syncs[0]!.probeUrl!;
    try {
      await enterprise.goto(`${enterpriseOrigin}/console`);
      const entry = enterprise.locator("#quarantined tbody tr", { hasText: messageId });
      await until(async () => (await entry.count()) === 1, "the poison fact listed in Enterprise's quarantine");
      expect(await entry.locator("td").nth(2).textContent()).toBe("from_zone_not_allowed");
      expect(await entry.locator("td").nth(1).textContent()).toBe("idmz/enterprise-from-idmz-operational");
      expect(await enterprise.locator("#quarantine tbody tr", { hasText: "from_zone_not_allowed" }).locator("td").nth(2).textContent()).toBe("1");
      await enterprise.screenshot({ path: join(SHOTS, "5-quarantine.png"), fullPage: true });
    } finally {
      await enterprise.close();
    }
    // Both pages asked only their own zone.
    expect(requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith(`${enterpriseOrigin}/`))).toEqual([]);
  });

  it("never asks anything of anyone but the zone", () => {
    const idmzPage = requests.filter((url) => url.startsWith(`${origin}/`));
    expect(idmzPage.length).toBeGreaterThan(3);
    expect(requests.filter((url) => !url.startsWith("http://127.0.0.1:"))).toEqual([]);
  });
});
