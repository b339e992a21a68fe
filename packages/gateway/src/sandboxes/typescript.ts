/**
 * TypeScript for runCode: the sandbox runs JavaScript with the runner's own node (Node 20 cannot
 * strip types), so the gateway transpiles first. esbuild is loaded on first use only.
 */
import { Beta9Error } from "@beta9/protocol";

type Transform = (code: string, options: { loader: "ts"; format: "esm"; target: string }) => Promise<{ code: string }>;
let transform: Transform | undefined;

export async function transpileTypeScript(code: string): Promise<string> {
  if (!transform) {
    try {
      transform = ((await import("esbuild")) as unknown as { transform: Transform }).transform;
    } catch {
      throw new Beta9Error("UNAVAILABLE", { reason: "this gateway cannot run TypeScript: esbuild is not installed beside it; send javascript" });
    }
  }
  try {
    return (await transform(code, { loader: "ts", format: "esm", target: "node20" })).code;
  } catch (err) {
    throw new Beta9Error("INPUT_INVALID", { reason: `the TypeScript does not compile: ${(err as Error).message.split("\n").slice(0, 6).join("\n")}` });
  }
}
