import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IMAGE_FORMAT_VERSION, ImageRefError, ImageSpecError, defaultImageSpec, formatImageRef, imageId, normalizeImageSpec, parseImageRef, type ImageSpec } from "@beta9/protocol";

const spec = (over: Partial<ImageSpec> = {}): ImageSpec => ({
  base: { kind: "default" },
  steps: [{ kind: "apt", packages: ["curl", "git"] }, { kind: "pip", packages: ["numpy==1.26.4", "requests[socks]>=2.31"] }, { kind: "shell", command: "echo hi > /x" }],
  env: { B: "2", A: "1" },
  ...over,
});

describe("imageId", () => {
  it("is 32 hex characters and deterministic", () => {
    const id = imageId(spec());
    assert.match(id, /^[a-f0-9]{32}$/);
    assert.equal(imageId(spec()), id);
    assert.equal(imageId(defaultImageSpec()), imageId({ env: {}, steps: [], base: { kind: "default" } }));
  });

  it("ignores key order but not step or package order", () => {
    const reordered = { env: { A: "1", B: "2" }, steps: spec().steps.map((s) => JSON.parse(JSON.stringify(s)) as typeof s), base: { kind: "default" as const } };
    assert.equal(imageId(reordered), imageId(spec()));
    assert.notEqual(imageId(spec({ steps: [{ kind: "apt", packages: ["git", "curl"] }] })), imageId(spec({ steps: [{ kind: "apt", packages: ["curl", "git"] }] })));
    const steps = spec().steps;
    assert.notEqual(imageId(spec({ steps: [...steps].reverse() })), imageId(spec()));
  });

  it("changes with every part of the spec", () => {
    const ids = new Set([
      imageId(spec()),
      imageId(spec({ env: { A: "1", B: "3" } })),
      imageId(spec({ base: { kind: "registry", ref: "python:3.11" } })),
      imageId(spec({ steps: [] })),
      imageId(spec({ steps: [{ kind: "npm", packages: ["express"] }] })),
      imageId(spec({ steps: [{ kind: "pip", packages: ["express"] }] })),
    ]);
    assert.equal(ids.size, 6);
  });

  it("treats docker.io shorthands as the same base", () => {
    const a = imageId(spec({ base: { kind: "registry", ref: "python:3.11" } }));
    assert.equal(imageId(spec({ base: { kind: "registry", ref: "docker.io/library/python:3.11" } })), a);
    assert.equal(imageId(spec({ base: { kind: "registry", ref: "registry-1.docker.io/library/python:3.11" } })), a);
    assert.notEqual(imageId(spec({ base: { kind: "registry", ref: "python:3.12" } })), a);
  });

  it("is salted with the format version", () => {
    assert.match(IMAGE_FORMAT_VERSION, /\/\d+$/);
  });

  it("refuses invalid specs with the path of the problem", () => {
    const bad: [unknown, RegExp][] = [
      [{ ...spec(), extra: 1 }, /image/],
      [spec({ steps: [{ kind: "apt", packages: [] }] }), /image\/steps\/0\/packages: Expected array length/],
      [spec({ steps: [{ kind: "apt", packages: ["--allow-unauthenticated"] }] }), /steps\/0\/packages\/0: "--allow-unauthenticated" is not a valid apt package/],
      [spec({ steps: [{ kind: "pip", packages: ["--index-url=http://evil"] }] }), /not a valid pip package/],
      [spec({ steps: [{ kind: "npm", packages: ["Express"] }] }), /not a valid npm package/],
      [spec({ steps: [{ kind: "shell", command: "   " }] }), /must not be blank/],
      [spec({ env: { "1BAD": "x" } }), /env\/1BAD: names must match/],
      [spec({ base: { kind: "registry", ref: "Python:3.11" } }), /base\/ref: repository "library\/Python" must be lowercase/],
      [{ base: { kind: "default" }, steps: [{ kind: "conda", packages: ["x"] }], env: {} }, /steps\/0\/kind: must be one of "shell", "exec", "env", "copy", "apt", "pip", "npm"/],
      [{ base: { kind: "registry" }, steps: [], env: {} }, /base\/ref/],
    ];
    for (const [value, message] of bad) assert.throws(() => imageId(value), (err: unknown) => err instanceof ImageSpecError && message.test(err.message), String(message));
  });

  it("accepts the package forms users write", () => {
    const ok = normalizeImageSpec(spec({ steps: [
      { kind: "apt", packages: ["python3-venv", "libssl3:amd64", "curl=7.88.1-10+deb12u5", "g++"] },
      { kind: "pip", packages: ["torch", "torch==2.3.0", "requests[socks,security]>=2.31,<3", "pkg @ https://example.org/p.whl", "git+https://github.com/a/b.git", "numpy; python_version>='3.9'"] },
      { kind: "npm", packages: ["express", "@types/node@^20", "lodash@4.17.21"] },
    ] }));
    assert.equal(ok.steps.length, 3);
  });
});

describe("parseImageRef", () => {
  const cases: [string, string][] = [
    ["python:3.11", "registry-1.docker.io/library/python:3.11"],
    ["python", "registry-1.docker.io/library/python:latest"],
    ["user/app:v1", "registry-1.docker.io/user/app:v1"],
    ["docker.io/python", "registry-1.docker.io/library/python:latest"],
    ["ghcr.io/org/sub/app:1.0-rc_1", "ghcr.io/org/sub/app:1.0-rc_1"],
    ["127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"],
    ["localhost/app:x", "localhost/app:x"],
    ["[::1]:5000/a/b:c", "[::1]:5000/a/b:c"],
    [`app@sha256:${"a".repeat(64)}`, `registry-1.docker.io/library/app@sha256:${"a".repeat(64)}`],
    [`reg.io:443/app:v2@sha256:${"b".repeat(64)}`, `reg.io:443/app:v2@sha256:${"b".repeat(64)}`],
  ];
  for (const [input, expected] of cases) it(`${input} → ${expected}`, () => assert.equal(formatImageRef(parseImageRef(input)), expected));

  it("splits host, repository, tag and digest", () => {
    assert.deepEqual(parseImageRef("127.0.0.1:5000/team/app:v1"), { registry: "127.0.0.1:5000", repository: "team/app", tag: "v1" });
    assert.deepEqual(parseImageRef(`a@sha256:${"c".repeat(64)}`), { registry: "registry-1.docker.io", repository: "library/a", digest: `sha256:${"c".repeat(64)}` });
  });

  it("refuses malformed refs with a reason", () => {
    const bad: [string, RegExp][] = [
      ["", /1 to 1024/],
      ["App", /must be lowercase/],
      ["app:", /tag ""/],
      ["app:bad/tag", /registry host "app:bad"/],
      ["app@sha256:123", /64 lowercase hex/],
      [`app@md5:${"a".repeat(32)}`, /sha256/],
      ["host.io:99999/app", /port 99999/],
      ["a b", /whitespace/],
      ["reg.io/", /repository name is missing|repository component/],
      ["reg.io/a//b", /repository component ""/],
      ["-x/app", /repository component "-x"/],
    ];
    for (const [ref, reason] of bad) assert.throws(() => parseImageRef(ref), (err: unknown) => err instanceof ImageRefError && reason.test(err.message), `${ref}: ${String(reason)}`);
  });
});
