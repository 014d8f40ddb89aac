import type { Policy, ZoneConfig } from "@bsfg/config";
import type { BsfgMetrics } from "@bsfg/telemetry";
import type { ZoneStore } from "@bsfg/storage";
import type { HighWaterWatch } from "./high-water-watch.js";

/** What the service implementations need: the zone's store, its configuration and policy. */
export interface BoundaryDeps {
  readonly config: ZoneConfig;
  readonly store: ZoneStore;
  readonly policy: Policy;
  readonly watch: HighWaterWatch;
  /** Why an append here would not be durable as the zone promises (nats.sync), or undefined. */
  readonly notDurable?: () => string | undefined;
  /** Counts operator actions (quarantine release and drop). */
  readonly metrics?: BsfgMetrics;
  /** Logs what is not a rejection (those are logged by the server): operator actions. */
  readonly log?: (fields: Record<string, unknown>, message: string) => void;
}
