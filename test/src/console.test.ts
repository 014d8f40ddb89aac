import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, threeZoneEstate, type TestEstate } from "@bsfg/estate-kit";
import { ensureDevPki } from "@bsfg/pki";
import { logOf, produce, withPrefix } from "./estate-support.js";

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
      // Every sync replica also serves the console over mTLS, for the operator tests.
      consoles: true,
      // An IDMZ producer whose facts Enterprise's policy does not let IDMZ relay: each is set aside there.
      topology: { ...threeZoneEstate, producers: { ...threeZoneEstate.producers, idmz: ["idmz-producer"] } },
      extra: (zone) => ({
        sync: { backoff: { initial: "100ms", max: "1s" } },
        ...(zone === "enterprise" ? { policy: { "idmz-bsfg": { assertFromZones: ["plant-a"] } } } : {}),
        // A plant engineer who may look at the IDMZ's console over mTLS, not act from it; and an
        // identity that may operate the console but has no quarantine verb.
        ...(zone === "idmz" ? { policy: { "plant-viewer": { console: "view" }, "idmz-producer": { console: "operate" } } } : {}),
      }),
    });
    // The viewer's certificate, from the estate's CA (the operator's came with the estate).
    await ensureDevPki(join(dir, "pki"), { identities: [{ identity: "plant-viewer", usage: "client" }] });
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
    // Which replica pulls it: the holder of its lease.
    const holders = estate.zones.idmz!.syncs.map((r) => r.holder);
    await until(async () => {
      const text = await column(0);
      return holders.some((h) => text === `${LINK}held by ${h}`);
    }, "the replica holding the link named");
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

  describe("over mTLS, as an identity of the zone's policy", () => {
    let consoleUrl: string;
    const contexts: BrowserContext[] = [];
    /** Every request the mTLS pages made. */
    const secureRequests: string[] = [];
    beforeAll(() => {
      consoleUrl = estate.zones.idmz!.syncs[0]!.consoleUrl!;
    });
    afterAll(async () => {
      for (const context of contexts) await context.close();
    });
    /** A browser that presents `identity`'s client certificate to the IDMZ console. */
    async function as(identity: string | undefined, colorScheme: "light" | "dark" = "light"): Promise<Page> {
      const files = identity === undefined ? undefined : { cert: await readFile(join(dir, "pki", `${identity}.crt`)), key: await readFile(join(dir, "pki", `${identity}.key`)) };
      const context = await browser.newContext({
        viewport: { width: 1280, height: 1000 },
        colorScheme,
        // The zone's server certificate is from the estate's dev CA, which this browser does not know.
        ignoreHTTPSErrors: true,
        ...(files ? { clientCertificates: [{ origin: consoleUrl, ...files }] } : {}),
      });
      contexts.push(context);
      const opened = await context.newPage();
      opened.on("request", (request) => secureRequests.push(request.url()));
      return opened;
    }
    const linkRow = (on: Page) => on.locator("#links tbody tr", { hasText: LINK });
    const state = async (on: Page) => (await linkRow(on).locator("td").nth(1).textContent()) ?? "";
    const auditFacts = async (predicate: string) => (await logOf(estate, "idmz", "audit")).filter((f) => f.message?.fact?.predicate === predicate);
    /** Confirms the dialog the page opened (with a note), as an operator would. */
    async function confirm(on: Page, note?: string) {
      const dialog = on.locator("dialog#confirm");
      await until(() => dialog.isVisible(), "the confirmation dialog open");
      if (note !== undefined) await dialog.locator("textarea").fill(note);
      await dialog.locator("#confirm-go").click();
    }

    it("refuses a browser without a client certificate, and an identity whose policy grants no console", async () => {
      const anonymous = await as(undefined);
      await expect(anonymous.goto(`${consoleUrl}/console`)).rejects.toThrow(/ERR_|net::/);
      const producer = await as("mes-producer");
      const answer = await producer.goto(`${consoleUrl}/console`);
      expect(answer!.status()).toBe(403);
      expect(await producer.locator("body").textContent()).toMatch(/^permission_denied \/ (operator_not_allowed|unknown_identity): /);
    });

    it("shows a viewer without operate no action, and refuses the action when called directly", async () => {
      // In the dark scheme (its screenshot shows it).
      const viewer = await as("plant-viewer", "dark");
      const answer = await viewer.goto(`${consoleUrl}/console`);
      // No other site may frame the page and steer an operator's clicks (the certificate goes with a framed page too).
      expect(answer!.headers()).toMatchObject({ "x-frame-options": "DENY", "content-security-policy": expect.stringContaining("frame-ancestors 'none'") });
      await until(async () => (await state(viewer)) === "active", "the link on the viewer's page");
      expect(await viewer.locator("#viewer").textContent()).toBe("signed in as plant-viewer · read-only");
      // The dark scheme follows the system setting.
      expect(await viewer.evaluate("getComputedStyle(document.body).backgroundColor")).toBe("rgb(13, 17, 23)");
      expect(await viewer.locator("main button").count()).toBe(0);
      expect(await viewer.locator("th.operate").first().isHidden()).toBe(true);
      // The endpoint the buttons would call, called as the page would.
      const direct = await viewer.request.post(`${consoleUrl}/console/actions/pause`, { headers: { "x-bsfg-console": "1" }, data: { link: LINK } });
      expect([direct.status(), await direct.json()]).toEqual([403, expect.objectContaining({ code: "permission_denied", reason: "operator_not_allowed" })]);
      // The probe port's console refuses it too, for anyone.
      const probe = await fetch(`${origin}/console/actions/pause`, { method: "POST", headers: { "content-type": "application/json", "x-bsfg-console": "1" }, body: JSON.stringify({ link: LINK }) });
      expect([probe.status, await probe.json()]).toEqual([403, expect.objectContaining({ code: "permission_denied", reason: "operator_not_allowed" })]);
      expect((await estate.zones.idmz!.syncs[0]!.status()).find((l) => l.link === LINK)?.state).toBe("active");
      await viewer.screenshot({ path: join(SHOTS, "6-viewer.png"), fullPage: true });
    });

    it("refuses an action without the console's header, from another origin, or a quarantine verb the identity lacks", async () => {
      const operator = await as("estate-operator");
      const post = (verb: string, headers: Record<string, string>, data: object) => operator.request.post(`${consoleUrl}/console/actions/${verb}`, { headers, data });
      const refused = async (answer: Awaited<ReturnType<typeof post>>) => [answer.status(), ((await answer.json()) as { reason: string }).reason];
      expect(await refused(await post("pause", {}, { link: LINK }))).toEqual([403, "operator_not_allowed"]);
      expect(await refused(await post("pause", { "x-bsfg-console": "1", origin: "https://evil.example" }, { link: LINK }))).toEqual([403, "operator_not_allowed"]);
      // console: operate, but no quarantine verb: no release.
      const noVerbs = await as("idmz-producer");
      const release = await noVerbs.request.post(`${consoleUrl}/console/actions/release`, { headers: { "x-bsfg-console": "1" }, data: { id: 1 } });
      expect([release.status(), ((await release.json()) as { reason: string }).reason]).toEqual([403, "operator_not_allowed"]);
      expect((await estate.zones.idmz!.syncs[0]!.status()).find((l) => l.link === LINK)?.state).toBe("active");
    });

    it("lets an operator pause a link, with confirmation and an audit fact: facts wait in PlantA until it is resumed, then cross once", async () => {
      const operator = await as("estate-operator");
      await operator.goto(`${consoleUrl}/console`);
      await until(async () => (await state(operator)) === "active", "the link on the operator's page");
      expect(await operator.locator("#viewer").textContent()).toBe("signed in as estate-operator · may operate (quarantine: read, release, drop)");
      await linkRow(operator).getByRole("button", { name: "Pause" }).click();
      await confirm(operator, "PlantA MES upgrade");
      await until(async () => (await state(operator)).startsWith("paused by estate-operator") && (await state(operator)).endsWith("PlantA MES upgrade"), "the link paused on the page, by whom and why");
      await operator.screenshot({ path: join(SHOTS, "7-paused.png"), fullPage: true });
      // Nobody holds a paused link.
      await until(async () => (await linkRow(operator).locator("td").first().textContent()) === LINK, "no replica named as holding the paused link");
      expect((await auditFacts("link_paused")).map((f) => [f.message!.envelope!.labels.operator, JSON.parse(f.message!.fact!.objectJson)])).toEqual([
        ["estate-operator", { link: LINK, note: "PlantA MES upgrade", by: "estate-operator" }],
      ]);
      // Every replica of the IDMZ obeys: the second one too, whichever holds the lease after.
      const replicas = estate.zones.idmz!.syncs;
      await until(async () => (await Promise.all(replicas.map(async (r) => (await r.status()).find((l) => l.link === LINK)?.state))).every((st) => st === "paused"), "every IDMZ replica paused");

      await produce(estate.client("plant-a", "mes-producer"), "plant-a", "enterprise", 20, "console-paused");
      const producedAt = Date.now();
      // Every replica read its control after the facts were there, and stays paused.
      await until(async () => (await Promise.all(replicas.map(async (r) => (await r.status()).find((l) => l.link === LINK)?.paused?.checkedAt))).every((at) => at !== undefined && Date.parse(at) > producedAt), "every IDMZ replica re-reading its pause after the facts were appended");
      const consumer = "idmz-from-plant-a-operational";
      const plant = estate.store("plant-a");
      expect(await plant.cursor(consumer)).toBeLessThan(await plant.highWater("operational"));
      expect(withPrefix(await logOf(estate, "idmz"), "console-paused")).toEqual([]);

      await linkRow(operator).getByRole("button", { name: "Resume" }).click();
      await confirm(operator);
      await until(async () => withPrefix(await logOf(estate, "idmz"), "console-paused").length === 20 && (await state(operator)) === "active", "the 20 facts in the IDMZ and the link active again");
      const crossed = withPrefix(await logOf(estate, "idmz"), "console-paused").map((f) => f.message!.envelope!.messageId);
      expect(new Set(crossed).size).toBe(20);
      expect((await auditFacts("link_resumed")).map((f) => f.message!.envelope!.labels.operator)).toEqual(["estate-operator"]);
    }, 120_000);

    it("lets an operator release a quarantined fact once its cause is fixed: refused with the cause before, delivered once after, audited", async () => {
      const operator = await as("estate-operator");
      await operator.goto(`${consoleUrl}/console`);
      // A fact whose artifact PlantA lost before the IDMZ copied it (an operator deleted it there).
      const plant = estate.client("plant-a", "mes-producer");
      const report = new TextEncoder().encode("the batch report PlantA lost");
      const messageId = `console-lost-${Date.now()}`;
      const key = `lost/${messageId}.txt`;
      await estate.store("idmz").linkControls.set(LINK, { paused: true, by: "test", atMs: Date.now() });
      await until(async () => (await state(operator)).startsWith("paused"), "the link paused while the artifact is lost");
      const object = await plant.putObject({ bucket: "batch-files", key, mediaType: "text/plain" }, report);
      await plant.appendFact({
        envelope: { messageId, fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()), objectMediaType: "text/plain" },
        fact: { subject: "batch:PlantA/LOST", predicate: "report_attached", objectJson: JSON.stringify({ bucket: "batch-files", key, digest: object.digest, size: Number(object.size), media_type: "text/plain" }) },
      });
      const meta = `$O.batch-files.M.${Buffer.from(key).toString("base64").replaceAll("+", "-").replaceAll("/", "_")}`;
      await estate.store("plant-a").substrate.jsm.streams.purge("OBJ_batch-files", { filter: meta });
      expect(await estate.store("plant-a").statObject("batch-files", key)).toBeUndefined();
      await estate.store("idmz").linkControls.set(LINK, { paused: false, by: "test", atMs: Date.now() });

      const entry = operator.locator("#quarantined tbody tr", { hasText: messageId });
      await until(async () => (await entry.count()) === 1, "the fact set aside in the IDMZ's quarantine, on the operator's page");
      expect(await entry.locator("td").nth(2).textContent()).toBe("object_not_found");
      // The operator sees why, in words (the probe port's page does not).
      expect(await entry.locator("td").nth(7).textContent()).toMatch(/batch-files/);

      // Released while the artifact is still missing here: refused, with the cause.
      await entry.getByRole("button", { name: "Release" }).click();
      await confirm(operator);
      await until(async () => /^refused: failed_precondition \/ quarantine_cause_holds: /.test((await operator.locator("#action-result").textContent()) ?? ""), "the release refused with its cause");
      await operator.screenshot({ path: join(SHOTS, "8-release-refused.png"), fullPage: true });

      // Fixed: the artifact restored into the IDMZ from the plant's backup. Released from the page, it is admitted once.
      await estate.client("idmz", "idmz-producer").putObject({ bucket: "batch-files", key, mediaType: "text/plain" }, report);
      await entry.getByRole("button", { name: "Release" }).click();
      await confirm(operator, "restored from the plant's backup");
      await until(async () => /^entry \d+ released: offset \d+ of operational$/.test((await operator.locator("#action-result").textContent()) ?? ""), "the release done");
      await until(async () => (await entry.count()) === 0, "the entry gone from the quarantine list");
      const inIdmz = (await logOf(estate, "idmz")).filter((f) => f.message?.envelope?.messageId === messageId);
      expect(inIdmz).toHaveLength(1);
      // And on to Enterprise, once, with its artifact.
      await until(async () => (await logOf(estate, "enterprise")).some((f) => f.message?.envelope?.messageId === messageId), "the released fact in Enterprise", 60_000);
      expect((await logOf(estate, "enterprise")).filter((f) => f.message?.envelope?.messageId === messageId)).toHaveLength(1);
      expect(await estate.store("enterprise").statObject("batch-files", key)).toMatchObject({ digest: object.digest });
      const audit = (await auditFacts("quarantine_released")).map((f) => JSON.parse(f.message!.fact!.objectJson) as Record<string, unknown>);
      expect(audit).toEqual([expect.objectContaining({ message_id: messageId, reason: "object_not_found", by: "estate-operator", note: "restored from the plant's backup" })]);
      await operator.screenshot({ path: join(SHOTS, "9-released.png"), fullPage: true });
    }, 120_000);

    it("asked nothing of anyone but the zone's console over mTLS", () => {
      expect(secureRequests.length).toBeGreaterThan(3);
      expect(secureRequests.filter((url) => !url.startsWith(`${consoleUrl}/`))).toEqual([]);
    });
  });

  it("never asks anything of anyone but the zone", () => {
    const idmzPage = requests.filter((url) => url.startsWith(`${origin}/`));
    expect(idmzPage.length).toBeGreaterThan(3);
    expect(requests.filter((url) => !url.startsWith("http://127.0.0.1:"))).toEqual([]);
  });
});
