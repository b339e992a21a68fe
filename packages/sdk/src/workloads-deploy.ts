/**
 * Deploying a workload: build its image (once per spec), bundle and upload its code (only when
 * the hash is new), get or create its stub, and create a version. `beta9 deploy` and
 * `workload.deploy()` from code share this, so both give the same stub for the same code.
 */
import type { Deployment, ImageSpec, StubConfigInput, Stub, WorkloadDescriptor } from "@beta9/protocol";
import type { Client } from "./client.js";
import { bundleCode, type CodeBundle, type ExportRef } from "./workloads-bundle.js";

/** Where the workload's code is: the file that defines it, and its export (or find it by kind and name). */
export interface WorkloadSource {
  file: string;
  exportName?: string;
}

/** The image build failed; `message` holds its error, the log went to `onLog`. */
export class ImageBuildError extends Error {
  readonly code = "IMAGE_BUILD_FAILED";
  constructor(message: string) {
    super(message);
    this.name = "ImageBuildError";
  }
}

export interface PrepareOptions {
  /** Image build log lines (default: dropped). */
  onLog?: (line: string) => void;
  /** Skip the build: the image id from an earlier prepare of the same workload (serve reloads). */
  imageId?: string;
  /**
   * Packs the code instead of esbuild: workloads in other languages (the CLI asks the Python SDK
   * to describe and pack a .py workload) come through the same prepare, deploy and serve paths.
   */
  bundle?: () => Promise<CodeBundle>;
}

export interface PreparedStub {
  stub: Stub;
  /** What will keep it from running now (e.g. a GPU no connected worker has); it deploys all the same. */
  warnings: string[];
  kind: string;
  codeUploaded: boolean;
  codeHash: string;
  imageId: string;
  /** The project files in the bundle (what serve watches). */
  inputs: string[];
}

export interface DeployResult {
  deployment: Deployment;
  warnings: string[];
  /** Name and version, as `workload.deploy()` answers them. */
  name: string;
  version: number;
  /** The versioned invoke URL. */
  url: string;
  codeUploaded: boolean;
  codeHash: string;
  imageId: string;
  kind: string;
}

type DeployableWorkload = WorkloadDescriptor & { config: StubConfigInput; image?: { toSpec(): ImageSpec } };

/** Builds (or finds) an image; resolves to its id once ready. */
export async function buildImage(client: Client, spec: ImageSpec, onLog?: (line: string) => void): Promise<string> {
  let image = await client.buildImage(spec);
  if (image.status === "building") {
    for await (const event of client.followImageBuild(image.id)) {
      if (event.kind === "log") onLog?.(event.line.line);
      if (event.kind === "end") image = event.image;
    }
  }
  if (image.status !== "ready") throw new ImageBuildError(`image build failed: ${image.error ?? "unknown error"}`);
  return image.id;
}

/** Uploads a bundle unless the gateway has it; true when it was uploaded. */
export async function uploadCode(client: Client, code: CodeBundle): Promise<boolean> {
  if (await client.headObject(code.sha256)) return false;
  await client.putObject(code.sha256, code.bytes);
  return true;
}

export function exportRef(workload: DeployableWorkload, source: WorkloadSource): ExportRef {
  return source.exportName ?? { kind: workload.kind, name: workload.name };
}

/** The stub for `code`: same config and image as the workload, this bundle. */
export async function stubFor(client: Client, workload: DeployableWorkload, code: CodeBundle, imageId: string, variant: "deployment" | "serve"): Promise<Stub> {
  return (await createStubFor(client, workload, code, imageId, variant)).stub;
}

/** stubFor, with what the gateway warns about (e.g. a GPU no connected worker has). */
async function createStubFor(client: Client, workload: DeployableWorkload, code: CodeBundle, imageId: string, variant: "deployment" | "serve") {
  const { stub, warnings } = await client.createStub({
    name: workload.name, type: `${workload.kind}/${variant}`, objectId: code.sha256,
    config: { ...workload.config, imageId, handler: code.handler },
  });
  return { stub, warnings: warnings ?? [] };
}

/** Builds the image, uploads the code when new, and gets or creates the stub. */
export async function prepareWorkloadStub(
  client: Client, workload: DeployableWorkload, source: WorkloadSource, variant: "deployment" | "serve", options: PrepareOptions = {},
): Promise<PreparedStub> {
  const spec = workload.image?.toSpec() ?? { base: { kind: "default" }, steps: [], env: {} };
  const imageId = options.imageId ?? (await buildImage(client, spec as ImageSpec, options.onLog));
  const code = options.bundle ? await options.bundle() : await bundleCode(source.file, exportRef(workload, source));
  const codeUploaded = await uploadCode(client, code);
  const { stub, warnings } = await createStubFor(client, workload, code, imageId, variant);
  return { stub, warnings, kind: workload.kind, codeUploaded, codeHash: code.sha256, imageId, inputs: code.inputs };
}

/** Everything `beta9 deploy` does: a new version of the named deployment. */
export async function deployWorkload(
  client: Client, workload: DeployableWorkload, source: WorkloadSource, options: PrepareOptions & { name?: string } = {},
): Promise<DeployResult> {
  const prepared = await prepareWorkloadStub(client, workload, source, "deployment", options);
  const deployment = await client.createDeployment({ stubId: prepared.stub.id, ...(options.name !== undefined && { name: options.name }) });
  const route = prepared.kind === "endpoint" ? "endpoint" : prepared.kind === "taskqueue" ? "taskqueue" : prepared.kind === "function" ? "function" : "schedule";
  // A web app's routes live under its URL with a slash (its root).
  const url = route === "schedule" ? "" : `${client.gateway}/${route}/${deployment.name}/v${deployment.version}${workload.config.webApp === true ? "/" : ""}`;
  return {
    deployment, warnings: prepared.warnings, name: deployment.name, version: deployment.version, url,
    codeUploaded: prepared.codeUploaded, codeHash: prepared.codeHash, imageId: prepared.imageId, kind: prepared.kind,
  };
}
