// bsfg quarantine list|show|release|drop|export: the operator's side of a zone's quarantine.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { createBsfgClient } from "@bsfg/client";
import { Code, ConnectError, errorInfoOf, QuarantinedFactSchema, type QuarantinedFact } from "@bsfg/proto";

export const quarantineUsage = `usage: bsfg quarantine <list|show|release|drop|export> --url https://localhost:8443 --identity <operator> [--pki .bsfg/pki] [--json]

  list     [--all]                     entries waiting for an operator (--all: released and dropped too)
  show     --id N                      one entry: why, where from, the fact, its history
  release  --id N [--note "…"]         append the fact here, once, after its cause was fixed
  drop     --id N --reason "…"         settle the entry without appending the fact
  export   --out quarantine.json [--all]
                                       every entry with its fact's bytes (base64), digests and history

The identity needs the verbs in the zone's policy: quarantine: [read, release, drop].`;

/** Runs `bsfg quarantine …`; returns the process exit code. */
export async function runQuarantine(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      url: { type: "string", default: "https://localhost:8443" },
      identity: { type: "string" },
      pki: { type: "string", default: ".bsfg/pki" },
      id: { type: "string" }, note: { type: "string" }, reason: { type: "string" }, out: { type: "string" },
      all: { type: "boolean", default: false }, json: { type: "boolean", default: false },
    },
  });
  const [action] = positionals;
  const fail = (message: string) => {
    console.error(`${message}\n\n${quarantineUsage}`);
    return 2;
  };
  if (!action || !["list", "show", "release", "drop", "export"].includes(action)) return fail(action ? `unknown quarantine action "${action}"` : "no quarantine action");
  if (!values.identity) return fail("--identity is required");
  if (["show", "release", "drop"].includes(action) && !/^\d+$/.test(values.id ?? "")) return fail(`--id N is required for ${action}`);
  if (action === "drop" && !values.reason?.trim()) return fail("--reason is required for drop: it is recorded with the entry and in the audit stream");
  if (action === "export" && !values.out) return fail("--out is required for export");

  const client = createBsfgClient({
    url: values.url!,
    tls: {
      ca: readFileSync(join(values.pki!, "ca.crt")),
      cert: readFileSync(join(values.pki!, `${values.identity}.crt`)),
      key: readFileSync(join(values.pki!, `${values.identity}.key`)),
    },
  });
  const json = (fact: QuarantinedFact) => toJson(QuarantinedFactSchema, fact);
  const print = (value: unknown) => console.log(JSON.stringify(value));
  try {
    switch (action) {
      case "list": {
        const facts = await client.quarantine.list({ includeSettled: values.all });
        if (values.json) print(facts.map(json));
        else if (facts.length === 0) console.log("the quarantine is empty");
        else for (const fact of facts) console.log(summaryLine(fact));
        break;
      }
      case "show": {
        const fact = await client.quarantine.get(BigInt(values.id!));
        if (values.json) print(json(fact));
        else console.log(details(fact));
        break;
      }
      case "release": {
        const released = await client.quarantine.release(BigInt(values.id!), values.note ?? "");
        if (values.json) print({ ...json(released.fact!) as object, releasedOffset: String(released.offset), releasedStream: released.stream, alreadyReleased: released.alreadyReleased });
        else console.log(`${released.alreadyReleased ? "already released" : "released"}: entry ${values.id} is offset ${released.offset} of stream ${released.stream}`);
        break;
      }
      case "drop": {
        const dropped = await client.quarantine.drop(BigInt(values.id!), values.reason!);
        if (values.json) print({ ...json(dropped.fact!) as object, alreadyDropped: dropped.alreadyDropped });
        else console.log(`${dropped.alreadyDropped ? "already dropped" : "dropped"}: entry ${values.id}`);
        break;
      }
      case "export": {
        // What an auditor needs: every entry whole (bytes, digests, decoded fact, history), and when and from where it was exported.
        const entries = await client.quarantine.list({ includeSettled: values.all });
        const facts = [];
        for (const entry of entries) facts.push(json(await client.quarantine.get(entry.id)));
        const document = { exportedAt: new Date().toISOString(), zone: values.url, exportedBy: values.identity, includesSettled: values.all, entries: facts };
        writeFileSync(values.out!, `${JSON.stringify(document, null, 2)}\n`);
        if (values.json) print({ out: values.out, entries: facts.length });
        else console.log(`exported ${facts.length} entr${facts.length === 1 ? "y" : "ies"} to ${values.out}`);
        break;
      }
    }
    return 0;
  } catch (err) {
    const e = ConnectError.from(err);
    const info = errorInfoOf(e);
    console.error(JSON.stringify({ error: e.rawMessage, code: Code[e.code], reason: info?.reason, ...info?.metadata }));
    return 1;
  } finally {
    client.close();
  }
}

const at = (ms: bigint) => new Date(Number(ms)).toISOString();

function summaryLine(fact: QuarantinedFact): string {
  return `#${fact.id}  ${fact.state.padEnd(9)} ${at(fact.quarantinedAtUnixMs)}  ${fact.link} offset ${fact.peerOffset}  ${fact.reason}  ${fact.messageId || "(no message_id)"}`;
}

function details(fact: QuarantinedFact): string {
  const lines = [
    `entry        #${fact.id} (${fact.state} since ${at(fact.stateAtUnixMs)})`,
    `set aside    ${at(fact.quarantinedAtUnixMs)} by link ${fact.link}`,
    `reason       ${fact.reason}: ${fact.detail}`,
    `origin       ${fact.peer}/${fact.stream} offset ${fact.peerOffset} (stored there ${at(fact.peerStoredAtUnixMs)})`,
    `message_id   ${fact.messageId || "(none)"}`,
    `sha256       served ${Buffer.from(fact.servedSha256).toString("hex")}, bytes ${Buffer.from(fact.messageSha256).toString("hex")}`,
  ];
  if (fact.fact) {
    const { envelope, fact: body } = fact.fact;
    lines.push(`envelope     from ${envelope?.fromZone} to ${envelope?.toZone}, produced ${envelope ? at(envelope.producedAtUnixMs) : "?"}`);
    lines.push(`fact         ${body?.subject} ${body?.predicate} ${body?.objectJson}`);
  } else lines.push(`fact         (the bytes are not a readable fact: ${fact.message.byteLength} bytes)`);
  for (const record of fact.history) {
    lines.push(`history      ${at(record.atUnixMs)} ${record.state}${record.by ? ` by ${record.by}` : ""}${record.note ? `: ${record.note}` : ""}${record.releasedOffset !== undefined ? ` (offset ${record.releasedOffset})` : ""}`);
  }
  return lines.join("\n");
}
