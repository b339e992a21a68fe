import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Image } from "./image.js";

test("Image is immutable, its steps keep their order, and equal specs have equal ids", () => {
  const base = new Image();
  const withNumpy = base.aptInstall(["python3-pip"]).pipInstall(["numpy"]).env({ A: "1" });
  assert.deepEqual(base.toSpec().steps, [], "the base is unchanged");
  assert.deepEqual(withNumpy.toSpec().steps.map((s) => s.kind), ["apt", "pip"]);
  assert.equal(withNumpy.id, new Image().aptInstall(["python3-pip"]).pipInstall(["numpy"]).env({ A: "1" }).id);
  assert.notEqual(withNumpy.id, new Image().pipInstall(["numpy"]).aptInstall(["python3-pip"]).env({ A: "1" }).id);
  assert.notEqual(base.id, Image.fromRegistry("python:3.11").id);
  assert.deepEqual(Image.fromRegistry("python:3.11").run("a", "b").toSpec().steps, [{ kind: "shell", command: "a" }, { kind: "shell", command: "b" }]);
});

test("bad packages and refs are refused when the spec is made, not at build time", () => {
  assert.throws(() => new Image().aptInstall(["--allow-unauthenticated"]).toSpec());
  assert.throws(() => Image.fromRegistry("Not A Ref!").toSpec());
});

test("private registries take secret names; such images have a per-workspace id the gateway answers", () => {
  const image = Image.fromRegistry("ghcr.io/acme/app:1", { credentials: { username: "GHCR_USER", password: "GHCR_TOKEN" } });
  assert.deepEqual(image.toSpec().base, { kind: "registry", ref: "ghcr.io/acme/app:1", credentials: { username: "GHCR_USER", password: "GHCR_TOKEN" } });
  assert.throws(() => image.id, /per-workspace id/);
  assert.throws(() => Image.fromRegistry("x:1", { credentials: { secret: "not-a-name" } }), /credentials/);
});

test("fromDockerfile and local files are read when the spec is made (never in a container loading the module); packed by content", () => {
  const dir = mkdtempSync(join(tmpdir(), "beta9-image-test-"));
  try {
    const early = Image.fromDockerfile(join(dir, "Dockerfile")).addLocalFile(join(dir, "main.py"), "/srv/main.py");
    assert.throws(() => early.toSpec(), /cannot read the Dockerfile/, "nothing is read until the spec is made");
    writeFileSync(join(dir, "Dockerfile"), "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nRUN python3 -V\n");
    writeFileSync(join(dir, ".dockerignore"), "*.log\n");
    writeFileSync(join(dir, "main.py"), "print(1)\n");
    writeFileSync(join(dir, "debug.log"), "x");
    const spec = Image.fromDockerfile(join(dir, "Dockerfile")).toSpec();
    const copy = spec.steps[0]!;
    assert.deepEqual(spec.steps.map((s) => s.kind), ["copy", "shell"]);
    assert.ok(copy.kind === "copy" && copy.dest === "/app/" && copy.src[0] === ".");
    const again = Image.fromDockerfile(join(dir, "Dockerfile")).toSpec().steps[0]!;
    assert.ok(again.kind === "copy" && again.object === copy.object, "same files, same object");
    writeFileSync(join(dir, "debug.log"), "changed, but ignored");
    assert.equal(Image.fromDockerfile(join(dir, "Dockerfile")).id, Image.fromDockerfile(join(dir, "Dockerfile")).id);
    writeFileSync(join(dir, "main.py"), "print(2)\n");
    assert.notEqual(Image.fromDockerfile(join(dir, "Dockerfile")).id, new Image(spec).id, "a changed file is a new image");

    writeFileSync(join(dir, "Dockerfile"), "FROM scratch\n# health\nHEALTHCHECK CMD true\n");
    assert.throws(() => Image.fromDockerfile(join(dir, "Dockerfile")).toSpec(), /Dockerfile line 3: HEALTHCHECK: not supported/);

    const withFiles = new Image().addLocalFile(join(dir, "main.py"), "/srv/main.py").addLocalDir(dir, "/srv/all", { ignore: ["*.log", "Dockerfile"] });
    const [file, tree] = withFiles.toSpec().steps;
    assert.deepEqual(file && { ...file, object: "" }, { kind: "copy", object: "", src: ["main.py"], dest: "/srv/main.py" });
    assert.deepEqual(tree && { ...tree, object: "" }, { kind: "copy", object: "", src: ["."], dest: "/srv/all/" });
    assert.throws(() => new Image().addLocalFile(join(dir, "missing"), "/x").toSpec(), /no such file/);
    assert.throws(() => new Image().addLocalFile(join(dir, "main.py"), "relative"), /must be absolute/);
    assert.throws(() => new Image().aptInstall(["-o"]), /packages\/0/, "other steps are still checked where they are written");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
