/**
 * Sandboxes: isolated containers for code you do not trust (an LLM's, a user's), with processes,
 * files and ports. A sandbox ends at its TTL (`keepWarmSeconds`, default 600 s) even when the
 * process that created it died; `Sandbox.connect(id)` reattaches from anywhere.
 *
 * @example
 * const sb = await new Sandbox({ image: new Image() }).create();
 * const r = await sb.process.runCode("print('I am running remotely')");
 * console.log(r.result);
 * await sb.terminate();
 */
import { createReadStream, createWriteStream } from "node:fs";
import { stat as statLocal } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { Client } from "./client.js";
import { Image } from "./image.js";
import { defaultClientOptions, NO_CLIENT_CONFIGURED } from "./config-file.js";
import { SandboxHttp } from "./sandbox-http.js";
import { Volume } from "./sandbox-volume.js";
import { SandboxProcess, type ExitStatus } from "./sandbox-process.js";
import { openShell, type PtyOptions, type PtySession } from "./shell.js";
import { egressPolicy, type ProcessInfo, type FileInfo, type Sandbox as SandboxEntity } from "@beta9/protocol";

export type { ProcessInfo, FileInfo };

export { SandboxProcess, OutputStream, type ExitStatus } from "./sandbox-process.js";
export { Volume } from "./sandbox-volume.js";

export interface SandboxOptions {
  /**
   * Default: `new Image()` (Debian with python3), built once and cached. `null`: no image, the
   * worker's own root filesystem (its /usr read-only under runc; the host itself with the
   * `process` runtime, which isolates nothing).
   */
  image?: Image | null;
  /** Cores or "500m" (default 1). */
  cpu?: number | string;
  /** MiB or "2Gi" (default 1024). */
  memory?: number | string;
  /** Lifetime in seconds (default 600; -1: until terminated). */
  keepWarmSeconds?: number;
  env?: Record<string, string>;
  /** Names of workspace secrets (beta9 secret create) set as environment variables. */
  secrets?: string[];
  /** Named volumes mounted read-write (changes committed when the sandbox ends; see Volume). */
  volumes?: Volume[];
  pool?: string;
  /** No network at all (mutually exclusive with allowList). */
  blockNetwork?: boolean;
  /**
   * Egress only to these IPv4 destinations, plus DNS: "CIDR", "CIDR:PORT" or "CIDR:LOW-HIGH".
   * Private and host addresses also need the worker's operator to allow them (`--egress-allow`).
   */
  allowList?: string[];
  /** Default: one from BETA9_GATEWAY and BETA9_TOKEN. */
  client?: Client;
  /** Image build progress lines (a first build takes about a minute). */
  onBuildLog?: (line: string) => void;
}

/** A sandbox as the gateway reports it (the wire type, defined once in @beta9/protocol). */
export type SandboxInfo = SandboxEntity;

export interface RunCodeResult {
  /** What the code printed, without the last newline. */
  result: string;
  stdout: string;
  stderr: string;
  /** 128 + the signal's number when a signal ended it (137: SIGKILL, e.g. at the memory limit). */
  exitCode: number | null;
  signal: string | null;
  /** Set when the sandbox killed the code: it printed more than 16 MiB, or ran past `timeout`. */
  stopped?: "output_limit" | "timeout";
}

type ClientSource = { client?: Client };

/** The given client's, else BETA9_GATEWAY / BETA9_TOKEN, else the CLI's current context (as `new Client()`). */
function connection(options: ClientSource): SandboxHttp {
  if (options.client) return SandboxHttp.from(options.client);
  const config = defaultClientOptions();
  if (!config) throw new Error(NO_CLIENT_CONFIGURED);
  return new SandboxHttp({ gateway: config.gateway, token: config.token, tlsCa: config.tlsCa });
}

export class Sandbox {
  constructor(private readonly options: SandboxOptions = {}) {
    for (const v of options.volumes ?? []) {
      if (!(v instanceof Volume)) throw new TypeError("volumes must be Volume objects: new Volume({ name, mountPath })");
    }
    try {
      egressPolicy(options.blockNetwork, options.allowList);
    } catch (err) {
      throw new TypeError(`Sandbox: ${(err as Error).message}`);
    }
  }

  /** Builds the image if needed (once per spec), starts the sandbox, and resolves once it runs. */
  async create(): Promise<SandboxInstance> {
    const http = connection(this.options);
    try {
      const imageId = await this.imageId(http);
      const body = {
        ...(imageId !== undefined && { imageId }),
        ...(this.options.cpu !== undefined && { cpu: this.options.cpu }),
        ...(this.options.memory !== undefined && { memory: this.options.memory }),
        ...(this.options.keepWarmSeconds !== undefined && { keepWarmSeconds: this.options.keepWarmSeconds }),
        ...(this.options.env !== undefined && { env: this.options.env }),
        ...(this.options.secrets !== undefined && { secrets: this.options.secrets }),
        ...(this.options.pool !== undefined && { pool: this.options.pool }),
        ...(this.options.volumes?.length && { volumes: this.options.volumes.map((v) => ({ name: v.name, mountPath: v.mountPath })) }),
        ...(this.options.blockNetwork !== undefined && { blockNetwork: this.options.blockNetwork }),
        ...(this.options.allowList !== undefined && { allowList: this.options.allowList }),
      };
      const created = await http.json<SandboxInfo>("POST", "/sandbox", { json: body });
      const instance = new SandboxInstance(created.id, http);
      await http.json<SandboxInfo>("GET", `/sandbox/${created.id}`, { query: { wait: "ready" } });
      return instance;
    } catch (err) {
      await http.close();
      throw err;
    }
  }

  /** Reattaches to a sandbox by id (from another process, after a crash, from the CLI's list). */
  static async connect(id: string, options: ClientSource = {}): Promise<SandboxInstance> {
    const http = connection(options);
    try {
      await http.json<SandboxInfo>("GET", `/sandbox/${encodeURIComponent(id)}`);
      return new SandboxInstance(id, http);
    } catch (err) {
      await http.close();
      throw err;
    }
  }

  private async imageId(http: SandboxHttp): Promise<string | undefined> {
    if (this.options.image === null) return undefined;
    const image = this.options.image ?? new Image();
    const client = this.options.client ?? new Client({ gateway: http.connection.gateway, token: http.connection.token });
    try {
      let info = await client.buildImage(image.toSpec());
      if (info.status === "building") {
        for await (const e of client.followImageBuild(info.id)) {
          if (e.kind === "log") this.options.onBuildLog?.(e.line.line);
          else info = e.image;
        }
      }
      if (info.status !== "ready") throw new Error(`the sandbox's image did not build: ${info.error ?? info.status}`);
      return info.id;
    } finally {
      if (!this.options.client) await client.close();
    }
  }
}

export class SandboxInstance {
  readonly process: SandboxProcesses;
  readonly fs: SandboxFileSystem;

  /** @internal */
  constructor(readonly id: string, private readonly http: SandboxHttp) {
    this.process = new SandboxProcesses(id, http);
    this.fs = new SandboxFileSystem(id, http);
  }

  status(): Promise<SandboxInfo> {
    return this.http.json("GET", `/sandbox/${this.id}`);
  }

  /** Ends the sandbox and closes this handle's connections. */
  async terminate(): Promise<SandboxInfo> {
    try {
      return await this.http.json("POST", `/sandbox/${this.id}/terminate`);
    } finally {
      await this.http.close();
    }
  }

  /** The sandbox now ends `seconds` from now (-1: only when terminated). */
  updateTtl(seconds: number): Promise<SandboxInfo> {
    return this.http.json("POST", `/sandbox/${this.id}/ttl`, { json: { ttlSeconds: seconds } });
  }

  /** A URL through the gateway that reaches `port` in the sandbox (a token is needed unless `public`). */
  async exposePort(port: number, options: { public?: boolean } = {}): Promise<string> {
    const r = await this.http.json<{ url: string }>("POST", `/sandbox/${this.id}/port`, { json: { port, ...(options.public !== undefined && { public: options.public }) } });
    return r.url;
  }

  /** Closes this handle's connections; the sandbox goes on until terminated or its TTL. */
  close(): Promise<void> {
    return this.http.close();
  }
}

export class SandboxProcesses {
  /** @internal */
  constructor(private readonly id: string, private readonly http: SandboxHttp) {}

  /**
   * Runs code to completion (python by default; javascript and typescript with the sandbox's own
   * node). `timeout` in seconds; output is capped at 16 MiB. Either limit kills the code, and the
   * result's `stopped` says which.
   */
  runCode(code: string, options: { language?: "python" | "javascript" | "typescript"; cwd?: string; env?: Record<string, string>; timeout?: number } = {}): Promise<RunCodeResult> {
    return this.http.json("POST", `/sandbox/${this.id}/run-code`, { json: { code, ...options } });
  }

  /** Starts `cmd args…` (looked up in PATH; cwd defaults to /workspace) and streams its output. */
  async exec(cmd: string, args: string[] = [], options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {}): Promise<SandboxProcess> {
    const res = await this.http.raw("POST", `/sandbox/${this.id}/exec`, { json: { cmd, args, ...options } });
    return SandboxProcess.start(this.http, this.id, res, cmd);
  }

  /** Runs a command to completion and collects its output. */
  async run(cmd: string, args: string[] = [], options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {}): Promise<ExitStatus & { stdout: string; stderr: string }> {
    const p = await this.exec(cmd, args, options);
    const [stdout, stderr, exit] = await Promise.all([p.stdout.text(), p.stderr.text(), p.wait()]);
    return { stdout, stderr, ...exit };
  }

  async list(): Promise<ProcessInfo[]> {
    return (await this.http.json<{ items: ProcessInfo[] }>("GET", `/sandbox/${this.id}/process`)).items;
  }

  /**
   * An interactive process with a PTY (default: bash where the image has it, else sh, in
   * /workspace): write(), resize(), its output as an async iterable, wait() for the exit code.
   */
  pty(options: PtyOptions = {}): Promise<PtySession> {
    return openShell(this.http.connection, { sandboxId: this.id }, options);
  }

  async kill(pid: number, signal: "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP" = "SIGKILL"): Promise<void> {
    await this.http.json("POST", `/sandbox/${this.id}/process/${pid}/kill`, { json: { signal } });
  }
}

export class SandboxFileSystem {
  /** @internal */
  constructor(private readonly id: string, private readonly http: SandboxHttp) {}

  private file(path: string) {
    return { path: `/sandbox/${this.id}/fs/file`, query: { path } };
  }

  /** Streams a local file into the sandbox (any size; never held in memory). */
  async upload(localPath: string, remotePath: string): Promise<FileInfo> {
    const { size } = await statLocal(localPath);
    const f = this.file(remotePath);
    return this.http.json("PUT", f.path, { query: f.query, body: createReadStream(localPath), contentLength: size });
  }

  /** Streams a sandbox file to a local path. */
  async download(remotePath: string, localPath: string): Promise<void> {
    const f = this.file(remotePath);
    const res = await this.http.raw("GET", f.path, { query: f.query });
    await pipeline(res.body, createWriteStream(localPath));
  }

  async readBytes(path: string): Promise<Buffer> {
    const f = this.file(path);
    const res = await this.http.raw("GET", f.path, { query: f.query });
    return Buffer.from(await res.body.arrayBuffer());
  }

  async readText(path: string): Promise<string> {
    return (await this.readBytes(path)).toString("utf8");
  }

  writeBytes(path: string, data: Uint8Array, options: { mode?: number } = {}): Promise<FileInfo> {
    const f = this.file(path);
    const mode = options.mode === undefined ? undefined : options.mode.toString(8).padStart(3, "0");
    return this.http.json("PUT", f.path, { query: { ...f.query, mode }, body: Buffer.from(data.buffer, data.byteOffset, data.byteLength), contentLength: data.byteLength });
  }

  writeText(path: string, text: string, options: { mode?: number } = {}): Promise<FileInfo> {
    return this.writeBytes(path, Buffer.from(text, "utf8"), options);
  }

  async list(path = "."): Promise<FileInfo[]> {
    return (await this.http.json<{ items: FileInfo[] }>("GET", `/sandbox/${this.id}/fs/list`, { query: { path } })).items;
  }

  stat(path: string): Promise<FileInfo> {
    return this.http.json("GET", `/sandbox/${this.id}/fs/stat`, { query: { path } });
  }

  mkdir(path: string): Promise<FileInfo> {
    return this.http.json("POST", `/sandbox/${this.id}/fs/mkdir`, { query: { path } });
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.http.json("DELETE", `/sandbox/${this.id}/fs`, { query: { path, ...(options.recursive && { recursive: "true" }) } });
  }
}
