/** The SDK's sandbox pieces that need no gateway: output streams and argument checks. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { OutputStream } from "./sandbox-process.js";
import { Sandbox, Volume } from "./sandbox.js";

async function collect(stream: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of stream) out.push(line);
  return out;
}

describe("OutputStream", () => {
  test("lines split across chunks are whole; the last line without a newline still comes; text() has everything", async () => {
    const s = new OutputStream();
    const lines = collect(s);
    const text = s.text();
    for (const chunk of ["al", "pha\nbe", "ta\n\ngam", "ma"]) {
      s.push(chunk);
      await new Promise((r) => setImmediate(r));
    }
    s.end();
    assert.deepEqual(await lines, ["alpha", "beta", "", "gamma"]);
    assert.equal(await text, "alpha\nbeta\n\ngamma");
  });

  test("a reader that starts late sees everything from the start", async () => {
    const s = new OutputStream();
    s.push("one\n");
    s.push("two\n");
    s.end();
    assert.deepEqual(await collect(s), ["one", "two"]);
    assert.deepEqual(await collect(s), ["one", "two"]);
  });

  test("an error ends every reader with it, after what had arrived", async () => {
    const s = new OutputStream();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const line of s) seen.push(line);
    })();
    s.push("before\n");
    await new Promise((r) => setImmediate(r));
    s.end(new Error("the sandbox went away"));
    await assert.rejects(reading, /the sandbox went away/);
    assert.deepEqual(seen, ["before"]);
  });
});

describe("Sandbox options", () => {
  test("volumes are checked before anything is sent", () => {
    assert.throws(() => new Volume({ name: "Bad/Name", mountPath: "/data" }), /lowercase/);
    assert.throws(() => new Volume({ name: "data", mountPath: "data" }), /absolute/);
    assert.throws(() => new Sandbox({ volumes: [{ name: "x", mountPath: "/x" } as unknown as Volume] }), /Volume objects/);
    assert.doesNotThrow(() => new Sandbox({ volumes: [new Volume({ name: "data", mountPath: "/data" })] }));
  });

  test("without a client, BETA9_GATEWAY or a CLI context, create() says what to set", async () => {
    const saved = { gateway: process.env.BETA9_GATEWAY, dir: process.env.BETA9_CONFIG_DIR };
    delete process.env.BETA9_GATEWAY;
    process.env.BETA9_CONFIG_DIR = mkdtempSync(join(tmpdir(), "beta9-no-context-"));
    try {
      await assert.rejects(new Sandbox().create(), /no gateway configured: run `beta9 up`.*BETA9_GATEWAY/);
      await assert.rejects(Sandbox.connect("x"), /BETA9_GATEWAY/);
    } finally {
      rmSync(process.env.BETA9_CONFIG_DIR, { recursive: true, force: true });
      if (saved.gateway !== undefined) process.env.BETA9_GATEWAY = saved.gateway;
      if (saved.dir !== undefined) process.env.BETA9_CONFIG_DIR = saved.dir;
      else delete process.env.BETA9_CONFIG_DIR;
    }
  });

  test("with only the CLI's context (what beta9 up saves), it goes to that gateway", async () => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-context-"));
    const saved = { gateway: process.env.BETA9_GATEWAY, token: process.env.BETA9_TOKEN, dir: process.env.BETA9_CONFIG_DIR };
    delete process.env.BETA9_GATEWAY;
    delete process.env.BETA9_TOKEN;
    process.env.BETA9_CONFIG_DIR = dir;
    // Port 9 on loopback: nothing listens, so the error names the context's gateway.
    writeFileSync(join(dir, "config.json"), JSON.stringify({ current: "default", contexts: { default: { gateway: "http://127.0.0.1:9", token: "b9_x" } } }));
    try {
      await assert.rejects(Sandbox.connect("x"), /cannot reach the gateway at http:\/\/127\.0\.0\.1:9/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      for (const [key, value] of [["BETA9_GATEWAY", saved.gateway], ["BETA9_TOKEN", saved.token], ["BETA9_CONFIG_DIR", saved.dir]] as const) {
        if (value !== undefined) process.env[key] = value;
        else delete process.env[key];
      }
    }
  });
});
