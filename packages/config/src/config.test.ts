import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, createPolicy, loadZoneConfig, parseZoneConfig, printableConfig } from "./index.js";

const pem = (name: string) => `-----BEGIN TEST-----\n${name}\n-----END TEST-----\n`;
const files = { "/pki/ca.crt": pem("ca"), "/pki/plant-a.crt": pem("cert"), "/pki/plant-a.key": pem("key") };
const readFile = (path: string) => {
  const content = files[path as keyof typeof files];
  if (content === undefined) throw new Error("ENOENT");
  return content;
};

const valid = {
  zone: "plant-a",
  nats: { servers: ["nats://127.0.0.1:4222"], monitor: ["http://127.0.0.1:8222"] },
  storage: {
    zones: ["idmz", "enterprise"],
    consumers: [{ name: "idmz-from-plant-a", stream: "operational", skipOrigins: ["idmz"] }],
    buckets: { "batch-files": {} },
  },
  tls: { ca: "ca.crt", cert: "plant-a.crt", key: "plant-a.key" },
  policy: {
    "mes-producer": { assertFromZones: ["plant-a"], targetZones: ["*"], writeBuckets: ["batch-files"] },
    "idmz-bsfg": { consumers: ["idmz-from-plant-a"], readBuckets: ["batch-files"] },
  },
};

describe("zone configuration", () => {
  it("builds the storage configuration, binds consumers to identities from the policy and reads the PEMs", () => {
    const cfg = parseZoneConfig(valid, { baseDir: "/pki", readFile });
    expect(cfg.storage.zone).toBe("plant-a");
    expect(cfg.storage.domain).toBe("plant-a");
    expect(cfg.storage.zones).toEqual(["plant-a", "idmz", "enterprise"]);
    expect(cfg.storage.consumers[0]!.identities).toEqual(["idmz-bsfg"]);
    expect(cfg.tls.cert).toBe(pem("cert"));
    expect(cfg.tls.paths.key).toBe("/pki/plant-a.key");
    expect(cfg.fetch.maxWait).toBe(30_000);
  });

  it("reads the certificate files for a rotation every minute unless told otherwise (\"off\": SIGHUP only)", () => {
    const withCheck = (reloadCheck?: unknown) => parseZoneConfig({ ...valid, tls: { ...valid.tls, ...(reloadCheck === undefined ? {} : { reloadCheck }) } }, { baseDir: "/pki", readFile }).tls.reloadCheckMs;
    expect([withCheck(), withCheck("5s"), withCheck("off")]).toEqual([60_000, 5_000, 0]);
    expect(() => withCheck("soon")).toThrow(/tls\.reloadCheck/);
  });

  it("makes an acknowledgement mean fsynced unless told otherwise, and then needs the servers' monitoring endpoints to check it", () => {
    const parse = (nats: Record<string, unknown>) => parseZoneConfig({ ...valid, nats }, { baseDir: "/pki", readFile });
    expect(parse({ servers: ["nats://127.0.0.1:4222"], monitor: ["http://127.0.0.1:8222"] }).nats).toMatchObject({ sync: "always", monitor: ["http://127.0.0.1:8222"] });
    expect(() => parse({ servers: ["nats://127.0.0.1:4222"] })).toThrow(/nats\.monitor: give every server's monitoring endpoint .* or set nats\.sync: interval/);
    expect(parse({ servers: ["nats://127.0.0.1:4222"], sync: "interval" }).nats).toMatchObject({ sync: "interval", monitor: [] });
    expect(() => parse({ sync: "sometimes", monitor: ["http://127.0.0.1:8222"] })).toThrow(/nats\.sync/);
    expect(() => parse({ monitor: ["nats://127.0.0.1:8222"] })).toThrow(/nats\.monitor/);
  });

  it("logs in to the nats-server with a user and the password from its file, over TLS with the given CA", () => {
    const secrets: Record<string, string> = { ...files, "/pki/nats.password": "s3cret\n", "/pki/empty.password": "\n" };
    const parse = (nats: Record<string, unknown>) => parseZoneConfig({ ...valid, nats: { ...valid.nats, ...nats } }, { baseDir: "/pki", readFile: (p) => secrets[p] ?? readFile(p) });
    expect(parse({ auth: { user: "bsfg-plant-a", passwordFile: "nats.password" }, tls: { ca: "ca.crt" } }).nats).toMatchObject({ auth: { user: "bsfg-plant-a", pass: "s3cret" }, tls: { ca: pem("ca") } });
    expect(parse({}).nats.auth).toBeUndefined();
    expect(() => parse({ auth: { user: "bsfg-plant-a", passwordFile: "missing.password" } })).toThrow(/nats\.auth\.passwordFile: cannot read \/pki\/missing\.password/);
    expect(() => parse({ auth: { user: "bsfg-plant-a", passwordFile: "empty.password" } })).toThrow(/nats\.auth\.passwordFile: \/pki\/empty\.password is empty/);
    expect(() => parse({ tls: { ca: "ca.crt", cert: "plant-a.crt" } })).toThrow(/nats\.tls.*both cert and key/);
  });

  it("lists every problem with its path in one error", () => {
    const broken = {
      ...valid,
      listen: { zone: "8443" },
      storage: { ...valid.storage, streams: { operational: { maxAge: "forever" } } },
      tls: { ...valid.tls, key: "missing.key" },
      policy: { "mes-producer": { assertFromZones: ["mars"], consumers: ["nobody"], writeBuckets: ["nope"] } },
    };
    let error: ConfigError | undefined;
    try {
      parseZoneConfig(broken, { baseDir: "/pki", readFile });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.problems).toEqual([`listen.zone: write an address as "host:port", e.g. "0.0.0.0:8443" or "[::]:8443"`]);

    try {
      parseZoneConfig({ ...broken, listen: undefined }, { baseDir: "/pki", readFile });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error!.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^storage\.streams\.operational\.maxAge: write a duration/),
      expect.stringMatching(/^tls\.key: cannot read \/pki\/missing\.key/),
    ]));
  });

  it("checks the policy against the zones, consumers and buckets it names", () => {
    const withBadPolicy = { ...valid, policy: { "mes-producer": { assertFromZones: ["mars"], consumers: ["nobody"], writeBuckets: ["nope"] } } };
    expect(() => parseZoneConfig(withBadPolicy, { baseDir: "/pki", readFile })).toThrow(
      /policy\.mes-producer: zone "mars" is not in storage\.zones[\s\S]*policy\.mes-producer\.consumers: "nobody" is not a consumer[\s\S]*policy\.mes-producer: bucket "nope" is not in storage\.buckets/,
    );
  });

  it("loads YAML from a file with paths relative to it", () => {
    const dir = mkdtempSync(join(tmpdir(), "bsfg-config-"));
    for (const [name, content] of [["ca.crt", pem("ca")], ["plant-a.crt", pem("cert")], ["plant-a.key", pem("key")]] as const) writeFileSync(join(dir, name), content);
    writeFileSync(join(dir, "zone.yaml"), [
      "zone: plant-a",
      "nats: { monitor: [http://127.0.0.1:8222] }",
      "tls: { ca: ca.crt, cert: plant-a.crt, key: plant-a.key }",
      "policy:",
      "  mes-producer: { assertFromZones: [plant-a], targetZones: [plant-a] }",
    ].join("\n"));
    const cfg = loadZoneConfig(join(dir, "zone.yaml"));
    expect(cfg.tls.ca).toBe(pem("ca"));
    expect(() => loadZoneConfig(join(dir, "absent.yaml"))).toThrow(/cannot read the file/);
    writeFileSync(join(dir, "bad.yaml"), "zone: [unclosed");
    expect(() => loadZoneConfig(join(dir, "bad.yaml"))).toThrow(/not valid YAML/);
  });
});

describe("policy", () => {
  const policy = createPolicy(parseZoneConfig(valid, { baseDir: "/pki", readFile }).policy);

  it("denies by default", () => {
    expect(policy.mayAppend(["stranger"], "plant-a", "enterprise")).toMatchObject({ allowed: false, reason: "unknown_identity" });
    expect(policy.mayAppend([], "plant-a", "enterprise")).toMatchObject({ allowed: false, reason: "unknown_identity" });
  });

  it("lets nobody see or act from the mTLS console unless its policy says console: view or operate", () => {
    const consoles = createPolicy({
      "estate-operator": { console: "operate", quarantine: ["read"] } as never,
      "plant-viewer": { console: "view" } as never,
      "mes-producer": { assertFromZones: ["plant-a"] } as never,
    });
    expect(consoles.mayUseConsole(["estate-operator"], "operate").allowed).toBe(true);
    expect(consoles.mayUseConsole(["estate-operator"], "view").allowed).toBe(true);
    expect(consoles.mayUseConsole(["plant-viewer"], "view").allowed).toBe(true);
    expect(consoles.mayUseConsole(["plant-viewer"], "operate")).toMatchObject({ allowed: false, reason: "operator_not_allowed" });
    expect(consoles.mayUseConsole(["mes-producer"], "view")).toMatchObject({ allowed: false, reason: "operator_not_allowed" });
    expect(consoles.mayUseConsole(["stranger"], "view")).toMatchObject({ allowed: false, reason: "unknown_identity" });
    // The schema knows the permission and nothing else for it.
    expect(() => parseZoneConfig({ ...valid, policy: { ...valid.policy, "plant-viewer": { console: "admin" } } }, { baseDir: "/pki", readFile })).toThrow(/policy\.plant-viewer\.console/);
  });

  it("takes addresses and CIDR ranges in health.allowFrom, and names an entry that is neither", () => {
    const parse = (allowFrom: string[]) => parseZoneConfig({ ...valid, health: { allowFrom } }, { baseDir: "/pki", readFile });
    expect(parse(["127.0.0.0/8", "172.29.14.1", "fd00::/8"]).health.allowFrom).toEqual(["127.0.0.0/8", "172.29.14.1", "fd00::/8"]);
    for (const wrong of ["observability", "10.0.0.0/33", "10.0.0.0/8/1", "10.0.0.256"]) expect(() => parse([wrong]), wrong).toThrow(/health\.allowFrom\.0: write an address or a CIDR range/);
  });

  it("uses the first certificate name the policy knows (CN, then SANs)", () => {
    expect(policy.identityOf(["unknown-cn", "mes-producer"])).toBe("mes-producer");
    expect(policy.mayAppend(["unknown-cn", "mes-producer"], "plant-a", "enterprise")).toEqual({ allowed: true, identity: "mes-producer" });
  });

  it("checks asserted and targeted zones, consumers and buckets", () => {
    expect(policy.mayAppend(["mes-producer"], "enterprise", "plant-a")).toMatchObject({ allowed: false, reason: "from_zone_not_allowed" });
    expect(policy.mayAppend(["idmz-bsfg"], "plant-a", "enterprise")).toMatchObject({ allowed: false, reason: "from_zone_not_allowed" });
    expect(policy.mayUseConsumer(["idmz-bsfg"], "idmz-from-plant-a").allowed).toBe(true);
    expect(policy.mayUseConsumer(["mes-producer"], "idmz-from-plant-a")).toMatchObject({ allowed: false, reason: "consumer_not_allowed" });
    expect(policy.mayWriteBucket(["mes-producer"], "batch-files").allowed).toBe(true);
    expect(policy.mayReadBucket(["mes-producer"], "batch-files")).toMatchObject({ allowed: false, reason: "bucket_not_allowed" });
    expect(policy.mayReadBucket(["idmz-bsfg"], "batch-files").allowed).toBe(true);
  });

  it("resolves peer links and checks that each peer's relaying identity has a policy", () => {
    const withLinks = {
      ...valid,
      peers: {
        idmz: { url: "https://idmz.example:8443", identity: "idmz-bsfg" },
        enterprise: { urls: { egress: "https://ent.example:8445", ledger: "https://ent.example:8446" }, identity: "enterprise-bsfg" },
      },
      sync: { links: [{ peer: "idmz", consumer: "plant-a-from-idmz-operational" }] },
      policy: { ...valid.policy, "idmz-bsfg": { ...valid.policy["idmz-bsfg"], assertFromZones: ["idmz", "enterprise"], targetZones: ["*"] } },
    };
    const cfg = parseZoneConfig(withLinks, { baseDir: "/pki", readFile });
    expect(cfg.sync.links).toEqual([{ name: "idmz/plant-a-from-idmz-operational", peer: "idmz", consumer: "plant-a-from-idmz-operational", egressUrls: ["https://idmz.example:8443"], ledgerUrls: ["https://idmz.example:8443"], peerIdentity: "idmz-bsfg", dial: "outbound" }]);
    expect(cfg.sync.tls.cert).toBe(pem("cert"));
    expect(cfg.sync.maxWait).toBe(20_000);
    // What start-up logs: paths, never key material.
    const printed = JSON.stringify(printableConfig(cfg));
    expect(printed).not.toContain("BEGIN");
    expect(printableConfig(cfg)).toMatchObject({ tls: { key: "/pki/plant-a.key" }, sync: { tls: { key: "/pki/plant-a.key" } } });

    const problems = (doc: unknown) => {
      try {
        parseZoneConfig(doc, { baseDir: "/pki", readFile });
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(problems({ ...withLinks, sync: { links: [{ peer: "mars", consumer: "x" }] } })).toEqual([`sync.links.0.peer: "mars" is not in peers (idmz, enterprise)`]);
    expect(problems({ ...withLinks, policy: valid.policy })).toEqual([
      `peers.idmz.identity: "idmz-bsfg" needs policy.idmz-bsfg.assertFromZones (and targetZones): every fact pulled from idmz is checked against them`,
    ]);
    expect(problems({ ...withLinks, peers: { ...withLinks.peers, idmz: { url: "http://idmz.example:8443", identity: "idmz-bsfg" } } })[0]).toMatch(/^peers\.idmz\.url: write an endpoint as "https:\/\/host:port"/);
    expect(problems({ ...withLinks, peers: { ...withLinks.peers, idmz: { url: [], identity: "idmz-bsfg" } } })[0]).toMatch(/^peers\.idmz\.url: /);
  });

  it("takes a list of endpoints per peer service: the replicas of a highly available zone", () => {
    const replicas = {
      ...valid,
      peers: { idmz: { urls: { egress: ["https://a.idmz.example:8445", "https://b.idmz.example:8445"], ledger: "https://a.idmz.example:8446" }, identity: "idmz-bsfg" } },
      sync: { links: [{ peer: "idmz", consumer: "plant-a-from-idmz-operational" }] },
      policy: { ...valid.policy, "idmz-bsfg": { ...valid.policy["idmz-bsfg"], assertFromZones: ["idmz"], targetZones: ["*"] } },
    };
    expect(parseZoneConfig(replicas, { baseDir: "/pki", readFile }).sync.links[0]).toMatchObject({
      egressUrls: ["https://a.idmz.example:8445", "https://b.idmz.example:8445"],
      ledgerUrls: ["https://a.idmz.example:8446"],
    });
    const allInOne = { ...replicas, peers: { idmz: { url: ["https://a.idmz.example:8443", "https://b.idmz.example:8443"], identity: "idmz-bsfg" } } };
    expect(parseZoneConfig(allInOne, { baseDir: "/pki", readFile }).sync.links[0]).toMatchObject({
      egressUrls: ["https://a.idmz.example:8443", "https://b.idmz.example:8443"],
      ledgerUrls: ["https://a.idmz.example:8443", "https://b.idmz.example:8443"],
    });
  });
});

describe("outbound-only links (reverse connect)", () => {
  const problems = (doc: unknown): string[] => {
    try {
      parseZoneConfig(doc, { baseDir: "/pki", readFile });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems;
    }
  };
  /** This zone pulls from idmz over the connections idmz dials into its reverse listener. */
  const receiving = {
    ...valid,
    listen: { reverse: "0.0.0.0:8447" },
    peers: { idmz: { dial: "inbound", identity: "idmz-bsfg" } },
    sync: { links: [{ peer: "idmz", consumer: "plant-a-from-idmz-operational" }] },
    policy: { ...valid.policy, "idmz-bsfg": { ...valid.policy["idmz-bsfg"], assertFromZones: ["idmz"], targetZones: ["*"] } },
  };
  /** This zone accepts no connection from idmz: it dials idmz's reverse listeners and serves idmz's pulls over them. */
  const dialing = { ...valid, serve: { idmz: { dial: "outbound", urls: ["https://idmz-sync-1.example:8447", "https://idmz-sync-2.example:8447"], identity: "idmz-bsfg" } } };

  it("a peer that dials in: its link calls it over the reverse listener, which needs an address", () => {
    const cfg = parseZoneConfig(receiving, { baseDir: "/pki", readFile });
    expect(cfg.sync.links[0]).toMatchObject({ peer: "idmz", dial: "inbound", peerIdentity: "idmz-bsfg", egressUrls: ["https://egress.idmz.reverse"], ledgerUrls: ["https://ledger.idmz.reverse"] });
    expect(cfg.listen.reverse).toBe("0.0.0.0:8447");

    // Never both: a peer that dials in takes no endpoint of its own (the problem names it).
    expect(problems({ ...receiving, peers: { idmz: { dial: "inbound", url: "https://idmz.example:8443", identity: "idmz-bsfg" } } })).toEqual([
      "peers.idmz: the link from idmz is dial: inbound (idmz dials this zone), so it takes no url or urls: remove them, or set dial: outbound to connect to idmz",
    ]);
    expect(problems({ ...receiving, peers: { idmz: { dial: "inbound", urls: { egress: "https://idmz.example:8445" }, identity: "idmz-bsfg" } } })).toEqual([
      expect.stringMatching(/^peers\.idmz: the link from idmz is dial: inbound .* takes no url or urls/),
    ]);
    // Where it dials: listen.reverse, or the configuration is refused.
    expect(problems({ ...receiving, listen: undefined })).toEqual([
      `peers.idmz: dial: inbound needs listen.reverse, the address where idmz dials this zone's sync worker (e.g. "0.0.0.0:8447")`,
    ]);
    // An outbound peer (the default) still needs its endpoints.
    expect(problems({ ...receiving, peers: { idmz: { identity: "idmz-bsfg" } } })).toEqual([
      "peers.idmz: give url, or both urls.egress and urls.ledger (or dial: inbound if idmz dials this zone)",
    ]);
  });

  it("a zone that dials its peer keeps its egress and ledger on loopback, and names its peer in the refusal", () => {
    const cfg = parseZoneConfig(dialing, { baseDir: "/pki", readFile });
    expect(cfg.serve).toEqual({ idmz: { dial: "outbound", urls: ["https://idmz-sync-1.example:8447", "https://idmz-sync-2.example:8447"], identity: "idmz-bsfg" } });
    expect(problems({ ...dialing, listen: { egress: "localhost:8445", ledger: "[::1]:8446" } })).toEqual([]);

    expect(problems({ ...dialing, listen: { egress: "0.0.0.0:8445" } })).toEqual([
      "listen.egress: 0.0.0.0:8445 is reachable from outside, but this zone serves idmz outbound-only (serve.*.dial: outbound): bind it to 127.0.0.1, or remove serve.idmz and let idmz connect in (a link is either dialed or listened, never both)",
    ]);
    expect(problems({ ...dialing, listen: { egress: "10.0.0.5:8445", ledger: "[::]:8446" } })).toEqual([
      expect.stringMatching(/^listen\.egress: 10\.0\.0\.5:8445 is reachable from outside, but this zone serves idmz outbound-only/),
      expect.stringMatching(/^listen\.ledger: \[::\]:8446 is reachable from outside, but this zone serves idmz outbound-only/),
    ]);
    // Without serve, the same addresses are fine: peers connect in.
    expect(problems({ ...valid, listen: { egress: "0.0.0.0:8445", ledger: "[::]:8446" } })).toEqual([]);
    // serve is for dialing only, and the peer it dials must have a policy here.
    expect(problems({ ...dialing, serve: { idmz: { ...dialing.serve.idmz, dial: "inbound" } } })).toEqual([expect.stringMatching(/^serve\.idmz\.dial: write dial: outbound/)]);
    expect(problems({ ...dialing, serve: { idmz: { ...dialing.serve.idmz, identity: "stranger" } } })).toEqual([expect.stringMatching(/^serve\.idmz\.identity: "stranger" has no policy here/)]);
  });
});
