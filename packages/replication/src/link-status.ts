import type { CrossingStats } from "./crossing.js";

/**
 * Where a link is: pulling (active), waiting for another replica's lease (standby), waiting
 * after a failure (backing_off), held by an operator (paused: no replica pulls).
 */
export type LinkState = "starting" | "active" | "standby" | "backing_off" | "paused" | "stopped";

export interface LinkError {
  /** Connect code name, e.g. "permission_denied", "unavailable". */
  readonly code: string;
  /** bsfg.v1 reason, when the failure carried one. */
  readonly reason: string | undefined;
  readonly message: string;
  readonly at: string;
}

/** The connection a link calls its peer over. */
export interface LinkConnection {
  /** "outbound": this zone connected to the peer; "inbound": the peer dialed this zone (outbound-only peer). */
  readonly dial: "outbound" | "inbound";
  /** The identity the peer's certificate carries (checked in the TLS handshake). */
  readonly peerIdentity: string;
  /** Inbound: the peer replica whose connection the link uses now, where it connects from, and since when. */
  readonly replica?: string | undefined;
  readonly remote?: string | undefined;
  readonly connectedAt?: string | undefined;
  readonly ageSeconds?: number | undefined;
}

/** What one peer link reports: enough to tell how far behind it is and why. */
export interface LinkStatus {
  readonly link: string;
  readonly peer: string;
  readonly consumer: string;
  readonly connection: LinkConnection;
  readonly state: LinkState;
  /** The peer consumer's confirmed offset, as last seen. */
  readonly cursor: number;
  /** The peer stream's last offset, as last seen. */
  readonly highWater: number;
  /** Offsets between cursor and high water (facts the consumer filters out included). */
  readonly lagFacts: number;
  /** Offsets shipped here whose confirm has not reached the peer yet: at most about a page. */
  readonly confirmLag: number;
  /** Age of the oldest fact fetched and not yet confirmed, by the peer's clock; 0 when caught up. */
  readonly lagSeconds: number;
  readonly lastError: LinkError | undefined;
  /** Set while an operator holds the link paused: by whom, since when, why, and when this replica last read that it still is. */
  readonly paused?: { readonly by: string; readonly at: string; readonly note?: string; readonly checkedAt?: string } | undefined;
  /**
   * How long facts took from their storage in the peer zone to their append here, p50 and p99
   * over the last 5 minutes (by both zones' clocks); undefined before any crossed.
   */
  readonly crossing: CrossingStats | undefined;
  /** Totals since this worker started. */
  readonly appended: number;
  /** Facts fetched again that the link's position shows are already here (after a crash or a lost confirm). */
  readonly duplicates: number;
  /** Kept for the metric's label set; log shipping compares positions, not payloads, so it stays 0. */
  readonly conflicts: number;
  /** Shipments refused because another replica moved the link's position first (this one then gave the link up). */
  readonly fenced: number;
  readonly artifactsCopied: number;
  /** Facts this replica set aside in the zone's quarantine (never admissible as they are: see relay-errors.ts). */
  readonly quarantined: number;
  readonly pages: number;
}
