/**
 * The deployables' images, proven without a Docker engine. Each Dockerfile builds the workspace
 * and then runs scripts/deploy-package.sh (pnpm deploy --prod, trimmed) into /out, which is all
 * the final stage copies. This suite runs that same script for every image into a temporary
 * folder (once per run) and checks what an image would carry — that deployable's dist and the
 * @bsfg packages it needs, no other deployable's code, no devDependencies — and that it runs
 * from there: without --config it prints its usage, and with a zone configuration (through
 * BSFG_CONFIG, as in the image) against a real nats-server it gets ready, which the
 * Dockerfile's own HEALTHCHECK command confirms.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startNatsServer, type NatsServerHandle } from "@bsfg/testkit";
import { readDockerfile, repoPath, repoRoot, workspaceClosure } from "./docker-support.js";
import { pinnedToolchain } from "./toolchain.js";

const run = promisify(execFile);

type Role = "ingest" | "egress" | "ledger" | "sync" | "zone";
interface Image {
  readonly name: string;
  readonly dockerfile: string;
  readonly pkg: string;
  readonly main: string;
  readonly workspaceDir: string;
  readonly usage: RegExp;
  /** The deployable's role in the zone configuration (undefined for the PKI tool). */
  readonly role?: Role;
}

const service = (role: Role): Image => ({
  name: role, role, dockerfile: `apps/${role}/Dockerfile`, pkg: `@bsfg/${role}`, main: "dist/main.js",
  workspaceDir: `apps/${role}`, usage: new RegExp(`^usage: bsfg-${role} --config <zone\\.yaml>`, "m"),
});
const images: Image[] = [
  service("ingest"), service("egress"), service("ledger"), service("sync"), service("zone"),
  { name: "pki", dockerfile: "packages/pki/Dockerfile", pkg: "@bsfg/pki", main: "dist/cli.js", workspaceDir: "packages/pki", usage: /Usage: bsfg-dev-pki/ },
];
const services = images.filter((i) => i.role !== undefined);

/** Never in an image: build and test tooling, and the parts of the workspace only tests use. */
const devOnly = ["vitest", "typescript", "@bufbuild/buf", "@bufbuild/protoc-gen-es", "turbo", "@types/node", "@bsfg/testkit", "@bsfg/estate-kit", "@bsfg/e2e"];
const deployables = ["@bsfg/ingest", "@bsfg/egress", "@bsfg/ledger", "@bsfg/sync", "@bsfg/zone", "@bsfg/cli", "@bsfg/estate"];

/** Package names in a deploy's virtual store (node_modules/.pnpm/<name>@<version>…). */
function storePackages(dir: string): string[] {
  return readdirSync(join(dir, "node_modules", ".pnpm"))
    .filter((entry) => entry !== "node_modules" && !entry.endsWith(".yaml"))
    .map((entry) => {
      const scoped = entry.startsWith("@");
      const at = entry.indexOf("@", scoped ? 1 : 0);
      return (at === -1 ? entry : entry.slice(0, at)).replace(/^(@[^+]+)\+/, "$1/");
    });
}

/** Regular files under `dir`, not following symlinks (Node 26's recursive readdir descends into linked directories). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return filesUnder(path);
    return e.isFile() ? [path] : [];
  });
}

let out: string;
const deployed = (image: Image) => join(out, image.name);

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), "bsfg-images-"));
  // What the Dockerfiles run (scripts/deploy-package.sh <pkg> /out), once per image and run.
  await Promise.all(images.map((image) =>
    run(repoPath("scripts", "deploy-package.sh"), [image.pkg, deployed(image), "--prefer-offline"], { cwd: repoRoot, maxBuffer: 16 * 2 ** 20 })));
}, 90_000);
afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

describe.each(images)("the $name image", (image) => {
  const dockerfile = readDockerfile(image.dockerfile);

  it("is multi-stage on the Node LTS the suite runs on (slim base), built with the workspace's pnpm, and runs as a non-root user", () => {
    expect(dockerfile.globalArgs.NODE_IMAGE).toMatch(new RegExp(`^node:${pinnedToolchain().nodeMajor}(\\.\\d+){0,2}-bookworm-slim$`));
    expect(dockerfile.bases.length).toBeGreaterThanOrEqual(2);
    for (const base of dockerfile.bases) expect(base).toBe(dockerfile.globalArgs.NODE_IMAGE);
    const pnpm = (JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as { packageManager: string }).packageManager;
    expect(dockerfile.runs.join("\n")).toContain(`npm install -g ${pnpm}`);
    expect(dockerfile.user).toBe("node");
    expect(dockerfile.entrypoint).toEqual(image.role ? ["node", image.main] : ["node", `/app/${image.main}`]);
  });

  it("builds its package and its dependencies, and copies only what deploy-package.sh put in /out", () => {
    const runs = dockerfile.runs.join("\n");
    expect(runs).toContain(`turbo run build --filter=${image.pkg}...`);
    expect(runs).toMatch(new RegExp(`scripts/deploy-package\\.sh ${image.pkg} /out(\\s|$)`));
    const copies = dockerfile.finalCopies;
    expect(copies).toEqual(["--from=build /out ./"]);
  });

  it("carries its dist and the @bsfg packages it depends on, no other deployable's code and no devDependencies", () => {
    const dir = deployed(image);
    expect(readFileSync(join(dir, image.main), "utf8")).toBe(readFileSync(repoPath(image.workspaceDir, image.main), "utf8"));
    const packages = storePackages(dir);
    const bsfg = packages.filter((p) => p.startsWith("@bsfg/")).sort();
    expect(bsfg).toEqual([...workspaceClosure(image.pkg)].sort());
    for (const name of [...devOnly, ...deployables.filter((d) => d !== image.pkg)]) expect(packages, name).not.toContain(name);
    // Trimmed: no sources or build metadata, here or in the @bsfg packages it carries.
    const files = filesUnder(dir).filter((f) => !f.includes(`${join("node_modules", ".pnpm")}/`) || f.includes("/@bsfg+"));
    for (const file of files) expect(file).not.toMatch(/\/(src|\.turbo)\/|\.tsbuildinfo$|\/tsconfig[^/]*\.json$|\.test\.js$/);
    expect(existsSync(join(dir, "pnpm-workspace.yaml"))).toBe(false);
  });

  it("runs from the deploy output: without a configuration it prints its usage", async () => {
    const { BSFG_CONFIG: _ignored, ...env } = process.env;
    const result = await run(process.execPath, [join(deployed(image), image.main)], { cwd: deployed(image), env }).then(
      () => ({ code: 0, stderr: "" }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(image.usage);
  });
});

it("every image builds the same way: the build stages differ only in the package they build", () => {
  const buildStage = (image: Image) => readDockerfile(image.dockerfile).instructions
    .filter((i) => i.stage <= 0)
    .map((i) => `${i.keyword} ${i.args.replaceAll(image.pkg, "<package>")}`);
  const reference = buildStage(images[0]!);
  for (const image of images.slice(1)) expect(buildStage(image), image.dockerfile).toEqual(reference);
});

describe.each(services)("the $name image's ports and health check", (image) => {
  const dockerfile = readDockerfile(image.dockerfile);
  const role = image.role!;

  it("exposes its probe port (BSFG_PROBE_PORT) and, if it serves RPC, its mTLS port; reads BSFG_CONFIG", () => {
    const probe = Number(dockerfile.env.BSFG_PROBE_PORT);
    expect(dockerfile.exposed).toContain(probe);
    if (role !== "sync") expect(dockerfile.exposed.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile.env.BSFG_CONFIG).toBe("/etc/bsfg/zone.yaml");
    expect(dockerfile.healthcheck?.slice(0, 2)).toEqual(["node", "-e"]);
    expect(dockerfile.healthcheck?.[2]).toContain("process.env.BSFG_PROBE_PORT+'/readyz'");
  });
});

describe("the deployables run from their deploy output against a real zone", () => {
  let nats: NatsServerHandle;
  let dir: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bsfg-images-run-"));
    nats = await startNatsServer({ domain: "plant-a" });
    // The PKI tool of the pki image, from its deploy output too.
    await run(process.execPath, [join(deployed(images.find((i) => i.name === "pki")!), "dist", "cli.js"), join(dir, "pki"), "plant-a-bsfg"]);
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    await nats?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.each(services)("$name: ready by the Dockerfile's HEALTHCHECK command, then stops cleanly on SIGTERM", async (image) => {
    const role = image.role!;
    const dockerfile = readDockerfile(image.dockerfile);
    const [listen, probe, syncProbe] = [await freePort(), await freePort(), await freePort()];
    const config = join(dir, `${role}.yaml`);
    await writeFile(config, [
      "zone: plant-a",
      `nats: { servers: ["${nats.url}"], monitor: ["${nats.monitorUrl}"] }`,
      "storage:",
      "  zones: [idmz, enterprise]",
      "  streams: { operational: { maxBytes: 64MiB }, audit: { maxBytes: 64MiB }, documents: { maxBytes: 64MiB } }",
      "tls: { ca: pki/ca.crt, cert: pki/plant-a-bsfg.crt, key: pki/plant-a-bsfg.key }",
      role === "sync" ? "" : `listen: { ${role}: "127.0.0.1:${listen}" }`,
      `health: { ${role}: "127.0.0.1:${probe}"${role === "zone" ? `, sync: "127.0.0.1:${syncProbe}"` : ""} }`,
      "shutdownGrace: 2s",
      "",
    ].join("\n"));
    // As the image runs it: ENTRYPOINT node dist/main.js, the configuration from BSFG_CONFIG.
    const log: string[] = [];
    const child = spawn(process.execPath, [image.main], { cwd: deployed(image), env: { ...process.env, BSFG_CONFIG: config }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    child.stdout!.on("data", (d: Buffer) => log.push(d.toString()));
    child.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

    const [command, ...args] = dockerfile.healthcheck!;
    expect(command).toBe("node");
    const healthcheck = () => run(process.execPath, args, { env: { ...process.env, BSFG_PROBE_PORT: String(probe) }, timeout: 3_000 }).then(() => true, () => false);
    const deadline = Date.now() + 30_000;
    let healthy = false;
    while (!healthy && Date.now() < deadline && child.exitCode === null) {
      healthy = await healthcheck();
      if (!healthy) await new Promise((r) => setTimeout(r, 200));
    }
    expect(healthy, log.join("")).toBe(true);

    child.kill("SIGTERM");
    expect(await exited, log.join("")).toBe(0);
    // And once it is gone, the same command reports it unhealthy.
    expect(await healthcheck()).toBe(false);
  });
});
