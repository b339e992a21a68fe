/** A real HAProxy (Debian's) in front of test gateways on loopback: the repo's sample config with their ports. */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const SAMPLE_CONFIG = fileURLToPath(new URL("../../../../deploy/haproxy/haproxy.cfg", import.meta.url));
const BINARY = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"].find((p) => existsSync(p));

export function haproxyUnavailableReason(): string | undefined {
  return BINARY ? undefined : "haproxy is not installed (apt-get install haproxy)";
}

/** The sample config, bound to 127.0.0.1:`port` with these backends (host:port). */
export function testConfig(port: number, backends: readonly string[]): string {
  const sample = readFileSync(SAMPLE_CONFIG, "utf8");
  const servers = backends.map((b, i) => `  server gw${i + 1} ${b} check`).join("\n");
  const bound = sample.replace(/^ {2}bind :1994$/m, `  bind 127.0.0.1:${port}`).replace(/^ {2}maxconn \d+$/m, "  maxconn 1000");
  const first = bound.search(/^ {2}server gw\d /m);
  if (first < 0 || bound === sample) throw new Error(`${SAMPLE_CONFIG} no longer has the bind line and server lines this test replaces`);
  return `${bound.slice(0, first)}${servers}\n`;
}

export async function startHaproxy(dir: string, port: number, backends: readonly string[]): Promise<{ url: string; process: ChildProcess; output(): string; stop(): Promise<void> }> {
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, testConfig(port, backends));
  const child = spawn(BINARY ?? "haproxy", ["-f", file, "-db"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${stderr}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (open) break;
    if (i > 200) {
      await stop();
      throw new Error(`haproxy did not listen on ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `http://127.0.0.1:${port}`, process: child, output: () => stderr, stop };
}
