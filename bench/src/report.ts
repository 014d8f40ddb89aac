import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpus, totalmem } from "node:os";

export interface Row {
  readonly name: string;
  readonly [column: string]: string | number;
}

/**
 * The command line's arguments for parseArgs: pnpm 12 passes the "--" of
 * `pnpm bench:x -- --flag` on to the script, where parseArgs would take every
 * flag after it for a positional argument.
 */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): string[] {
  return argv[0] === "--" ? argv.slice(1) : [...argv];
}

/** Seconds since `started` (a performance.now() reading), for progress lines. */
export function secondsSince(started: number): string {
  return ((performance.now() - started) / 1000).toFixed(1);
}

/** Prints rows as an aligned table. */
export function printTable(title: string, rows: readonly Row[]): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(3)) : String(v ?? ""));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  ");
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c]))));
}

/** Writes results as JSON to bench/results/<name>.json with the machine they ran on. */
export function writeResults(name: string, results: unknown): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  const machine = { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() };
  writeFileSync(file, `${JSON.stringify({ name, at: new Date().toISOString(), machine, results }, null, 2)}\n`);
  return file;
}

// ---- CPU accounting from /proc (Linux; undefined where it is not available) ----
const clockTick = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process in ms, from /proc (undefined when unavailable). */
export function procCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTick;
  } catch {
    return undefined;
  }
}

/** Busy CPU of the whole machine in ms (all cores), from /proc/stat. */
export function machineBusyMs(): number | undefined {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!;
    return (busy * 1000) / clockTick;
  } catch {
    return undefined;
  }
}

/** CPU this process used so far, in ms. */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * The machine may be shared: waits until processes other than ours (`ours`:
 * CPU ms of this process and its helpers so far) use less than `threshold`
 * cores for a second, or `maxSeconds` passed. Returns the seconds waited.
 */
export async function waitForQuiet(maxSeconds: number, ours: () => number, threshold = 0.25): Promise<number> {
  const started = performance.now();
  for (;;) {
    const m0 = machineBusyMs();
    const o0 = ours();
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const m1 = machineBusyMs();
    if (m0 === undefined || m1 === undefined) return 0;
    const other = (m1 - m0 - (ours() - o0)) / (performance.now() - t0);
    const waited = (performance.now() - started) / 1000;
    if (other < threshold || waited >= maxSeconds) return waited;
  }
}
