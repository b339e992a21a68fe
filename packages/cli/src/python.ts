/**
 * Python workloads in the CLI. The CLI does not read Python: it asks the Python SDK
 * (`python3 -m beta9 describe FILE.py:FUNCTION --bundle OUT`, sdk/python/beta9/__main__.py) to load
 * the file the way the runner will and to pack its package directory, and gets back one JSON object
 * (kind, name, stub config, image spec, handler, code hash, files). Everything after that (image
 * build, upload, stub, deployment, serve sessions) is the same path TypeScript workloads take.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WORKLOAD_MARKER, type ImageSpec, type StubConfigInput, type WorkloadKind } from "@beta9/protocol";
import { rememberImageFiles, type CodeBundle } from "beta9";
import { CliError, EXIT } from "./errors.js";
import { parseTarget } from "./load-export.js";

/** What `python3 -m beta9 describe` prints for a workload. */
export interface PythonDescription {
  kind: WorkloadKind;
  name: string;
  config: StubConfigInput;
  image: ImageSpec;
  handler: string;
  codeSha256: string;
  root: string;
  files: string[];
  /** Local files the image copies (add_local_file, from_dockerfile), base64 by sha256: uploaded with the build. */
  imageFiles?: Record<string, string>;
}

/**
 * The SDK the CLI ships, put first on PYTHONPATH: python/ beside the CLI in the packed beta9
 * package (scripts/pack.mjs), else sdk/python of the source checkout this CLI runs from.
 */
export const PYTHON_SDK_DIR = [new URL("../python", import.meta.url), new URL("../../../sdk/python", import.meta.url)]
  .map((url) => fileURLToPath(url))
  .find((dir) => existsSync(join(dir, "beta9", "__main__.py"))) ?? fileURLToPath(new URL("../../../sdk/python", import.meta.url));

export function isPythonTarget(target: string): boolean {
  return target.slice(0, target.lastIndexOf(":") > 0 ? target.lastIndexOf(":") : undefined).endsWith(".py");
}

function pythonExecutable(): string {
  return process.env.BETA9_PYTHON || "python3";
}

/** Loads FILE.py:FUNCTION with the Python SDK; with `bundleTo`, the packed code is written there. */
export async function describePython(target: string, bundleTo?: string): Promise<PythonDescription> {
  const { file, name } = parseTarget(target);
  const python = pythonExecutable();
  const env = { ...process.env, PYTHONPATH: [PYTHON_SDK_DIR, process.env.PYTHONPATH].filter(Boolean).join(delimiter), PYTHONDONTWRITEBYTECODE: "1" };
  const args = ["-m", "beta9", "describe", `${file}:${name}`, ...(bundleTo ? ["--bundle", bundleTo] : [])];
  const { stdout, stderr, code, spawnError } = await new Promise<{ stdout: string; stderr: string; code: number | null; spawnError?: NodeJS.ErrnoException }>((resolve) => {
    execFile(python, args, { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, out, errOut) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      resolve({ stdout: out, stderr: errOut, code: e ? (typeof e.code === "number" ? e.code : null) : 0, ...(e && typeof e.code === "string" && { spawnError: e }) });
    });
  });
  if (spawnError?.code === "ENOENT") {
    throw new CliError("PYTHON_NOT_FOUND", `${python} is needed to deploy .py workloads (apt-get install python3, or set BETA9_PYTHON)`, EXIT.usage);
  }
  // The user's module may print while it loads: that is shown, the JSON answer is the last line.
  if (stderr.trim() !== "") process.stderr.write(stderr.endsWith("\n") ? stderr : `${stderr}\n`);
  const last = stdout.trim().split("\n").pop() ?? "";
  let answer: (PythonDescription & { error?: undefined }) | { error: { code: string; message: string } };
  try {
    answer = JSON.parse(last) as typeof answer;
  } catch {
    throw new CliError("PYTHON_SDK_FAILED", `${python} -m beta9 describe ${target} failed (exit ${code ?? "signal"})${stderr ? "; its output is above" : ""}`);
  }
  if (answer.error) throw new CliError(answer.error.code, answer.error.message, EXIT.usage);
  return answer as PythonDescription;
}

/** A .py workload as the deploy and serve paths take it: a descriptor, its source, and a bundler. */
export async function loadPythonWorkload(target: string) {
  const description = await describePython(target);
  for (const data of Object.values(description.imageFiles ?? {})) rememberImageFiles(Buffer.from(data, "base64"));
  const workload = {
    [WORKLOAD_MARKER]: true as const,
    kind: description.kind,
    name: description.name,
    config: description.config,
    image: { toSpec: () => description.image },
    handler: () => {
      throw new Error("a Python workload runs in its container, not in the CLI");
    },
  };
  const bundle = async (): Promise<CodeBundle> => {
    const dir = mkdtempSync(join(tmpdir(), "beta9-py-"));
    try {
      const out = join(dir, "code.tar.gz");
      const d = await describePython(target, out);
      return { bytes: readFileSync(out), sha256: d.codeSha256, handler: d.handler, inputs: d.files };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return { workload, source: { file: parseTarget(target).file }, bundle, description };
}
