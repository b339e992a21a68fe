import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { normalizeStubConfig, StubConfigInputSchema, type InvocationContext } from "@beta9/protocol";
import { endpoint, fn, Image, QueueDepthAutoscaler, schedule, schema, TaskPolicy, taskQueue, Volume, type Workload } from "./index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const ctx = (onStartValue: unknown = undefined): InvocationContext => ({
  taskId: "t1", containerId: "c1", retries: 0, signal: new AbortController().signal, onStartValue,
});

describe("workload wrappers", () => {
  it("endpoint returns a frozen descriptor with the marker, kind, name, empty config and a default image", () => {
    const handler = (input: unknown) => ({ input });
    const w = endpoint({ name: "hello" }, handler);
    assert.equal(w.__beta9Workload, true);
    assert.equal(w.kind, "endpoint");
    assert.equal(w.name, "hello");
    assert.deepEqual(w.config, {});
    assert.ok(w.image instanceof Image);
    assert.equal(w.image.id, new Image().id);
    assert.equal(w.handler, handler);
    assert.equal(w.onStart, undefined);
    assert.equal(w.validateInput, undefined);
    assert.ok(Object.isFrozen(w) && Object.isFrozen(w.config));
  });

  it("maps every option to the gateway's config input, units as written, without functions or the image", () => {
    const image = new Image().pipInstall(["torch"]);
    const onStart = () => "model";
    const w = endpoint(
      {
        name: "predict", image, cpu: 2, memory: "16Gi", gpu: ["A10G", "T4"], gpuCount: 1, workers: 2, concurrentRequests: 4,
        keepWarmSeconds: 60, maxPendingTasks: 50, callbackUrl: "https://example.com/cb", secrets: ["HF_TOKEN"],
        env: { MODEL: "small" }, authorized: false, pool: "gpus", onStart,
        taskPolicy: new TaskPolicy({ maxRetries: 2, timeout: 30 }),
        autoscaler: new QueueDepthAutoscaler({ maxContainers: 5, tasksPerContainer: 30 }),
      },
      (_input, c) => c.onStartValue,
    );
    assert.deepEqual(w.config, {
      cpu: 2, memory: "16Gi", gpu: ["A10G", "T4"], gpuCount: 1, workers: 2, concurrentRequests: 4, keepWarmSeconds: 60,
      maxPendingTasks: 50, callbackUrl: "https://example.com/cb", secrets: ["HF_TOKEN"], env: { MODEL: "small" },
      authorized: false, pool: "gpus", taskPolicy: { maxRetries: 2, timeout: 30 },
      autoscaler: { type: "queue_depth", maxContainers: 5, tasksPerContainer: 30 },
    });
    assert.equal(w.image, image);
    assert.equal(w.onStart, onStart);
    assert.deepEqual(JSON.parse(JSON.stringify(w.config)), w.config);
    for (const key of Object.keys(w.config)) assert.ok(key in StubConfigInputSchema.properties, `${key} is a StubConfigInput field`);
    const stored = normalizeStubConfig("endpoint", w.config);
    assert.equal(stored.cpuMillicores, 2000);
    assert.equal(stored.memoryMiB, 16384);
    assert.deepEqual(stored.taskPolicy, { maxRetries: 2, timeout: 30, ttl: 86_400 });
  });

  it("accepts plain objects for taskPolicy and autoscaler, and copies arrays so later edits do not leak in", () => {
    const secrets = ["A"];
    const w = taskQueue({ name: "q", secrets, taskPolicy: { ttl: 600 }, autoscaler: { minContainers: 1 } }, () => 1);
    secrets.push("B");
    assert.deepEqual(w.config, { secrets: ["A"], taskPolicy: { ttl: 600 }, autoscaler: { type: "queue_depth", minContainers: 1 } });
  });

  it("volumes: Volume objects become { name, mountPath } in the config; anything else is a TypeError", () => {
    const w = fn({ name: "f", volumes: [new Volume({ name: "models", mountPath: "/mnt/models" })] }, () => 1);
    assert.deepEqual(w.config, { volumes: [{ name: "models", mountPath: "/mnt/models" }] });
    assert.deepEqual(normalizeStubConfig("function", w.config).volumes, [{ name: "models", mountPath: "/mnt/models" }]);
    assert.throws(() => fn({ name: "f", volumes: [{ name: "models", mountPath: "/m" }] as unknown as Volume[] }, () => 1), /Volume objects/);
  });

  it("sets the kind per wrapper, and schedule carries `when`", () => {
    assert.equal(taskQueue({ name: "q" }, () => 1).kind, "taskqueue");
    assert.equal(fn({ name: "f" }, () => 1).kind, "function");
    const s = schedule({ name: "nightly", when: "0 3 * * *" }, () => 1);
    assert.equal(s.kind, "schedule");
    assert.deepEqual(s.config, { when: "0 3 * * *" });
    assert.equal(normalizeStubConfig("schedule", s.config).when, "0 3 * * *");
  });

  it("validates the name at call time with a clear error", () => {
    assert.throws(() => endpoint({ name: "" }, () => 1), /endpoint\(\): name is required/);
    assert.throws(() => endpoint({} as { name: string }, () => 1), /endpoint\(\): name is required/);
    assert.throws(() => taskQueue({ name: "Image Processor" }, () => 1), /taskQueue\(\): name "Image Processor" is not valid: use lowercase letters.*did you mean "image-processor"\?/);
    assert.throws(() => fn({ name: "x".repeat(64) }, () => 1), /name "x{64}" is not valid/);
    assert.throws(() => endpoint({ name: "-x" }, () => 1), /did you mean "x"\?/);
    assert.doesNotThrow(() => endpoint({ name: "a.b_c-1" }, () => 1));
  });

  it("rejects unknown options, a missing `when`, a non-function handler and a non-Image image", () => {
    const loose = (o: object) => o as { name: string };
    assert.throws(() => endpoint(loose({ name: "x", keep_warm_seconds: 5 }), () => 1), /endpoint\("x"\): unknown option "keep_warm_seconds"; did you mean keepWarmSeconds\?/);
    assert.throws(() => endpoint(loose({ name: "x", when: "@daily" }), () => 1), /unknown option "when"/);
    assert.throws(() => schedule(loose({ name: "x" }) as { name: string; when: string }, () => 1), /schedule\("x"\): when is required/);
    assert.throws(() => endpoint({ name: "x" }, "nope" as unknown as () => 1), /the second argument must be the handler function/);
    assert.throws(() => endpoint({ name: "x", image: "python:3.11" as unknown as Image }, () => 1), /image must be an Image/);
    assert.throws(() => new TaskPolicy({ max_retries: 3 } as object), /new TaskPolicy\(\): unknown option "max_retries"; did you mean maxRetries\?/);
  });

  it("with inputs, sets validateInput from the schema", async () => {
    const w = endpoint({ name: "double", inputs: schema.object({ n: schema.number() }) }, async (input) => input.n * 2);
    assert.equal(w.validateInput?.({ n: "3" }), 'input.n: expected a number, got "3"');
    assert.equal(w.validateInput?.({ n: 3 }), undefined);
    assert.equal(await w.handler({ n: 3 }, ctx()), 6);
  });

  it("types flow from inputs and onStart into the handler (checked by tsc)", () => {
    const Input = schema.object({ a: schema.number(), tags: schema.array(schema.string()).optional() });
    const w = endpoint({ name: "x", inputs: Input }, async (input) => input.a * 2);
    // @ts-expect-error the schema has no field b
    endpoint({ name: "x", inputs: Input }, async (input) => input.b);
    const typed: Equal<typeof w, Workload<{ a: number; tags?: string[] | undefined }, number, undefined>> = true;
    assert.ok(typed);

    const s = endpoint({ name: "y", onStart: async () => ({ model: "m" }) }, (_input: { q: string }, c) => c.onStartValue.model);
    // @ts-expect-error onStart's value has no field nope
    endpoint({ name: "y", onStart: async () => ({ model: "m" }) }, (_input, c) => c.onStartValue.nope);
    const started: Equal<typeof s, Workload<{ q: string }, string, { model: string }>> = true;
    assert.ok(started);

    // Compile-time only: these would throw at run time.
    const notCalled = () => {
      // @ts-expect-error a schedule needs `when`
      schedule({ name: "z" }, () => 1);
      // @ts-expect-error unknown options fail to compile (and throw at run time for JS callers)
      endpoint({ name: "z", keepWarm: 5 }, () => 1);
    };
    assert.equal(typeof notCalled, "function");
  });
});

describe("deploy() and serve() from code", () => {
  it("deploy() with no gateway configured says how to configure one; inside a container it does nothing", async () => {
    const w = endpoint({ name: "from-code" }, () => 1);
    const saved = { gateway: process.env.BETA9_GATEWAY, handler: process.env.BETA9_HANDLER, config: process.env.BETA9_CONFIG_DIR };
    delete process.env.BETA9_GATEWAY;
    // No saved CLI context either (a machine that ran `beta9 up` has one in ~/.beta9).
    const emptyConfig = mkdtempSync(join(tmpdir(), "beta9-noconfig-"));
    process.env.BETA9_CONFIG_DIR = emptyConfig;
    try {
      await assert.rejects(w.deploy(), /set BETA9_GATEWAY and BETA9_TOKEN/);
      process.env.BETA9_HANDLER = "main.js:x"; // what the runner sets in a container
      assert.deepEqual(await w.deploy(), { name: "from-code", version: 0, url: "" });
    } finally {
      if (saved.gateway !== undefined) process.env.BETA9_GATEWAY = saved.gateway;
      if (saved.config === undefined) delete process.env.BETA9_CONFIG_DIR;
      else process.env.BETA9_CONFIG_DIR = saved.config;
      rmSync(emptyConfig, { recursive: true, force: true });
      if (saved.handler === undefined) delete process.env.BETA9_HANDLER;
      else process.env.BETA9_HANDLER = saved.handler;
    }
  });

  it("put() on anything but a task queue says what to use instead", async () => {
    await assert.rejects(endpoint({ name: "e" }, () => 1).put({}, { client: {} as never }), /put is for task queues made with taskQueue\(\)/);
  });
});
