import { execFile, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, threeZoneEstate, type TestEstate } from "@bsfg/estate-kit";
import { FactMessageSchema } from "@bsfg/proto";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, logOf, produce, readAll, withPrefix } from "./estate-support.js";

/*
 * No fact can hold a link. Over the three-zone estate, a poison fact of each
 * kind goes first, then 1,000 good facts: the good ones arrive in Enterprise in
 * order; each poison fact waits in the quarantine of the zone that refused it,
 * where the operator's CLI shows, refuses, releases and drops it.
 */

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "apps", "cli", "dist", "main.js");
const run = promisify(execFile);

describe("quarantine: poison facts are set aside and the facts behind them flow (PlantA → IDMZ → Enterprise)", () => {
  let dir: string;
  let estate: TestEstate;
  /** `bsfg quarantine …` as the estate's operator, through the real CLI. */
  let quarantine: (zone: string, ...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-quarantine-"));
    estate = await startTestEstate({
      dir,
      // An IDMZ producer, whose facts Enterprise's policy does not let IDMZ relay (a policy out of step).
      topology: { ...threeZoneEstate, producers: { ...threeZoneEstate.producers, idmz: ["idmz-producer"] } },
      extra: (zone) => (zone === "enterprise" ? { policy: { "idmz-bsfg": { assertFromZones: ["plant-a"] } } } : {}),
      storage: { quarantine: { alertAfter: "1s" } },
      // The poison goes in before any link runs, so it is first in line.
      sync: false,
    });
    quarantine = async (zone, ...args) => {
      const argv = [cli, "quarantine", ...args, "--url", estate.zones[zone]!.url, "--identity", "estate-operator", "--pki", join(dir, "pki")];
      try {
        const { stdout, stderr } = await run(process.execPath, argv);
        return { code: 0, stdout, stderr };
      } catch (err) {
        const failed = err as { code: number; stdout: string; stderr: string };
        return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };
  });
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("relays 1,000 good facts past a poison fact of each kind, and lets the operator release and drop them", async () => {
    const plant = estate.client("plant-a", "mes-producer");
    const plantStore = estate.store("plant-a");

    // 1. An artifact PlantA loses after its fact was appended (an operator deleted it there).
    const report = new TextEncoder().encode("the batch report PlantA will lose");
    const object = await plant.putObject({ bucket: "batch-files", key: "lost/report.txt", mediaType: "text/plain" }, report);
    await plant.appendFact({
      envelope: { messageId: "poison-artifact", fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()), objectMediaType: "text/plain" },
      fact: { subject: "batch:PlantA/LOST", predicate: "report_attached", objectJson: JSON.stringify({ bucket: "batch-files", key: "lost/report.txt", digest: object.digest, size: Number(object.size), media_type: "text/plain" }) },
    });
    const described = `$O.batch-files.M.${Buffer.from("lost/report.txt").toString("base64").replaceAll("+", "-").replaceAll("/", "_")}`;
    await plantStore.substrate.jsm.streams.purge("OBJ_batch-files", { filter: described });
    expect(await plantStore.statObject("batch-files", "lost/report.txt")).toBeUndefined();
    // 2. Bytes that are not a fact, and 3. a fact without a message_id, written into PlantA's log
    //    past its gateway (a faulty or older writer): the integrity and envelope checks.
    await plantStore.substrate.js.publish("facts.operational.batch", new Uint8Array([0xff, 0xff, 0xff, 0x07]));
    await plantStore.substrate.js.publish("facts.operational.batch", toBinary(FactMessageSchema, create(FactMessageSchema, {
      envelope: { fromZone: "plant-a", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
      fact: { subject: "batch:PlantA/NOID", predicate: "step_completed", objectJson: "{}" },
    })));
    // 4. A fact Enterprise's policy does not let IDMZ relay.
    await estate.client("idmz", "idmz-producer").appendFact({
      envelope: { messageId: "poison-policy", fromZone: "idmz", toZone: "enterprise", producedAtUnixMs: BigInt(Date.now()) },
      fact: { subject: "batch:IDMZ/P1", predicate: "step_completed", objectJson: "{\"from\":\"idmz\"}" },
    });
    // Then the facts that must not wait behind them.
    await produce(plant, "plant-a", "enterprise", 1_000, "good");

    const started = performance.now();
    for (const zone of ["idmz", "enterprise"]) await estate.startSync(zone);
    await pollUntil(async () => withPrefix(await logOf(estate, "enterprise"), "good").length >= 1_000, { timeoutMs: 30_000, intervalMs: 100, what: "1,000 good facts in Enterprise" });
    const crossingSeconds = (performance.now() - started) / 1000;
    const origin = withPrefix(await logOf(estate, "plant-a"), "good");
    expect(checkCrossed(origin, withPrefix(await logOf(estate, "enterprise"), "good"))).toEqual({ missing: [], duplicated: [], altered: [], outOfOrder: [] });
    // The same path carries 1,000 facts in a few seconds with no poison in it.
    expect(crossingSeconds).toBeLessThan(20);

    // Each poison fact is in the quarantine of the zone that refused it, with its reason.
    const listed = async (zone: string, ...flags: string[]) => {
      const { code, stdout, stderr } = await quarantine(zone, "list", "--json", ...flags);
      expect(code, stderr).toBe(0);
      return JSON.parse(stdout) as Array<{ id: string; state: string; reason: string; messageId?: string; link: string; peerOffset: string }>;
    };
    const idmz = await listed("idmz");
    expect(idmz.map((e) => [e.reason, e.messageId ?? "", e.link])).toEqual([
      ["object_not_found", "poison-artifact", "plant-a/idmz-from-plant-a-operational"],
      ["corrupt_fact", "", "plant-a/idmz-from-plant-a-operational"],
      ["missing_field", "", "plant-a/idmz-from-plant-a-operational"],
    ]);
    const enterprise = await listed("enterprise");
    expect(enterprise.map((e) => [e.reason, e.messageId, e.link])).toEqual([["from_zone_not_allowed", "poison-policy", "idmz/enterprise-from-idmz-operational"]]);
    expect((await listed("plant-a"))).toEqual([]);

    // The gauges read them, and the shipped alert fires on what the zone reports.
    const scraped = await estate.zones.idmz!.services.metrics.scrape();
    expect(scraped).toMatch(/bsfg_quarantined_facts\{[^}]*link="plant-a\/idmz-from-plant-a-operational"[^}]*reason="object_not_found"[^}]*\} 1\n/);
    const enterpriseScrape = await estate.zones.enterprise!.services.metrics.scrape();
    expect(enterpriseScrape).toMatch(/bsfg_quarantined_facts\{[^}]*reason="from_zone_not_allowed"[^}]*\} 1\n/);
    expect(enterpriseScrape).toMatch(/bsfg_quarantine_alert_after_seconds\{[^}]*\} 1\n/);
    await pollUntil(async () => gauge(await estate.zones.enterprise!.services.metrics.scrape(), "bsfg_quarantine_oldest_seconds") >= 2, { timeoutMs: 10_000, what: "the oldest entry older than alertAfter" });
    expect(alertFires(await estate.zones.enterprise!.services.metrics.scrape(), dir)).toBe(true);

    // Release while the cause holds is refused, with the cause.
    const policyEntry = enterprise[0]!;
    const refused = await quarantine("enterprise", "release", "--id", policyEntry.id);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stderr)).toMatchObject({ code: "FailedPrecondition", reason: "quarantine_cause_holds", cause: "from_zone_not_allowed" });
    const artifactEntry = idmz[0]!;
    const notYet = await quarantine("idmz", "release", "--id", artifactEntry.id);
    expect(JSON.parse(notYet.stderr)).toMatchObject({ reason: "quarantine_cause_holds", cause: "artifact_missing" });

    // Fixed (the artifact is put into IDMZ), the release appends it once, and it goes on to Enterprise.
    await estate.client("idmz", "idmz-producer").putObject({ bucket: "batch-files", key: "lost/report.txt", mediaType: "text/plain" }, report);
    const released = await quarantine("idmz", "release", "--id", artifactEntry.id, "--note", "artifact restored from the plant's backup", "--json");
    expect(released.code, released.stderr).toBe(0);
    const releasedAt = JSON.parse(released.stdout) as { releasedOffset: string; alreadyReleased: boolean };
    expect(releasedAt.alreadyReleased).toBe(false);
    const again = JSON.parse((await quarantine("idmz", "release", "--id", artifactEntry.id, "--json")).stdout) as { releasedOffset: string; alreadyReleased: boolean };
    expect(again).toMatchObject({ alreadyReleased: true, releasedOffset: releasedAt.releasedOffset });
    await pollUntil(async () => (await logOf(estate, "enterprise")).some((f) => f.message?.envelope?.messageId === "poison-artifact"), { timeoutMs: 15_000, what: "the released fact in Enterprise" });
    for (const zone of ["idmz", "enterprise"]) {
      expect((await logOf(estate, zone)).filter((f) => f.message?.envelope?.messageId === "poison-artifact"), zone).toHaveLength(1);
    }
    expect((await estate.store("enterprise").statObject("batch-files", "lost/report.txt"))?.digest).toBe(object.digest);

    // Drop needs a reason; with one, the entry is settled and leaves the list.
    const garbage = idmz[1]!;
    expect((await quarantine("idmz", "drop", "--id", garbage.id)).code).toBe(2);
    const dropped = await quarantine("idmz", "drop", "--id", garbage.id, "--reason", "written past the gateway by a test tool");
    expect(dropped.code, dropped.stderr).toBe(0);
    expect((await listed("idmz")).map((e) => e.reason)).toEqual(["missing_field"]);
    expect((await listed("idmz", "--all")).map((e) => [e.reason, e.state])).toEqual([["object_not_found", "released"], ["corrupt_fact", "dropped"], ["missing_field", "parked"]]);

    // Each action is a fact in IDMZ's audit stream, addressed to IDMZ only.
    const audit = (await readAll(estate.store("idmz"), "audit")).map((f) => f.message!);
    expect(audit.map((f) => [f.fact!.predicate, f.envelope!.toZone, (JSON.parse(f.fact!.objectJson) as { by: string }).by])).toEqual([
      ["quarantine_released", "idmz", "estate-operator"],
      ["quarantine_dropped", "idmz", "estate-operator"],
    ]);

    // show and export give the operator and the auditor the whole entry.
    const shown = await quarantine("idmz", "show", "--id", artifactEntry.id);
    expect(shown.stdout).toContain("reason       object_not_found");
    expect(shown.stdout).toMatch(/history .* released by estate-operator: artifact restored from the plant's backup/);
    const exportFile = join(dir, "quarantine-export.json");
    expect((await quarantine("idmz", "export", "--out", exportFile, "--all")).code).toBe(0);
    const exported = JSON.parse(readFileSync(exportFile, "utf8")) as { entries: Array<{ state: string; message: string; messageSha256: string; servedSha256: string; history: unknown[] }> };
    expect(exported.entries).toHaveLength(3);
    const corrupt = exported.entries.find((e) => e.state === "dropped")!;
    // The bytes exactly as PlantA stored them.
    expect(Buffer.from(corrupt.message, "base64")).toEqual(Buffer.from([0xff, 0xff, 0xff, 0x07]));
    expect(corrupt.history).toHaveLength(2);
  });
});

/** The value of a gauge's first series in a scrape. */
function gauge(scrape: string, name: string): number {
  const line = scrape.split("\n").find((l) => l.startsWith(`${name}{`));
  return line ? Number(line.split(" ").at(-1)) : Number.NaN;
}

/**
 * BsfgQuarantineNotEmpty over the series the zone reported: promtool evaluates
 * the shipped rule file against them, held for a minute.
 */
function alertFires(scrape: string, dir: string): boolean {
  const rulesFile = join(root, "deploy", "prometheus", "bsfg-alerts.yaml");
  // Whole seconds, so the expected summary is exact ("… 2s ago …").
  const series = scrape.split("\n").filter((l) => /^bsfg_quarantine_(oldest_seconds|alert_after_seconds)\{/.test(l)).map((line) => {
    const at = line.lastIndexOf(" ");
    return { series: line.slice(0, at), value: Math.floor(Number(line.slice(at + 1))) };
  });
  const oldest = series.find((s) => s.series.startsWith("bsfg_quarantine_oldest_seconds"))!.value;
  const description = /alert: BsfgQuarantineNotEmpty[\s\S]*?description: "(.*)"/.exec(readFileSync(rulesFile, "utf8"))![1]!;
  const link = "idmz/enterprise-from-idmz-operational";
  const test = {
    rule_files: [rulesFile],
    evaluation_interval: "15s",
    tests: [{
      interval: "15s",
      input_series: series.map(({ series, value }) => ({ series, values: `${value}x8` })),
      alert_rule_test: [{
        eval_time: "1m",
        alertname: "BsfgQuarantineNotEmpty",
        exp_alerts: [{
          exp_labels: { severity: "warning", zone: "enterprise", link },
          exp_annotations: { summary: `enterprise: link ${link} set facts aside ${oldest}s ago and they still wait`, description },
        }],
      }],
    }],
  };
  const file = join(dir, "quarantine-alert.test.json");
  writeFileSync(file, JSON.stringify(test));
  const promtool = [process.env.PROMTOOL, join(root, ".tools", "promtool")].find((p) => p && existsSync(p)) ?? "promtool";
  const result = spawnSync(promtool, ["test", "rules", file], { encoding: "utf8" });
  if (result.status !== 0) console.error(result.stdout, result.stderr);
  return result.status === 0;
}
