import { connect, type IncomingHttpHeaders } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toJsonString } from "@bufbuild/protobuf";
import { AppendFactRequestSchema, ErrorInfoSchema } from "@bsfg/proto";
import { producedFact, startTestZoneServices, type TestZoneServices } from "./test-support.js";

/*
 * Found by the hostile campaign (bench/src/campaign/hostile.ts): a body that is no message of
 * its type was answered `internal` (connect-es: "parse binary: …"), unlogged; and Connect JSON
 * that is not UTF-8 was decoded with U+FFFD in place of the bytes and the fact stored so.
 * Raw HTTP/2 here: a generated client never sends such bytes.
 */

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly trailers: IncomingHttpHeaders;
}

describe("a request whose bytes are no message of its type", () => {
  let zone: TestZoneServices;
  beforeAll(async () => {
    zone = await startTestZoneServices("zone");
  });
  afterAll(() => zone.dispose());

  async function post(path: string, contentType: string, body: Uint8Array): Promise<Answer> {
    const cert = zone.pki.certs["mes-producer"];
    const session = connect(zone.deployable.server.url, { ca: zone.pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, servername: "localhost" });
    try {
      return await new Promise<Answer>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path, "content-type": contentType, te: "trailers", "connect-protocol-version": "1" });
        let status = 0;
        let headers: IncomingHttpHeaders = {};
        let trailers: IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        stream.on("response", (h) => ((status = Number(h[":status"])), (headers = h)));
        stream.on("trailers", (t) => (trailers = t));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("error", reject);
        stream.on("end", () => resolve({ status, headers, body: Buffer.concat(chunks), trailers }));
        stream.end(body);
      });
    } finally {
      session.close();
    }
  }

  const uint32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  /** One gRPC message: not compressed, its length, its bytes. */
  const grpcFrame = (payload: Uint8Array) => Buffer.concat([Buffer.from([0]), uint32(payload.byteLength), payload]);
  const connectReason = (answer: Answer) => {
    const error = JSON.parse(answer.body.toString()) as { code: string; details?: Array<{ type: string; value: string }> };
    const detail = error.details?.find((d) => d.type === ErrorInfoSchema.typeName);
    return { code: error.code, reason: detail ? fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64")).reason : undefined };
  };
  // Bytes that do not decode: field 0 is no field, 0xff starts a varint that never ends.
  const garbage = Uint8Array.of(0x00, 0xff, 0xff, 0xff);

  it("is invalid_argument / malformed_request over Connect, logged once", async () => {
    const before = zone.logs.length;
    const answer = await post("/bsfg.v1.BoundaryService/AppendFact", "application/proto", garbage);
    expect(answer.status).toBe(400);
    expect(connectReason(answer)).toEqual({ code: "invalid_argument", reason: "malformed_request" });
    const lines = zone.logs.slice(before).filter((l) => l.event === "rejected");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ procedure: "bsfg.v1.BoundaryService/AppendFact", code: "InvalidArgument", reason: "malformed_request", identity: "mes-producer" });
  });

  it("is invalid_argument / malformed_request over gRPC, for unary and streaming methods", async () => {
    for (const path of ["/bsfg.v1.BoundaryService/AppendFact", "/bsfg.v1.BoundaryService/PutObject"]) {
      const answer = await post(path, "application/grpc", grpcFrame(garbage));
      const status = answer.trailers["grpc-status"] ?? answer.headers["grpc-status"];
      expect(status, path).toBe("3");
    }
  });

  it("refuses Connect JSON that is not UTF-8 instead of storing U+FFFD in its place", async () => {
    const json = toJsonString(AppendFactRequestSchema, create(AppendFactRequestSchema, { messages: [producedFact(1, { id: "not-utf8" })] }));
    const at = json.indexOf("step_completed");
    const body = Buffer.concat([Buffer.from(json.slice(0, at)), Buffer.of(0xff), Buffer.from(json.slice(at))]);
    const answer = await post("/bsfg.v1.BoundaryService/AppendFact", "application/json", body);
    expect(answer.status).toBe(400);
    expect(connectReason(answer)).toEqual({ code: "invalid_argument", reason: "malformed_request" });
    const page = await zone.deployable.store.read({ stream: "operational", skipOrigins: [] }, 0, { limit: 100 });
    expect(page.facts.map((f) => f.message?.envelope?.messageId)).not.toContain("not-utf8");
  });
});
