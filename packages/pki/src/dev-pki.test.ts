import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority } from "./ca.js";
import { describeCertificate } from "./describe.js";
import { ensureDevPki, type DevIdentity } from "./dev-pki.js";
import { issueCertificate } from "./issue.js";
import { connectClient, startMtlsServer, useTempDirs } from "./test-support.js";

const ESTATE: DevIdentity[] = [
  { identity: "plant-a-bsfg", usage: "both" },
  { identity: "enterprise-bsfg", usage: "server" },
  { identity: "mes-producer", usage: "client" },
];

const tempDir = useTempDirs();

async function snapshot(dir: string): Promise<Record<string, string>> {
  const names = ["ca.crt", "ca.key", ...ESTATE.flatMap(({ identity }) => [`${identity}.crt`, `${identity}.key`])];
  const entries = await Promise.all(names.map(async (n) => [n, await readFile(join(dir, n), "utf8")] as const));
  return Object.fromEntries(entries);
}

describe("ensureDevPki", () => {
  it("writes ca.crt, ca.key and a certificate and key per identity; keys are 0600", async () => {
    const dir = await tempDir();
    const pki = await ensureDevPki(dir, { identities: ESTATE });

    expect(pki.caCert).toBe(join(dir, "ca.crt"));
    expect(pki.files).toEqual({
      "plant-a-bsfg": { cert: join(dir, "plant-a-bsfg.crt"), key: join(dir, "plant-a-bsfg.key") },
      "enterprise-bsfg": { cert: join(dir, "enterprise-bsfg.crt"), key: join(dir, "enterprise-bsfg.key") },
      "mes-producer": { cert: join(dir, "mes-producer.crt"), key: join(dir, "mes-producer.key") },
    });
    expect(pki.outcome.ca).toEqual({ action: "issued", reason: "no CA yet" });
    for (const { identity } of ESTATE) expect(pki.outcome.identities[identity]).toEqual({ action: "issued", reason: "no certificate yet" });

    for (const key of [pki.caKey, ...Object.values(pki.files).map((f) => f.key)]) {
      expect((await stat(key)).mode & 0o777).toBe(0o600);
    }
    const ca = describeCertificate(await readFile(pki.caCert, "utf8"));
    const mes = describeCertificate(await readFile(join(dir, "mes-producer.crt"), "utf8"));
    expect(mes).toMatchObject({ subjectCN: "mes-producer", issuerCN: ca.subjectCN });
  });

  it("is idempotent: a second run reuses every file byte for byte", async () => {
    const dir = await tempDir();
    await ensureDevPki(dir, { identities: ESTATE });
    const before = await snapshot(dir);

    const again = await ensureDevPki(dir, { identities: ESTATE });

    expect(again.outcome.ca).toEqual({ action: "reused" });
    for (const { identity } of ESTATE) expect(again.outcome.identities[identity]).toEqual({ action: "reused" });
    expect(await snapshot(dir)).toEqual(before);
  });

  it("re-issues only the leaf whose SANs changed, under the same CA", async () => {
    const dir = await tempDir();
    await ensureDevPki(dir, { identities: ESTATE });
    const before = await snapshot(dir);

    const changed = ESTATE.map((id) => (id.identity === "enterprise-bsfg" ? { ...id, dnsNames: ["enterprise.bsfg.local"] } : id));
    const pki = await ensureDevPki(dir, { identities: changed });

    expect(pki.outcome.ca).toEqual({ action: "reused" });
    expect(pki.outcome.identities["enterprise-bsfg"]).toMatchObject({ action: "issued", reason: expect.stringMatching(/^SANs changed/) });
    expect(pki.outcome.identities["plant-a-bsfg"]).toEqual({ action: "reused" });
    const after = await snapshot(dir);
    expect(after["ca.crt"]).toBe(before["ca.crt"]);
    expect(after["plant-a-bsfg.crt"]).toBe(before["plant-a-bsfg.crt"]);
    expect(after["enterprise-bsfg.crt"]).not.toBe(before["enterprise-bsfg.crt"]);
    expect(after["enterprise-bsfg.key"]).not.toBe(before["enterprise-bsfg.key"]);
    expect(describeCertificate(after["enterprise-bsfg.crt"] ?? "")).toMatchObject({
      dnsNames: ["enterprise.bsfg.local"],
      ipAddresses: ["127.0.0.1", "::1"],
    });
  });

  it("re-issues a leaf whose usage changed", async () => {
    const dir = await tempDir();
    await ensureDevPki(dir, { identities: [{ identity: "mes-producer", usage: "client" }] });
    const pki = await ensureDevPki(dir, { identities: [{ identity: "mes-producer", usage: "both" }] });
    expect(pki.outcome.identities["mes-producer"]).toEqual({ action: "issued", reason: "usage is client, wanted both" });
  });

  it("replaces a CA that expires within 7 days, and with it every leaf", async () => {
    const dir = await tempDir();
    const dying = await createCertificateAuthority({ validDays: 3 });
    await writeFile(join(dir, "ca.crt"), dying.certPem);
    await writeFile(join(dir, "ca.key"), dying.keyPem, { mode: 0o600 });
    const oldLeaf = await issueCertificate(dying, { identity: "mes-producer", usage: "client" });
    await writeFile(join(dir, "mes-producer.crt"), oldLeaf.certPem);
    await writeFile(join(dir, "mes-producer.key"), oldLeaf.keyPem, { mode: 0o600 });

    const pki = await ensureDevPki(dir, { identities: [{ identity: "mes-producer", usage: "client" }] });

    expect(pki.outcome.ca).toMatchObject({ action: "issued", reason: expect.stringMatching(/^CA expires in 3\.0 days/) });
    expect(pki.outcome.identities["mes-producer"]).toEqual({ action: "issued", reason: "not issued by the current CA" });
    expect(await readFile(pki.caCert, "utf8")).not.toBe(dying.certPem);
  });

  it("re-issues a leaf that expires within 7 days, or that was signed by another CA", async () => {
    const dir = await tempDir();
    const first = await ensureDevPki(dir, { identities: [{ identity: "plant-a-bsfg", usage: "both" }, { identity: "mes-producer", usage: "client" }] });
    const ca = { certPem: await readFile(first.caCert, "utf8"), keyPem: await readFile(first.caKey, "utf8"), name: "BSFG Dev CA" };
    const shortLived = await issueCertificate(ca, { identity: "plant-a-bsfg", usage: "both", validDays: 2 });
    await writeFile(join(dir, "plant-a-bsfg.crt"), shortLived.certPem);
    await writeFile(join(dir, "plant-a-bsfg.key"), shortLived.keyPem);
    const foreign = await issueCertificate(await createCertificateAuthority(), { identity: "mes-producer", usage: "client" });
    await writeFile(join(dir, "mes-producer.crt"), foreign.certPem);
    await writeFile(join(dir, "mes-producer.key"), foreign.keyPem);

    const pki = await ensureDevPki(dir, { identities: [{ identity: "plant-a-bsfg", usage: "both" }, { identity: "mes-producer", usage: "client" }] });

    expect(pki.outcome.ca).toEqual({ action: "reused" });
    expect(pki.outcome.identities["plant-a-bsfg"]).toMatchObject({ action: "issued", reason: expect.stringMatching(/^certificate expires in 2\.0 days/) });
    expect(pki.outcome.identities["mes-producer"]).toEqual({ action: "issued", reason: "not issued by the current CA" });
    // Keys written over an existing, looser file still end up private.
    expect((await stat(pki.files["plant-a-bsfg"]?.key ?? "")).mode & 0o777).toBe(0o600);
  });

  it("re-issues when a key file no longer matches its certificate", async () => {
    const dir = await tempDir();
    const pki = await ensureDevPki(dir, { identities: [{ identity: "a", usage: "client" }, { identity: "b", usage: "client" }] });
    await writeFile(pki.files["a"]?.key ?? "", await readFile(pki.files["b"]?.key ?? "", "utf8"));
    const again = await ensureDevPki(dir, { identities: [{ identity: "a", usage: "client" }, { identity: "b", usage: "client" }] });
    expect(again.outcome.identities["a"]).toEqual({ action: "issued", reason: "existing certificate unusable: key does not match certificate" });
    expect(again.outcome.identities["b"]).toEqual({ action: "reused" });
  });

  it("refuses identities that cannot be file names or would clobber the CA", async () => {
    const dir = await tempDir();
    await expect(ensureDevPki(dir, { identities: [{ identity: "../escape", usage: "client" }] })).rejects.toThrow(/file name/);
    await expect(ensureDevPki(dir, { identities: [{ identity: "ca", usage: "client" }] })).rejects.toThrow(/collide/);
    await expect(
      ensureDevPki(dir, { identities: [{ identity: "x", usage: "client" }, { identity: "x", usage: "server" }] }),
    ).rejects.toThrow(/twice/);
  });

  it("produces files that node:tls uses for a mutual-TLS handshake as they are on disk", async () => {
    const dir = await tempDir();
    const pki = await ensureDevPki(dir, { identities: ESTATE });
    const read = (path: string | undefined): Promise<string> => readFile(path ?? "", "utf8");
    const ca = await read(pki.caCert);
    const server = await startMtlsServer({ key: await read(pki.files["enterprise-bsfg"]?.key), cert: await read(pki.files["enterprise-bsfg"]?.cert), ca });
    try {
      const [serverSide, clientSide] = await Promise.all([
        server.nextHandshake(),
        connectClient({ port: server.port, servername: "localhost", ca, key: await read(pki.files["plant-a-bsfg"]?.key), cert: await read(pki.files["plant-a-bsfg"]?.cert) }),
      ]);
      expect(serverSide).toMatchObject({ ok: true, peerCN: "plant-a-bsfg" });
      expect(clientSide.received).toBe("hello plant-a-bsfg\n");
    } finally {
      await server.close();
    }
  });
});
