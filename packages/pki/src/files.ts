import { randomUUID } from "node:crypto";
import { chmod, readFile, rename, rm, writeFile } from "node:fs/promises";

/** Private keys: owner read/write only. */
export const KEY_FILE_MODE = 0o600;
export const CERT_FILE_MODE = 0o644;

/**
 * Write via a temporary file and rename, so an interrupted run never leaves a truncated PEM
 * behind, and so the mode applies even when the target already exists (writeFile's `mode`
 * only takes effect when it creates the file).
 */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: "wx" });
    await chmod(tmp, mode); // a umask could have removed bits we want (never added any)
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** File contents, or undefined if it does not exist. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
