import assert from "node:assert/strict";
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
