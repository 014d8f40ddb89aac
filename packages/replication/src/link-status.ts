/** Where a link is: pulling (active), waiting for another replica's lease (standby), waiting after a failure (backing_off). */
export type LinkState = "starting" | "active" | "standby" | "backing_off" | "stopped";

export interface LinkError {
  /** Connect code name, e.g. "permission_denied", "unavailable". */
  readonly code: string;
  /** bsfg.v1 reason, when the failure carried one. */
  readonly reason: string | undefined;
  readonly message: string;
  readonly at: string;
}

/** What one peer link reports: enough to tell how far behind it is and why. */
export interface LinkStatus {
  readonly link: string;
  readonly peer: string;
  readonly consumer: string;
  readonly state: LinkState;
  /** The peer consumer's confirmed offset, as last seen. */
  readonly cursor: number;
  /** The peer stream's last offset, as last seen. */
  readonly highWater: number;
  /** Offsets between cursor and high water (facts the consumer filters out included). */
  readonly lagFacts: number;
  /** Age of the oldest fact fetched and not yet confirmed, by the peer's clock; 0 when caught up. */
  readonly lagSeconds: number;
  readonly lastError: LinkError | undefined;
  /** Totals since this worker started. */
  readonly appended: number;
  readonly duplicates: number;
  /** Facts whose message_id this zone already holds with another payload: reported, not appended. */
  readonly conflicts: number;
  readonly artifactsCopied: number;
  readonly pages: number;
}
