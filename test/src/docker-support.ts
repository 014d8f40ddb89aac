/**
 * Reading the repository's Dockerfiles and docker-compose.yml without a Docker engine: the
 * images and compose suites check what these files say against the code and configuration
 * they package.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const repoPath = (...parts: string[]) => join(repoRoot, ...parts);

export interface Instruction {
  readonly keyword: string;
  readonly args: string;
  /** Index of the build stage (FROM) the instruction belongs to; -1 before the first FROM. */
  readonly stage: number;
}

/** A Dockerfile as instructions: comments dropped, continuation lines joined. */
export function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const match = /^(\S+)\s*(.*)$/.exec(full)!;
    const keyword = match[1]!.toUpperCase();
    if (keyword === "FROM") stage++;
    instructions.push({ keyword, args: match[2]!, stage });
  }
  return instructions;
}

export interface DockerfileFacts {
  readonly path: string;
  readonly instructions: Instruction[];
  /** Default values of ARGs declared before the first FROM. */
  readonly globalArgs: Record<string, string>;
  /** FROM images, ARGs substituted. */
  readonly bases: string[];
  /** The final stage's ENV, USER, EXPOSE, HEALTHCHECK and ENTRYPOINT. */
  readonly env: Record<string, string>;
  readonly user: string | undefined;
  readonly exposed: number[];
  /** The HEALTHCHECK's CMD (exec form), or undefined. */
  readonly healthcheck: string[] | undefined;
  readonly entrypoint: string[] | undefined;
  /** Every RUN of every stage, joined. */
  readonly runs: string[];
  readonly finalCopies: string[];
}

export function readDockerfile(relativePath: string): DockerfileFacts {
  const instructions = parseDockerfile(readFileSync(repoPath(relativePath), "utf8"));
  const last = Math.max(...instructions.map((i) => i.stage));
  const globalArgs: Record<string, string> = {};
  for (const i of instructions.filter((i) => i.stage === -1 && i.keyword === "ARG")) {
    const [name, value] = i.args.split("=", 2);
    globalArgs[name!] = value ?? "";
  }
  const substitute = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => globalArgs[(a ?? b)!] ?? "");
  const final = instructions.filter((i) => i.stage === last);
  const env: Record<string, string> = {};
  for (const i of final.filter((i) => i.keyword === "ENV")) {
    for (const pair of i.args.match(/\S+=("[^"]*"|\S+)/g) ?? []) {
      const at = pair.indexOf("=");
      env[pair.slice(0, at)] = pair.slice(at + 1).replace(/^"|"$/g, "");
    }
  }
  const health = final.find((i) => i.keyword === "HEALTHCHECK");
  const entrypoint = final.find((i) => i.keyword === "ENTRYPOINT");
  return {
    path: relativePath,
    instructions,
    globalArgs,
    bases: instructions.filter((i) => i.keyword === "FROM").map((i) => substitute(i.args.split(/\s+/)[0]!)),
    env,
    user: final.filter((i) => i.keyword === "USER").at(-1)?.args,
    exposed: final.filter((i) => i.keyword === "EXPOSE").flatMap((i) => i.args.split(/\s+/).map((p) => Number(p.split("/")[0]))),
    healthcheck: health ? JSON.parse(health.args.slice(health.args.indexOf("CMD") + 3).trim()) as string[] : undefined,
    entrypoint: entrypoint ? JSON.parse(entrypoint.args) as string[] : undefined,
    runs: instructions.filter((i) => i.keyword === "RUN").map((i) => i.args),
    finalCopies: final.filter((i) => i.keyword === "COPY").map((i) => i.args),
  };
}

/** The prod-dependency closure of a workspace package: the @bsfg packages it needs at run time. */
export function workspaceClosure(name: string): Set<string> {
  const dirs = new Map<string, string>();
  for (const group of ["apps", "packages"]) {
    for (const entry of readdirSync(repoPath(group))) {
      try {
        const manifest = JSON.parse(readFileSync(repoPath(group, entry, "package.json"), "utf8")) as { name: string };
        dirs.set(manifest.name, repoPath(group, entry));
      } catch {
        // not a package
      }
    }
  }
  const seen = new Set<string>();
  const visit = (pkg: string) => {
    const manifest = JSON.parse(readFileSync(join(dirs.get(pkg)!, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    for (const [dep, spec] of Object.entries(manifest.dependencies ?? {})) {
      if (!spec.startsWith("workspace:") || seen.has(dep)) continue;
      seen.add(dep);
      visit(dep);
    }
  };
  visit(name);
  return seen;
}

// ---- docker-compose.yml ----

export interface ComposeService {
  readonly image?: string;
  readonly build?: { context?: string; dockerfile?: string } | string;
  readonly command?: string[] | string;
  readonly entrypoint?: string[] | string;
  readonly environment?: Record<string, string | number | boolean | null> | string[];
  readonly volumes?: Array<string | { type?: string; source?: string; target: string; read_only?: boolean }>;
  readonly ports?: Array<string | number | { target: number; published?: number | string; host_ip?: string }>;
  readonly networks?: string[] | Record<string, unknown>;
  readonly network_mode?: string;
  readonly depends_on?: string[] | Record<string, { condition?: string }>;
  readonly user?: string;
}

export interface ComposeFile {
  readonly services: Record<string, ComposeService>;
  readonly networks?: Record<string, unknown>;
  readonly volumes?: Record<string, unknown>;
}

/** docker-compose.yml as compose reads it (YAML merge keys resolved). */
export function readCompose(): ComposeFile {
  return parse(readFileSync(repoPath("docker-compose.yml"), "utf8"), { merge: true }) as ComposeFile;
}

export interface Mount { readonly source: string; readonly target: string; readonly readOnly: boolean; readonly kind: "bind" | "volume" }

/** Short ("src:dst[:ro]") and long syntax alike. */
export function mountsOf(service: ComposeService): Mount[] {
  return (service.volumes ?? []).map((v) => {
    if (typeof v === "string") {
      const [source, target, mode] = v.split(":");
      return { source: source!, target: target!, readOnly: mode?.split(",").includes("ro") ?? false, kind: /^[./~]/.test(source!) ? "bind" : "volume" };
    }
    return { source: v.source ?? "", target: v.target, readOnly: v.read_only ?? false, kind: v.type === "bind" ? "bind" : "volume" };
  });
}

export interface PortMapping { readonly hostIp: string | undefined; readonly published: number | undefined; readonly target: number }

export function portsOf(service: ComposeService): PortMapping[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p === "number") return { hostIp: undefined, published: undefined, target: p };
    if (typeof p === "string") {
      const parts = p.replace(/\/(tcp|udp)$/, "").split(":");
      const target = Number(parts.at(-1));
      const published = parts.length >= 2 ? Number(parts.at(-2)) : undefined;
      return { hostIp: parts.length === 3 ? parts[0] : undefined, published, target };
    }
    return { hostIp: p.host_ip, published: p.published === undefined ? undefined : Number(p.published), target: p.target };
  });
}

export function networksOf(service: ComposeService): string[] {
  if (service.network_mode !== undefined) return [];
  if (service.networks === undefined) return ["default"];
  return Array.isArray(service.networks) ? service.networks : Object.keys(service.networks);
}

export function environmentOf(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v ?? "")]));
}

export function dependsOn(service: ComposeService): Record<string, string> {
  const deps = service.depends_on ?? [];
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, "service_started"]));
  return Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v.condition ?? "service_started"]));
}

export function dockerfileOf(service: ComposeService): string | undefined {
  if (service.build === undefined) return undefined;
  if (typeof service.build === "string") return join(service.build, "Dockerfile");
  return join(service.build.context ?? ".", service.build.dockerfile ?? "Dockerfile");
}
