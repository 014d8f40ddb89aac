import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestEstate, type TestEstate } from "@bsfg/estate-kit";
import { pollUntil } from "@bsfg/testkit";

/** The CLI deployable, as CI builds it before this suite runs. */
const cliBin = fileURLToPath(new URL("../../apps/cli/dist/main.js", import.meta.url));
const run = promisify(execFile);

describe("the bsfg CLI against a running zone", () => {
  let dir: string;
  let estate: TestEstate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-cli-"));
    // One zone is enough: the CLI talks to its ingest over mTLS like any producer.
    estate = await startTestEstate({
      dir,
      topology: { zones: ["plant-a"], categories: ["operational"], producers: { "plant-a": ["mes-producer"] }, buckets: [] },
      sync: false,
    });
  });
  afterAll(async () => {
    await estate?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers `bsfg append --id X` run twice with DUPLICATE, the first offset and the first produced_at", async () => {
    const id = `cli-retry-${process.pid}-${Date.now()}`;
    const append = async () => {
      const { stdout } = await run(process.execPath, [
        cliBin, "append", "--url", estate.zones["plant-a"]!.url, "--identity", "mes-producer", "--pki", join(dir, "pki"),
        "--subject", "batch:PlantA/B1042", "--predicate", "step_completed", "--object", '{"result":"ok","step":"sterile_filter"}',
        "--from", "plant-a", "--to", "plant-a", "--id", id,
      ]);
      return JSON.parse(stdout.trim()) as { offset: string; status: string; messageId: string; producedAtUnixMs: string };
    };
    const first = await append();
    // Each run stamps produced_at with its own clock; make sure the retry's is a later one.
    await pollUntil(() => Date.now() > Number(first.producedAtUnixMs), { what: "the clock past the first run's produced_at" });
    const second = await append();
    expect(first).toMatchObject({ status: "APPEND_STATUS_APPENDED", messageId: id });
    expect(second).toEqual({ ...first, status: "APPEND_STATUS_DUPLICATE" });
    const stored = (await estate.store("plant-a").read({ stream: "operational", skipOrigins: [] }, 0)).facts.filter((f) => f.message!.envelope!.messageId === id);
    expect(stored.map((f) => [f.offset, f.message!.envelope!.producedAtUnixMs])).toEqual([[BigInt(first.offset), BigInt(first.producedAtUnixMs)]]);
  });
});
