/**
 * The two durability settings every benchmark runs under, one after the other
 * in one run: a zone's `nats.sync` and its servers' `jetstream { sync_interval }`.
 *
 *  - "always": nats-server fsyncs before every publish acknowledgement — what
 *    every zone the project generates runs, so an acknowledged fact survives a
 *    power cut;
 *  - "interval": the server's own default, a flush every 2 minutes — what the
 *    earlier figures were measured under.
 *
 * Raw substrate and BSFG are always compared under the same setting: fsync
 * costs both, and a ratio across settings would measure the disk, not BSFG.
 */

import { secondsSince } from "./report.js";
export type NatsSync = "always" | "interval";

/** The table column (and JSON field) that names the setting of a row. */
export const SYNC_COLUMN = "nats sync";

const SETTINGS: readonly NatsSync[] = ["always", "interval"];

/** Options shared by every benchmark's parseArgs. */
export const syncOption = { sync: { type: "string", default: SETTINGS.join(",") } } as const;

/**
 * `--sync always,interval`: the settings to run, in the order given (each at
 * most once). Default both, always first.
 */
export function parseSyncSettings(value: string): NatsSync[] {
  const settings = [...new Set(value.split(",").map((s) => s.trim()).filter((s) => s !== ""))];
  for (const s of settings) if (!SETTINGS.includes(s as NatsSync)) throw new Error(`--sync: unknown "${s}" (${SETTINGS.join(", ")})`);
  if (settings.length === 0) throw new Error(`--sync: give at least one of ${SETTINGS.join(", ")}`);
  return settings as NatsSync[];
}

/**
 * nats-server's `sync_interval` for a setting. "2m" is the server's default
 * and what @bsfg/estate-kit starts for natsSync "interval", so the raw servers
 * of a benchmark and its estates run the same configuration.
 */
export function syncIntervalFor(sync: NatsSync): string {
  return sync === "always" ? "always" : "2m";
}

/** What each setting means on the server, for the JSON results. */
export const syncIntervals: Readonly<Record<NatsSync, string>> = { always: syncIntervalFor("always"), interval: syncIntervalFor("interval") };

/**
 * Fails unless the server at `monitorUrl` runs `sync`: a benchmark labelled
 * "always" that ran without fsync (or the reverse) would report the wrong
 * cost without any other sign of it.
 */
export async function assertServerSync(monitorUrl: string, sync: NatsSync): Promise<void> {
  const varz = (await (await fetch(`${monitorUrl}/varz`)).json()) as { jetstream?: { config?: { sync_always?: boolean } } };
  const always = varz.jetstream?.config?.sync_always === true;
  if (always !== (sync === "always")) {
    throw new Error(`${monitorUrl}: jetstream.config.sync_always is ${always}, but this part of the run is nats sync "${sync}"`);
  }
}

/**
 * Runs a benchmark's part for each setting, one after the other (each on its own servers),
 * and reports on stderr how long each took.
 */
export async function eachSetting<T>(settings: readonly NatsSync[], run: (natsSync: NatsSync) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (const natsSync of settings) {
    const started = performance.now();
    results.push(await run(natsSync));
    console.error(`nats sync ${natsSync}: ${secondsSince(started)} s`);
  }
  return results;
}
