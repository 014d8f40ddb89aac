/** One sample of the Prometheus text exposition format. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * Parses the text exposition format (version 0.0.4) as a scraper reads it:
 * comments and blank lines skipped, label values unescaped. For tests and tools.
 */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = match[3] ?? "";
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/g;
    let m: RegExpExecArray | null;
    while ((m = pair.exec(body)) !== null) labels[m[1]!] = m[2]!.replace(/\\(["\\n])/g, (_all, c: string) => (c === "n" ? "\n" : c));
    const value = match[4]!;
    samples.push({ name: match[1]!, labels, value: value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value) });
  }
  return samples;
}

/**
 * The sum of the samples named `name` whose labels include `labels`
 * (undefined when there is none): e.g. metricValue(samples, "bsfg_append_failures_total", { reason: "store_full" }).
 */
export function metricValue(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const matching = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return matching.length === 0 ? undefined : matching.reduce((sum, s) => sum + s.value, 0);
}
