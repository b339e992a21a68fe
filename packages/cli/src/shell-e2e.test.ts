/**
 * `beta9 shell` and `sandbox.process.pty()` on real parts: a gateway, a local runc worker, a
 * container and a sandbox on the host rootfs (no image build). The CLI runs on a PTY of its own
 * (PtyDriver: cooked, as a user's terminal is), so raw mode, Ctrl-C, resizes and the exit code are
 * what a user gets. The shell on a machine behind the netns tunnel is in machines-e2e.test.ts
 * (it needs that file's machines). Skipped where runc cannot run.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { ApiError, Client, openShell, Sandbox, type SandboxInstance } from "beta9";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { PtyDriver } from "@beta9/worker/testing";

const skip = runcUnavailableReason();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-shell-e2e-"));
// Traversable (the worker's state dir too): a container's root in a user namespace is not the host's root.
chmodSync(dir, 0o755);
mkdirSync(join(dir, "worker"), { mode: 0o755 });
let gateway: RunningGateway;
let worker: StartedWorker;
let client: Client;
let key: string;
let containerId: string;
let sb: SandboxInstance;
const drivers: PtyDriver[] = [];

const env = (token = key) => ({ ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: token, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1", TERM: "xterm" });

function beta9(args: string[], token = key): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: env(token) }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

/** `beta9 shell ARGS…` on a terminal of its own. */
function shellOnPty(args: string[], token = key): PtyDriver {
  const d = new PtyDriver([process.execPath, cli, "shell", ...args], { env: env(token), cols: 100, rows: 30 });
  drivers.push(d);
  return d;
}

/** A root shell prompt at the end of the output (bash's "bash-5.2# " or sh's "# "). */
const PROMPT = /# $/;

/** Waits until a host process with exactly these argv is its terminal's foreground process group. */
async function foregroundOnItsTerminal(argv: string[]): Promise<void> {
  const want = `${argv.join("\0")}\0`;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    for (const pid of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8") !== want) continue;
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (fields[2] === fields[5]) return; // pgrp === tpgid
      } catch {
        // gone meanwhile
      }
    }
  }
  throw new Error(`no process ${argv.join(" ")} became its terminal's foreground job`);
}

async function untilRunning(id: string): Promise<void> {
  for (let i = 0; ; i++) {
    const c = await client.getContainer(id);
    if (c.state === "RUNNING") return;
    if (c.state === "EXITED" || i > 1200) throw new Error(`container ${id} did not run: ${JSON.stringify(c)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("beta9 shell and sandbox.process.pty() (gateway + runc worker)", { skip, timeout: 5 * 60_000 }, () => {
  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    key = gateway.bootstrap!.token.key;
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"),
      logger: pino({ level: "silent" }), runtime: "runc", name: "shl", subnet: "10.219.226.0/24", workerId: "shell-e2e",
    });
    await worker.connected;
    client = new Client({ gateway: gateway.url, token: key });
    containerId = (await client.runContainer({ command: ["sleep", "3600"], cpu: "250m", memory: "256Mi" })).id;
    await untilRunning(containerId);
    sb = await new Sandbox({ image: null, client, cpu: "250m", memory: 256 }).create();
  });

  after(async () => {
    for (const d of drivers) d.kill();
    await sb?.terminate().catch(() => undefined);
    if (containerId) await client?.stopContainer(containerId).catch(() => undefined);
    await client?.close();
    await worker?.close(1000);
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Line ends: the remote PTY sends \r\n, and the CLI's own terminal adds a \r (raw mode keeps ONLCR).
  test("typed into through a PTY: output, a /dev/pts tty, resize, Ctrl-C interrupts sleep but not the shell, exit 3 → exit code 3", async () => {
    const d = shellOnPty([containerId.slice(0, 8)]);
    let at = (await d.waitFor(PROMPT)).end;
    d.type("echo $((6*7))\r");
    at = (await d.waitFor(/[\r\n]42\r*\n/, at)).end;
    d.type("tty\r");
    at = (await d.waitFor(/\/dev\/pts\/\d+\r*\n/, at)).end;

    d.type("stty size\r");
    at = (await d.waitFor(/[\r\n]30 100\r*\n/, at)).end;
    // The window changes: the CLI gets SIGWINCH and sends the new size on; `stty size` sees it
    // once it has arrived (asked again until then, as a user would look again).
    d.resize(132, 50);
    for (let seen = false; !seen;) {
      await d.waitFor(PROMPT, at);
      at = d.output.length;
      d.type("stty size\r");
      const m = await d.waitFor(/[\r\n](\d+ \d+)\r*\n/, at);
      at = m.end;
      seen = m[1] === "50 132";
    }

    d.type("echo start-$((2+2)); sleep 317\r");
    at = (await d.waitFor(/start-4\r*\n/, at)).end;
    // Ctrl-C once sleep is the terminal's foreground job: sent earlier, it reaches the shell
    // before the job takes the terminal and sleep never sees it (as a user would press it again).
    await foregroundOnItsTerminal(["sleep", "317"]);
    d.type("\x03");
    d.type("echo rc=$?\r");
    at = (await d.waitFor(/rc=130\r*\n/, at)).end;
    assert.ok(d.running, "Ctrl-C went to the remote process, not the CLI");

    d.type("exit 3\r");
    assert.equal(await d.exit, 3, d.output);
  });

  test("a sandbox by id start, and a command after --: its exit code is the CLI's", async () => {
    const d = shellOnPty([sb.id.slice(0, 8), "--", "sh", "-c", "pwd; read x; echo got-$x; exit 5"]);
    await d.waitFor(/\/workspace\r*\n/);
    d.type("hello\r");
    await d.waitFor(/got-hello/);
    assert.equal(await d.exit, 5, d.output);
  });

  test("the shell's process is confined as the container's own: same namespaces, cgroup, capabilities, no_new_privs, seccomp", async () => {
    const probe = "for f in net user pid mnt cgroup; do readlink /proc/$P/ns/$f; done; cat /proc/$P/cgroup; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$P/status";
    const pty = await openShell({ gateway: gateway.url, token: key }, { containerId }, { tty: false, command: ["sh", "-c", `P=self; ${probe}; echo ===; P=1; ${probe}`] });
    const [stdout] = await Promise.all([text(pty.output), text(pty.stderr)]);
    assert.equal(await pty.wait(), 0);
    const [mine, init] = stdout.split("===\n");
    assert.ok(mine && /Seccomp:\s+2/.test(mine) && /NoNewPrivs:\s+1/.test(mine), stdout);
    assert.equal(mine, init, "the shell and the container's PID 1 share every namespace and limit");
  });

  test("stdin not a terminal: no raw mode, no remote PTY, stdout and stderr apart", async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [cli, "shell", containerId], { env: env() }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
      child.stdin!.end("echo out-$((1+1)); echo err >&2; tty || true; exit 4\n");
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stdout, /^out-2$/m);
    assert.match(r.stdout, /not a tty/);
    assert.match(r.stderr, /^err$/m);
  });

  test("SDK: sandbox.process.pty() writes, resizes, streams output and waits for the exit code", async () => {
    const pty = await sb.process.pty({ cols: 90, rows: 20 });
    let out = "";
    const reading = (async () => {
      for await (const chunk of pty) out += Buffer.from(chunk).toString("utf8");
    })();
    const until = async (pattern: RegExp, from: number) => {
      for (let i = 0; !pattern.test(out.slice(from)); i++) {
        if (i > 3000) throw new Error(`no ${pattern} in ${JSON.stringify(out.slice(from))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return out.length;
    };
    let at = await until(PROMPT, 0);
    pty.write("stty size; pwd\r");
    at = await until(/[\r\n]20 90\r*\n\/workspace\r*\n/, at);
    pty.resize(70, 15);
    for (let seen = false; !seen;) {
      await until(PROMPT, at);
      at = out.length;
      pty.write("stty size\r");
      await until(/[\r\n]\d+ \d+\r*\n/, at);
      seen = /[\r\n]15 70\r*\n/.test(out.slice(at));
      at = out.length;
    }
    pty.write("exit 7\r");
    assert.equal(await pty.wait(), 7);
    await reading;

    const piped = await sb.process.pty({ tty: false, command: ["sh", "-c", "echo out; echo err >&2; exit 2"] });
    const [stdout, stderr] = await Promise.all([text(piped.output), text(piped.stderr)]);
    assert.deepEqual([stdout, stderr, await piped.wait()], ["out\n", "err\n", 2]);
  });

  test("bad input: an unknown target, another workspace's container (404), a read-only token (403), a used ticket", async () => {
    const unknown = await beta9(["shell", "nope-nothing"]);
    assert.equal(unknown.code, 4, unknown.stderr);
    assert.match(unknown.stderr, /RESOURCE_NOT_FOUND: no container or sandbox nope-nothing/);

    const { token } = await client.createWorkspace("shell-e2e-other");
    const foreign = await openShell({ gateway: gateway.url, token: token.key }, { containerId }).catch((e: unknown) => e);
    assert.ok(foreign instanceof ApiError && foreign.status === 404 && foreign.code === "RESOURCE_NOT_FOUND", String(foreign));
    const foreignCli = await beta9(["shell", containerId], token.key);
    assert.equal(foreignCli.code, 4, foreignCli.stderr);

    const restricted = (await client.createToken({ type: "restricted", name: "shell-viewer" })).key;
    const denied = await openShell({ gateway: gateway.url, token: restricted }, { containerId }).catch((e: unknown) => e);
    assert.ok(denied instanceof ApiError && denied.status === 403, String(denied));

    // A ticket is for the token that asked, once.
    const post = (t: string) => fetch(`${gateway.url}/api/v1/container/${containerId}/shell`, {
      method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: "{}",
    });
    const { ticket } = (await (await post(key)).json()) as { ticket: string };
    const upgrade = (t: string) => fetch(`${gateway.url}/api/v1/shell/${ticket}`, { headers: { authorization: `Bearer ${t}` } });
    assert.equal((await upgrade(key)).status, 400, "a plain GET is not a session");
    const other = await client.createToken({ type: "workspace", name: "shell-other" });
    const ws = await openRaw(ticket, other.key);
    assert.equal(ws, 404, "another token cannot use the ticket");
  });

  test("revoking the token ends its open session; stopping the container ends the others; a 17th ticket is refused", async () => {
    const { token } = await client.createWorkspace("shell-e2e-bounds");
    const other = new Client({ gateway: gateway.url, token: token.key });
    try {
      const id = (await other.runContainer({ command: ["sleep", "3600"], cpu: "250m", memory: "128Mi" })).id;
      for (let i = 0; (await other.getContainer(id)).state !== "RUNNING"; i++) {
        assert.ok(i < 1200, "the container runs");
        await new Promise((r) => setTimeout(r, 50));
      }
      const second = await other.createToken({ type: "workspace", name: "revoked-soon" });
      const doomed = await openShell({ gateway: gateway.url, token: second.key }, { containerId: id }, { command: ["sleep", "600"] });
      await other.revokeToken(second.id);
      await assert.rejects(doomed.wait(), /without an exit status|revoked/);

      const open = await Promise.all(Array.from({ length: 15 }, () => openShell({ gateway: gateway.url, token: token.key }, { containerId: id }, { command: ["sleep", "600"] })));
      const tickets = await fetch(`${gateway.url}/api/v1/container/${id}/shell`, {
        method: "POST", headers: { authorization: `Bearer ${token.key}`, "content-type": "application/json" }, body: "{}",
      });
      assert.equal(tickets.status, 201, "the 16th");
      const refused = await openShell({ gateway: gateway.url, token: token.key }, { containerId: id }).catch((e: unknown) => e);
      assert.ok(refused instanceof ApiError && refused.status === 429 && refused.code === "QUOTA_EXCEEDED", String(refused));

      // Each session ends (the test would hang otherwise): runc exec's process dies with the container.
      await other.stopContainer(id);
      await Promise.allSettled(open.map((s) => s.wait()));
    } finally {
      await other.close();
    }
  });
});

async function text(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  let s = "";
  for await (const c of chunks) s += Buffer.from(c).toString("utf8");
  return s;
}

/** The HTTP status a WebSocket upgrade to a ticket gets (101 when it opens). */
async function openRaw(ticket: string, token: string): Promise<number> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.url}/api/v1/shell/${ticket}`, {
      headers: { authorization: `Bearer ${token}`, connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}
