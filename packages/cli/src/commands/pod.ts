/** `beta9 pod`: deploy any container image that serves a port, and list pods. */
import { InvalidArgumentError, type Command } from "commander";
import { deployPod, Image, podNameFromImage, type Client, type Deployment, type StubConfigInput } from "beta9";
import { asCliError } from "../bundle.js";
import { cliCommand, color, note, print, printJson, printTable, shortTime } from "../output.js";
import { withClient } from "../session.js";

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function envPair(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq < 1) throw new InvalidArgumentError("must be KEY=VALUE");
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function integer(min: number, max: number, what: string) {
  return (value: string): number => {
    if (!/^-?[0-9]{1,9}$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`must be ${what}`);
    return Number(value);
  };
}

/** `USER_SECRET:PASSWORD_SECRET` or `SECRET` (one secret holding user:password or a token). */
function registryCredentials(value: string): { username: string; password: string } | { secret: string } {
  const [user, pass, extra] = value.split(":");
  if (extra !== undefined || !user || pass === "") throw new InvalidArgumentError("must be USER_SECRET:PASSWORD_SECRET or SECRET (names of workspace secrets)");
  return pass === undefined ? { secret: user } : { username: user, password: pass };
}

interface DeployOpts {
  image: string;
  port: number;
  name?: string;
  cpu?: string;
  memory?: string;
  gpu?: string;
  gpuCount?: number;
  env?: Record<string, string>;
  secret?: string[];
  public?: boolean;
  healthPath?: string;
  readyTimeout?: number;
  keepWarm?: number;
  concurrency?: number;
  maxContainers?: number;
  registryCredentials?: { username: string; password: string } | { secret: string };
  wait: boolean;
  json?: boolean;
  quiet?: boolean;
}

function configOf(command: string[], o: DeployOpts): StubConfigInput {
  const gpu = o.gpu?.split(",").map((g) => g.trim()).filter(Boolean);
  return {
    ports: [o.port],
    ...(command.length > 0 && { entrypoint: command }),
    ...(o.cpu !== undefined && { cpu: /^[0-9.]+$/.test(o.cpu) ? Number(o.cpu) : o.cpu }),
    ...(o.memory !== undefined && { memory: o.memory }),
    ...(gpu && gpu.length > 0 && { gpu: gpu.length === 1 ? gpu[0]! : gpu }),
    ...(o.gpuCount !== undefined && { gpuCount: o.gpuCount }),
    ...(o.env && { env: o.env }),
    ...(o.secret && { secrets: o.secret }),
    ...(o.public && { authorized: false }),
    ...(o.healthPath !== undefined && { healthPath: o.healthPath }),
    ...(o.readyTimeout !== undefined && { readyTimeout: o.readyTimeout }),
    ...(o.keepWarm !== undefined && { keepWarmSeconds: o.keepWarm }),
    ...(o.concurrency !== undefined && { concurrentRequests: o.concurrency }),
    ...(o.maxContainers !== undefined && { autoscaler: { type: "queue_depth" as const, maxContainers: o.maxContainers } }),
  };
}

/** Active (or all) pod deployments with their URLs. */
async function podDeployments(client: Client, all: boolean): Promise<(Deployment & { url: string })[]> {
  const list = await client.listDeployments({ limit: 1000, ...(!all && { active: true }) });
  return list.filter((d) => d.stubType.startsWith("pod/")).map((d) => ({ ...d, url: `${client.gateway}/pod/${d.name}/v${d.version}/` }));
}

export function registerPod(program: Command): void {
  const pod = program.command("pod").description("run any container image that serves a port, behind a stable URL");

  pod
    .command("deploy")
    .description("deploy an image as a pod: its server on --port, reached at /pod/NAME/ (token required unless --public)")
    .argument("[command...]", "the command to run instead of the image's ENTRYPOINT and CMD (put -- before it)")
    .requiredOption("--image <ref>", "an image in a registry, e.g. nginx:1.27 or ghcr.io/acme/server:2")
    .requiredOption("--port <port>", "the port its server listens on", integer(1, 65_535, "a port from 1 to 65535"))
    .option("--name <name>", "deployment name (default: from the image's name)")
    .option("--cpu <cores>", "CPU cores per container, e.g. 0.5 or 1500m (default 1)")
    .option("--memory <size>", "memory per container, e.g. 512Mi or 2Gi (default 128Mi)")
    .option("--gpu <types>", "a GPU type, or several in order of preference (A10G,L4)")
    .option("--gpu-count <n>", "GPUs per container", integer(0, 8, "0 to 8"))
    .option("-e, --env <KEY=VALUE>", "an environment variable (repeatable)", envPair)
    .option("--secret <NAME>", "a workspace secret, set as an environment variable (repeatable)", collect)
    .option("--public", "anyone with its /public URL may call it, without a token")
    .option("--health-path <path>", "ready when this path answers 2xx/3xx (default: when the port takes a connection)")
    .option("--ready-timeout <seconds>", "how long a container may take to become ready (default 300)", integer(1, 3600, "1 to 3600 seconds"))
    .option("--keep-warm <seconds>", "how long an idle container stays up (default 180; -1 forever)", integer(-1, 86_400, "-1 to 86400 seconds"))
    .option("--concurrency <n>", "requests one container serves at once before another starts (default 32)", integer(1, 10_000, "1 to 10000"))
    .option("--max-containers <n>", "the most containers it scales to (default 1)", integer(1, 1000, "1 to 1000"))
    .option("--registry-credentials <secrets>", "pull credentials for a private registry: USER_SECRET:PASSWORD_SECRET or SECRET", registryCredentials)
    .option("--no-wait", "return once deployed, without waiting for a container to be ready")
    .option("--json", "print the deployment as JSON")
    .option("-q, --quiet", "do not print the image build log")
    .addHelpText("after", `
Examples:
  beta9 pod deploy --image nginx:1.27 --port 80
  beta9 pod deploy --image python:3.12-slim --port 8000 --name files -- python3 -m http.server 8000
  beta9 pod deploy --image ghcr.io/acme/api:2 --port 8080 --registry-credentials GHCR_USER:GHCR_TOKEN --public`)
    .action((command: string[], opts: DeployOpts, cmd: Command) =>
      withClient(cmd, async (client) => {
        const image = Image.fromRegistry(opts.image, opts.registryCredentials ? { credentials: opts.registryCredentials } : {});
        const onLog = opts.quiet || opts.json ? undefined : (line: string) => process.stderr.write(`${color.dim("image:")} ${line}\n`);
        const name = opts.name ?? podNameFromImage(opts.image);
        if (opts.wait && !opts.json) note(color.dim(`deploying ${name}; waiting for port ${opts.port} to answer (at most ${opts.readyTimeout ?? 300} s once started)…`));
        const r = await deployPod(client, { image, config: configOf(command, opts) }, { name, wait: opts.wait, ...(onLog && { onLog }) }).catch((err: unknown) => {
          throw asCliError(err);
        });
        for (const w of r.warnings) process.stderr.write(`${color.yellow("warning:")} ${w}\n`);
        if (opts.json) return printJson({ ...r.deployment, url: r.url, versionUrl: r.versionUrl, ...(r.publicUrl && { publicUrl: r.publicUrl }), ...(r.containerId && { containerId: r.containerId }) });
        print(`${color.green("deployed")} pod ${r.name} v${r.version} (image ${r.imageId.slice(0, 12)}${r.containerId ? `; ready in container ${r.containerId}` : ""})`);
        print(`open: curl ${r.url} -H "Authorization: Bearer $(${cliCommand()} config token)"`);
        if (r.publicUrl) print(`public: curl ${r.publicUrl}`);
      }),
    );

  pod
    .command("list")
    .description("list pods (their active deployments), newest first")
    .option("--all", "stopped ones too")
    .option("--json", "print a JSON array")
    .action((opts: { all?: boolean; json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const list = await podDeployments(client, opts.all === true);
        if (opts.json) return printJson(list);
        printTable(
          ["ID", "NAME", "VERSION", "ACTIVE", "UPDATED", "URL"],
          list.map((d) => [d.id, d.name, `v${d.version}`, d.active ? color.green("yes") : color.dim("no"), shortTime(d.updatedAt), d.url]),
          "no pods; deploy one with beta9 pod deploy --image REF --port PORT",
        );
      }),
    );
}
