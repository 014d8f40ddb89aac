import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Code, Reason, rejection } from "@bsfg/proto";
import type { StorageConfig } from "./config.js";
import { QUARANTINE_STREAM } from "./quarantine.js";
import { factStreamName } from "./routing.js";
import { apiCode, ApiCode } from "./substrate-errors.js";
import { nanos } from "./units.js";

export const DEDUPE_STREAM = "bsfg-dedupe";
export const CURSORS_BUCKET = "bsfg-cursors";
export const CONSUMERS_BUCKET = "bsfg-consumers";
export const LEASES_BUCKET = "bsfg-leases";
export const LINK_CONTROLS_BUCKET = "bsfg-link-controls";

/** What this zone's storage needs from JetStream, derived from configuration alone. */
export function desiredStreams(cfg: StorageConfig): StreamConfig[] {
  const facts = Object.entries(cfg.streams).map(([category, s]) => streamConfig({
    name: factStreamName(category),
    subjects: [`facts.${category}.>`],
    max_age: nanos(s.maxAge),
    max_bytes: s.maxBytes,
    // Never drop an unconfirmed fact to make room: refuse the write instead.
    discard: DiscardPolicy.New,
    num_replicas: s.replicas ?? cfg.replicas,
    duplicate_window: nanos(cfg.dedupe.inflightWindow),
    // Up to 1,000 messages committed all-or-nothing (nats-server 2.12+): a relayed page and
    // its origin position land together or not at all.
    allow_atomic: true,
  }));
  const dedupe = streamConfig({
    name: DEDUPE_STREAM,
    subjects: ["bsfg.dedupe.>"],
    max_age: nanos(cfg.dedupe.horizon),
    max_bytes: -1,
    discard: DiscardPolicy.Old,
    // One entry per message_id (claims) or per batch (commits); a takeover replaces it.
    max_msgs_per_subject: 1,
    num_replicas: cfg.replicas,
  });
  const quarantine = streamConfig({
    name: QUARANTINE_STREAM,
    subjects: ["bsfg.quarantine.>"],
    max_age: nanos(cfg.quarantine.maxAge),
    max_bytes: cfg.quarantine.maxBytes,
    // Full, it refuses: a set-aside fact is never dropped to make room for another.
    discard: DiscardPolicy.New,
    num_replicas: cfg.replicas,
  });
  return [...facts, dedupe, quarantine];
}

function streamConfig(partial: Pick<StreamConfig, "name" | "subjects" | "max_age" | "max_bytes" | "discard" | "num_replicas"> & Partial<StreamConfig>): StreamConfig {
  return {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_msgs: -1,
    max_msgs_per_subject: -1,
    max_msg_size: -1,
    max_consumers: -1,
    // The dedupe stream is never published with Nats-Msg-Id; keep its window minimal.
    duplicate_window: nanos(1_000),
    allow_direct: true,
    allow_rollup_hdrs: false,
    deny_delete: false,
    deny_purge: false,
    ...partial,
  } as StreamConfig;
}

/** The fields we set and therefore verify; everything else is the server's business. */
const checkedFields = ["subjects", "max_age", "max_bytes", "discard", "num_replicas", "max_msgs_per_subject", "storage", "retention", "allow_direct", "duplicate_window", "allow_atomic"] as const;
/** Fields JetStream lets us change on an existing stream. */
const mutableFields = new Set<string>(["max_age", "max_bytes", "discard", "num_replicas", "max_msgs_per_subject", "allow_direct", "duplicate_window", "subjects", "allow_atomic"]);
/**
 * Capabilities turned on for a stream that an older gateway created: they change no retention
 * or capacity, so they are applied without reconcileTopology.
 */
const capabilityFields = new Set<string>(["allow_atomic"]);
/**
 * The dedupe index is the gateway's own: its retention is the configured horizon, applied
 * without reconcileTopology (an upgrade moves a 30-day index to the bounded default; the
 * ids older than the new horizon are dropped, which is what the horizon means).
 */
const ownedFields = (stream: string) => (stream === DEDUPE_STREAM ? new Set<string>(["max_age"]) : new Set<string>());

export function configDiff(desired: Partial<StreamConfig>, actual: Partial<StreamConfig>, fields: readonly string[] = checkedFields): string[] {
  const diffs: string[] = [];
  for (const field of fields) {
    const want = (desired as Record<string, unknown>)[field];
    if (want === undefined) continue;
    const have = (actual as Record<string, unknown>)[field];
    if (JSON.stringify(have) !== JSON.stringify(want)) diffs.push(`${field} is ${JSON.stringify(have)} on the server, configuration says ${JSON.stringify(want)}`);
  }
  return diffs;
}

/**
 * Creates a stream, or checks an existing one against configuration. A
 * difference is an error unless `reconcile` allows updating it; every result
 * is read back, because a server silently ignores options it does not know.
 */
export async function ensureStream(jsm: JetStreamManager, desired: StreamConfig, reconcile: boolean): Promise<"created" | "updated" | "unchanged"> {
  let existing: StreamConfig | undefined;
  try {
    existing = (await jsm.streams.info(desired.name)).config;
  } catch (err) {
    if (apiCode(err) !== ApiCode.StreamNotFound) throw err;
  }
  if (existing === undefined) {
    const created = await jsm.streams.add(desired);
    assertApplied(desired, created.config);
    return "created";
  }
  const diffs = configDiff(desired, existing);
  if (diffs.length === 0) return "unchanged";
  const differing = checkedFields.filter((f) => configDiff(desired, existing!, [f]).length > 0);
  const immutable = differing.filter((f) => !mutableFields.has(f));
  const owned = ownedFields(desired.name);
  const capabilitiesOnly = differing.every((f) => capabilityFields.has(f) || owned.has(f));
  if ((!reconcile && !capabilitiesOnly) || immutable.length > 0) {
    throw mismatch(desired.name, diffs, reconcile ? `${immutable.join(", ")} cannot be changed on an existing stream` : "set reconcileTopology: true to apply the configuration");
  }
  const updated = await jsm.streams.update(desired.name, desired);
  assertApplied(desired, updated.config);
  return "updated";
}

function assertApplied(desired: StreamConfig, actual: StreamConfig): void {
  const diffs = configDiff(desired, actual);
  if (diffs.length > 0) throw mismatch(desired.name, diffs, "the server did not apply these settings (is it older than this gateway expects?)");
}

export function mismatch(name: string, diffs: string[], hint: string) {
  return rejection(Code.FailedPrecondition, Reason.TopologyMismatch, `stream ${name}: ${diffs.join("; ")} — ${hint}`, { stream: name });
}
