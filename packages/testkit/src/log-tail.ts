import { openSync, readSync, closeSync, fstatSync } from "node:fs";

const MAX_TAIL_BYTES = 64 * 1024;

/**
 * Last `lines` lines of a log file, reading only bytes written after `fromOffset`
 * so that a restart's error does not quote the previous run's output.
 */
export function readLogTail(path: string, fromOffset = 0, lines = 25): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const start = Math.max(fromOffset, size - MAX_TAIL_BYTES);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buffer, 0, buffer.length, start);
    const text = buffer.toString("utf8").trimEnd();
    return text === "" ? "(log is empty)" : text.split("\n").slice(-lines).join("\n");
  } catch (err) {
    return `(could not read ${path}: ${err instanceof Error ? err.message : String(err)})`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
