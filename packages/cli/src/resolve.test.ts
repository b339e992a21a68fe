import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveRef } from "./resolve.js";
import type { CliError } from "./errors.js";

const a = "7bc6a1f0-0000-4000-8000-000000000001";
const b = "7bc6b2f0-0000-4000-8000-000000000002";
const deployments = [
  { id: a, version: 1, names: ["square", "square/v1"] },
  { id: b, version: 2, names: ["square", "square/v2"] },
];
const latest = (named: typeof deployments) => [...named].sort((x, y) => y.version - x.version)[0];

test("a full id is used as is, without listing", async () => {
  assert.equal(await resolveRef("deployment", a, () => assert.fail("listed")), a);
});

test("names pick the latest version, NAME/vN one version, and a unique id start works", async () => {
  const list = async () => deployments;
  assert.equal(await resolveRef("deployment", "square", list, latest), b);
  assert.equal(await resolveRef("deployment", "square/v1", list, latest), a);
  assert.equal(await resolveRef("deployment", "7bc6a", list, latest), a);
});

test("an ambiguous or unknown reference is an error that says what to type", async () => {
  const list = async () => deployments;
  await assert.rejects(resolveRef("deployment", "7bc6", list), (err: CliError) => err.code === "AMBIGUOUS" && /type more of it/.test(err.message));
  await assert.rejects(resolveRef("deployment", "square", list), (err: CliError) => err.code === "AMBIGUOUS");
  await assert.rejects(resolveRef("deployment", "circle", list), (err: CliError) => err.code === "RESOURCE_NOT_FOUND" && err.exitCode === 4);
  await assert.rejects(resolveRef("container", "7bc", list), (err: CliError) => err.code === "RESOURCE_NOT_FOUND", "under 4 characters is never a prefix");
});
