/**
 * The files `beta9 init` writes: a TypeScript project (ES modules, strict) with one endpoint that
 * `npx beta9 deploy app.ts:hello` deploys as it is.
 */

/** The workload's export in app.ts: what `beta9 deploy app.ts:EXPORT` names. */
export const TEMPLATE_EXPORT = "hello";

/**
 * The directory's name as a workload and npm package name (lowercase letters, digits, . _ -; at
 * most 63; starts and ends with a letter or digit), e.g. "My App" → "my-app".
 */
export function projectName(dirName: string): string {
  const name = dirName.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").slice(0, 63).replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  return name === "" ? "my-app" : name;
}

/** File name → contents. `sdkSpec` is what the beta9 dependency points at (a file: tarball). */
export function templateFiles(name: string, sdkSpec: string): Record<string, string> {
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  return {
    "package.json": json({
      name,
      version: "0.1.0",
      private: true,
      type: "module",
      scripts: {
        deploy: `beta9 deploy app.ts:${TEMPLATE_EXPORT}`,
        serve: `beta9 serve app.ts:${TEMPLATE_EXPORT}`,
        typecheck: "tsc --noEmit",
      },
      dependencies: { beta9: sdkSpec },
      devDependencies: { "@types/node": "^20.19.0", typescript: "~5.9.0" },
      // npm 11 runs install scripts only of packages listed here; esbuild's checks its binary.
      allowScripts: { esbuild: true },
    }),
    "tsconfig.json": json({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2023"],
        types: ["node"],
        strict: true,
        noUncheckedIndexedAccess: true,
        // beta9 runs and bundles the .ts files themselves: nothing is emitted, and imports may
        // name the .ts file (`import { x } from "./x.ts"`).
        noEmit: true,
        allowImportingTsExtensions: true,
        skipLibCheck: true,
      },
      exclude: ["node_modules"],
    }),
    "app.ts": `// An endpoint on your beta9 platform. Deploy it (it answers at /endpoint/${name}):
//   npx beta9 deploy app.ts:${TEMPLATE_EXPORT}
// or serve it while you edit (each save reloads it):
//   npx beta9 serve app.ts:${TEMPLATE_EXPORT}
import { endpoint, Image, schema } from "beta9";

export const ${TEMPLATE_EXPORT} = endpoint(
  {
    name: ${JSON.stringify(name)},
    // Nothing but the runner's own Node: builds in a second, starts in about a hundred ms.
    // Packages go in the image: Image.fromRegistry("node:20-slim").npmInstall(["sharp"]).
    image: Image.scratch(),
    cpu: 0.25,
    memory: "128Mi",
    // Checked by the gateway before your code runs; \`input\` below is typed from it.
    inputs: schema.object({ name: schema.string().optional() }),
  },
  async (input) => ({ message: \`Hello, \${input.name ?? "world"}!\` }),
);
`,
    "README.md": `# ${name}

A beta9 project: \`app.ts\` exports an endpoint.

    npm install                          # once
    npx beta9 deploy app.ts:${TEMPLATE_EXPORT}         # deploy it; prints how to call it
    npx beta9 serve app.ts:${TEMPLATE_EXPORT}          # a live copy that reloads on every save
    npx beta9 run app.ts:${TEMPLATE_EXPORT} --input '{"name":"you"}'   # call it once, without deploying
    npm run typecheck

The CLI uses the gateway of your current context (\`beta9 up\` saves one; \`npx beta9 config list\`),
or BETA9_GATEWAY and BETA9_TOKEN.
`,
    ".gitignore": "node_modules/\n",
  };
}
