/** What the rate history needs of a link's status. */
interface LinkProgress {
  readonly link: string;
  readonly appended: number;
  readonly cursor: number;
  readonly lagFacts: number;
}

/**
 * Per link: facts appended per second over the last 15 minutes, one point per sample window,
 * and when the link's position last moved. Fed by the snapshots themselves (at most one
 * sample per window), so an unwatched console costs nothing.
 */
export interface LinkRates {
  sample(links: readonly LinkProgress[], now: number): void;
  series(link: string): readonly number[];
  /** Seconds since the link's cursor last moved while it had facts waiting; 0 when caught up. */
  sinceProgressSeconds(link: string, now: number): number;
  /** When the link was last seen to move or be caught up (ms since the epoch); undefined until then. */
  lastProgressAt(link: string): number | undefined;
}

export function linkRates(windowMs = 10_000, keepMs = 15 * 60_000): LinkRates {
  const points = new Map<string, number[]>();
  const last = new Map<string, { at: number; appended: number }>();
  /** movedAt: since when "no progress" counts; progressedAt: when the link was last seen to move or be caught up. */
  const progress = new Map<string, { cursor: number; movedAt: number; progressedAt: number | undefined }>();
  return {
    sample(links, now) {
      for (const l of links) {
        const seen = progress.get(l.link);
        const moved = l.lagFacts === 0 || (seen !== undefined && seen.cursor !== l.cursor);
        if (moved) progress.set(l.link, { cursor: l.cursor, movedAt: now, progressedAt: now });
        else if (!seen) progress.set(l.link, { cursor: l.cursor, movedAt: now, progressedAt: undefined });
        const previous = last.get(l.link);
        if (previous && now - previous.at < windowMs) continue;
        if (previous) {
          const series = points.get(l.link) ?? [];
          // A restarted worker counts from 0 again: no negative rates.
          series.push(Math.max(0, l.appended - previous.appended) / ((now - previous.at) / 1_000));
          while (series.length > keepMs / windowMs) series.shift();
          points.set(l.link, series);
        }
        last.set(l.link, { at: now, appended: l.appended });
      }
    },
    series: (link) => points.get(link) ?? [],
    lastProgressAt: (link) => progress.get(link)?.progressedAt,
    sinceProgressSeconds(link, now) {
      const seen = progress.get(link);
      return seen ? Math.round((now - seen.movedAt) / 1_000) : 0;
    },
  };
}
