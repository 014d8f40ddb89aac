import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname } from "node:path";

export interface Supervised {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number | null>;
}

/** Starts a process whose output goes to a log file; the estate prints only its own summary. */
export function startProcess(name: string, command: string, args: string[], logFile: string): Supervised {
  mkdirSync(dirname(logFile), { recursive: true });
  const log = createWriteStream(logFile, { flags: "a" });
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => {
    log.end();
    resolve(code);
  }));
  return { name, child, exited };
}

/** `signal` (SIGTERM by default), then SIGKILL if it has not ended within `graceMs`. */
export async function stopProcess(p: Supervised, graceMs: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

/** Polls `url` until it answers 200, or fails with the process's name when it exits or time runs out. */
export async function waitHealthy(p: Supervised, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void p.exited.then(() => { exited = true; });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${p.name} exited during start-up (see its log)`);
    const ok = await fetch(url).then((r) => r.status === 200, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${p.name} did not become ready at ${url} within ${timeoutMs} ms (see its log)`);
}
