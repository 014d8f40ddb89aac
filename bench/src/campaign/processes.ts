import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { pollUntil } from "@bsfg/testkit";

/**
 * One deployable as a child process (ingest, egress, ledger, sync), started from
 * its own configuration file, that the campaign can SIGKILL and start again on
 * the same ports. Ready when its probe's /readyz answers 200.
 */
export interface ChildDeployable {
  readonly name: string;
  /** Its plain-HTTP probe: /readyz, /metrics, and /links for sync. */
  readonly probeUrl: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Exits the campaign did not cause (a crash): must stay 0. */
  readonly unexpectedExits: number;
  start(): Promise<void>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and wait for the exit (the end of the campaign). */
  stop(): Promise<void>;
  /** Resident set size, from /proc. */
  rssBytes(): Promise<number>;
}

export function childDeployable(name: string, bin: string, configPath: string, probeUrl: string, logPath: string): ChildDeployable {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let expectingExit = false;
  let unexpectedExits = 0;
  let log: WriteStream | undefined;
  const self: ChildDeployable = {
    name,
    probeUrl,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    get unexpectedExits() {
      return unexpectedExits;
    },
    async start() {
      if (child) return;
      log ??= createWriteStream(logPath, { flags: "a" });
      expectingExit = false;
      const started = spawn(process.execPath, [bin, "--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
      started.stdout!.pipe(log, { end: false });
      started.stderr!.pipe(log, { end: false });
      child = started;
      exited = new Promise((resolve) => started.once("exit", (code, signal) => {
        if (!expectingExit) {
          unexpectedExits++;
          log?.write(`${JSON.stringify({ campaign: "unexpected_exit", name, code, signal })}\n`);
        }
        if (child === started) child = undefined;
        resolve();
      }));
      await pollUntil(async () => {
        if (child !== started) throw new Error(`${name} exited while starting (see ${logPath})`);
        return fetch(`${probeUrl}/readyz`).then((r) => r.ok, () => false);
      }, { timeoutMs: 60_000, intervalMs: 50, what: `${name} ready` });
    },
    async kill() {
      if (!child) return;
      expectingExit = true;
      child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (!child) return;
      expectingExit = true;
      child.kill("SIGTERM");
      await exited;
    },
    async rssBytes() {
      const pid = child?.pid;
      if (pid === undefined) return 0;
      const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
      const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
      return kb ? Number(kb) * 1024 : 0;
    },
  };
  return self;
}
