/**
 * The Grafana dashboard in deploy/grafana/beta9.json reads only series the gateway serves: every
 * beta9_* name in its queries is one /metrics declares (a renamed metric breaks this, not a chart).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SqliteLogStore } from "../logs/sqlite.js";
import { createTestGateway, type TestGateway } from "../testing/harness.js";

const DASHBOARD = fileURLToPath(new URL("../../../../deploy/grafana/beta9.json", import.meta.url));
let gw: TestGateway;
let logs: SqliteLogStore;

before(async () => {
  logs = new SqliteLogStore(":memory:", { pruneIntervalMs: 0 });
  gw = await createTestGateway({ logs });
});
after(async () => {
  await gw?.close();
  await logs?.close();
});

test("every beta9 series the dashboard queries is declared by /metrics", async () => {
  const res = await gw.request("GET", "/metrics");
  assert.equal(res.statusCode, 200);
  const declared = new Set([...res.body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
    type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!]));
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: { title: string; targets?: { expr: string }[] }[]; templating: { list: { query?: unknown }[] } };
  const queries = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr] as const)),
    ...dashboard.templating.list.flatMap((v) => (typeof (v.query as { query?: unknown })?.query === "string" ? [["variable", (v.query as { query: string }).query] as const] : [])),
  ];
  assert.ok(queries.length > 30, `only ${queries.length} queries`);
  for (const [title, expr] of queries) {
    for (const [name] of expr.matchAll(/beta9_[a-z0-9_]+/g)) assert.ok(declared.has(name), `${title}: ${name} is not served by /metrics`);
  }
});
