import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A spawned process whose stdout+stderr go straight to a log file, with an awaitable exit. */
export class ManagedChild {
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;

  private constructor(private readonly child: ChildProcess, pid: number) {
    this.pid = pid;
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
    // An unreferenced child cannot keep a test worker alive if a suite forgets to dispose;
    // the process 'exit' hook then SIGKILLs it.
    child.unref();
  }

  /** Spawn and resolve once the OS has started it (rejects on e.g. ENOENT/EACCES). */
  static spawn(command: string, args: readonly string[], logPath: string): Promise<ManagedChild> {
    // Giving the child the file descriptor (instead of a pipe) keeps logging independent
    // of our event loop and leaves no pipe handles that could hold the process open.
    const logFd = openSync(logPath, "a");
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ["ignore", logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    return new Promise<ManagedChild>((resolve, reject) => {
      child.once("error", reject);
      child.once("spawn", () => {
        child.off("error", reject);
        // Late errors (failed kill) are reported by the methods that trigger them.
        child.on("error", () => undefined);
        if (child.pid === undefined) reject(new Error(`spawn ${command}: no pid`));
        else resolve(new ManagedChild(child, child.pid));
      });
    });
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  /** Send a signal unless the process is already gone. */
  signal(sig: NodeJS.Signals): void {
    if (!this.hasExited) this.child.kill(sig);
  }

  /** Resolves with the exit info, or undefined if the process is still running after `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    if (this.exitInfo !== undefined) return this.exitInfo;
    let timer: NodeJS.Timeout | undefined;
    // The (referenced) timer also keeps the event loop alive while we wait on an unref'd child.
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async terminate(graceMs: number): Promise<ExitInfo> {
    this.signal("SIGTERM");
    const graceful = await this.waitForExit(graceMs);
    return graceful ?? this.killNow();
  }

  /** SIGKILL and wait until the OS reports the process gone. */
  async killNow(timeoutMs = 5_000): Promise<ExitInfo> {
    this.signal("SIGKILL");
    const info = await this.waitForExit(timeoutMs);
    if (info === undefined) throw new Error(`process ${this.pid} did not exit within ${timeoutMs}ms of SIGKILL`);
    return info;
  }

  /** For the process 'exit' hook, where nothing asynchronous can run. */
  killSync(): void {
    if (this.hasExited) return;
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // Already gone: nothing to clean up.
    }
  }
}
