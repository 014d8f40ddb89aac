import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

const INSTALL_HINT = "install it with `apt-get install nats-server` or point NATS_SERVER_BIN at the binary";

/** /usr/sbin is often missing from PATH for non-root users, but that is where Debian puts it. */
const DEFAULT_FALLBACKS: readonly string[] = ["/usr/sbin/nats-server"];

/**
 * Absolute path of the nats-server binary: $NATS_SERVER_BIN, else PATH, else /usr/sbin.
 * Not cached, so tests (and users) can change the environment between calls.
 */
export function locateNatsServerBinary(
  env: NodeJS.ProcessEnv = process.env,
  fallbacks: readonly string[] = DEFAULT_FALLBACKS,
): string {
  const explicit = env["NATS_SERVER_BIN"];
  if (explicit !== undefined && explicit !== "") {
    if (isExecutableFile(explicit)) return explicit;
    throw new Error(`NATS_SERVER_BIN=${explicit} is not an executable file; fix or unset it, or ${INSTALL_HINT}`);
  }
  const fromPath = (env["PATH"] ?? "")
    .split(delimiter)
    .filter((dir) => dir !== "")
    .map((dir) => join(dir, "nats-server"));
  const found = [...fromPath, ...fallbacks].find(isExecutableFile);
  if (found !== undefined) return found;
  throw new Error(`nats-server binary not found on PATH or in ${fallbacks.join(", ") || "(no fallbacks)"}; ${INSTALL_HINT}`);
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
