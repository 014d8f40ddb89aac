#!/usr/bin/env node
// bsfg <command> …: talk to a zone with the typed client. Run without arguments for help.
import { createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { createBsfgClient } from "@bsfg/client";
import { AppendResultSchema, Code, ConnectError, errorInfoOf, FetchFactsResponseSchema, ObjectRefSchema } from "@bsfg/proto";
import { runDemo } from "./demo.js";
import { runQuarantine } from "./quarantine.js";

// The operator's verbs have options of their own.
if (process.argv[2] === "quarantine") process.exit(await runQuarantine(process.argv.slice(3)));

const usage = `usage: bsfg <command> --url https://localhost:8443 --identity <name> [--pki .bsfg/pki] …

  append   --subject batch:PlantA/B1042 --predicate step_completed --object '{"result":"ok"}'
           [--from plant-a] [--to enterprise] [--id <message_id>] [--count N] [--media-type T]
  fetch    --consumer <name> [--limit 10] [--wait <ms>] [--confirm]
  confirm  --consumer <name> --offset <n>
  put      --bucket batch-files --key B1042/record.pdf --file ./record.pdf [--media-type application/pdf]
  get      --bucket batch-files --key B1042/record.pdf --out ./copy.pdf
  demo     --plant-url https://localhost:8643 --enterprise-url https://localhost:8443
           [--enterprise-ledger-url <url>] [--identity mes-producer] [--viewer enterprise-viewer]
           [--from plant-a] [--to enterprise] [--links http://127.0.0.1:9447/links,…] [--timeout 30000]
           appends a batch story in the plant zone as mes-producer (one fact with a PDF
           artifact) and shows it arriving in the enterprise zone as enterprise-viewer

  quarantine list|show|release|drop|export …   (bsfg quarantine for its options)

The identity's certificate and key are <pki>/<identity>.crt and .key; the CA is <pki>/ca.crt.
With --ledger-url, confirm (and fetch --confirm) go to that ledger endpoint (split zones).`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "https://localhost:8443" },
    identity: { type: "string" },
    pki: { type: "string", default: ".bsfg/pki" },
    protocol: { type: "string", default: "connect" },
    subject: { type: "string" }, predicate: { type: "string" }, object: { type: "string" },
    from: { type: "string", default: "plant-a" }, to: { type: "string", default: "enterprise" },
    id: { type: "string" }, count: { type: "string", default: "1" }, "media-type": { type: "string" },
    consumer: { type: "string" }, limit: { type: "string", default: "10" }, wait: { type: "string", default: "0" },
    confirm: { type: "boolean", default: false }, offset: { type: "string" },
    bucket: { type: "string" }, key: { type: "string" }, file: { type: "string" }, out: { type: "string" },
    "ledger-url": { type: "string" },
    "plant-url": { type: "string" }, "enterprise-url": { type: "string" }, "enterprise-ledger-url": { type: "string" },
    viewer: { type: "string", default: "enterprise-viewer" }, links: { type: "string", default: "" }, timeout: { type: "string", default: "30000" },
  },
});

const [command] = positionals;
const need = (name: keyof typeof values): string => {
  const value = values[name];
  if (typeof value !== "string" || value === "") fail(`--${name} is required for ${command}`);
  return value as string;
};
function fail(message: string): never {
  console.error(`${message}\n\n${usage}`);
  process.exit(2);
}
if (!command || !["append", "fetch", "confirm", "put", "get", "demo"].includes(command)) fail(command ? `unknown command "${command}"` : "no command");

if (command === "demo") {
  const ok = await runDemo({
    pki: values.pki!,
    plantUrl: need("plant-url"),
    enterpriseUrl: need("enterprise-url"),
    ...(values["enterprise-ledger-url"] ? { enterpriseLedgerUrl: values["enterprise-ledger-url"] } : {}),
    producer: values.identity ?? "mes-producer",
    viewer: values.viewer!,
    consumers: ["demo-viewer-operational", "demo-viewer-documents"],
    fromZone: values.from!,
    toZone: values.to!,
    links: values.links!.split(",").filter((url) => url !== ""),
    timeoutMs: Number(values.timeout),
  }).catch((err: unknown) => {
    const e = ConnectError.from(err);
    const info = errorInfoOf(e);
    console.error(JSON.stringify({ error: e.rawMessage, code: Code[e.code], reason: info?.reason, ...info?.metadata }));
    return false;
  });
  process.exit(ok ? 0 : 1);
}

const identity = need("identity");
const client = createBsfgClient({
  url: values.url!,
  ...(values["ledger-url"] ? { urls: { ledger: values["ledger-url"] } } : {}),
  protocol: values.protocol === "grpc" ? "grpc" : "connect",
  tls: {
    ca: readFileSync(join(values.pki!, "ca.crt")),
    cert: readFileSync(join(values.pki!, `${identity}.crt`)),
    key: readFileSync(join(values.pki!, `${identity}.key`)),
  },
});
const print = (value: unknown) => console.log(JSON.stringify(value));

try {
  switch (command) {
    case "append": {
      const count = Number(values.count);
      const base = values.id ?? `cli-${Date.now()}`;
      const messages = Array.from({ length: count }, (_, i) => ({
        envelope: {
          messageId: count === 1 ? base : `${base}-${i + 1}`,
          fromZone: values.from!,
          toZone: values.to!,
          producedAtUnixMs: BigInt(Date.now()),
          objectMediaType: values["media-type"] ?? "",
        },
        fact: { subject: need("subject"), predicate: need("predicate"), objectJson: need("object") },
      }));
      for (const result of await client.appendFacts(messages)) print(toJson(AppendResultSchema, result));
      break;
    }
    case "fetch": {
      const consumer = need("consumer");
      const page = await client.fetchFacts(consumer, { limit: Number(values.limit), maxWaitMs: Number(values.wait) });
      print(toJson(FetchFactsResponseSchema, page));
      if (values.confirm && page.lastOffset > page.cursor) print({ cursorAdvancedTo: String(await client.confirmReceipt(consumer, page.lastOffset)) });
      break;
    }
    case "confirm":
      print({ cursorAdvancedTo: String(await client.confirmReceipt(need("consumer"), BigInt(need("offset")))) });
      break;
    case "put":
      print(toJson(ObjectRefSchema, await client.putObject({ bucket: need("bucket"), key: need("key"), mediaType: values["media-type"] ?? "application/octet-stream" }, { file: need("file") })));
      break;
    case "get": {
      const out = createWriteStream(need("out"));
      const object = await client.fetchObject(need("bucket"), need("key"), out);
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      print(toJson(ObjectRefSchema, object));
      break;
    }
  }
} catch (err) {
  const e = ConnectError.from(err);
  const info = errorInfoOf(e);
  console.error(JSON.stringify({ error: e.rawMessage, code: Code[e.code], reason: info?.reason, ...info?.metadata }));
  process.exitCode = 1;
} finally {
  client.close();
}
