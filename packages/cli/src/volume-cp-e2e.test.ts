/**
 * `beta9 cp` against a real gateway process, no worker needed: symlinks and empty directories
 * survive a round trip (a link is its text on every side: one to /etc/shadow or out of the volume
 * is stored and given back as a link, never read through), a plain line per file when stderr is
 * not a terminal, and a broken upload that resumes: a small TCP proxy on loopback cuts the first
 * `cp` midway, the same `cp` run again completes byte-identical and sends less than the whole file
 * (counted at the proxy). With BETA9_TEST_LARGE=1, a 1 GiB file goes up and down and the CLI's and
 * the gateway's peak RSS (VmHWM) are bounded. Everything it makes is removed afterwards.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("./main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "beta9-volume-cp-"));
const MiB = 1024 * 1024;
let gateway: ChildProcess | undefined;
let url: string;
let key: string;

/** Runs the CLI against `via` (the gateway, or a proxy in front of it); `peak`: the CLI's VmHWM in KiB, read while it runs. */
function beta9(args: string[], via = url): Promise<{ code: number; stdout: string; stderr: string; peakKiB: number }> {
  return new Promise((resolve) => {
    let peakKiB = 0;
    const child = execFile(process.execPath, [cli, ...args], {
      env: { ...process.env, BETA9_GATEWAY: via, BETA9_TOKEN: key, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, maxBuffer: 1 << 24,
    }, (err, stdout, stderr) => {
      clearInterval(poll);
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, peakKiB });
    });
    const poll = setInterval(() => {
      try {
        peakKiB = Math.max(peakKiB, hwm(child.pid!));
      } catch {
        // exited
      }
    }, 50);
  });
}

async function ok(args: string[], via = url): Promise<{ stdout: string; stderr: string; peakKiB: number }> {
  const r = await beta9(args, via);
  assert.equal(r.code, 0, `beta9 ${args.join(" ")}: ${r.stderr}`);
  return r;
}

function hwm(pid: number): number {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** A file of `mib` MiB whose every MiB differs (so that no chunk repeats another). */
async function makeFile(path: string, mib: number, seed: string): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    const block = Buffer.alloc(MiB, createHash("sha512").update(`${seed}-${i}`).digest());
    if (!out.write(block)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
}

/** A loopback TCP proxy to the gateway counting what clients send; `cutAfter`: drops every connection once that many bytes went through. */
function proxy(cutAfter = Infinity): Promise<{ url: string; sent: () => number; close: () => Promise<void> }> {
  const target = new URL(url);
  let sent = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (data: Buffer) => {
      sent += data.length;
      if (sent > cutAfter) {
        for (const s of sockets) s.destroy();
        return;
      }
      if (!upstream.write(data)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.pipe(client);
    client.on("error", drop).on("close", () => { sockets.delete(client); drop(); });
    upstream.on("error", drop).on("close", () => { sockets.delete(upstream); drop(); });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as { port: number }).port;
    resolve({
      url: `http://127.0.0.1:${port}`, sent: () => sent,
      close: () => new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
    });
  }));
}

before(async () => {
  const child = spawn(process.execPath, [cli, "gateway", "--port", "0", "--data-dir", join(dir, "gw"), "--log-level", "warn"], {
    env: { ...process.env, BETA9_CONFIG_DIR: join(dir, "cfg"), NO_COLOR: "1" }, stdio: ["ignore", "pipe", "inherit"],
  });
  gateway = child;
  await new Promise<void>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (c: Buffer) => {
      text += String(c);
      const listening = /^gateway: (http\S+)/m.exec(text)?.[1];
      const token = /^admin token: (\S+)/m.exec(text)?.[1];
      if (listening && token) {
        url = listening;
        key = token;
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`the gateway exited (${code}): ${text}`)));
  });
  await ok(["volume", "create", "cp"]);
});

after(async () => {
  if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
    const exited = new Promise((r) => gateway!.once("exit", r));
    gateway.kill("SIGTERM");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Every path under `root` that is a symlink (none may exist on the gateway's side). */
function linksUnder(root: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (entry.isSymbolicLink()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

test("symlinks (wherever they point) and empty directories survive cp up, ls and cp down; the gateway stores no link", async () => {
  const tree = join(dir, "tree");
  mkdirSync(join(tree, "empty", "nested-empty"), { recursive: true });
  mkdirSync(join(tree, "sub"), { recursive: true });
  writeFileSync(join(tree, "sub", "file.txt"), "content");
  symlinkSync("sub/file.txt", join(tree, "rel-link"));
  symlinkSync("/etc/shadow", join(tree, "abs-link"));
  symlinkSync("../../../../outside", join(tree, "sub", "escape"));
  symlinkSync("sub", join(tree, "dir-link"));
  const up = await ok(["cp", tree, "cp:"]);
  assert.match(up.stdout, /copied 1 file \(7 B\) to cp:tree/);
  assert.match(up.stderr, /^uploading tree\/sub\/file\.txt \(7 B\)$/m, "a plain line per file when stderr is no terminal");

  const listed = JSON.parse((await ok(["ls", "-r", "--json", "cp:tree"])).stdout) as { path: string; type: string; target?: string }[];
  const byPath = Object.fromEntries(listed.map((e) => [e.path, [e.type, e.target]]));
  assert.deepEqual(byPath["tree/rel-link"], ["link", "sub/file.txt"]);
  assert.deepEqual(byPath["tree/abs-link"], ["link", "/etc/shadow"]);
  assert.deepEqual(byPath["tree/sub/escape"], ["link", "../../../../outside"]);
  assert.deepEqual(byPath["tree/dir-link"], ["link", "sub"]);
  assert.deepEqual(byPath["tree/empty/nested-empty"], ["dir", undefined]);
  assert.match((await ok(["ls", "cp:tree"])).stdout, /abs-link -> \/etc\/shadow/);
  await ok(["cp", "cp:tree/abs-link", join(dir, "nope")]); // copying a link gives the link back, not what it points to
  assert.equal(readlinkSync(join(dir, "nope")), "/etc/shadow");
  assert.deepEqual(linksUnder(join(dir, "gw")), [], "the gateway's data holds links as text only");

  const back = join(dir, "back");
  await ok(["cp", "cp:tree", back]);
  assert.equal(readFileSync(join(back, "sub", "file.txt"), "utf8"), "content");
  for (const [path, target] of [["rel-link", "sub/file.txt"], ["abs-link", "/etc/shadow"], ["sub/escape", "../../../../outside"], ["dir-link", "sub"]] as const) {
    assert.ok(lstatSync(join(back, path)).isSymbolicLink(), `${path} comes back a link`);
    assert.equal(readlinkSync(join(back, path)), target);
  }
  assert.ok(lstatSync(join(back, "empty", "nested-empty")).isDirectory());
  assert.deepEqual(readdirSync(join(back, "empty", "nested-empty")), []);
});

test("a broken upload resumes: the second cp completes byte-identical and sends less than the whole file", async (t) => {
  const file = join(dir, "resume.bin");
  await makeFile(file, 48, "resume");
  const cut = await proxy(28 * MiB);
  const broken = await beta9(["cp", file, "cp:resume.bin"], cut.url);
  await cut.close();
  assert.notEqual(broken.code, 0, "the first cp breaks midway");
  const whole = await proxy();
  const again = await ok(["cp", file, "cp:resume.bin"], whole.url);
  const sent = whole.sent();
  await whole.close();
  t.diagnostic(`first cp cut after ${(28 * MiB / MiB).toFixed(0)} MiB; the resumed cp sent ${(sent / MiB).toFixed(1)} MiB of a 48 MiB file`);
  assert.ok(sent < 48 * MiB, `the resumed cp sent ${sent} bytes, the file is ${48 * MiB}`);
  assert.match(again.stdout, /copied 1 file \(48\.0 MiB; [0-9.]+ MiB sent, the rest was stored already\)/);
  const down = join(dir, "resume.back");
  await ok(["cp", "cp:resume.bin", down]);
  assert.equal(await sha256File(down), await sha256File(file));
  // The same content again, under another name: nothing but the hashes is sent.
  const dup = await proxy();
  await ok(["cp", file, "cp:resume-copy.bin"], dup.url);
  const dupSent = dup.sent();
  await dup.close();
  assert.ok(dupSent < MiB, `a content stored already sent ${dupSent} bytes`);
});

test("1 GiB up and down streams: the CLI's and the gateway's peak RSS stay bounded", { skip: process.env.BETA9_TEST_LARGE === "1" ? undefined : "set BETA9_TEST_LARGE=1 (writes and moves 1 GiB)" }, async (t) => {
  const file = join(dir, "large.bin");
  await makeFile(file, 1024, "large");
  writeFileSync(`/proc/${gateway!.pid}/clear_refs`, "5"); // VmHWM back to the current RSS
  const up = await ok(["cp", file, "cp:large.bin"]);
  const back = join(dir, "large.back");
  const down = await ok(["cp", "cp:large.bin", back]);
  const gatewayPeak = hwm(gateway!.pid!);
  assert.equal(await sha256File(back), await sha256File(file));
  const mib = (kib: number) => Math.round(kib / 1024);
  t.diagnostic(`1 GiB: CLI peak RSS ${mib(up.peakKiB)} MiB up, ${mib(down.peakKiB)} MiB down; gateway peak RSS ${mib(gatewayPeak)} MiB`);
  // The gateway under 200 MB (the bound), each CLI under 300 MiB.
  for (const [what, kib, boundKiB] of [["CLI up", up.peakKiB, 300 * 1024], ["CLI down", down.peakKiB, 300 * 1024], ["gateway", gatewayPeak, 200e6 / 1024]] as const) {
    assert.ok(kib < boundKiB, `${what} peak RSS ${mib(kib)} MiB moving 1 GiB (bound ${mib(boundKiB)} MiB): it must stream, not buffer`);
  }
  rmSync(file, { force: true });
  rmSync(back, { force: true });
});
