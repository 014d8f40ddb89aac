/**
 * docker-compose.yml, checked without a Docker engine: `docker-compose config` accepts it, and
 * everything it names exists and agrees with what the services are configured to do — the
 * images it builds, the files it mounts, the ports, the networks (no NATS port crosses a zone;
 * facts cross only over the boundary network, between BSFG endpoints), the certificates the
 * one-shot pki service writes (this suite runs its script), the zone configurations (generated
 * from @bsfg/estate-kit, and loaded here by the services' own loader), Prometheus, Grafana and
 * the trace pipeline.
 */
import { execFile, spawnSync } from "node:child_process";
import { BlockList, isIP } from "node:net";
import { X509Certificate } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, posix } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadZoneConfig } from "@bsfg/config";
import { locateNatsServerBinary } from "@bsfg/testkit";
import {
  dependsOn, dockerfileOf, environmentOf, mountsOf, networksOf, portsOf, readCompose, readDockerfile, repoPath, repoRoot,
  type ComposeService,
} from "./docker-support.js";
import { pinnedToolchain } from "./toolchain.js";

const run = promisify(execFile);
const compose = readCompose();
const services = compose.services;
const names = Object.keys(services);

/** docker-compose: $DOCKER_COMPOSE, or on PATH (scripts/bootstrap.sh installs Debian's package). */
function composeBinary(): string {
  if (process.env.DOCKER_COMPOSE) return process.env.DOCKER_COMPOSE;
  const onPath = spawnSync("sh", ["-c", "command -v docker-compose"], { encoding: "utf8" }).stdout.trim();
  if (onPath) return onPath;
  throw new Error("docker-compose not found: run scripts/bootstrap.sh (it installs Debian's docker-compose package, no engine), or set DOCKER_COMPOSE");
}

// ---- what the compose file declares, by kind ----

type Role = "ingest" | "egress" | "ledger" | "sync" | "zone";
interface BsfgService {
  readonly name: string;
  readonly service: ComposeService;
  readonly role: Role;
  readonly zone: string;
  /** The zone configuration file it mounts (repository path) and where. */
  readonly configFile: string;
  readonly configTarget: string;
  readonly config: ZoneDocument;
}
interface ZoneDocument {
  zone: string;
  nats: { servers: string[]; sync?: string; monitor?: string[]; auth?: { user: string; passwordFile: string }; tls?: { ca: string } };
  storage: { replicas?: number; zones: string[] };
  tls: { ca: string; cert: string; key: string };
  listen: Record<string, string>;
  health: Record<string, string>;
  peers: Record<string, { dial?: "outbound" | "inbound"; url?: string; urls?: { egress: string; ledger: string }; identity: string }>;
  /** Outbound-only zone: the receivers whose reverse listeners its egress and ledger dial. */
  serve?: Record<string, { dial: "outbound"; urls: string[]; identity: string }>;
  policy: Record<string, unknown>;
}

const relativeSource = (source: string) => posix.normalize(source).replace(/^\.\//, "");
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));
const hostOf = (address: string) => address.slice(0, address.lastIndexOf(":"));

const bsfg: BsfgService[] = names.flatMap((name) => {
  const service = services[name]!;
  const app = /^apps\/(ingest|egress|ledger|sync|zone)\/Dockerfile$/.exec(dockerfileOf(service) ?? "")?.[1] as Role | undefined;
  if (!app) return [];
  const env = environmentOf(service);
  const configTarget = env.BSFG_CONFIG ?? readDockerfile(`apps/${app}/Dockerfile`).env.BSFG_CONFIG!;
  const mount = mountsOf(service).find((m) => m.target === configTarget);
  if (!mount) throw new Error(`${name} mounts no zone configuration at ${configTarget}`);
  const configFile = relativeSource(mount.source);
  const config = parse(readFileSync(repoPath(configFile), "utf8")) as ZoneDocument;
  return [{ name, service, role: app, zone: config.zone, configFile, configTarget, config }];
});
const zones = [...new Set(bsfg.map((s) => s.zone))];
const isNats = (service: ComposeService) => /^nats:/.test(service.image ?? "");
const nats = names.filter((n) => isNats(services[n]!));
const onNetwork = (network: string) => names.filter((n) => networksOf(services[n]!).includes(network));
const shareNetwork = (a: string, b: string) => networksOf(services[a]!).some((n) => networksOf(services[b]!).includes(n));
const bsfgByName = new Map(bsfg.map((s) => [s.name, s]));
/** The deployables of an outbound-only zone that dial its receivers (its egress and ledger). */
const dialsOut = (s: BsfgService) => Object.keys(s.config.serve ?? {}).length > 0 && (s.role === "egress" || s.role === "ledger");

describe("docker-compose.yml", () => {
  it("is valid for docker-compose config, and names the services this suite reads", async () => {
    const binary = composeBinary();
    const check = await run(binary, ["-f", repoPath("docker-compose.yml"), "config", "-q"], { cwd: repoRoot }).then(
      () => ({ ok: true, output: "" }),
      (err: { stderr: string; stdout: string }) => ({ ok: false, output: err.stderr + err.stdout }),
    );
    expect(check.output).toBe("");
    expect(check.ok).toBe(true);
    const listed = (await run(binary, ["-f", repoPath("docker-compose.yml"), "config", "--services"], { cwd: repoRoot })).stdout.trim().split("\n");
    expect(listed.sort()).toEqual([...names].sort());
  });

  it("runs the reference estate: three zones, each with ingest, egress, ledger and sync as separate containers", () => {
    expect(zones.sort()).toEqual(["enterprise", "idmz", "plant-a"]);
    for (const zone of zones) {
      expect(bsfg.filter((s) => s.zone === zone).map((s) => s.role).sort(), zone).toEqual(["egress", "ingest", "ledger", "sync"]);
    }
    for (const s of bsfg) expect(s.name).toBe(`${s.zone}-${s.role}`);
  });

  it("builds every image from a Dockerfile in the repository, deploying an existing package; pins every other image", () => {
    for (const name of names) {
      const service = services[name]!;
      const dockerfile = dockerfileOf(service);
      if (dockerfile === undefined) {
        expect(service.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
        expect(service.image, name).not.toMatch(/:latest$/);
        continue;
      }
      expect(typeof service.build === "object" ? service.build.context : service.build, name).toBe(".");
      expect(existsSync(repoPath(dockerfile)), `${name}: ${dockerfile}`).toBe(true);
      const deploy = /scripts\/deploy-package\.sh (\S+) /.exec(readDockerfile(dockerfile).runs.join("\n"))?.[1];
      const packageDir = dirname(dockerfile);
      const manifest = JSON.parse(readFileSync(repoPath(packageDir, "package.json"), "utf8")) as { name: string; bin?: Record<string, string> };
      expect(deploy, name).toBe(manifest.name);
      const entry = readDockerfile(dockerfile).entrypoint!.at(-1)!.replace(/^\/app\//, "");
      expect(Object.values(manifest.bin ?? {}).map((b) => posix.normalize(b)), `${name}: ${entry} is the package's bin`).toContain(entry);
      expect(existsSync(repoPath(packageDir, "src", basename(entry).replace(/\.js$/, ".ts"))), name).toBe(true);
    }
  });

  it("mounts only files and folders that exist, and volumes and networks it declares (and uses all of them)", () => {
    const usedVolumes = new Set<string>();
    const usedNetworks = new Set<string>();
    for (const name of names) {
      for (const mount of mountsOf(services[name]!)) {
        if (mount.kind === "bind") {
          expect(existsSync(repoPath(relativeSource(mount.source))), `${name}: ${mount.source}`).toBe(true);
          expect(mount.readOnly, `${name}: ${mount.source} is mounted read-only`).toBe(true);
        } else {
          expect(Object.keys(compose.volumes ?? {}), `${name}: volume ${mount.source}`).toContain(mount.source);
          usedVolumes.add(mount.source);
        }
      }
      for (const network of networksOf(services[name]!)) {
        expect(Object.keys(compose.networks ?? {}), `${name}: network ${network}`).toContain(network);
        usedNetworks.add(network);
      }
      for (const dep of Object.keys(dependsOn(services[name]!))) expect(names, `${name} depends on ${dep}`).toContain(dep);
    }
    expect([...usedVolumes].sort()).toEqual(Object.keys(compose.volumes ?? {}).sort());
    expect([...usedNetworks].sort()).toEqual(Object.keys(compose.networks ?? {}).sort());
  });

  it("publishes ports on 127.0.0.1 only, and only ports the services listen on", () => {
    for (const name of names) {
      for (const port of portsOf(services[name]!)) expect(port.hostIp, `${name}: ${port.target}`).toBe("127.0.0.1");
    }
    const published = names.flatMap((n) => portsOf(services[n]!).map((p) => p.published));
    expect(new Set(published).size, "no host port twice").toBe(published.length);
  });
});

describe("the BSFG services and their zone configurations", () => {
  it.each(bsfg)("$name listens where its image and its ports say (listen, health, EXPOSE, HEALTHCHECK, ports)", (s) => {
    const dockerfile = readDockerfile(`apps/${s.role}/Dockerfile`);
    const health = s.config.health[s.role]!;
    expect(hostOf(health), "probes listen on every interface of the container").toBe("0.0.0.0");
    expect(Number(dockerfile.env.BSFG_PROBE_PORT), "the HEALTHCHECK asks the configured probe port").toBe(portOf(health));
    expect(environmentOf(s.service).BSFG_PROBE_PORT ?? dockerfile.env.BSFG_PROBE_PORT).toBe(dockerfile.env.BSFG_PROBE_PORT);
    const own = s.role === "sync" ? [portOf(health)] : [portOf(s.config.listen[s.role]!), portOf(health)];
    // An outbound-only zone's egress and ledger are dialed by no one: they bind the container's loopback.
    if (s.role !== "sync") expect(hostOf(s.config.listen[s.role]!)).toBe(dialsOut(s) ? "127.0.0.1" : "0.0.0.0");
    expect(dockerfile.exposed.sort()).toEqual(own.sort());
    for (const port of portsOf(s.service)) expect(own, `${s.name} publishes ${port.target}`).toContain(port.target);
    if (dialsOut(s)) expect(portsOf(s.service).map((p) => p.target), `${s.name} publishes only its probe`).toEqual([portOf(health)]);
  });

  it.each(bsfg)("$name mounts its zone's configuration and only its zone's PKI volume, read-only, and waits for the pki job and its NATS", (s) => {
    const mounts = mountsOf(s.service);
    expect(mounts.find((m) => m.target === s.configTarget)!.readOnly).toBe(true);
    const pki = mounts.filter((m) => m.kind === "volume");
    expect(pki).toHaveLength(1);
    expect(pki[0]!.readOnly).toBe(true);
    // The configuration's TLS paths are relative to it: they must land in that volume.
    for (const path of Object.values(s.config.tls)) {
      expect(posix.join(posix.dirname(s.configTarget), path).startsWith(`${pki[0]!.target}/`), path).toBe(true);
    }
    expect(bsfg.filter((o) => o.zone === s.zone).every((o) => mountsOf(o.service).some((m) => m.source === pki[0]!.source))).toBe(true);
    expect(bsfg.filter((o) => o.zone !== s.zone).some((o) => mountsOf(o.service).some((m) => m.source === pki[0]!.source)), "another zone mounts it").toBe(false);
    const deps = dependsOn(s.service);
    expect(deps.pki).toBe("service_completed_successfully");
    for (const url of s.config.nats.servers) expect(deps[new URL(url).hostname], url).toBe("service_healthy");
  });

  it.each(bsfg)("$name is on its zone's network; peers are reached only over the boundary network", (s) => {
    const networks = networksOf(s.service);
    expect(networks).toContain(s.zone);
    for (const other of zones.filter((z) => z !== s.zone)) expect(networks).not.toContain(other);
    // Ingest serves producers of its own zone: it has no business on the boundary.
    expect(networks.includes("boundary"), s.name).toBe(s.role !== "ingest");
  });

  it("every peer URL names a peer zone's egress or ledger container, on the boundary network, at the port it listens on", () => {
    let peers = 0;
    for (const receiver of bsfg.filter((s) => s.role === "sync")) {
      for (const [peerZone, peer] of Object.entries(receiver.config.peers)) {
        // An outbound-only peer dials in (next test): the receiver names no URL for it.
        if (peer.dial === "inbound") {
          expect(peer.url ?? peer.urls, `${receiver.name}: ${peerZone} dials in`).toBeUndefined();
          continue;
        }
        const urls = peer.urls ?? { egress: peer.url!, ledger: peer.url! };
        for (const [role, url] of Object.entries(urls)) {
          peers++;
          const { hostname, port } = new URL(url);
          const target = bsfgByName.get(hostname);
          expect(target, `${receiver.name} → ${url}`).toBeDefined();
          expect(target!.zone).toBe(peerZone);
          expect(target!.role).toBe(role);
          expect(networksOf(target!.service)).toContain("boundary");
          expect(Number(port)).toBe(portOf(target!.config.listen[role]!));
        }
      }
    }
    expect(peers).toBe(6); // three links' peers (idmz ← enterprise, enterprise ← idmz, plant-a ← idmz) × egress + ledger
  });

  it("outbound-only PlantA: its egress and ledger dial the receiving sync container's reverse listener over the boundary network; that receiver expects it (dial: inbound)", () => {
    let dials = 0;
    for (const sender of bsfg.filter(dialsOut)) {
      expect(networksOf(sender.service), sender.name).toContain("boundary");
      for (const [receiverZone, served] of Object.entries(sender.config.serve!)) {
        expect(served.identity).toBe(`${receiverZone}-bsfg`);
        for (const url of served.urls) {
          dials++;
          const { hostname, port } = new URL(url);
          const target = bsfgByName.get(hostname);
          expect(target, `${sender.name} → ${url}`).toBeDefined();
          expect(target!.zone).toBe(receiverZone);
          expect(target!.role).toBe("sync");
          expect(networksOf(target!.service)).toContain("boundary");
          expect(target!.config.listen.reverse, `${target!.name} has a reverse listener`).toBe(`0.0.0.0:${port}`);
          expect(target!.config.peers[sender.zone]).toEqual({ dial: "inbound", identity: `${sender.zone}-bsfg` });
        }
      }
    }
    expect(dials).toBe(2); // plant-a-egress and plant-a-ledger → idmz-sync
  });

  it("probe ports answer Prometheus, their own container and the gateways of published ports — not another zone's containers on any shared network", () => {
    const subnets = Object.fromEntries(Object.entries(compose.networks ?? {}).map(([name, network]) => {
      const config = (network as { ipam?: { config?: Array<{ subnet?: string; gateway?: string }> } }).ipam?.config?.[0];
      expect(config?.subnet, `network ${name} has a pinned subnet`).toMatch(/^\d+\.\d+\.\d+\.0\/24$/);
      return [name, { subnet: config!.subnet!, gateway: config!.gateway! }];
    }));
    const prometheusAddress = (services.prometheus!.networks as Record<string, { ipv4_address?: string }> | undefined)?.observability?.ipv4_address ?? "(none)";
    const inBoundary = (host: number) => subnets.boundary!.subnet.replace(/0\/24$/, String(host));
    const inObservability = (host: number) => subnets.observability!.subnet.replace(/0\/24$/, String(host));
    for (const s of bsfg) {
      const allowFrom = (s.config.health as Record<string, unknown>).allowFrom as string[] | undefined;
      expect(allowFrom, `${s.name}: health.allowFrom`).toBeDefined();
      const allowed = new BlockList();
      for (const entry of allowFrom!) {
        const [address, prefix] = entry.split("/") as [string, string | undefined];
        if (prefix === undefined) allowed.addAddress(address, isIP(address) === 6 ? "ipv6" : "ipv4");
        else allowed.addSubnet(address, Number(prefix), isIP(address) === 6 ? "ipv6" : "ipv4");
      }
      const may = (address: string) => allowed.check(address, "ipv4");
      // Its HEALTHCHECK (127.0.0.1), Prometheus at its fixed address, and every gateway.
      expect(may("127.0.0.1"), s.name).toBe(true);
      expect(may(prometheusAddress), `${s.name}: Prometheus at ${prometheusAddress}`).toBe(true);
      for (const { gateway } of Object.values(subnets)) expect(may(gateway), `${s.name}: gateway ${gateway}`).toBe(true);
      // Any other container on the boundary or the observability network — a peer zone's — and every zone network's, refused.
      for (const host of [2, 3, 11, 100, 254]) {
        expect(may(inBoundary(host)), `${s.name}: ${inBoundary(host)}`).toBe(false);
        expect(may(inObservability(host)), `${s.name}: ${inObservability(host)}`).toBe(false);
      }
      for (const zone of zones) expect(may(subnets[zone]!.subnet.replace(/0\/24$/, "7")), `${s.name}: a container of ${zone}`).toBe(false);
    }
    // Prometheus scrapes from its fixed address on the observability network, inside that subnet.
    expect(services.prometheus!.networks).toEqual({ observability: { ipv4_address: prometheusAddress } });
    expect(prometheusAddress.startsWith(subnets.observability!.subnet.replace(/0\/24$/, ""))).toBe(true);
  });

  it("the boundary network holds BSFG endpoints only; each zone network holds only that zone's containers", () => {
    for (const name of onNetwork("boundary")) expect(bsfgByName.has(name), name).toBe(true);
    for (const zone of zones) {
      for (const name of onNetwork(zone)) {
        const member = bsfgByName.get(name);
        if (member) expect(member.zone, name).toBe(zone);
        else expect(nats, `${name} on the ${zone} network`).toContain(name);
      }
    }
  });

  it("sends traces to the collector, which forwards them to Jaeger", () => {
    for (const s of bsfg) {
      const endpoint = environmentOf(s.service).OTEL_EXPORTER_OTLP_ENDPOINT;
      expect(endpoint, s.name).toBeDefined();
      const host = new URL(endpoint!).hostname;
      expect(names).toContain(host);
      expect(shareNetwork(s.name, host), `${s.name} reaches ${host}`).toBe(true);
    }
    const collector = new URL(environmentOf(bsfg[0]!.service).OTEL_EXPORTER_OTLP_ENDPOINT!);
    const file = mountsOf(services[collector.hostname]!).find((m) => m.kind === "bind")!;
    const config = parse(readFileSync(repoPath(relativeSource(file.source)), "utf8")) as {
      receivers: { otlp: { protocols: { http: { endpoint: string } } } };
      exporters: Record<string, { endpoint: string }>;
      service: { pipelines: { traces: { exporters: string[] } } };
    };
    expect(portOf(config.receivers.otlp.protocols.http.endpoint)).toBe(Number(collector.port));
    for (const exporter of config.service.pipelines.traces.exporters) {
      const host = hostOf(config.exporters[exporter]!.endpoint);
      expect(names).toContain(host);
      expect(shareNetwork(collector.hostname, host)).toBe(true);
    }
  });
});

describe("each zone's NATS", () => {
  it("NATS containers join only their zone's network and publish nothing", () => {
    expect(nats.length).toBeGreaterThan(0);
    for (const name of nats) {
      const networks = networksOf(services[name]!);
      expect(networks, name).toHaveLength(1);
      expect(zones, name).toContain(networks[0]);
      expect(portsOf(services[name]!), name).toEqual([]);
    }
  });

  it.each(zones)("%s: the configuration's servers are that zone's NATS containers, with its JetStream domain, fsyncing every write as the zone requires", (zone) => {
    const members = bsfg.filter((s) => s.zone === zone);
    const servers = members[0]!.config.nats.servers;
    for (const s of members) expect(s.config.nats.servers).toEqual(servers);
    const zoneNats = nats.filter((n) => networksOf(services[n]!)[0] === zone);
    expect(servers.map((url) => new URL(url).hostname).sort()).toEqual(zoneNats.sort());
    for (const url of servers) {
      const name = new URL(url).hostname;
      const conf = natsConfOf(name);
      expect(conf.listen, url).toBe(`0.0.0.0:${new URL(url).port}`);
      expect(conf.domain).toBe(zone);
      expect(conf.syncInterval, name).toBe("always");
      // The tests run this very server version: what compose ships is what was tested.
      expect(services[name]!.image, name).toBe(`nats:${pinnedToolchain().natsServer}-alpine`);
    }
    // An acknowledged fact is fsynced: the zone says so and reads every server's /varz to check.
    for (const s of members) expect(s.config.nats.sync ?? "always").toBe("always");
    const monitors = members[0]!.config.nats.monitor ?? [];
    expect(monitors.map((url) => new URL(url).hostname).sort()).toEqual(zoneNats.sort());
    for (const url of monitors) expect(`0.0.0.0:${new URL(url).port}`).toBe(natsConfOf(new URL(url).hostname).http);
    // HA zone: a three-node cluster and replicas 3; otherwise one server and replicas 1.
    const replicas = members[0]!.config.storage.replicas ?? 1;
    expect(zoneNats).toHaveLength(replicas === 3 ? 3 : 1);
    if (replicas === 3) {
      const routes = natsConfOf(zoneNats[0]!).routes.map((r) => new URL(r).hostname).sort();
      expect(routes).toEqual([...zoneNats].sort());
    }
  });
});

/** Where a NATS container reads its configuration (its command's -c). */
function natsConfTarget(name: string): string {
  const service = services[name]!;
  const command = Array.isArray(service.command) ? service.command : String(service.command).split(/\s+/);
  return command[command.indexOf("-c") + 1] ?? command[command.indexOf("--config") + 1]!;
}

function natsConfFile(name: string): string {
  return relativeSource(mountsOf(services[name]!).find((m) => m.target === natsConfTarget(name))!.source);
}

/** The few settings of a nats-server configuration this suite compares (environment substituted). */
function natsConfOf(name: string): { listen: string; http: string; domain: string; syncInterval: string | undefined; routes: string[] } {
  const env = environmentOf(services[name]!);
  const text = readFileSync(repoPath(natsConfFile(name)), "utf8").replace(/^\s*#.*$/gm, "").replace(/\$(\w+)/g, (_, v: string) => env[v] ?? "");
  const routes = /routes\s*[:=]?\s*\[([^\]]*)\]/.exec(text)?.[1]?.split(/[\s,]+/).filter(Boolean) ?? [];
  return {
    listen: /^\s*listen\s*[:=]\s*(\S+)/m.exec(text)![1]!,
    http: /^\s*http\s*[:=]\s*(\S+)/m.exec(text)![1]!,
    domain: /jetstream\s*\{[^}]*domain\s*[:=]\s*(\S+)/.exec(text)![1]!,
    syncInterval: /jetstream\s*\{[^}]*sync_interval\s*[:=]\s*(\S+)/.exec(text)?.[1],
    routes,
  };
}


describe("the pki service", () => {
  let dir: string;
  const pki = services.pki!;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-compose-pki-"));
    // The script the pki container runs (its entrypoint), with the pki CLI of the workspace.
    const script = mountsOf(pki).find((m) => m.target === (pki.entrypoint as string[])[1])!;
    await run("sh", [repoPath(relativeSource(script.source)), join(dir, "pki")], {
      cwd: repoRoot, env: { ...process.env, BSFG_DEV_PKI_JS: repoPath("packages", "pki", "dist", "cli.js") },
    });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Where the pki job writes the volume a service mounts. */
  const written = (volume: string) => {
    const mount = mountsOf(pki).find((m) => m.source === volume);
    expect(mount, `the pki service writes ${volume}`).toBeDefined();
    return join(dir, "pki", posix.relative((pki.entrypoint as string[])[2]!, mount!.target));
  };

  it("runs once, on no network, before everything that needs certificates", () => {
    expect(pki.network_mode).toBe("none");
    expect(pki.entrypoint).toEqual(["sh", expect.stringMatching(/\.sh$/), expect.stringMatching(/^\//)]);
    for (const s of bsfg) expect(dependsOn(s.service).pki).toBe("service_completed_successfully");
    // The CA's key stays in a volume only the pki job mounts.
    const caVolume = mountsOf(pki).find((m) => existsSync(join(written(m.source), "ca.key")))!.source;
    for (const name of names.filter((n) => n !== "pki")) {
      expect(mountsOf(services[name]!).some((m) => m.source === caVolume), name).toBe(false);
    }
  });

  it.each(zones)("writes %s's volume: the CA certificate, the zone's own certificate and key, and its NATS password, nothing else", (zone) => {
    const s = bsfg.find((b) => b.zone === zone)!;
    const volume = mountsOf(s.service).find((m) => m.kind === "volume")!;
    const folder = written(volume.source);
    const inVolume = (p: string) => posix.relative(volume.target, posix.join(posix.dirname(s.configTarget), p));
    const expected = [...new Set([...Object.values(s.config.tls), s.config.nats.tls!.ca, s.config.nats.auth!.passwordFile].map(inVolume))];
    expect(readdirSync(folder).sort()).toEqual(expected.sort());
    for (const file of expected.filter((f) => f.endsWith(".key") || f.endsWith(".password"))) expect(statSync(join(folder, file)).mode & 0o077, file).toBe(0);
  });

  /** A NATS container's files laid out under `root` as compose mounts them; its configuration's absolute paths moved there. */
  const natsLayout = (name: string, root: string): string => {
    for (const m of mountsOf(services[name]!)) {
      if (m.kind === "volume" && mountsOf(pki).some((p) => p.source === m.source)) cpSync(written(m.source), join(root, m.target), { recursive: true });
    }
    const target = natsConfTarget(name);
    const text = readFileSync(repoPath(natsConfFile(name)), "utf8").replace(/"\/(etc|data)\//g, `"${root}/$1/`).replace(/(store_dir:\s*)\/data/, `$1${root}/data`);
    mkdirSync(join(root, posix.dirname(target)), { recursive: true });
    writeFileSync(join(root, target), text);
    return join(root, target);
  };

  it("every NATS configuration is valid for nats-server (-t), with the files and environment compose gives it", () => {
    const binary = locateNatsServerBinary();
    for (const name of nats) {
      const conf = natsLayout(name, join(dir, "nats", name));
      const check = spawnSync(binary, ["-t", "-c", conf], { encoding: "utf8", env: { ...process.env, ...environmentOf(services[name]!) } });
      expect(check.status, `${name}: ${check.stderr}`).toBe(0);
    }
  });

  it.each(zones)("%s's NATS speaks only TLS and lets in one user: the one its zone logs in as, with the password the pki job gave the zone", (zone) => {
    const members = bsfg.filter((s) => s.zone === zone);
    const { auth, tls } = members[0]!.config.nats;
    expect(auth?.user).toBe(`bsfg-${zone}`);
    for (const s of members) expect(s.config.nats).toMatchObject({ auth, tls });
    const volume = mountsOf(members[0]!.service).find((m) => m.kind === "volume")!;
    const inVolume = (p: string) => join(written(volume.source), posix.relative(volume.target, posix.join(posix.dirname(members[0]!.configTarget), p)));
    const password = readFileSync(inVolume(auth!.passwordFile), "utf8").trim();
    expect(password.length).toBeGreaterThanOrEqual(24);
    const ca = new X509Certificate(readFileSync(inVolume(tls!.ca)));
    for (const name of nats.filter((n) => networksOf(services[n]!)[0] === zone)) {
      const conf = readFileSync(natsLayout(name, join(dir, "nats-auth", name)), "utf8").replace(/^\s*#.*$/gm, "");
      const included = /include\s+"([^"]+)"/.exec(conf)?.[1];
      expect(included, `${name} includes its user`).toBeDefined();
      const authConf = readFileSync(join(dir, "nats-auth", name, posix.dirname(natsConfTarget(name)), included!), "utf8");
      expect(/user:\s*"([^"]+)"/.exec(authConf)?.[1], name).toBe(auth!.user);
      expect(/password:\s*"([^"]+)"/.exec(authConf)?.[1], name).toBe(password);
      // Every client connection is TLS, with a certificate that names the host the zone dials and chains to the zone's CA.
      const certFile = /cert_file:\s*"([^"]+)"/.exec(conf)?.[1];
      expect(certFile, `${name} has a tls block`).toBeDefined();
      const cert = new X509Certificate(readFileSync(certFile!));
      expect(cert.checkHost(name), name).toBe(name);
      expect(cert.verify(ca.publicKey), `${name}'s certificate chains to the zone's CA`).toBe(true);
      expect(statSync(join(dir, "nats-auth", name, posix.dirname(natsConfTarget(name)), included!)).mode & 0o077).toBe(0);
    }
  });

  it.each(zones)("%s's configuration loads with the services' own loader, with that volume beside it", (zone) => {
    const s = bsfg.find((b) => b.zone === zone)!;
    const volume = mountsOf(s.service).find((m) => m.kind === "volume")!;
    const root = join(dir, "mounted", zone);
    // Lay the container's files out as compose mounts them.
    cpSync(repoPath(s.configFile), join(root, s.configTarget));
    cpSync(written(volume.source), join(root, volume.target), { recursive: true });
    const config = loadZoneConfig(join(root, s.configTarget));
    expect(config.zone).toBe(zone);
    expect(config.sync.links.length).toBeGreaterThan(0);
  });

  it("server certificates name every host peers dial, chain to the CA every zone trusts, and carry the identity peers expect", () => {
    const ca = (zone: string) => new X509Certificate(readFileSync(join(written(mountsOf(bsfg.find((b) => b.zone === zone)!.service).find((m) => m.kind === "volume")!.source), "ca.crt")));
    for (const receiver of bsfg.filter((s) => s.role === "sync")) {
      for (const [peerZone, peer] of Object.entries(receiver.config.peers)) {
        const sender = bsfg.find((b) => b.zone === peerZone)!;
        const volume = mountsOf(sender.service).find((m) => m.kind === "volume")!;
        const certPath = posix.relative(volume.target, posix.join(posix.dirname(sender.configTarget), sender.config.tls.cert));
        const cert = new X509Certificate(readFileSync(join(written(volume.source), certPath)));
        // An outbound-only sender is dialed by no one; it dials in with the same certificate.
        const urls = peer.dial === "inbound" ? [] : Object.values(peer.urls ?? { url: peer.url! });
        for (const url of urls) {
          expect(cert.checkHost(new URL(url).hostname), `${sender.config.tls.cert} for ${url}`).toBe(new URL(url).hostname);
        }
        expect(cert.subject).toContain(`CN=${peer.identity}`);
        expect(cert.verify(ca(receiver.zone).publicKey), "the receiver trusts the sender's certificate").toBe(true);
      }
    }
    // The reverse listener presents its zone's certificate: it names the sync host the outbound-only zone dials.
    for (const sender of bsfg.filter(dialsOut)) {
      for (const [receiverZone, served] of Object.entries(sender.config.serve!)) {
        const receiver = bsfg.find((b) => b.zone === receiverZone && b.role === "sync")!;
        const volume = mountsOf(receiver.service).find((m) => m.kind === "volume")!;
        const certPath = posix.relative(volume.target, posix.join(posix.dirname(receiver.configTarget), receiver.config.tls.cert));
        const cert = new X509Certificate(readFileSync(join(written(volume.source), certPath)));
        for (const url of served.urls) expect(cert.checkHost(new URL(url).hostname), `${receiver.config.tls.cert} for ${url}`).toBe(new URL(url).hostname);
        expect(cert.subject).toContain(`CN=${served.identity}`);
        expect(cert.verify(ca(sender.zone).publicKey), "the outbound-only zone trusts the receiver's certificate").toBe(true);
      }
    }
  });

  it("writes a client certificate for every producer and viewer the policies name", () => {
    const clients = mountsOf(pki).map((m) => written(m.source)).find((f) => basename(f) === "clients")!;
    const zoneIdentities = new Set(zones.map((z) => `${z}-bsfg`));
    for (const s of bsfg) {
      for (const identity of Object.keys(s.config.policy).filter((i) => !zoneIdentities.has(i))) {
        expect(existsSync(join(clients, `${identity}.crt`)), identity).toBe(true);
        expect(existsSync(join(clients, `${identity}.key`)), identity).toBe(true);
      }
    }
  });
});

describe("the zone configurations are generated from the estate kit", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-compose-configs-"));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("regenerating them gives the committed files", async () => {
    await run(process.execPath, [repoPath("apps", "estate", "dist", "compose.js"), "--out", dir]);
    const generated = readdirSync(dir).sort();
    expect(generated).toEqual([...new Set(bsfg.map((s) => basename(s.configFile)))].sort());
    for (const file of generated) {
      expect(readFileSync(repoPath("deploy", "compose", file), "utf8"), `deploy/compose/${file} is stale: run node apps/estate/dist/compose.js`).toBe(readFileSync(join(dir, file), "utf8"));
    }
  });
});

describe("Prometheus and Grafana", () => {
  const prometheus = services.prometheus!;
  const grafana = services.grafana!;

  it("Prometheus scrapes every BSFG container's probe port over a network they share, and loads the alert rules", async () => {
    const mounts = mountsOf(prometheus);
    const configMount = mounts.find((m) => m.target === "/etc/prometheus/prometheus.yml")!;
    const config = parse(readFileSync(repoPath(relativeSource(configMount.source)), "utf8")) as {
      rule_files: string[];
      scrape_configs: Array<{ metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const targets = config.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    const expected = bsfg.map((s) => `${s.name}:${portOf(s.config.health[s.role]!)}`);
    expect(targets.sort()).toEqual(expected.sort());
    for (const s of bsfg) expect(shareNetwork("prometheus", s.name), s.name).toBe(true);
    // Every rule file resolves (relative to the configuration) to a mounted file.
    for (const rules of config.rule_files) {
      const target = posix.resolve(posix.dirname(configMount.target), rules);
      expect(mounts.map((m) => m.target), rules).toContain(target);
    }
    // promtool checks the configuration and its rules, laid out as in the container.
    const dir = await mkdtemp(join(tmpdir(), "bsfg-compose-prometheus-"));
    try {
      for (const m of mounts) cpSync(repoPath(relativeSource(m.source)), join(dir, m.target));
      const check = spawnSync(promtoolBinary(), ["check", "config", join(dir, configMount.target)], { encoding: "utf8" });
      expect(check.status, check.stdout + check.stderr).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("Grafana gets the dashboard and the data source from deploy/grafana, and reaches Prometheus", () => {
    const mounts = mountsOf(grafana);
    for (const kind of ["datasources", "dashboards"]) {
      const mount = mounts.find((m) => m.target === `/etc/grafana/provisioning/${kind}`);
      expect(mount, kind).toBeDefined();
      expect(relativeSource(mount!.source)).toBe(`deploy/grafana/provisioning/${kind}`);
    }
    const provider = parse(readFileSync(repoPath("deploy", "grafana", "provisioning", "dashboards", "bsfg.yaml"), "utf8")) as { providers: Array<{ options: { path: string } }> };
    const dashboards = mounts.find((m) => m.target === provider.providers[0]!.options.path);
    expect(dashboards).toBeDefined();
    expect(readdirSync(repoPath(relativeSource(dashboards!.source)))).toContain("bsfg-overview.json");
    const datasource = parse(readFileSync(repoPath("deploy", "grafana", "provisioning", "datasources", "prometheus.yaml"), "utf8")) as { datasources: Array<{ url: string }> };
    const host = new URL(datasource.datasources[0]!.url);
    expect(names).toContain(host.hostname);
    expect(shareNetwork("grafana", host.hostname)).toBe(true);
  });
});

/** promtool: $PROMTOOL, the one scripts/bootstrap.sh extracts into .tools/, or on PATH. */
function promtoolBinary(): string {
  for (const candidate of [process.env.PROMTOOL, repoPath(".tools", "promtool")]) if (candidate && existsSync(candidate)) return candidate;
  const onPath = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
  if (onPath) return onPath;
  throw new Error("promtool not found: run scripts/bootstrap.sh, or set PROMTOOL");
}
