/** `beta9 deploy FILE:EXPORT`: bundle, upload (when new), build the image, create the stub, deploy a version. */
import type { Command } from "commander";
import { isWorkload, type InputSchema, type WorkloadDescriptor } from "@beta9/protocol";
import { deployWorkload, prepareWorkloadStub, type Client, type CodeBundle, type DeployResult, type PreparedStub, type StubConfigInput } from "beta9";
import { asCliError } from "../bundle.js";
import { CliError, EXIT } from "../errors.js";
import { loadExport, parseTarget } from "../load-export.js";
import { isPythonTarget, loadPythonWorkload } from "../python.js";
import { cliCommand, color, invokeLine, print, printJson } from "../output.js";
import { withClient } from "../session.js";

export type { DeployResult, PreparedStub };
export type LoadedWorkload = WorkloadDescriptor & { config: StubConfigInput };

export interface TargetWorkload {
  workload: LoadedWorkload;
  source: { file: string; exportName?: string };
  /** How the code is packed when not by esbuild (Python workloads: the Python SDK packs them). */
  bundle?: () => Promise<CodeBundle>;
}

/**
 * Loads FILE:EXPORT and checks it is a workload; the source says where its code is. A .py file is
 * described and packed by the Python SDK; anything else is imported here.
 */
export async function loadWorkload(target: string): Promise<TargetWorkload> {
  if (isPythonTarget(target)) {
    const { workload, source, bundle } = await loadPythonWorkload(target);
    return { workload: workload as LoadedWorkload, source, bundle };
  }
  const workload = await loadExport(target);
  if (!isWorkload(workload)) {
    throw new CliError("NOT_A_WORKLOAD", `${target} is not a workload; export one made with endpoint(), taskQueue(), fn() or schedule() from "beta9"`, EXIT.usage);
  }
  const { file, name } = parseTarget(target);
  return { workload: workload as LoadedWorkload, source: { file, exportName: name } };
}

const buildLog = (quiet: boolean) => (quiet ? undefined : (line: string) => process.stderr.write(`${color.dim("image:")} ${line}\n`));

/** Loads the workload, builds its image, uploads its code when new, and gets or creates its stub. */
export async function prepareStub(client: Client, target: string | TargetWorkload, variant: "deployment" | "serve", quiet: boolean): Promise<PreparedStub> {
  const { workload, source, bundle } = typeof target === "string" ? await loadWorkload(target) : target;
  const onLog = buildLog(quiet);
  return prepareWorkloadStub(client, workload, source, variant, { ...(onLog && { onLog }), ...(bundle && { bundle }) }).catch((err: unknown) => {
    throw asCliError(err);
  });
}

/** Everything `beta9 deploy` does, callable by other commands (beta9 up deploys its sample app). */
export async function deployTarget(client: Client, target: string, options: { name?: string; quiet?: boolean } = {}): Promise<DeployResult & { inputs?: InputSchema }> {
  const { workload, source, bundle } = await loadWorkload(target);
  const onLog = buildLog(options.quiet === true);
  const inputs = workload.config.inputs;
  return deployWorkload(client, workload, source, { ...(onLog && { onLog }), ...(bundle && { bundle }), ...(options.name !== undefined && { name: options.name }) }).then(
    (r) => ({ ...r, ...(inputs && { inputs: inputs as InputSchema }) }),
    (err: unknown) => {
      throw asCliError(err);
    },
  );
}

export function registerDeploy(program: Command): void {
  program
    .command("deploy")
    .description("deploy a workload (endpoint, task queue, function, schedule) exported by a file")
    .argument("<target>", "FILE:EXPORT, e.g. app.ts:classify or app.py:handler")
    .option("--name <name>", "deployment name (default: the workload's name)")
    .option("--json", "print the deployment as JSON")
    .option("-q, --quiet", "do not print the image build log")
    .action((target: string, opts: { name?: string; json?: boolean; quiet?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const r = await deployTarget(client, target, opts);
        for (const w of r.warnings) process.stderr.write(`${color.yellow("warning:")} ${w}\n`);
        if (opts.json) return printJson({ ...r.deployment, url: r.url });
        print(`${color.green("deployed")} ${r.deployment.name} v${r.deployment.version} (${r.kind}; code ${r.codeHash.slice(0, 12)}${r.codeUploaded ? ", uploaded" : ", unchanged"}; image ${r.imageId.slice(0, 12)})`);
        // A web app (its URL ends in a slash) answers any method and path below its URL.
        if (r.url.endsWith("/")) print(`open: curl ${r.url} -H "Authorization: Bearer $(${cliCommand()} config token)"`);
        else if (r.url) print(invokeLine(r.url, r.inputs));
        else print("it runs on its schedule (UTC); its runs are tasks: beta9 task list");
      }),
    );
}
