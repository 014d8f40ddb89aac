/** A server the harness started; cleanupSync is for the process 'exit' hook (no awaiting there). */
export interface TrackedServer {
  dispose(): Promise<void>;
  cleanupSync(): void;
}

const live = new Set<TrackedServer>();
let hookInstalled = false;

export function track(entry: TrackedServer): void {
  installExitHook();
  live.add(entry);
}

export function untrack(entry: TrackedServer): void {
  live.delete(entry);
}

export function tracked(): TrackedServer[] {
  return [...live];
}

/**
 * 'exit' handlers cannot await, so cleanup is SIGKILL + rmSync. Not covered:
 * the test process itself being SIGKILLed. Ctrl-C is mostly fine because the
 * servers share our process group and receive the SIGINT themselves.
 */
function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on("exit", () => {
    for (const entry of live) {
      try {
        entry.cleanupSync();
      } catch {
        // Keep going: one failure must not leak the remaining servers.
      }
    }
    live.clear();
  });
}
