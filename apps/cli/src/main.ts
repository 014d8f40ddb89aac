#!/usr/bin/env node
// bsfg <command> …: talk to a zone with the typed client. Run without arguments for help.
import { createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { createBsfgClient } from "@bsfg/client";
import { AppendResultSchema, Code, ConnectError, errorInfoOf, FetchFactsResponseSchema, ObjectRefSchema } from "@bsfg/proto";

const usage = `usage: bsfg <command> --url https://localhost:8443 --identity <name> [--pki .bsfg/pki] …

  append   --subject batch:PlantA/B1042 --predicate step_completed --object '{"result":"ok"}'
           [--from plant-a] [--to enterprise] [--id <message_id>] [--count N] [--media-type T]
  fetch    --consumer <name> [--limit 10] [--wait <ms>] [--confirm]
  confirm  --consumer <name> --offset <n>
  put      --bucket batch-files --key B1042/record.pdf --file ./record.pdf [--media-type application/pdf]
  get      --bucket batch-files --key B1042/record.pdf --out ./copy.pdf

The identity's certificate and key are <pki>/<identity>.crt and .key; the CA is <pki>/ca.crt.`;

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
if (!command || !["append", "fetch", "confirm", "put", "get"].includes(command)) fail(command ? `unknown command "${command}"` : "no command");

const identity = need("identity");
const client = createBsfgClient({
  url: values.url!,
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
