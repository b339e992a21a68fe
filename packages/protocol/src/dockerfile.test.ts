import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DockerfileError, dockerfileToSpec, splitInstructions } from "./dockerfile.js";
import { expandEnvValue, expandWord, splitWords } from "./dockerfile-words.js";
import { imageId, ImageSpecError, normalizeImageSpec } from "./image-spec.js";

const CONTEXT = "c".repeat(64);
const steps = (text: string, buildArgs?: Record<string, string>) => dockerfileToSpec(text, { context: CONTEXT, ...(buildArgs && { buildArgs }) }).steps;
const failure = (text: string) => {
  try {
    dockerfileToSpec(text, { context: CONTEXT });
  } catch (err) {
    assert.ok(err instanceof DockerfileError, String(err));
    return err;
  }
  assert.fail(`no error for:\n${text}`);
};

describe("Dockerfile lines", () => {
  test("continuations join lines; comments and blank lines inside them are dropped; line numbers are where instructions start", () => {
    const { instructions } = splitInstructions([
      "# syntax=docker/dockerfile:1", "FROM alpine:3", "", "  # a comment", "RUN apt-get update && \\", "    # not part of the command",
      "", "    apt-get install -y curl \\   ", "    jq", "run echo lower-case keyword",
    ].join("\n"));
    assert.deepEqual(instructions.map((i) => [i.line, i.keyword, i.args]), [
      [2, "FROM", "alpine:3"],
      [5, "RUN", "apt-get update &&     apt-get install -y curl     jq"],
      [10, "RUN", "echo lower-case keyword"],
    ]);
  });

  test("substitutions that double a value line after line are cut off at a bound, naming the line", () => {
    const lines = ["FROM scratch", "ENV A=xxxxxxxxxxxxxxxx", ...Array.from({ length: 30 }, () => "ENV A=$A$A"), ...Array.from({ length: 1000 }, (_, i) => `ENV B${i}=$A`)];
    assert.throws(() => dockerfileToSpec(lines.join("\n")), (err: unknown) => err instanceof DockerfileError && /line \d+.*more than 1048576 characters in all/.test(err.message));
  });

  test("the escape directive switches the continuation and escape character to a backtick", () => {
    const { escape, instructions } = splitInstructions("# escape=`\nFROM scratch\nCOPY a\\b `\n  /c\\\n");
    assert.equal(escape, "`");
    assert.deepEqual(instructions.map((i) => i.args), ["scratch", "a\\b   /c\\"]);
    assert.throws(() => splitInstructions("# escape=x\nFROM a"), /escape directive/);
  });
});

describe("Dockerfile words", () => {
  test("quotes, escapes and substitution follow Docker's rules", () => {
    const vars: Record<string, string> = { A: "1", EMPTY: "" };
    const look = (n: string) => vars[n];
    const w = (s: string) => expandWord(s, look).value;
    assert.equal(w(`"$A ${"${A}"}" '$A' \\$A x\\ y`), "1 1 $A $A x y");
    assert.equal(w("${EMPTY:-dflt} ${EMPTY-dflt} ${NOPE:-d2} ${A:+set} ${NOPE:+set}"), "dflt  d2 set ");
    assert.equal(w('"a\\"b" "c\\d"'), 'a"b c\\d');
    assert.throws(() => w("${NOPE:?needed here}"), /NOPE: needed here/);
    assert.throws(() => w("'open"), /unterminated single quote/);
    assert.throws(() => w("${A%%x}"), /modifiers/);
    assert.deepEqual(splitWords(`a "b c" d\\ e 'f g'`), ["a", '"b c"', "d\\ e", "'f g'"]);
  });

  test("keep-unknown mode leaves unknown variables for the worker, which expands them against the base image's env", () => {
    const kept = expandWord(`/opt/bin:$PATH:'$literal':"\${HOME:-/root}":$A`, (n) => (n === "A" ? "a\"b" : undefined), { keepUnknown: true });
    assert.deepEqual(kept.unknown, ["PATH", "HOME"]);
    assert.equal(expandEnvValue(kept.value, { PATH: "/usr/bin" }), `/opt/bin:/usr/bin:$literal:/root:a"b`);
    assert.equal(expandEnvValue(kept.value, { PATH: "/bin", HOME: "/home/x" }), `/opt/bin:/bin:$literal:/home/x:a"b`);
  });
});

describe("Dockerfile to spec", () => {
  test("every supported instruction becomes a spec step; metadata instructions are ignored", () => {
    const spec = dockerfileToSpec([
      "ARG REGISTRY=127.0.0.1:5000", "ARG TAG", "FROM ${REGISTRY}/team/base:${TAG} AS app", "ARG TAG", "ARG MODE=dev",
      "ENV APP=/srv/app PATH=/srv/app/bin:$PATH", "ENV GREETING hello  world", "WORKDIR $APP", "WORKDIR sub",
      'RUN echo "$MODE" > mode.txt', 'RUN ["/bin/sh", "-c", "echo exec"]', "USER app:app", "COPY --chown=app --chmod=640 conf/ ./conf/",
      'COPY ["with space.txt", "${APP}/named.txt"]', "ADD a.txt b.txt /data/", "COPY one.txt .", "USER root", 'SHELL ["/bin/bash", "-eu", "-c"]',
      "RUN echo bash", "CMD python main.py", "ENTRYPOINT [\"x\"]", "EXPOSE 8000", "LABEL a=b", "VOLUME /data", "STOPSIGNAL SIGTERM",
    ].join("\n"), { context: CONTEXT, buildArgs: { TAG: "v2", MODE: "prod" } });
    assert.deepEqual(spec.base, { kind: "registry", ref: "127.0.0.1:5000/team/base:v2" });
    const at = { workdir: "/srv/app/sub", env: { TAG: "v2", MODE: "prod" } };
    assert.deepEqual(spec.steps, [
      { kind: "env", vars: { APP: "/srv/app", PATH: "/srv/app/bin:${PATH}" } },
      { kind: "env", vars: { GREETING: "hello  world" } },
      { kind: "shell", command: 'echo "$MODE" > mode.txt', ...at },
      { kind: "exec", argv: ["/bin/sh", "-c", "echo exec"], ...at },
      { kind: "copy", object: CONTEXT, src: ["conf"], dest: "/srv/app/sub/conf/", chown: "app", chmod: "640" },
      { kind: "copy", object: CONTEXT, src: ["with space.txt"], dest: "/srv/app/named.txt" },
      { kind: "copy", object: CONTEXT, src: ["a.txt", "b.txt"], dest: "/data/" },
      { kind: "copy", object: CONTEXT, src: ["one.txt"], dest: "/srv/app/sub/" },
      { kind: "exec", argv: ["/bin/bash", "-eu", "-c", "echo bash"], ...at },
    ]);
  });

  test("RUN after USER carries the user; an ENV shadows the ARG of the same name; FROM scratch", () => {
    assert.deepEqual(steps("FROM scratch\nARG X=1\nENV X=2\nUSER 1000:1000\nRUN true"), [
      { kind: "env", vars: { X: "2" } },
      { kind: "shell", command: "true", user: "1000:1000" },
    ]);
    assert.deepEqual(dockerfileToSpec("FROM scratch").base, { kind: "scratch" });
  });

  test("unsupported instructions and forms fail naming the line and the instruction", () => {
    const cases: [string, RegExp][] = [
      ["FROM a\n\n# x\nHEALTHCHECK CMD curl -f http://localhost/", /^Dockerfile line 4: HEALTHCHECK: not supported/],
      ["FROM a\nONBUILD RUN x", /^Dockerfile line 2: ONBUILD: not supported/],
      ["FROM a AS build\nFROM b\nCOPY --from=build /x /y", /^Dockerfile line 2: FROM: multi-stage builds are not supported/],
      ["FROM a\nCOPY --from=build /x /y", /^Dockerfile line 2: COPY: --from is not supported/],
      ["FROM --platform=linux/arm64 a", /^Dockerfile line 1: FROM: --platform is not supported/],
      ["FROM a\nRUN --mount=type=cache,target=/x true", /^Dockerfile line 2: RUN: the --mount flag is not supported/],
      ["FROM a\nADD https://example.com/x.tgz /x", /^Dockerfile line 2: ADD: .*URLs are not supported/],
      ["FROM a\nADD app.tar.gz /x/", /^Dockerfile line 2: ADD: app.tar.gz: ADD would unpack this archive/],
      ["FROM a\nCOPY ../secret /x", /^Dockerfile line 2: COPY: \.\.\/secret is outside the build context/],
      ["FROM a\nCOPY a b /x", /^Dockerfile line 2: COPY: with more than one source the destination must be a directory/],
      ["FROM a\nRUN <<EOF\necho hi\nEOF", /^Dockerfile line 2: RUN: heredocs/],
      ["FROM a\nWORKDIR $HOME/app", /^Dockerfile line 2: WORKDIR: \$HOME is not set by an ARG or ENV/],
      ["FROM a\nENV P=$PATH\nWORKDIR $P", /^Dockerfile line 3: WORKDIR: \$P depends on the base image's environment/],
      ["RUN echo before from", /^Dockerfile line 1: RUN: only ARG may come before FROM/],
      ["ARG X=1", /there is no FROM instruction/],
      ["FROM a\nFOO bar", /^Dockerfile line 2: FOO: unknown or unsupported instruction FOO/],
      ["FROM a\nSHELL /bin/bash -c", /^Dockerfile line 2: SHELL: needs a JSON array/],
      ["FROM a\nCOPY --chmod=u+x a /a", /only octal modes/],
    ];
    for (const [text, message] of cases) assert.match(failure(text).message, message, text);
    assert.throws(() => dockerfileToSpec("FROM a\nCOPY x /y"), /needs the build context/);
  });
});

describe("specs with Dockerfiles and credentials", () => {
  test("a dockerfile base normalizes to its translation, followed by the spec's own steps", () => {
    const spec = normalizeImageSpec({
      base: { kind: "dockerfile", dockerfile: "FROM python:3.11-slim\nRUN pip --version", credentials: { secret: "HUB" } },
      steps: [{ kind: "shell", command: "echo after" }], env: { A: "1" },
    });
    assert.deepEqual(spec, {
      base: { kind: "registry", ref: "registry-1.docker.io/library/python:3.11-slim", credentials: { secret: "HUB" } },
      steps: [{ kind: "shell", command: "pip --version" }, { kind: "shell", command: "echo after" }], env: { A: "1" },
    });
    assert.throws(() => normalizeImageSpec({ base: { kind: "dockerfile", dockerfile: "FROM a\nHEALTHCHECK NONE" }, steps: [], env: {} }),
      (err: unknown) => err instanceof ImageSpecError && err.path === "/base/dockerfile" && /line 2: HEALTHCHECK/.test(err.message));
  });

  test("the id covers credential secret names (never values) and, for such images, the workspace", () => {
    const spec = (credentials?: object) => ({ base: { kind: "registry", ref: "ghcr.io/acme/app:1", ...(credentials && { credentials }) }, steps: [], env: {} });
    const pair = spec({ username: "U", password: "P" });
    assert.throws(() => imageId(pair), /per-workspace id/);
    assert.notEqual(imageId(pair, "ws1"), imageId(pair, "ws2"), "each workspace gets its own build, with its own secrets");
    assert.notEqual(imageId(pair, "ws1"), imageId(spec({ username: "U", password: "OTHER" }), "ws1"));
    assert.equal(imageId(spec(), "ws1"), imageId(spec()), "public images are shared by every workspace");
    assert.throws(() => normalizeImageSpec(spec({ username: "U" })), ImageSpecError);
    assert.throws(() => normalizeImageSpec(spec({ secret: "not a name" })), ImageSpecError);
  });

  test("copy steps: relative sources inside the files, absolute destinations, octal modes padded", () => {
    const copy = (src: string[], dest: string, extra: object = {}) =>
      normalizeImageSpec({ base: { kind: "scratch" }, steps: [{ kind: "copy", object: CONTEXT, src, dest, ...extra }], env: {} }).steps[0];
    assert.deepEqual(copy(["./a/", "b//c"], "/x//y/", { chmod: "755" }), { kind: "copy", object: CONTEXT, src: ["a", "b/c"], dest: "/x/y/", chmod: "0755" });
    assert.throws(() => copy(["../a"], "/x"), /relative path inside/);
    assert.throws(() => copy(["/etc/passwd"], "/x"), /relative path inside/);
    assert.throws(() => copy(["a"], "relative"), ImageSpecError);
  });
});
