import type { StorageConfig } from "./config.js";

/** The JetStream stream that holds a category's facts. */
export const factStreamName = (category: string): string => `facts-${category}`;

/** Every fact of a category lives under this subject prefix, partitioned by subject kind. */
export const factSubject = (category: string, kind: string): string => `facts.${category}.${kind}`;

/** The category a fact belongs to: the first routing rule that matches its kind and predicate. */
export function routeFact(cfg: StorageConfig, kind: string, predicate: string): string {
  for (const rule of cfg.routing) {
    if (rule.kind !== undefined && rule.kind !== kind) continue;
    if (rule.predicate !== undefined && rule.predicate !== predicate) continue;
    return rule.stream;
  }
  return cfg.defaultStream;
}
