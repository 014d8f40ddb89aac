/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits: 0 when it finished, 1
 * when it failed. A second signal exits at once.
 */
export function onStopSignal(stop: () => Promise<void>, log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void }): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ event: "signal", signal }, "stopping");
    stop().then(() => process.exit(0), (err: unknown) => {
      log.error({ event: "stop_failed", err }, "stopping failed");
      process.exit(1);
    });
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

/**
 * Runs `reload` on SIGHUP: certificate files are read again at once instead of at the next
 * periodic check. A reload that fails is logged by whoever reloads; the process goes on.
 */
export function onReloadSignal(reload: () => Promise<unknown>): void {
  process.on("SIGHUP", () => {
    reload().catch(() => undefined);
  });
}
