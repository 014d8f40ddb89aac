#!/usr/bin/env node
// bsfg-estate [--data .bsfg] [--split]: brings up the reference estate (enterprise, idmz, and
// plant-a and plant-b behind it) with its peer links, and keeps it running until Ctrl-C.
// PlantA is outbound-only: it dials the IDMZ's reverse listener, and the IDMZ pulls over that.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { estateDocuments, estateEdges, estateIdentities, estateLinks, NATS_SERVER_IDENTITY } from "@bsfg/estate-kit";
import { ensureDevPki } from "@bsfg/pki";
import { demoViewer, endpointsOf, estateStorage, localEstate, withViewer, zonePorts, type ZonePorts } from "./estate.js";
import { startProcess, stopProcess, waitHealthy, type Supervised } from "./processes.js";

const repo = resolve(fileURLToPath(import.meta.url), "../../../..");
const { values } = parseArgs({ options: { data: { type: "string", default: join(repo, ".bsfg") }, split: { type: "boolean", default: false } } });
const data = resolve(values.data!);
const split = values.split!;
// scripts/run.sh (its bootstrap) names the pinned nats-server; otherwise the one on PATH.
const natsBin = process.env.NATS_SERVER_BIN || "nats-server";

const topology = localEstate;
const zones = zonePorts(topology);
const byName = new Map(zones.map((z) => [z.name, z]));

/** A zone's service processes: the all-in-one (which runs the sync worker too), or one per deployable. */
interface ServiceSpec { readonly app: string; readonly probes: readonly number[] }
const servicesOf = (z: ZonePorts): ServiceSpec[] => split
  ? [
      { app: "ingest", probes: [z.health.ingest] },
      { app: "egress", probes: [z.health.egress] },
      { app: "ledger", probes: [z.health.ledger] },
      { app: "sync", probes: [z.health.sync] },
    ]
  : [{ app: "zone", probes: [z.health.zone, z.health.sync] }];

const running: Supervised[] = [];
let stopping = false;

async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    // Services first (they drain), then the zones' NATS servers.
    const services = running.filter((p) => !p.name.startsWith("nats"));
    const nats = running.filter((p) => p.name.startsWith("nats"));
    await Promise.all(services.map((p) => stopProcess(p, 15_000)));
    // nats-server shuts down the same way on both, but exits 1 after SIGTERM and 0 after SIGINT.
    await Promise.all(nats.map((p) => stopProcess(p, 10_000, "SIGINT")));
    // A clean stop is exit code 0 everywhere; anything else is worth a look at the log.
    for (const p of running) {
      const { exitCode, signalCode } = p.child;
      if (exitCode !== 0) console.error(`${p.name} ended with ${signalCode ?? `exit code ${exitCode}`} (see its log in ${data})`);
    }
    console.log(`estate stopped; data kept in ${data}`);
  }
  process.exit(code);
}
process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));

/** The user a zone's deployables log in to its nats-server as. */
const natsUser = (zone: string) => `bsfg-${zone}`;

/**
 * The zone's nats-server password: made once, kept in data/<zone>/nats.password (mode 0600),
 * which the zone's configuration names (nats.auth.passwordFile) and its server's config holds.
 */
function natsPassword(zone: string): string {
  const file = join(data, zone, "nats.password");
  if (!existsSync(file)) {
    mkdirSync(join(data, zone), { recursive: true });
    writeFileSync(file, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

function writeNatsConfig(zone: ZonePorts, tls: { cert: string; key: string }): string {
  const dir = join(data, zone.name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "nats-server.conf");
  writeFileSync(file, [
    `server_name: ${zone.name}`,
    `listen: 127.0.0.1:${zone.natsPort}`,
    `http: 127.0.0.1:${zone.monitorPort}`,
    // Every zone generated here says nats.sync: always; its server fsyncs each write to match.
    `jetstream { store_dir: "${join(dir, "jetstream")}", domain: ${zone.name}, sync_interval: always }`,
    // Only the zone's deployables get in: TLS, and the zone's user (docs/security.md, "The substrate").
    `authorization { user: ${JSON.stringify(natsUser(zone.name))}, password: ${JSON.stringify(natsPassword(zone.name))} }`,
    `tls { cert_file: ${JSON.stringify(tls.cert)}, key_file: ${JSON.stringify(tls.key)} }`,
    "",
  ].join("\n"), { mode: 0o600 });
  return file;
}

const https = (port: number) => `https://localhost:${port}`;

try {
  const pki = await ensureDevPki(join(data, "pki"), {
    identities: [...estateIdentities(topology), { identity: demoViewer.identity, usage: "client" }, { identity: NATS_SERVER_IDENTITY, usage: "server" }],
  });
  // Each zone's configuration comes from the estate kit; this runner adds ports and the demo viewer.
  const documents = estateDocuments({
    topology,
    endpoints: Object.fromEntries(zones.map((z) => [z.name, endpointsOf(z)])),
    peerUrl: (_receiver, sender) => {
      const z = byName.get(sender)!;
      return split ? { egress: https(z.listen.egress), ledger: https(z.listen.ledger) } : https(z.listen.zone);
    },
    // An outbound-only zone dials the receiver's sync worker (in-process in the all-in-one).
    reverseUrls: (receiver) => https(byName.get(receiver)!.reverse!),
    pki: { caCert: pki.caCert, files: pki.files },
    storage: estateStorage,
    natsLogin: (zone) => ({ user: natsUser(zone), passwordFile: join(data, zone, "nats.password"), ca: pki.caCert }),
  });
  const configs = new Map<string, string>();
  for (const zone of zones) {
    let document = documents[zone.name]!;
    if (zone.name === demoViewer.zone) document = withViewer(document, demoViewer, topology.buckets);
    mkdirSync(join(data, zone.name), { recursive: true });
    const file = join(data, zone.name, "zone.yaml");
    writeFileSync(file, `# Generated by bsfg-estate at every start (apps/estate, @bsfg/estate-kit); edits here are overwritten.\n${stringify(document)}`);
    configs.set(zone.name, file);
  }

  const nats = zones.map((zone) => {
    const p = startProcess(`nats ${zone.name}`, natsBin, ["-c", writeNatsConfig(zone, pki.files[NATS_SERVER_IDENTITY]!)], join(data, zone.name, "logs", "nats-server.log"));
    running.push(p);
    return waitHealthy(p, `http://127.0.0.1:${zone.monitorPort}/healthz?js-enabled-only=true`, 20_000);
  });
  await Promise.all(nats);

  const ready: Array<Promise<void>> = [];
  for (const zone of zones) {
    for (const spec of servicesOf(zone)) {
      const log = join(data, zone.name, "logs", `${spec.app}.log`);
      const service = startProcess(`${zone.name} ${spec.app}`, process.execPath, [join(repo, "apps", spec.app, "dist", "main.js"), "--config", configs.get(zone.name)!], log);
      running.push(service);
      void service.exited.then((code) => {
        if (!stopping) {
          console.error(`${service.name} exited (code ${code}); stopping the estate — see ${log}`);
          void stopAll(1);
        }
      });
      for (const port of spec.probes) ready.push(waitHealthy(service, `http://127.0.0.1:${port}/readyz`, 30_000));
    }
  }
  await Promise.all(ready);
} catch (err) {
  console.error(`estate failed to start: ${(err as Error).message}`);
  await stopAll(1);
}

// ---- the banner ----
const shown = (path: string) => {
  const rel = relative(process.cwd(), path);
  return rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? path : rel;
};
const cli = `node ${join("apps", "cli", "dist", "main.js")}`;
const pkiDir = shown(join(data, "pki"));
const probe = (port: number) => `http://127.0.0.1:${port}`;
const plant = byName.get("plant-a")!;
const enterprise = byName.get(demoViewer.zone)!;
const idmz = byName.get("idmz")!;
const ingestUrl = (z: ZonePorts) => https(split ? z.listen.ingest : z.listen.zone);
const egressUrl = (z: ZonePorts) => https(split ? z.listen.egress : z.listen.zone);
const ledgerFlag = (flag: string, z: ZonePorts) => (split ? ` ${flag} ${https(z.listen.ledger)}` : "");
const links = estateLinks(topology);
const outboundOnly = new Set(topology.outboundOnly ?? []);
/** Where a zone's outbound-only side is watched: the probes of the deployables that dial (GET /reverse). */
const dialProbes = (z: ZonePorts) => (split ? [["egress", z.health.egress], ["ledger", z.health.ledger]] as const : [["zone", z.health.zone]] as const)
  .map(([app, port]) => ({ app, url: `${probe(port)}/reverse` }));

const zoneLines = zones.map((z) => {
  const pulls = [...new Set(links.filter((l) => l.receiver === z.name).map((l) => l.sender))];
  const dialers = pulls.filter((sender) => outboundOnly.has(sender));
  const served = [...new Set(links.filter((l) => l.sender === z.name).map((l) => l.receiver))];
  const services = split
    ? `ingest ${https(z.listen.ingest)}  egress ${https(z.listen.egress)}  ledger ${https(z.listen.ledger)}  + sync worker`
    : `zone ${https(z.listen.zone)} (ingest, egress, ledger and the sync worker in one process)`;
  const probes = split
    ? `probes ${probe(z.health.ingest)}/readyz, ${probe(z.health.egress)}/readyz, ${probe(z.health.ledger)}/readyz`
    : `probes ${probe(z.health.zone)}/readyz`;
  return [
    `  ${z.name.padEnd(10)}  nats://127.0.0.1:${z.natsPort} (JetStream domain ${z.name}, TLS, user ${natsUser(z.name)}, password in ${shown(join(data, z.name, "nats.password"))}; monitor ${probe(z.monitorPort)})`,
    `              ${services}`,
    `              ${probes}   sync ${probe(z.health.sync)}/links   console ${probe(z.health.sync)}/console (read-only)`,
    `              operator console ${https(z.console)}/console (mTLS: import ${pkiDir}/estate-operator.crt and .key into the browser, docs/operations.md "Console")`,
    `              pulls operational + documents facts from ${pulls.map((p) => (outboundOnly.has(p) ? `${p} (over the connections ${p} dials in)` : p)).join(", ")}`,
    ...(dialers.length > 0 ? [`              reverse listener ${https(z.reverse!)} (${split ? "the sync worker's" : "its sync worker's"}): ${dialers.join(", ")} dial${dialers.length === 1 ? "s" : ""} in here`] : []),
    ...(outboundOnly.has(z.name)
      ? [`              outbound-only: no peer connects to it; ${split ? "its egress and ledger dial" : "it dials"} ${served.map((r) => `${r} at ${https(byName.get(r)!.reverse!)}`).join(", ")}`]
      : []),
  ].join("\n");
});

const outboundLines = [...outboundOnly].map((name) => {
  const z = byName.get(name)!;
  const receivers = [...new Set(links.filter((l) => l.sender === name).map((l) => l.receiver))];
  return [
    `${name} is outbound-only (docs/architecture.md, "Outbound-only zones"): no peer opens a connection to it. Its ${split ? "egress and ledger each dial" : "zone process dials"}`,
    `${receivers.map((r) => `${r}'s reverse listener ${https(byName.get(r)!.reverse!)}`).join(", ")}, and ${receivers.join(", ")} pull${receivers.length === 1 ? "s" : ""} from ${name} over ${split ? "those connections" : "that connection"} (FetchFacts, ConfirmReceipt,`,
    `FetchObject, StatObject — nothing else). Its own listeners serve its producers and local tools only (127.0.0.1).`,
    ...receivers.map((r) => `  curl -s ${probe(byName.get(r)!.health.sync)}/links      # ${r}: ${name}'s links show connection.dial "inbound", the ${name} replica in use, since when`),
    ...dialProbes(z).map(({ app, url }) => `  curl -s ${url}     # ${name}'s ${app} process: its dials (state connected, backing_off …; dials, failures, last error)`),
  ].join("\n");
});

console.log(`
BSFG local estate is up: ${estateEdges(topology).map(([a, b]) => `${a} ⇄ ${b}`).join(", ")}${split ? " (split: ingest, egress, ledger, sync per zone)" : ""}
data in ${shown(data)} (a second start resumes), logs in ${shown(data)}/<zone>/logs, Ctrl-C stops it.

${zoneLines.join("\n")}

${outboundLines.join("\n\n")}${outboundLines.length > 0 ? "\n\n" : ""}Demo: a batch story appended in ${plant.name} as mes-producer (one fact carries a PDF artifact),
shown arriving in ${enterprise.name} through plant-a → idmz → enterprise (never in plant-b: facts travel toward their to_zone):
  ${cli} demo --pki ${pkiDir} --plant-url ${ingestUrl(plant)} --enterprise-url ${egressUrl(enterprise)}${ledgerFlag("--enterprise-ledger-url", enterprise)} \\
    --links ${probe(idmz.health.sync)}/links,${probe(enterprise.health.sync)}/links

Append a fact in ${plant.name} yourself, then peek at ${enterprise.name}'s log as the demo viewer (no confirm):
  ${cli} append --url ${ingestUrl(plant)} --pki ${pkiDir} --identity mes-producer \\
    --subject batch:PlantA/B1042 --predicate step_completed --object '{"result":"ok","step":"sterile_filter"}'
  ${cli} fetch --url ${egressUrl(enterprise)} --pki ${pkiDir} --identity ${demoViewer.identity} --consumer ${demoViewer.consumers[0]!.name}
  curl -s ${probe(enterprise.health.sync)}/links      # ${enterprise.name}'s links: state, peer cursor, lag
  curl -s ${probe(split ? idmz.health.sync : idmz.health.zone)}/metrics | grep '^bsfg_replication_lag'   # Prometheus metrics (/metrics on every probe port)
The append with buf curl:
  pnpm exec buf curl --schema proto --cacert ${pkiDir}/ca.crt --cert ${pkiDir}/mes-producer.crt --key ${pkiDir}/mes-producer.key \\
    -d '{"messages":[{"envelope":{"messageId":"curl-1","fromZone":"plant-a","toZone":"enterprise","producedAtUnixMs":"1764000000000"},"fact":{"subject":"batch:PlantA/B1042","predicate":"step_completed","objectJson":"{\\"result\\":\\"ok\\"}"}}]}' \\
    ${ingestUrl(plant)}/bsfg.v1.BoundaryService/AppendFact
`);
