import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "@bsfg/proto";
import { startTestZoneServices, writeIdentityFiles, type Identity, type TestZoneServices } from "./test-support.js";

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");
const buf = join(root, "node_modules/.bin/buf");

interface BufCurl {
  /** buf curl's exit code: 0, or the RPC's gRPC code shifted left by three bits. */
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** What buf curl prints on stderr for a failed RPC: the Connect JSON error, details undecoded. */
interface PrintedError {
  readonly code: string;
  readonly message: string;
  readonly details?: Array<{ type: string; value: string; debug?: unknown }>;
}

/** The JSON error buf curl printed after any verbose lines. */
const printedError = (stderr: string): PrintedError => {
  const start = stderr.search(/^\{/m);
  if (start < 0) throw new Error(`buf curl printed no JSON error:\n${stderr}`);
  return JSON.parse(stderr.slice(start)) as PrintedError;
};

/** Decodes the bsfg.v1.ErrorInfo detail buf curl printed as base64 (it cannot resolve it to JSON itself). */
const printedErrorInfo = (error: PrintedError) => {
  const detail = error.details?.find((d) => d.type === "bsfg.v1.ErrorInfo");
  if (!detail) throw new Error(`no bsfg.v1.ErrorInfo among the printed details: ${JSON.stringify(error.details)}`);
  const info = fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64"));
  return { reason: info.reason, metadata: { ...info.metadata } };
};

describe("the zone's boundary from buf curl: HTTP/2, mutual TLS, schema from proto/", () => {
  let zone: TestZoneServices;
  let dir: string;
  const credentials = {} as Record<Identity, { cert: string; key: string }>;

  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
    dir = await mkdtemp(join(tmpdir(), "bsfg-buf-curl-"));
    await writeFile(join(dir, "ca.crt"), zone.pki.ca.certPem);
    for (const identity of ["mes-producer", "enterprise-bsfg"] as const) credentials[identity] = await writeIdentityFiles(zone.pki, dir, identity);
  });
  afterAll(async () => {
    await zone?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** One `buf curl` of bsfg.v1.<service>/<method> on https://localhost:<port> as `identity`; `body` is JSON text or a value. */
  const bufCurl = (identity: Identity, protocol: "connect" | "grpc", path: string, body: unknown, opts: { verbose?: boolean } = {}): Promise<BufCurl> => {
    const { cert, key } = credentials[identity];
    const args = [
      "curl",
      "--schema", join(root, "proto"),
      "--protocol", protocol,
      "--http2-prior-knowledge",
      "--emit-defaults",
      "--cacert", join(dir, "ca.crt"),
      "--cert", cert,
      "--key", key,
      "--data", typeof body === "string" ? body : JSON.stringify(body),
      ...(opts.verbose ? ["--verbose"] : []),
      // The server certificate names localhost and 127.0.0.1: verified by name, not skipped.
      `https://localhost:${zone.deployable.server.port}/bsfg.v1.${path}`,
    ];
    return new Promise((done, fail) => {
      // buf keeps its cache under the temp dir, not in $HOME.
      const env = { ...process.env, BUF_CACHE_DIR: join(dir, "cache"), NO_COLOR: "1" };
      execFile(buf, args, { timeout: 20_000, env }, (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") fail(new Error(`buf curl did not run (${err.message}):\n${stderr}`));
        else done({ exitCode: err ? Number(err.code) : 0, stdout, stderr });
      });
    });
  };
  /** A successful call's response message, as buf curl prints it on stdout. */
  const ok = async <T,>(call: Promise<BufCurl>): Promise<T> => {
    const result = await call;
    expect(result.exitCode, `buf curl failed:\n${result.stderr}`).toBe(0);
    return JSON.parse(result.stdout) as T;
  };

  type AppendResponse = { results: Array<{ offset: string; stream: string; status: string; messageId: string; producedAtUnixMs: string }> };
  type FetchResponse = {
    facts: Array<{ offset: string; stream: string; message: { envelope: { messageId: string; fromZone: string; toZone: string }; fact: { subject: string; predicate: string; objectJson: string } } }>;
    cursor: string;
    lastOffset: string;
    highWater: string;
  };
  const appendRequest = (messageId: string, fromZone = "plant-a") => ({
    messages: [{
      envelope: { messageId, fromZone, toZone: "enterprise", producedAtUnixMs: "1764000000000" },
      fact: { subject: "batch:PlantA/B2001", predicate: "step_completed", objectJson: JSON.stringify({ step: 3, via: "buf curl" }) },
    }],
  });

  describe.each(["connect", "grpc"] as const)("over %s", (protocol) => {
    it("appends (then a retry is a duplicate), fetches the fact as the peer and confirms it", async () => {
      const messageId = `buf-${protocol}-${process.pid}-${Date.now()}`;
      const call = await bufCurl("mes-producer", protocol, "BoundaryService/AppendFact", appendRequest(messageId), { verbose: true });
      // What travelled: TLS 1.3, HTTP/2, our client certificate, the server's name verified.
      expect(call.stderr).toContain("TLS connection using TLS 1.3");
      expect(call.stderr).toContain("Server certificate is valid for localhost");
      expect(call.stderr).toContain("subject: CN=mes-producer");
      expect(call.stderr).toMatch(/< \(#1\) HTTP\/2\.0 200/);
      expect(call.stderr).toMatch(protocol === "grpc" ? /Content-Type: application\/grpc/ : /Connect-Protocol-Version: 1/);
      const appended = await ok<AppendResponse>(Promise.resolve(call));
      expect(appended.results).toEqual([{ offset: expect.stringMatching(/^[1-9]\d*$/), stream: "operational", status: "APPEND_STATUS_APPENDED", messageId, producedAtUnixMs: "1764000000000" }]);
      const offset = appended.results[0]!.offset;

      const again = await ok<AppendResponse>(bufCurl("mes-producer", protocol, "BoundaryService/AppendFact", appendRequest(messageId)));
      expect(again.results).toEqual([{ offset, stream: "operational", status: "APPEND_STATUS_DUPLICATE", messageId, producedAtUnixMs: "1764000000000" }]);

      const page = await ok<FetchResponse>(bufCurl("enterprise-bsfg", protocol, "BoundaryService/FetchFacts", { consumerName: "enterprise-from-plant-a", limit: 50 }));
      const fact = page.facts.find((f) => f.message.envelope.messageId === messageId);
      expect(fact).toMatchObject({
        offset,
        stream: "operational",
        message: { envelope: { messageId, fromZone: "plant-a", toZone: "enterprise" }, fact: { subject: "batch:PlantA/B2001", predicate: "step_completed", objectJson: JSON.stringify({ step: 3, via: "buf curl" }) } },
      });
      expect(page.facts.filter((f) => f.message.envelope.messageId === messageId)).toHaveLength(1);
      expect(BigInt(page.lastOffset)).toBeGreaterThanOrEqual(BigInt(offset));

      const confirmed = await ok<{ cursorAdvancedTo: string }>(bufCurl("enterprise-bsfg", protocol, "BoundaryService/ConfirmReceipt", { consumerName: "enterprise-from-plant-a", offset: page.lastOffset }));
      expect(confirmed.cursorAdvancedTo).toBe(page.lastOffset);
      const next = await ok<FetchResponse>(bufCurl("enterprise-bsfg", protocol, "BoundaryService/FetchFacts", { consumerName: "enterprise-from-plant-a", limit: 50 }));
      expect(next.cursor).toBe(page.lastOffset);
      expect(next.facts.map((f) => f.message.envelope.messageId)).not.toContain(messageId);
    });

    it("streams an artifact in (client streaming) and the peer sees it", async () => {
      const key = `buf-curl/${protocol}/B2001.txt`;
      const parts = ["batch record B2001, ", "step 3: ok"];
      const body = [{ header: { bucket: "batch-files", key, mediaType: "text/plain" } }, ...parts.map((p) => ({ chunk: Buffer.from(p).toString("base64") }))].map((m) => JSON.stringify(m)).join("\n");
      const digest = `sha256:${createHash("sha256").update(parts.join("")).digest("hex")}`;
      const put = await ok<{ object: { bucket: string; key: string; digest: string; size: string } }>(bufCurl("mes-producer", protocol, "BoundaryService/PutObject", body));
      expect(put.object).toMatchObject({ bucket: "batch-files", key, digest, size: String(parts.join("").length) });
      const stat = await ok<{ object: { digest: string; size: string } }>(bufCurl("enterprise-bsfg", protocol, "PeerService/StatObject", { bucket: "batch-files", key }));
      expect(stat.object).toMatchObject({ digest, size: put.object.size });
    });

    it("prints permission_denied with the ErrorInfo reason, exits with the code, and writes nothing", async () => {
      // A peer asking for a consumer it is not bound to: the check that reads the request, so it names the consumer.
      const notBound = await bufCurl("enterprise-bsfg", protocol, "BoundaryService/FetchFacts", { consumerName: "someone-elses" }, { verbose: true });
      // buf curl exits with the gRPC code << 3: permission_denied is 7.
      expect(notBound.exitCode).toBe(7 << 3);
      expect(notBound.stdout).toBe("");
      const error = printedError(notBound.stderr);
      expect(error.code).toBe("permission_denied");
      expect(error.message).toContain("someone-elses");
      expect(error.details?.map((d) => d.type)).toEqual(["bsfg.v1.ErrorInfo"]);
      expect(printedErrorInfo(error)).toEqual({ reason: "consumer_not_allowed", metadata: { identity: "enterprise-bsfg", consumer: "someone-elses" } });

      const highWater = await zone.deployable.store.highWater("operational");
      const messageId = `buf-denied-${protocol}-${process.pid}-${Date.now()}`;
      const wrongOrigin = await bufCurl("mes-producer", protocol, "BoundaryService/AppendFact", appendRequest(messageId, "enterprise"));
      expect(wrongOrigin.exitCode).toBe(7 << 3);
      const denied = printedError(wrongOrigin.stderr);
      expect(denied.code).toBe("permission_denied");
      expect(printedErrorInfo(denied)).toMatchObject({ reason: "from_zone_not_allowed", metadata: { message_id: messageId, index: "0" } });
      expect(await zone.deployable.store.highWater("operational")).toBe(highWater);
    });
  });
});
