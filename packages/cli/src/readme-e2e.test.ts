/**
 * The newcomer's walk: every `sh` block of the README, in order, pasted line by line as a new user
 * would, in a clean HOME, from the checkout, against the platform the first block starts
 * (`./beta9 up` on its default port). Each line must exit 0. So the README cannot drift from what
 * works: a command renamed, a flag dropped, an example that needs a variable nobody sets, fails here.
 *
 * What a person does by hand, the walk does the same way: `<id>` is the first id the latest command
 * printed (what one would copy), stdin holds a line of text (a secret's value), and the shell state
 * a line leaves (`. venv/bin/activate`) carries to the next. The lines it does not run are listed in
 * SKIPPED with the reason, and each entry must match a README line, so the list cannot go stale.
 * The debootstrap base comes from the tests' shared cache, as in sandbox-e2e (the only thing in the
 * clean HOME that a first-time user would not have: it saves a minute of download per run).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { runcUnavailableReason } from "@beta9/worker";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const skip = runcUnavailableReason() ?? (process.env.BETA9_TEST_README === "0" ? "BETA9_TEST_README=0" : undefined);

/** README lines the walk does not paste, each with why. */
const SKIPPED: Array<[RegExp, string]> = [
  [/^npm test\b/, "the test suite itself"],
  [/^\.\/beta9 secret update OPENAI_API_KEY --from-file key\.txt$/, "needs the user's own key.txt (the same command with stdin runs above)"],
];

export interface ReadmeLine {
  line: string;
  /** 1-based line number in the file, for messages. */
  at: number;
  /** The file, when not the README. */
  file?: string;
}

/** The commands of the README's ```sh blocks: continuations joined, blank and comment-only lines dropped. */
export function readmeCommands(text: string): ReadmeLine[] {
  const out: ReadmeLine[] = [];
  let inBlock = false;
  let pending: ReadmeLine | undefined;
  text.split("\n").forEach((raw, i) => {
    if (/^```/.test(raw)) {
      inBlock = !inBlock && /^```sh\s*$/.test(raw);
      return;
    }
    if (!inBlock) return;
    const line = pending ? `${pending.line} ${raw.trim()}` : raw.trim();
    const at = pending?.at ?? i + 1;
    if (line.endsWith("\\")) {
      pending = { line: line.slice(0, -1).trimEnd(), at };
      return;
    }
    pending = undefined;
    if (line !== "" && !line.startsWith("#")) out.push({ line, at });
  });
  return out;
}

/**
 * The commands an example's header comment tells the reader to run (`//` or `#` lines before the
 * code): from `./beta9`, `python3 examples/…`, `node --import tsx` or `curl` to the end of the
 * line or a parenthesised aside, continuations joined, also inside backticks.
 */
export function headerCommands(text: string, file: string): ReadmeLine[] {
  const out: ReadmeLine[] = [];
  const lines = text.split("\n");
  let pending: ReadmeLine | undefined;
  for (let i = 0; i < lines.length && /^(\/\/|#)/.test(lines[i]!); i++) {
    const comment = lines[i]!.replace(/^(\/\/|#)\s?/, "");
    if (pending) {
      pending.line = `${pending.line} ${comment.trim()}`.replace(/\s*\\$/, "");
      if (!comment.trimEnd().endsWith("\\")) (out.push(pending), (pending = undefined));
      continue;
    }
    for (const quoted of comment.matchAll(/`((?:\.\/beta9|python3|node --import tsx|curl) [^`]+)`/g)) out.push({ line: quoted[1]!, at: i + 1, file });
    if (comment.includes("`")) continue;
    const start = comment.search(/\.\/beta9 |python3 examples\/|node --import tsx |curl /);
    if (start < 0) continue;
    const command = comment.slice(start).replace(/\s+\((?!['"]).*$/, "").trimEnd();
    if (command.endsWith("\\")) pending = { line: command.slice(0, -1).trimEnd(), at: i + 1, file };
    else out.push({ line: command, at: i + 1, file });
  }
  return out;
}

const ID = /\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,64})\b/;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", () => resolve(true));
  });
}

const home = mkdtempSync(join(tmpdir(), "beta9-newcomer-"));
let platform: ChildProcess | undefined;
after(async () => {
  if (platform && platform.exitCode === null) {
    const exited = new Promise((r) => platform!.once("exit", r));
    process.kill(-platform.pid!, "SIGINT");
    await exited;
  }
  rmSync(home, { recursive: true, force: true });
});

test("an example's header commands: plain, continued, in backticks, minus asides", () => {
  const text = "// Try:\n//   curl -X POST http://x/a \\\n//        -d '{}'\n// Run `./beta9 run a.ts:b --input '{\"n\": 1}'`, or\n//   node --import tsx a.ts     (an aside)\n# Run: python3 examples/a.py (puts a task)\nimport x;\n// ./beta9 not-a-header\n";
  assert.deepEqual(headerCommands(text, "a.ts").map((c) => c.line), [
    "curl -X POST http://x/a -d '{}'", "./beta9 run a.ts:b --input '{\"n\": 1}'", "node --import tsx a.ts", "python3 examples/a.py",
  ]);
});

test("the README's parser joins continuations and drops comments", () => {
  const lines = readmeCommands("text\n```sh\n# note\na  # c\nb \\\n  --x\n\n```\n```ts\nnot this\n```\n```sh\nc\n```\n");
  assert.deepEqual(lines, [{ line: "a  # c", at: 4 }, { line: "b --x", at: 5 }, { line: "c", at: 13 }]);
});

test("a newcomer pastes every sh block of the README, in order, and each command succeeds", { skip }, async (t) => {
  assert.ok(await portFree(1994), "the README's platform listens on 127.0.0.1:1994, which something else holds: stop it to run this test");
  const cache = join(process.env.BETA9_TEST_CACHE ?? "/var/tmp/beta9-test-cache", "base-images");
  mkdirSync(cache, { recursive: true });
  mkdirSync(join(home, ".beta9", "data", "worker"), { recursive: true, mode: 0o700 });
  symlinkSync(cache, join(home, ".beta9", "data", "worker", "base-images"));
  const baseEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", HOME: home, NO_COLOR: "1", LANG: "C.UTF-8",
    ...(process.env.npm_config_nodedir && { npm_config_nodedir: process.env.npm_config_nodedir }),
    ...(process.env.BETA9_TEST_CACHE && { BETA9_TEST_CACHE: process.env.BETA9_TEST_CACHE }),
  };
  // What one shell session keeps from line to line: its exported variables and its directory.
  const envFile = join(home, ".walk-env");
  const cwdFile = join(home, ".walk-cwd");
  spawnSync("bash", ["-c", `export -p > ${envFile}; pwd > ${cwdFile}`], { env: baseEnv, cwd: root });
  const walked: string[] = [];

  const readme = readmeCommands(readFileSync(join(root, "README.md"), "utf8"));
  // Then what each example's header says to run, as a reader of that file would.
  const exampleFiles = [
    ...readdirSync(join(root, "examples")).filter((f) => f.endsWith(".ts")).map((f) => `examples/${f}`),
    ...readdirSync(join(root, "examples", "python")).filter((f) => f.endsWith(".py")).map((f) => `examples/python/${f}`),
  ].sort();
  const commands = [...readme, ...exampleFiles.flatMap((f) => headerCommands(readFileSync(join(root, f), "utf8"), f))];
  assert.ok(commands.length > readme.length + 10, "the examples' headers name their commands");
  for (const [pattern, why] of SKIPPED) assert.ok(readme.some((c) => pattern.test(c.line)), `SKIPPED lists ${pattern} (${why}), which no README line matches`);
  let lastId: string | undefined;
  const upLog = join(home, ".walk-up.log");
  const upOutput = () => (platform ? readFileSync(upLog, "utf8") : "");
  for (const { line, at: lineNo, file } of commands) {
    const at = `${file ?? "README.md"}:${lineNo}`;
    if (SKIPPED.some(([p]) => p.test(line))) continue;
    if (/^\.\/beta9 up\b/.test(line)) {
      // Its output goes to a file, not a pipe: the walk's spawnSync calls block this event loop for
      // minutes, and a pipe nobody drains would stall the platform once full (and hide its lines).
      const out = openSync(upLog, "w");
      platform = spawn("bash", ["-c", `. ${envFile}; cd "$(cat ${cwdFile})"; exec ${line}`], { env: baseEnv, detached: true, stdio: ["ignore", out, out] });
      closeSync(out);
      for (let i = 0; i < 6000 && !/ready in \d+ ms/.test(upOutput()) && platform.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(upOutput(), /ready in \d+ ms/, `${at}: ${line}\n${upOutput()}`);
      assert.match(upOutput(), /sample app: hello v1 answered/, upOutput());
      // What up printed to try is a command too: it must work when pasted.
      const tryLine = /^try: (curl .*)$/m.exec(upOutput())?.[1];
      assert.ok(tryLine, upOutput());
      const tried = spawnSync("bash", ["-c", `${tryLine} --fail-with-body -sS`], { env: baseEnv, encoding: "utf8" });
      assert.equal(tried.status, 0, `${tryLine}\n${tried.stdout}${tried.stderr}`);
      assert.match(tried.stdout, /Hello, you!/);
      continue;
    }
    const filled = lastId ? line.replaceAll("<id>", lastId) : line;
    // A curl from a header fails on an HTTP error, as its reader would notice.
    const pasted = file && filled.startsWith("curl ") ? `${filled} --fail-with-body -sS` : filled;
    assert.ok(!/<[a-z]+>/.test(pasted), `${at}: ${line} has a placeholder the walk cannot fill`);
    const started = performance.now();
    const ran = spawnSync("bash", ["-c", `. ${envFile}; cd "$(cat ${cwdFile})"; set -o pipefail; ${pasted}\nstatus=$?; export -p > ${envFile}; pwd > ${cwdFile}; exit $status`], {
      env: baseEnv, input: "a-value-from-stdin\n", encoding: "utf8", timeout: 10 * 60_000, maxBuffer: 64 * 1024 * 1024,
    });
    const shown = `${at}\n$ ${pasted}\n(exit ${ran.status}${ran.signal ? `, ${ran.signal}` : ""}, ${Math.round(performance.now() - started)} ms)\n${ran.stdout}${ran.stderr}`;
    assert.equal(ran.status, 0, shown);
    walked.push(`${Math.round(performance.now() - started)} ms  ${line}`);
    lastId = ID.exec(ran.stdout)?.[1] ?? lastId;
    // The line a deploy prints to call what it deployed works when pasted.
    const invoke = /^invoke: (curl .*)$/m.exec(ran.stdout)?.[1];
    if (invoke) {
      const called = spawnSync("bash", ["-c", `. ${envFile}; cd "$(cat ${cwdFile})"; ${invoke} --fail-with-body -sS`], { env: baseEnv, encoding: "utf8", timeout: 5 * 60_000 });
      // A deploy that warned no worker can run it (a GPU this machine lacks): the call says so, as documented.
      if (/calls answer 503 CAPACITY_UNAVAILABLE/.test(ran.stderr)) assert.match(called.stdout, /"code":"CAPACITY_UNAVAILABLE"/, `${shown}\n$ ${invoke}\n${called.stdout}${called.stderr}`);
      else assert.equal(called.status, 0, `${shown}\n$ ${invoke}\n${called.stdout}${called.stderr}`);
    }
  }
  t.diagnostic(`walked:\n${walked.join("\n")}`);
  assert.ok(platform, "the README starts the platform with ./beta9 up");
  // After the first start, up prepares the default image in the background and says so (at once,
  // before the minute a cold debootstrap takes).
  assert.match(upOutput(), /default image \(Debian bookworm \+ python3\): preparing in the background|default image: ready in \d+ s/, upOutput());
});
