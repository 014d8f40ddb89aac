import { z } from "zod";

const durationUnits: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const byteUnits: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** A duration in milliseconds, written as a number of ms or as "500ms", "30s", "15m", "12h", "30d". */
export const durationMs = z.union([
  z.number().int().positive(),
  z.string().regex(/^\d+(ms|s|m|h|d)$/, 'write a duration like "500ms", "30s", "15m", "12h" or "30d"').transform((text) => {
    const [, amount, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(text)!;
    return Number(amount) * durationUnits[unit!]!;
  }),
], { error: 'write a duration as milliseconds or like "500ms", "30s", "15m", "12h" or "30d"' });

/** A size in bytes, written as a number or as "64KiB", "512MiB", "10GiB", "1GB". */
export const byteSize = z.union([
  z.number().int().positive(),
  z.string().regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'write a size like "64KiB", "512MiB" or "10GiB"').transform((text) => {
    const [, amount, unit] = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(text)!;
    return Math.round(Number(amount) * byteUnits[unit!.toLowerCase()]!);
  }),
], { error: 'write a size as bytes or like "64KiB", "512MiB" or "10GiB"' });

export const nanos = (ms: number): number => ms * 1_000_000;
