import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseCliArgs, parseIdentitySpec } from "./cli-args.js";
import { runCli } from "./cli-main.js";
import { describeCertificate, readExtendedKeyUsages } from "./describe.js";
import { useTempDirs } from "./test-support.js";

const tempDir = useTempDirs();

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l) }, out, err };
}

describe("parseIdentitySpec", () => {
  it("reads identity[:usage], defaulting to both", () => {
    expect(parseIdentitySpec("plant-a-bsfg")).toEqual({ identity: "plant-a-bsfg", usage: "both" });
    expect(parseIdentitySpec("mes-producer:client")).toEqual({ identity: "mes-producer", usage: "client" });
    expect(parseIdentitySpec("enterprise-bsfg:server")).toEqual({ identity: "enterprise-bsfg", usage: "server" });
    expect(() => parseIdentitySpec("x:admin")).toThrow(/unknown usage/);
  });

  it("reads DNS names after =", () => {
    expect(parseIdentitySpec("idmz-bsfg:both=idmz-egress,idmz-ledger,localhost")).toEqual({ identity: "idmz-bsfg", usage: "both", dnsNames: ["idmz-egress", "idmz-ledger", "localhost"] });
    expect(parseIdentitySpec("idmz-bsfg=idmz-egress")).toEqual({ identity: "idmz-bsfg", usage: "both", dnsNames: ["idmz-egress"] });
    expect(() => parseIdentitySpec("idmz-bsfg:both=a,,b")).toThrow(/empty DNS name/);
    expect(() => parseIdentitySpec("idmz-bsfg:admin=a")).toThrow(/unknown usage/);
  });

  it("needs a directory and at least one identity", () => {
    expect(() => parseCliArgs([])).toThrow();
    expect(() => parseCliArgs(["./pki"])).toThrow();
    expect(parseCliArgs(["./pki", "a", "b:client"]).identities).toHaveLength(2);
  });
});

describe("bsfg-dev-pki", () => {
  it("writes the PKI, then reports reuse on a second run", async () => {
    const dir = join(await tempDir(), "pki");
    const first = capture();
    expect(await runCli([dir, "plant-a-bsfg", "mes-producer:client"], first.io)).toBe(0);
    expect(first.out).toEqual([
      `CA: issued (no CA yet) -> ${join(dir, "ca.crt")}`,
      `plant-a-bsfg (both): issued (no certificate yet) -> ${join(dir, "plant-a-bsfg.crt")}`,
      `mes-producer (client): issued (no certificate yet) -> ${join(dir, "mes-producer.crt")}`,
    ]);
    const mes = await readFile(join(dir, "mes-producer.crt"), "utf8");
    expect(describeCertificate(mes).subjectCN).toBe("mes-producer");
    expect(readExtendedKeyUsages(mes)).toEqual(["1.3.6.1.5.5.7.3.2"]);

    const second = capture();
    expect(await runCli([dir, "plant-a-bsfg", "mes-producer:client"], second.io)).toBe(0);
    expect(second.out).toEqual([
      `CA: reused -> ${join(dir, "ca.crt")}`,
      `plant-a-bsfg (both): reused -> ${join(dir, "plant-a-bsfg.crt")}`,
      `mes-producer (client): reused -> ${join(dir, "mes-producer.crt")}`,
    ]);
  });

  it("issues server certificates for the DNS names given, and re-issues when they change", async () => {
    const dir = join(await tempDir(), "pki");
    const first = capture();
    expect(await runCli([dir, "idmz-bsfg:both=idmz-egress,idmz-ledger"], first.io)).toBe(0);
    const cert = new X509Certificate(await readFile(join(dir, "idmz-bsfg.crt")));
    expect(cert.checkHost("idmz-egress")).toBe("idmz-egress");
    expect(cert.checkHost("idmz-ledger")).toBe("idmz-ledger");
    expect(cert.checkHost("localhost")).toBeUndefined();
    expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");

    const again = capture();
    expect(await runCli([dir, "idmz-bsfg:both=idmz-egress,idmz-ledger,localhost"], again.io)).toBe(0);
    expect(again.out[1]).toMatch(/idmz-bsfg \(both\): issued \(SANs changed/);
    expect(new X509Certificate(await readFile(join(dir, "idmz-bsfg.crt"))).checkHost("localhost")).toBe("localhost");
  });

  it("exits 2 with usage on bad arguments and 1 when the PKI cannot be written", async () => {
    const bad = capture();
    expect(await runCli(["only-a-dir"], bad.io)).toBe(2);
    expect(bad.err.join("\n")).toMatch(/Usage: bsfg-dev-pki/);

    const failing = capture();
    expect(await runCli([await tempDir(), "../escape"], failing.io)).toBe(1);
    expect(failing.err.join("\n")).toMatch(/file name/);
  });

  it("prints help", async () => {
    const help = capture();
    expect(await runCli(["--help"], help.io)).toBe(0);
    expect(help.out.join("\n")).toMatch(/identity\[:server\|:client\|:both\]/);
  });
});
