import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { createMetrics } from "./metrics.js";

/*
 * The operator assets shipped in deploy/: Prometheus alert rules (checked and
 * unit-tested with promtool, Prometheus's own parser and rule evaluator), the
 * Grafana dashboard and provisioning. Every bsfg_* name they (and the Metrics
 * section of docs/operations.md) use must be a metric the services export.
 */

const root = fileURLToPath(new URL("../../../", import.meta.url));
const deploy = (...path: string[]) => join(root, "deploy", ...path);
const rulesFile = deploy("prometheus", "bsfg-alerts.yaml");
const dashboardFile = deploy("grafana", "dashboards", "bsfg-overview.json");
const scratch = mkdtempSync(join(tmpdir(), "bsfg-assets-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** promtool: $PROMTOOL, the one scripts/bootstrap.sh extracts into .tools/, or on PATH. */
function promtoolBinary(): string {
  for (const candidate of [process.env.PROMTOOL, join(root, ".tools", "promtool")]) if (candidate && existsSync(candidate)) return candidate;
  const onPath = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
  if (onPath) return onPath;
  throw new Error("promtool not found: run scripts/bootstrap.sh (it extracts promtool from Debian's prometheus package into .tools/), or set PROMTOOL");
}
function promtool(...args: string[]): { ok: boolean; output: string } {
  const run = spawnSync(promtoolBinary(), args, { encoding: "utf8", cwd: root });
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}

/** Every metric name the services export, with a histogram's series names. */
function exportedNames(): Set<string> {
  const metrics = createMetrics({ zone: "test", service: "test", processMetrics: false });
  const names = new Set<string>();
  for (const metric of metrics.registry.getMetricsAsArray()) {
    names.add(metric.name);
    if (String(metric.type) === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${metric.name}${suffix}`);
  }
  return names;
}
const bsfgNames = (text: string) => new Set(text.match(/\bbsfg_[a-z0-9_]+/g) ?? []);

interface Panel { type: string; title: string; datasource?: { uid?: string }; targets?: Array<{ expr: string; datasource?: { uid?: string } }> }
const dashboard = JSON.parse(readFileSync(dashboardFile, "utf8")) as { uid: string; templating: { list: Array<{ name: string; type: string; query: unknown }> }; panels: Panel[] };
const expressions = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

describe("deploy/prometheus: alert rules", () => {
  it("are valid for promtool check rules", () => {
    const check = promtool("check", "rules", rulesFile);
    expect(check.output).toMatch(/SUCCESS: \d+ rules found/);
    expect(check.ok, check.output).toBe(true);
  });

  it("fire exactly as their unit tests say (promtool test rules)", () => {
    const test = promtool("test", "rules", deploy("prometheus", "tests", "bsfg-alerts.test.yaml"));
    expect(test.ok, test.output).toBe(true);
  });

  it("would fail the check with a broken expression", () => {
    const broken = join(scratch, "broken-rules.yaml");
    writeFileSync(broken, readFileSync(rulesFile, "utf8").replace("max by (zone, link) (bsfg_replication_lag_seconds) > 1", "max by (zone, link) (bsfg_replication_lag_seconds > 1"));
    const check = promtool("check", "rules", broken);
    expect(check.ok).toBe(false);
    expect(check.output).toMatch(/parse error|unclosed|unexpected/i);
  });

  it("cover the thresholds of the brief: lag, backlog, fill, stalled confirmations, TLS failures, certificate expiry; a waiting quarantine and a forgotten pause", () => {
    const rules = readFileSync(rulesFile, "utf8");
    for (const alert of ["BsfgReplicationLagHigh", "BsfgBacklogHigh", "BsfgStoreFillHigh", "BsfgConfirmationsStalled", "BsfgTlsFailure", "BsfgCertificateExpiringSoon", "BsfgQuarantineNotEmpty", "BsfgLinkPaused"]) {
      expect(rules).toContain(`alert: ${alert}`);
    }
    expect(rules).toContain("(bsfg_replication_lag_seconds) > 1");
    expect(rules).toContain("(bsfg_consumer_backlog_facts) > 10000");
    expect(rules).toContain("(bsfg_store_buffer_fill_percent) > 80");
    expect(rules).toContain("changes(bsfg_frontier_offset[1m])) == 0");
    expect(rules).toContain("(bsfg_certificate_expiry_seconds) < 30 * 86400");
    expect(rules).toMatch(/max by \(zone, link\) \(bsfg_quarantine_oldest_seconds\)\s+> on \(zone\) group_left\s+max by \(zone\) \(bsfg_quarantine_alert_after_seconds\)/);
  });

  it("go with a valid Prometheus configuration that loads them", () => {
    const check = promtool("check", "config", deploy("prometheus", "prometheus.yml"));
    expect(check.ok, check.output).toBe(true);
  });
});

describe("deploy/grafana: the dashboard", () => {
  it("picks its Prometheus through a datasource variable, in every panel and query", () => {
    expect(dashboard.templating.list.find((v) => v.name === "datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
      expect(panel.datasource?.uid, panel.title).toBe("${datasource}");
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).toBe("${datasource}");
    }
  });

  it("has the panels operators need: append rate and latency, lag and state per link, fill, rejections by reason, TLS failures, the quarantine", () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const title of ["Append rate per zone", "Append latency per zone (p50, p99)", "Replication lag per link (seconds)", "Replication lag per link (facts)", "Link state", "Store fill per stream", "Rejections by reason", "TLS failures", "Certificate expiry (days)", "Quarantined facts per link and reason"]) {
      expect(titles).toContain(title);
    }
  });

  it("queries with valid PromQL (every expression checked by promtool as a recording rule)", () => {
    expect(expressions.length).toBeGreaterThan(10);
    const asRules = join(scratch, "dashboard-rules.yaml");
    const concrete = (expr: string) => expr.replaceAll("$__rate_interval", "1m").replaceAll("$zone", ".*");
    writeFileSync(asRules, ["groups:", "  - name: dashboard", "    rules:", ...expressions.flatMap((expr, i) => [`      - record: dashboard:expr_${i}`, `        expr: ${JSON.stringify(concrete(expr))}`])].join("\n"));
    const check = promtool("check", "rules", asRules);
    expect(check.ok, check.output).toBe(true);
  });

  it("is provisioned from deploy/grafana/provisioning", () => {
    expect(readFileSync(deploy("grafana", "provisioning", "dashboards", "bsfg.yaml"), "utf8")).toMatch(/type: file[\s\S]*path: \/var\/lib\/grafana\/dashboards\/bsfg/);
    expect(readFileSync(deploy("grafana", "provisioning", "datasources", "prometheus.yaml"), "utf8")).toMatch(/type: prometheus/);
  });
});

describe("metric names", () => {
  const exported = exportedNames();

  it.each([
    ["the alert rules", () => readFileSync(rulesFile, "utf8")],
    ["the alert rules' tests", () => readFileSync(deploy("prometheus", "tests", "bsfg-alerts.test.yaml"), "utf8")],
    ["the dashboard", () => readFileSync(dashboardFile, "utf8")],
    ["docs/operations.md", () => readFileSync(join(root, "docs", "operations.md"), "utf8")],
  ])("used in %s are all exported by the services", (_what, text) => {
    const used = bsfgNames(text());
    expect(used.size).toBeGreaterThan(0);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });

  it("are all documented in docs/operations.md", () => {
    const documented = bsfgNames(readFileSync(join(root, "docs", "operations.md"), "utf8"));
    const base = [...exported].filter((name) => name.startsWith("bsfg_") && !/_(bucket|sum|count)$/.test(name));
    expect(base.filter((name) => !documented.has(name))).toEqual([]);
  });
});
