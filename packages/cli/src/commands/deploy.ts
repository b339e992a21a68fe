/** `beta9 deploy FILE:EXPORT`: bundle, upload (when new), build the image, create the stub, deploy a version. */
import type { Command } from "commander";
import { isWorkload, type ImageSpec } from "@beta9/protocol";
import { Image, type Client, type Deployment, type Stub } from "beta9";
import { bundleCode } from "../bundle.js";
import { CliError, EXIT, ReportedError } from "../errors.js";
import { loadExport, parseTarget } from "../load-export.js";
import { color, print, printJson } from "../output.js";
import { withClient } from "../session.js";

async function buildImage(client: Client, spec: ImageSpec, quiet: boolean): Promise<string> {
  let image = await client.buildImage(spec);
  if (image.status === "building") {
    for await (const event of client.followImageBuild(image.id)) {
      if (event.kind === "log" && !quiet) process.stderr.write(`${color.dim("image:")} ${event.line.line}\n`);
      if (event.kind === "end") image = event.image;
    }
  }
  if (image.status !== "ready") {
    process.stderr.write(`${color.red("image build failed")}: ${image.error ?? "unknown error"}\n`);
    throw new ReportedError(EXIT.error);
  }
  return image.id;
}

export interface DeployResult {
  deployment: Deployment;
  url: string;
  codeUploaded: boolean;
  codeHash: string;
  imageId: string;
  kind: string;
}

export interface PreparedStub {
  stub: Stub;
  kind: string;
  codeUploaded: boolean;
  codeHash: string;
  imageId: string;
}

/** Loads the workload, builds its image, uploads its code when new, and gets or creates its stub. */
export async function prepareStub(client: Client, target: string, variant: "deployment" | "serve", quiet: boolean): Promise<PreparedStub> {
  const workload = await loadExport(target);
  if (!isWorkload(workload)) {
    throw new CliError("NOT_A_WORKLOAD", `${target} is not a workload; export one made with endpoint(), taskQueue(), fn() or schedule() from "beta9"`, EXIT.usage);
  }
  const { file, name: exportName } = parseTarget(target);
  const image = (workload as { image?: { toSpec(): ImageSpec } }).image ?? new Image();
  const imageId = await buildImage(client, image.toSpec(), quiet);
  const code = await bundleCode(file, exportName);
  const codeUploaded = !(await client.headObject(code.sha256));
  if (codeUploaded) await client.putObject(code.sha256, code.bytes);
  const { stub } = await client.createStub({
    name: workload.name, type: `${workload.kind}/${variant}`, objectId: code.sha256,
    config: { ...workload.config, imageId, handler: code.handler },
  });
  return { stub, kind: workload.kind, codeUploaded, codeHash: code.sha256, imageId };
}

/** Everything `beta9 deploy` does, callable by other commands (beta9 up deploys its sample app). */
export async function deployTarget(client: Client, target: string, options: { name?: string; quiet?: boolean } = {}): Promise<DeployResult> {
  const { stub, kind, codeUploaded, codeHash, imageId } = await prepareStub(client, target, "deployment", options.quiet === true);
  const deployment = await client.createDeployment({ stubId: stub.id, ...(options.name !== undefined && { name: options.name }) });
  const route = kind === "endpoint" ? "endpoint" : kind === "taskqueue" ? "taskqueue" : "function";
  return { deployment, url: `${client.gateway}/${route}/${deployment.name}/v${deployment.version}`, codeUploaded, codeHash, imageId, kind };
}

export function registerDeploy(program: Command): void {
  program
    .command("deploy")
    .description("deploy a workload (endpoint, task queue, function, schedule) exported by a file")
    .argument("<target>", "FILE:EXPORT, e.g. app.ts:classify")
    .option("--name <name>", "deployment name (default: the workload's name)")
    .option("--json", "print the deployment as JSON")
    .option("-q, --quiet", "do not print the image build log")
    .action((target: string, opts: { name?: string; json?: boolean; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const r = await deployTarget(client, target, opts);
        if (opts.json) return printJson({ ...r.deployment, url: r.url });
        print(`${color.green("deployed")} ${r.deployment.name} v${r.deployment.version} (${r.kind}; code ${r.codeHash.slice(0, 12)}${r.codeUploaded ? ", uploaded" : ", unchanged"}; image ${r.imageId.slice(0, 12)})`);
        print(`invoke: curl -X POST ${r.url} -H "Authorization: Bearer $BETA9_TOKEN" -H "Content-Type: application/json" -d '{}'`);
      }),
    );
}
