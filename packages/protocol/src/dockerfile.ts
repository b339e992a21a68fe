/**
 * The Dockerfile parser: turns a Dockerfile into an image spec's base and steps, so a Dockerfile
 * image is built by our own builder into the same content-addressed image as any other spec. It
 * runs where specs are normalized (the TypeScript SDK, and the gateway for specs that carry the
 * Dockerfile text, e.g. from the Python SDK): one parser, one translation.
 *
 * Supported: FROM (a registry image or scratch; one stage), RUN (shell and exec form), COPY and
 * ADD of paths in the build context, ENV, ARG (defaults, build args, substitution), WORKDIR, USER,
 * SHELL. Recorded nowhere (the platform runs the workload's handler, not the image's command):
 * CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME, STOPSIGNAL, MAINTAINER. Anything else fails with the
 * line number and the instruction.
 */
import { posix } from "node:path";
import { EXPANSION_BUDGET_CHARS, expandWord, splitWords, WordError, type Lookup } from "./dockerfile-words.js";
import type { ImageBase, ImageStep, RegistryCredentials } from "./image-spec.js";

export class DockerfileError extends Error {
  constructor(readonly line: number, readonly instruction: string, readonly reason: string) {
    super(`Dockerfile line ${line}: ${instruction ? `${instruction}: ` : ""}${reason}`);
    this.name = "DockerfileError";
  }
}

export interface DockerfileOptions {
  /** sha256 of the uploaded build context (a tar of the Dockerfile's directory); COPY/ADD need it. */
  context?: string;
  /** Values for ARG instructions (`docker build --build-arg`). */
  buildArgs?: Readonly<Record<string, string>>;
  /** Secret names for pulling the FROM image (see RegistryCredentials). */
  credentials?: RegistryCredentials;
}

export interface Instruction {
  /** 1-based line where the instruction starts. */
  line: number;
  /** Upper case, e.g. "RUN". */
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
}

export interface ParsedDockerfile {
  escape: "\\" | "`";
  instructions: Instruction[];
}

const DIRECTIVE = /^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$/;

/** Lines → instructions: parser directives, comments, blank lines and line continuations. */
export function splitInstructions(text: string): ParsedDockerfile {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let escape: "\\" | "`" = "\\";
  let i = 0;
  // Directives only at the very top, before any comment, blank line or instruction.
  for (; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]!);
    if (!m) break;
    if (m[1]!.toLowerCase() === "escape") {
      if (m[2] !== "\\" && m[2] !== "`") throw new DockerfileError(i + 1, "", `the escape directive takes \\ or \`, not ${JSON.stringify(m[2])}`);
      escape = m[2];
    }
  }
  const continuation = new RegExp(`${escape === "\\" ? "\\\\" : "`"}[ \\t]*$`);
  const instructions: Instruction[] = [];
  let current: { line: number; text: string } | undefined;
  for (; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    // Comment lines (also inside a continued instruction) and blank lines are skipped.
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const more = continuation.test(raw);
    const piece = more ? raw.replace(continuation, "") : raw;
    if (current) current.text += piece;
    else current = { line: i + 1, text: piece.trimStart() };
    if (!more) {
      instructions.push(toInstruction(current));
      current = undefined;
    }
  }
  if (current) instructions.push(toInstruction(current));
  return { escape, instructions };
}

function toInstruction(c: { line: number; text: string }): Instruction {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(c.text)!;
  return { line: c.line, keyword: m[1]!.toUpperCase(), args: m[2]!.trim() };
}

const IGNORED = new Set(["CMD", "ENTRYPOINT", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL", "MAINTAINER"]);
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/;
const ARCHIVE = /\.(?:tar|tar\.gz|tgz|tar\.bz2|tbz2?|tar\.xz|txz|tar\.zst|tzst)$/i;
const URL_SOURCE = /^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/|git@)/;
const DEFAULT_SHELL = ["/bin/sh", "-c"];

/** A JSON array of strings (exec form), or undefined when `args` is not one (shell form). */
function jsonArray(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  try {
    const parsed: unknown = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((a) => typeof a === "string") ? parsed : undefined;
  } catch {
    return undefined;
  }
}

class Translator {
  base: ImageBase | undefined;
  readonly steps: ImageStep[] = [];
  /** ARGs declared before FROM (usable in FROM, and after it when declared again). */
  private readonly globalArgs = new Map<string, string | undefined>();
  private readonly args = new Map<string, string | undefined>();
  /** ENV values set so far; `undefined` when they depend on the base image's environment. */
  private readonly env = new Map<string, string | undefined>();
  private workdir = "/";
  private user: string | undefined;
  private shell = DEFAULT_SHELL;
  private line = 0;
  private keyword = "";
  /** What variable substitutions may copy in this Dockerfile, in all (a bound on $A$A doubling). */
  private readonly budget = { left: EXPANSION_BUDGET_CHARS };

  constructor(private readonly escape: "\\" | "`", private readonly o: DockerfileOptions) {}

  fail(reason: string): never {
    throw new DockerfileError(this.line, this.keyword, reason);
  }

  private word(raw: string, lookup: Lookup = this.lookup): string {
    try {
      const { value, unknown } = expandWord(raw, lookup, { escape: this.escape, budget: this.budget });
      if (unknown.length > 0) {
        this.fail(`\$${unknown[0]} is not set by an ARG or ENV before this line (variables of the base image are expanded only in ENV values)`);
      }
      return value;
    } catch (err) {
      if (err instanceof WordError) this.fail(err.message);
      throw err;
    }
  }

  private words(args: string): string[] {
    try {
      return splitWords(args, this.escape);
    } catch (err) {
      if (err instanceof WordError) this.fail(err.message);
      throw err;
    }
  }

  /** ENV wins over ARG, as in Docker; a value that depends on the base image is unknown here. */
  private readonly lookup: Lookup = (name) => {
    if (this.env.has(name)) {
      const v = this.env.get(name);
      if (v === undefined) this.fail(`\$${name} depends on the base image's environment, which is expanded only in ENV values`);
      return v;
    }
    return this.args.get(name);
  };

  /** Splits leading `--flag[=value]` words off; refuses flags not in `allowed`. */
  private flags(args: string, allowed: string[]): { flags: Map<string, string>; rest: string } {
    const flags = new Map<string, string>();
    let rest = args;
    for (let m = /^--([A-Za-z-]+)(?:=(\S*))?\s*/.exec(rest); m; m = /^--([A-Za-z-]+)(?:=(\S*))?\s*/.exec(rest)) {
      const name = m[1]!.toLowerCase();
      if (name === "from") this.fail(`--from is not supported: multi-stage builds are not (build the other stage as its own image, then FROM it)`);
      if (name === "platform") this.fail("--platform is not supported: images are built for the worker's platform");
      if (!allowed.includes(name)) this.fail(`the --${name} flag is not supported`);
      flags.set(name, m[2] ?? "");
      rest = rest.slice(m[0].length);
    }
    return { flags, rest };
  }

  handle(ins: Instruction): void {
    this.line = ins.line;
    this.keyword = ins.keyword;
    const { keyword, args } = ins;
    if (this.base === undefined && keyword !== "FROM" && keyword !== "ARG") this.fail("only ARG may come before FROM");
    if (/^(?:RUN|COPY|ADD)$/.test(keyword) && /(?:^|\s)<<-?\s*["']?[A-Za-z_][A-Za-z0-9_]*/.test(args)) {
      this.fail("heredocs (<<EOF) are not supported: put the script in a file and COPY it, or use RUN with &&");
    }
    switch (keyword) {
      case "FROM": return this.from(args);
      case "ARG": return this.arg(args);
      case "ENV": return this.envInstruction(args);
      case "RUN": return this.run(args);
      case "COPY":
      case "ADD": return this.copy(keyword, args);
      case "WORKDIR": {
        if (!args) this.fail("needs a path");
        this.workdir = posix.resolve(this.workdir, this.word(args));
        return;
      }
      case "USER": {
        const user = this.word(args);
        if (!USER.test(user)) this.fail(`${JSON.stringify(user)} is not a user[:group] name or id`);
        this.user = user === "root" || user === "0" || user === "0:0" || user === "root:root" ? undefined : user;
        return;
      }
      case "SHELL": {
        const shell = jsonArray(args);
        if (!shell || shell.length === 0) this.fail('needs a JSON array, e.g. ["/bin/bash", "-c"]');
        this.shell = shell;
        return;
      }
      default:
        if (IGNORED.has(keyword)) return;
        if (keyword === "HEALTHCHECK") this.fail("not supported (the platform checks a workload's readiness itself)");
        if (keyword === "ONBUILD") this.fail("not supported");
        this.fail(`unknown or unsupported instruction ${keyword}`);
    }
  }

  private from(args: string): void {
    if (this.base !== undefined) this.fail("multi-stage builds are not supported (a second FROM); build each stage as its own image");
    const { rest } = this.flags(args, []);
    const words = this.words(rest);
    if (words.length !== 1 && !(words.length === 3 && words[1]!.toLowerCase() === "as")) this.fail("expected FROM image [AS name]");
    const ref = this.word(words[0]!, (name) => this.globalArgs.get(name));
    if (ref === "scratch") {
      if (this.o.credentials) this.fail("FROM scratch pulls nothing, so credentials make no sense here");
      this.base = { kind: "scratch" };
    } else {
      this.base = { kind: "registry", ref, ...(this.o.credentials && { credentials: this.o.credentials }) };
    }
  }

  private arg(args: string): void {
    const words = this.words(args);
    if (words.length === 0) this.fail("needs a name");
    for (const word of words) {
      const eq = word.indexOf("=");
      const name = eq < 0 ? word : word.slice(0, eq);
      if (!VAR_NAME.test(name)) this.fail(`${JSON.stringify(name)} is not a valid ARG name`);
      const fallback = eq < 0 ? undefined : this.word(word.slice(eq + 1), this.base === undefined ? (n) => this.globalArgs.get(n) : this.lookup);
      const given = this.o.buildArgs && Object.hasOwn(this.o.buildArgs, name) ? this.o.buildArgs[name] : undefined;
      if (this.base === undefined) this.globalArgs.set(name, given ?? fallback);
      else this.args.set(name, given ?? fallback ?? this.globalArgs.get(name));
    }
  }

  private envInstruction(args: string): void {
    const words = this.words(args);
    if (words.length === 0) this.fail("needs NAME=value");
    const pairs: [string, string][] = [];
    if (!words[0]!.includes("=")) {
      // Legacy form: ENV NAME the rest of the line
      const name = words[0]!;
      pairs.push([name, args.slice(name.length).trim()]);
    } else {
      for (const word of words) {
        const eq = word.indexOf("=");
        if (eq <= 0) this.fail(`${JSON.stringify(word)} is not NAME=value`);
        pairs.push([word.slice(0, eq), word.slice(eq + 1)]);
      }
    }
    const vars: Record<string, string> = {};
    for (const [name, raw] of pairs) {
      if (!VAR_NAME.test(name)) this.fail(`${JSON.stringify(name)} is not a valid variable name`);
      const known: Lookup = (n) => (this.env.has(n) ? this.env.get(n) : this.args.get(n));
      try {
        const kept = expandWord(raw, known, { escape: this.escape, keepUnknown: true, budget: this.budget });
        vars[name] = kept.value;
        this.env.set(name, kept.unknown.length > 0 ? undefined : expandWord(raw, known, { escape: this.escape, budget: this.budget }).value);
      } catch (err) {
        if (err instanceof WordError) this.fail(err.message);
        throw err;
      }
    }
    this.steps.push({ kind: "env", vars });
  }

  /** What every RUN sees: the ARGs with values (not shadowed by an ENV), the workdir and the user. */
  private runContext(): { workdir?: string; user?: string; env?: Record<string, string> } {
    const env: Record<string, string> = {};
    for (const [name, value] of this.args) if (value !== undefined && !this.env.has(name)) env[name] = value;
    return {
      ...(this.workdir !== "/" && { workdir: this.workdir }),
      ...(this.user !== undefined && { user: this.user }),
      ...(Object.keys(env).length > 0 && { env }),
    };
  }

  private run(args: string): void {
    const { rest } = this.flags(args, []);
    if (!rest) this.fail("needs a command");
    const exec = jsonArray(rest);
    if (exec) {
      if (exec.length === 0) this.fail("the exec form needs at least one element");
      this.steps.push({ kind: "exec", argv: exec, ...this.runContext() });
    } else if (this.shell === DEFAULT_SHELL) {
      this.steps.push({ kind: "shell", command: rest, ...this.runContext() });
    } else {
      this.steps.push({ kind: "exec", argv: [...this.shell, rest], ...this.runContext() });
    }
  }

  private copy(keyword: string, args: string): void {
    const { flags, rest } = this.flags(args, ["chown", "chmod", "link"]);
    const json = jsonArray(rest);
    // Exec form: the elements are already unquoted, but variables are still substituted.
    const esc = this.escape;
    const parts = json
      ? json.map((w) => this.word(w.replace(/['"\\`]/g, (c) => (c === "'" || c === '"' || c === esc ? esc + c : c))))
      : this.words(rest).map((w) => this.word(w));
    if (parts.length < 2) this.fail("needs at least one source and a destination");
    const dest = parts.pop()!;
    const sources = parts.map((src) => {
      if (URL_SOURCE.test(src)) this.fail(`${src}: sources from URLs are not supported; download in a RUN step (curl, wget) instead`);
      if (keyword === "ADD" && ARCHIVE.test(src)) this.fail(`${src}: ADD would unpack this archive, which is not supported; COPY it and unpack it in a RUN step`);
      const path = posix.normalize(src.replace(/^\/+/, "") || ".");
      if (path === ".." || path.startsWith("../")) this.fail(`${src} is outside the build context`);
      return path.replace(/\/+$/, "") || ".";
    });
    if (!this.o.context) this.fail("needs the build context (the Dockerfile's directory); Image.fromDockerfile uploads it");
    const chmod = flags.get("chmod");
    if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod)) this.fail(`--chmod=${chmod}: only octal modes (e.g. 755) are supported`);
    const chown = flags.has("chown") ? this.word(flags.get("chown")!) : undefined;
    if (chown !== undefined && !USER.test(chown)) this.fail(`--chown=${chown} is not user[:group]`);
    const resolved = posix.resolve(this.workdir, dest);
    // "." and ".." name directories, so they are copied into, as with a trailing slash.
    const intoDir = dest.endsWith("/") || /(?:^|\/)\.\.?$/.test(dest);
    if (sources.length > 1 && !intoDir) this.fail("with more than one source the destination must be a directory ending in /");
    this.steps.push({
      kind: "copy", object: this.o.context, src: sources, dest: intoDir && resolved !== "/" ? `${resolved}/` : resolved,
      ...(chown !== undefined && { chown }), ...(chmod !== undefined && { chmod }),
    });
  }
}

/** The base and steps a Dockerfile stands for. Throws {@link DockerfileError}. */
export function dockerfileToSpec(text: string, options: DockerfileOptions = {}): { base: ImageBase; steps: ImageStep[] } {
  const { escape, instructions } = splitInstructions(text);
  const t = new Translator(escape, options);
  for (const ins of instructions) t.handle(ins);
  if (t.base === undefined) throw new DockerfileError(instructions.at(-1)?.line ?? 1, "", "there is no FROM instruction");
  return { base: t.base, steps: t.steps };
}
