/**
 * The sandbox daemon as the process runtime runs it (no container: its working directory is the
 * sandbox), over real HTTP. Confinement matters most here, since the host is right outside.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("./main.js", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "beta9-sandbox-root-"));
const outside = mkdtempSync(join(tmpdir(), "beta9-sandbox-outside-"));
let daemon: ChildProcess;
let base: string;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function call(method: string, path: string, body?: string | Buffer): Promise<{ status: number; text: string; json: () => any }> {
  const res = await fetch(`${base}${path}`, { method, ...(body !== undefined && { body }) });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

before(async () => {
  writeFileSync(join(outside, "secret.txt"), "host secret");
  const port = await freePort();
  daemon = spawn(process.execPath, [main], { cwd: root, env: { ...process.env, PORT: String(port) }, stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => daemon.stdout!.once("data", () => resolve()));
  base = `http://127.0.0.1:${port}`;
});

after(() => {
  daemon.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

describe("sandbox daemon files (process runtime: the working directory is the sandbox)", () => {
  test("paths are the sandbox's: relative from /workspace, absolute from its root, .. stops at the root", async () => {
    assert.equal((await call("PUT", "/fs/file?path=a.txt", "A")).status, 200);
    assert.equal(readFileSync(join(root, "workspace", "a.txt"), "utf8"), "A");
    assert.equal((await call("PUT", "/fs/file?path=/etc/x.conf", "X")).status, 200);
    assert.equal(readFileSync(join(root, "etc", "x.conf"), "utf8"), "X");
    const escaped = await call("GET", `/fs/file?path=${encodeURIComponent(`../../../../..${outside}/secret.txt`)}`);
    assert.equal(escaped.status, 404, escaped.text);
  });

  test("symlinks that lead out are refused for reads, writes, listings and cwd; removing one removes the link only", async () => {
    symlinkSync(outside, join(root, "workspace", "out"));
    symlinkSync(join(outside, "secret.txt"), join(root, "workspace", "secret-link"));
    for (const [method, path] of [
      ["GET", "/fs/file?path=out/secret.txt"], ["GET", "/fs/file?path=secret-link"], ["GET", "/fs/list?path=out"],
      ["PUT", "/fs/file?path=out/new.txt"], ["POST", "/fs/mkdir?path=out/dir"], ["DELETE", "/fs?path=out/secret.txt"],
    ]) {
      const res = await call(method!, path!, method === "PUT" ? "x" : undefined);
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
    }
    const exec = await call("POST", "/exec", JSON.stringify({ cmd: "true", cwd: "out" }));
    assert.equal(exec.status, 403, exec.text);
    assert.equal((await call("DELETE", "/fs?path=secret-link")).status, 204);
    assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), "host secret");
    assert.ok(!existsSync(join(outside, "new.txt")) && !existsSync(join(outside, "dir")));
    // Writing over a link to the outside replaces the link (rename), never the target.
    symlinkSync(join(outside, "secret.txt"), join(root, "workspace", "link2"));
    assert.equal((await call("PUT", "/fs/file?path=link2", "mine")).status, 200);
    assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), "host secret");
  });

  test("stat, list, mkdir, remove; clear errors for what is not there or not empty", async () => {
    mkdirSync(join(root, "workspace", "d", "e"), { recursive: true });
    assert.equal((await call("GET", "/fs/stat?path=d")).json().type, "directory");
    assert.deepEqual((await call("GET", "/fs/list?path=d")).json().items.map((f: { name: string }) => f.name), ["e"]);
    assert.equal((await call("DELETE", "/fs?path=d")).json().error.code, "CONFLICT");
    assert.equal((await call("DELETE", "/fs?path=d&recursive=true")).status, 204);
    assert.equal((await call("GET", "/fs/stat?path=d")).json().error.code, "RESOURCE_NOT_FOUND");
    assert.equal((await call("GET", "/fs/file?path=")).status, 422);
    assert.equal((await call("DELETE", "/fs?path=/")).status, 422);
  });
});

describe("sandbox daemon processes", () => {
  test("exec streams NDJSON: start first, output in order, exit last with the code", async () => {
    const res = await call("POST", "/exec", JSON.stringify({ cmd: "sh", args: ["-c", "echo one; echo two >&2; printf three; exit 4"] }));
    const events = res.text.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(events[0].type, "start");
    assert.deepEqual(events.at(-1), { type: "exit", exitCode: 4, signal: null });
    const out = events.filter((e) => e.type === "stdout").map((e) => e.data).join("");
    const err = events.filter((e) => e.type === "stderr").map((e) => e.data).join("");
    assert.deepEqual([out, err], ["one\nthree", "two\n"]);
  });

  test("a command that cannot start says why, then exits", async () => {
    const events = (await call("POST", "/exec", JSON.stringify({ cmd: "no-such-binary-here" }))).text.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(events[0].type, "error");
    assert.equal(events[0].code, "COMMAND_NOT_FOUND");
    assert.equal(events[0].message, "no-such-binary-here: command not found");
    assert.deepEqual(events.at(-1), { type: "exit", exitCode: 127, signal: null }, "as a shell would answer it");
  });

  test("kill ends only that exec's process group; unknown pids are 404; bad input is 422", async () => {
    const ctrl = new AbortController();
    const res = await fetch(`${base}/exec`, { method: "POST", body: JSON.stringify({ cmd: "sh", args: ["-c", "sleep 300 & sleep 300"] }), signal: ctrl.signal });
    const reader = res.body!.getReader();
    const first = JSON.parse(new TextDecoder().decode((await reader.read()).value).split("\n")[0]!);
    assert.equal(first.type, "start");
    assert.equal((await call("POST", `/process/${first.pid}/kill`, JSON.stringify({ signal: "SIGKILL" }))).status, 200);
    let rest = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      rest += new TextDecoder().decode(chunk.value);
    }
    assert.match(rest, /"type":"exit","exitCode":null,"signal":"SIGKILL"/);
    const listed = (await call("GET", "/process")).json().items.find((p: { pid: number }) => p.pid === first.pid);
    assert.equal(listed.running, false);
    assert.equal((await call("POST", "/process/999999/kill", "{}")).status, 404);
    assert.equal((await call("POST", `/process/${first.pid}/kill`, JSON.stringify({ signal: "SIGNOPE" }))).status, 422);
    assert.equal((await call("POST", "/exec", JSON.stringify({ cmd: "" }))).status, 422);
    assert.equal((await call("POST", "/exec", "{nope")).status, 400);
  });

  test("a caller that goes away does not block the process on a full pipe", async () => {
    const ctrl = new AbortController();
    const res = await fetch(`${base}/exec`, { method: "POST", body: JSON.stringify({ cmd: "sh", args: ["-c", "sleep 0.3; head -c 4000000 /dev/zero; echo done"] }), signal: ctrl.signal });
    const reader = res.body!.getReader();
    const { pid } = JSON.parse(new TextDecoder().decode((await reader.read()).value).split("\n")[0]!) as { pid: number };
    ctrl.abort();
    for (let i = 0; ; i++) {
      const p = (await call("GET", "/process")).json().items.find((x: { pid: number }) => x.pid === pid);
      if (!p.running) {
        assert.equal(p.exitCode, 0);
        break;
      }
      assert.ok(i < 400, "the process never finished");
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  test("runCode runs python and javascript and reports the exit code", async () => {
    const py = (await call("POST", "/run-code", JSON.stringify({ code: "print(6 * 7)" }))).json();
    assert.deepEqual([py.result, py.exitCode], ["42", 0]);
    const js = (await call("POST", "/run-code", JSON.stringify({ code: "process.exitCode = 3; console.log('js')", language: "javascript" }))).json();
    assert.deepEqual([js.result, js.exitCode], ["js", 3]);
  });

  test("runCode is bounded: endless output is cut at the cap, a timeout kills, a caller that leaves ends the run", async () => {
    const flood = (await call("POST", "/run-code", JSON.stringify({ code: "import sys\nwhile True: sys.stdout.write('x' * 65536)" }))).json();
    assert.equal(flood.stopped, "output_limit");
    assert.equal(flood.stdout.length, 16 * 1024 * 1024, "exactly the cap is kept");
    assert.equal(flood.exitCode, 137);
    assert.match(flood.stderr, /output passed 16 MiB; the process was killed/);
    const slow = (await call("POST", "/run-code", JSON.stringify({ code: "import time\nprint('started', flush=True)\ntime.sleep(60)", timeout: 0.5 }))).json();
    assert.deepEqual([slow.stopped, slow.result, slow.exitCode], ["timeout", "started", 137]);
    assert.equal((await call("POST", "/run-code", JSON.stringify({ code: "1", timeout: -1 }))).status, 422);
    const running = async (): Promise<number> => (await call("GET", "/process")).json().items.filter((p: { running: boolean }) => p.running).length;
    const before = await running();
    const ctrl = new AbortController();
    const pending = fetch(`${base}/run-code`, { method: "POST", body: JSON.stringify({ code: "import time\ntime.sleep(300)" }), signal: ctrl.signal }).catch(() => undefined);
    for (let i = 0; (await running()) === before; i++) {
      assert.ok(i < 100, "the run never started");
      await new Promise((r) => setTimeout(r, 20));
    }
    ctrl.abort();
    await pending;
    for (let i = 0; (await running()) > before; i++) {
      assert.ok(i < 200, "the run outlived its caller");
      await new Promise((r) => setTimeout(r, 25));
    }
  });
});
