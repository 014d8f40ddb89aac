import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { estateIdentities, startTestEstate, type EstateTopology, type TestEstate } from "@bsfg/estate-kit";
import { ensureDevPki, issueCertificate, type CertificateAuthority } from "@bsfg/pki";
import type { LinkStatus } from "@bsfg/replication";
import { pollUntil } from "@bsfg/testkit";
import { checkCrossed, logOf, produce, syncBin, withPrefix } from "./estate-support.js";

const topology: EstateTopology = {
  zones: ["enterprise", "plant-a"],
  categories: ["operational"],
  producers: { enterprise: ["erp-producer"], "plant-a": ["mes-producer"] },
  buckets: ["batch-files"],
};
const LINK = "plant-a/enterprise-from-plant-a-operational";

describe("a rotated sync client certificate", () => {
  let dir: string;
  let estate: TestEstate | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-certificates-"));
  });
  afterEach(async () => {
    await estate?.dispose();
    estate = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it("is presented to the peer after SIGHUP, without restarting the sync worker", async () => {
    // (A rotation keeps the certificate's identity: a certificate of another name is refused by
    // the reload itself, see packages/boundary/src/tls-rotation.test.ts.)
    // Enterprise's worker presents a client certificate of its own, from files the test rotates.
    const syncCert = join(dir, "enterprise-sync.crt");
    const syncKey = join(dir, "enterprise-sync.key");
    // The estate's dev PKI, made first (the estate reuses it), so the worker's files exist when it starts.
    const pki = await ensureDevPki(join(dir, "pki"), { identities: estateIdentities(topology) });
    const ca: CertificateAuthority = { certPem: readFileSync(pki.caCert, "utf8"), keyPem: readFileSync(pki.caKey, "utf8"), name: "BSFG Dev CA" };
    const rotate = async (identity: string, usage: "client" | "server" = "client") => {
      // No SANs in either: a client certificate has none, and a rotation keeps the names.
      const issued = await issueCertificate(ca, { identity, usage, dnsNames: [], ipAddresses: [] });
      await writeFile(syncKey, issued.keyPem, { mode: 0o600 });
      await writeFile(syncCert, issued.certPem);
    };
    await rotate("enterprise-bsfg");
    estate = await startTestEstate({
      dir,
      topology,
      sync: false,
      // Short long polls: one sent before the rotation still goes out with the old certificate.
      extra: (zone) => ({ sync: { maxWait: "1s", backoff: { initial: "100ms", max: "500ms" }, ...(zone === "enterprise" ? { tls: { cert: syncCert, key: syncKey } } : {}) } }),
    });
    const worker = await estate.startSync("enterprise", { child: { syncBin } });
    const linkState = async () => (await worker.status()).find((l: LinkStatus) => l.link === LINK);
    const producer = estate.client("plant-a", "mes-producer");

    await produce(producer, "plant-a", "enterprise", 200, "first");
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "first").length === 200, { timeoutMs: 30_000, what: "the first 200 facts in Enterprise" });

    // A certificate PlantA's TLS server refuses (same identity, but issued for server use only):
    // after SIGHUP the worker presents it, and its calls fail (once the long poll it had sent
    // before, with the old certificate, has ended).
    const rotatedAt = new Date().toISOString();
    await rotate("enterprise-bsfg", "server");
    await worker.reloadTls();
    await pollUntil(() => worker.logLines.some((l) => l.event === "tls_reloaded" && l.certificate === "sync-client"), { timeoutMs: 10_000, what: "the worker reloading its certificate" });
    const refused = await pollUntil(async () => {
      const status = await linkState();
      return status?.lastError !== undefined && status.lastError.at > rotatedAt ? status : undefined;
    }, { timeoutMs: 20_000, intervalMs: 50, what: "PlantA refusing the rotated certificate" });
    expect(refused.lastError!.message).not.toBe("");
    await produce(producer, "plant-a", "enterprise", 50, "refused");
    // Refused again on an attempt after they were appended (the link backs off and retries): none of them crosses.
    const producedAt = new Date().toISOString();
    await pollUntil(async () => ((await linkState())?.lastError?.at ?? "") > producedAt, { timeoutMs: 10_000, intervalMs: 50, what: "a refused attempt after the facts were appended" });
    expect(withPrefix(await logOf(estate, "enterprise"), "refused")).toEqual([]);

    // A renewed certificate of the right identity: the link carries on where it stopped, exactly once.
    await rotate("enterprise-bsfg");
    await worker.reloadTls();
    await pollUntil(async () => withPrefix(await logOf(estate!, "enterprise"), "refused").length === 50, { timeoutMs: 30_000, what: "the 50 held-back facts in Enterprise" });
    for (const prefix of ["first", "refused"]) {
      const crossed = checkCrossed(withPrefix(await logOf(estate, "plant-a"), prefix), withPrefix(await logOf(estate, "enterprise"), prefix));
      expect({ prefix, missing: crossed.missing.length, duplicated: crossed.duplicated.length, outOfOrder: crossed.outOfOrder.length }).toEqual({ prefix, missing: 0, duplicated: 0, outOfOrder: 0 });
    }
    expect((await linkState())?.state).toBe("active");
  }, 120_000);
});
