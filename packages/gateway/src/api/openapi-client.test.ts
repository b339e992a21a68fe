/**
 * A client generated from the OpenAPI document (openapi-typescript, as users would) type-checks
 * against what the routes really answer: every GET route with a JSON 200 is called on a gateway
 * holding one of each entity, and its answer is written as a value of the generated response
 * type; TypeScript (strict) must accept every one. A field the document types wrongly, or a route
 * it omits, fails here. A negative control proves the check can fail.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import ts from "typescript";
import { createTestGateway, type TestGateway } from "../testing/harness.js";
import { makeTar, sha256 } from "../testing/tar.js";

let gw: TestGateway;
const dir = mkdtempSync(join(tmpdir(), "beta9-openapi-client-"));
const ids: Record<string, string> = {};

before(async () => {
  gw = await createTestGateway();
  const bundle = makeTar([{ name: "app.js", data: "export const x = 1;\n" }], { gzip: true });
  await gw.request("PUT", `/api/v1/object/${sha256(bundle)}`, { body: bundle, headers: { "content-type": "application/octet-stream" } });
  ids.hash = sha256(bundle);
  const stub = (await gw.request("POST", "/api/v1/stub", { body: { name: "hello", type: "taskqueue/deployment", objectId: ids.hash, config: { handler: "app.js:x" } } })).json().stub;
  ids.stub = stub.id;
  ids.app = stub.appId;
  ids.deployment = (await gw.request("POST", "/api/v1/deployment", { body: { stubId: stub.id } })).json().id;
  ids.task = (await gw.request("POST", `/taskqueue/id/${stub.id}`, { body: {} })).json().task_id;
  ids.token = (await gw.request("POST", "/api/v1/token", { body: { type: "restricted" } })).json().id;
  ids.container = (await gw.request("POST", "/api/v1/container", { body: { command: ["true"] } })).json().id;
  ids.sandbox = (await gw.request("POST", "/api/v1/sandbox", { body: {} })).json().id;
  ids.machine = (await gw.request("POST", "/api/v1/machine", { body: { pool: "default" } })).json().machine?.id ?? "";
  ids.name = "hello";
  await gw.request("POST", "/api/v1/volume", { body: { name: ids.name } }); // volume routes take a name
});
after(async () => {
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `/api/v1/task/{id}` → a real URL, or undefined when the test holds no value for a parameter. */
function fill(path: string): string | undefined {
  let missing = false;
  const url = path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const key = name === "id" ? path.split("/")[3] ?? "" : name;
    const value = ids[key] ?? ids[name];
    if (!value) missing = true;
    return value ?? "";
  });
  return missing ? undefined : url;
}

function typeErrors(file: string): string[] {
  const program = ts.createProgram([file], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, skipLibCheck: true, types: [] });
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
}

test("a client generated from the OpenAPI document type-checks against the real answers of every GET route", async () => {
  const { default: openapiTS, astToString } = await import("openapi-typescript");
  const doc = (await gw.request("GET", "/api/v1/openapi.json", { key: null })).json();
  writeFileSync(join(dir, "api.ts"), astToString(await openapiTS(doc)));

  const lines = [
    'import type { paths } from "./api.js";',
    "type Json<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { responses: { 200: { content: { \"application/json\": infer J } } } } ? J : never;",
  ];
  const called: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>>)) {
    if (!item.get?.responses?.["200"]?.content?.["application/json"]) continue;
    const url = fill(path);
    if (!url || /subscribe|follow|logs|events|\/fs\//.test(path)) continue; // streams and files are not JSON values
    const res = await gw.request("GET", url);
    assert.equal(res.statusCode, 200, `GET ${url}: ${res.body}`);
    lines.push(`export const r${called.length}: Json<${JSON.stringify(path)}, "get"> = ${res.body};`);
    called.push(path);
  }
  assert.ok(called.length >= 15, `only ${called.length} GET routes were checked: ${called.join(", ")}`);
  assert.ok(called.includes("/api/v1/task/{id}") && called.includes("/api/v1/deployment") && called.includes("/api/v1/stub/{id}"), called.join(", "));
  writeFileSync(join(dir, "answers.ts"), lines.join("\n") + "\n");
  assert.deepEqual(typeErrors(join(dir, "answers.ts")), [], `routes checked: ${called.join(", ")}`);

  // The check can fail: an answer whose field has another type than the document says.
  const task = (await gw.request("GET", `/api/v1/task/${ids.task}`)).json();
  writeFileSync(join(dir, "wrong.ts"), `${lines.slice(0, 2).join("\n")}\nexport const t: Json<"/api/v1/task/{id}", "get"> = ${JSON.stringify({ ...task, status: 42 })};\n`);
  assert.notDeepEqual(typeErrors(join(dir, "wrong.ts")), []);
});
