import type { CampaignEstate } from "./estate.js";
import { linksOf, type FaultRecord, type LinkView } from "./faults.js";

/**
 * The longest time any link made no progress while it had facts waiting and its
 * peer was reachable: outside every fault that cut the link, took the peer's
 * egress, ledger or nats-server down, or the receiver's nats-server or store
 * (and `graceMs` after it: a reconnect and a backoff step). A killed lease
 * holder does not make the peer unreachable: the time until another replica
 * moves the link again is part of the measure. Sampled from every sync
 * replica's /links; a link is one (zone, link) whichever replica holds it.
 */
export interface StallEpisode {
  readonly link: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly ms: number;
  /** What each replica's /links said at its last sample. */
  readonly holders: string;
}

const describe = (views: ReadonlyArray<LinkView & { replica: string }>) => views.map((l) => `${l.replica} ${l.state} cursor ${l.cursor} lag ${l.lagFacts}`).join("; ");

export function progressWatch(estate: CampaignEstate, records: readonly FaultRecord[], underWay: () => readonly string[], graceMs: number, reportAfterMs = 5_000, intervalMs = 250) {
  const cursor = new Map<string, number>();
  const waiting = new Map<string, boolean>();
  const lastProgressAt = new Map<string, number>();
  let longestStallMs = 0;
  let longestStallLink = "";
  /** Stalls longer than `reportAfterMs`, kept with their window so that the faults around them can be shown. */
  const stalls: StallEpisode[] = [];
  const current = new Map<string, StallEpisode>();
  let sampling = false;
  const timer = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void sample().finally(() => {
      sampling = false;
    });
  }, intervalMs);

  /** When the link's peer was last unreachable (now, if a fault under way cuts it). */
  const lastUnreachable = (pair: string) => {
    if (underWay().includes(pair)) return Date.now();
    let last = 0;
    for (const r of records) if (r.unreachable.includes(pair)) last = Math.max(last, r.atMs);
    return last;
  };

  async function sample(): Promise<void> {
    const now = Date.now();
    for (const zone of Object.values(estate.zones)) {
      const views = (await Promise.all(zone.syncs.map(async (sync) => (await linksOf(sync)).map((l) => ({ ...l, replica: sync.name }))))).flat();
      for (const link of new Set(views.map((l) => l.link))) {
        const key = `${zone.name}:${link}`;
        const seen = views.filter((l) => l.link === link);
        const active = seen.find((l) => l.state === "active");
        const highest = Math.max(...seen.map((l) => l.cursor));
        if (!lastProgressAt.has(key) || highest > (cursor.get(key) ?? -1) || (active && active.lagFacts === 0)) {
          const ended = current.get(key);
          if (ended) stalls.push({ ...ended, holders: describe(seen) });
          current.delete(key);
          cursor.set(key, Math.max(highest, cursor.get(key) ?? -1));
          lastProgressAt.set(key, now);
          waiting.set(key, active ? active.lagFacts > 0 : waiting.get(key) ?? false);
          continue;
        }
        if (active) waiting.set(key, active.lagFacts > 0);
        // No replica active (the holder was killed): the facts it had waiting still wait.
        if (!waiting.get(key)) continue;
        const peer = seen[0]!.peer;
        const since = Math.max(lastProgressAt.get(key)!, lastUnreachable(`${zone.name}←${peer}`) + graceMs);
        if (now - since > reportAfterMs) current.set(key, { link: key, fromMs: since, toMs: now, ms: now - since, holders: describe(seen) });
        if (now - since > longestStallMs) {
          longestStallMs = now - since;
          longestStallLink = key;
        }
      }
    }
  }

  return {
    get longestStallMs() {
      return longestStallMs;
    },
    get longestStallLink() {
      return longestStallLink;
    },
    /** The stalls longer than `reportAfterMs`, longest first (one still going counts up to now). */
    get stalls(): StallEpisode[] {
      return [...stalls, ...current.values()].sort((a, b) => b.ms - a.ms);
    },
    stop: () => clearInterval(timer),
  };
}
