import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { schema } from "./index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

const Input = schema.object({
  text: schema.string(),
  n: schema.number().optional(),
  tags: schema.array(schema.string()),
  ok: schema.boolean(),
});

describe("schema", () => {
  it("accepts fitting values and ignores unknown fields", () => {
    assert.equal(Input.validate({ text: "hi", tags: [], ok: true }), undefined);
    assert.equal(Input.validate({ text: "hi", n: 3, tags: ["a"], ok: false, extra: 1 }), undefined);
    assert.ok(Input.is({ text: "", tags: [], ok: true }));
  });

  it("names the path and the received value of the first problem", () => {
    assert.equal(Input.validate({ text: "hi", n: "3", tags: [], ok: true }), 'input.n: expected a number, got "3"');
    assert.equal(Input.validate({ n: 3, tags: [], ok: true }), "input.text: required (expected a string)");
    assert.equal(Input.validate({ text: "hi", tags: ["a", 5], ok: true }), "input.tags[1]: expected a string, got 5");
    assert.equal(Input.validate({ text: "hi", tags: {}, ok: true }), "input.tags: expected an array of a string, got an object");
    assert.equal(Input.validate({ text: "hi", tags: [], ok: "yes" }), 'input.ok: expected a boolean, got "yes"');
    assert.equal(Input.validate([1]), "input: expected an object, got an array");
    assert.equal(Input.validate(null), "input: expected an object, got null");
    assert.equal(Input.validate(undefined), "input: expected an object, got nothing");
    assert.equal(schema.number().validate("x".repeat(50), "value"), `value: expected a number, got "${"x".repeat(40)}"…`);
  });

  it("checks nested objects, integers, odd keys and JSON values", () => {
    const s = schema.object({ box: schema.object({ "max-size": schema.integer() }), meta: schema.json() });
    assert.equal(s.validate({ box: { "max-size": 1.5 }, meta: {} }), 'input.box["max-size"]: expected an integer, got 1.5');
    assert.equal(s.validate({ box: { "max-size": 2 } }), "input.meta: required (expected a JSON value)");
    assert.equal(s.validate({ box: { "max-size": 2 }, meta: null }), undefined);
    assert.equal(schema.number().validate(Number.NaN), "input: expected a number, got NaN");
    assert.equal(schema.number().optional().validate(undefined), undefined);
  });

  it("infers static types (checked by tsc)", () => {
    type In = schema.Infer<typeof Input>;
    const same: Equal<In, { text: string; n?: number | undefined; tags: string[]; ok: boolean }> = true;
    assert.ok(same);
    const value: unknown = { text: "hi", tags: [], ok: true };
    if (Input.is(value)) assert.equal(value.text.toUpperCase(), "HI");
    // @ts-expect-error text is required
    const missing: In = { tags: [], ok: true };
    assert.ok(missing);
  });
});

it("the gateway's check of toJSONSchema() words every problem as validate() does", async () => {
  const { checkInput, exampleInput } = await import("@beta9/protocol");
  const shapes = [
    schema.object({ text: schema.string(), n: schema.number().optional(), tags: schema.array(schema.string()), "odd key": schema.integer().optional() }),
    schema.object({ nested: schema.object({ ok: schema.boolean(), any: schema.json() }), list: schema.array(schema.array(schema.integer())).optional() }),
    schema.array(schema.number()),
    schema.string(),
  ];
  const values: unknown[] = [
    null, 3, "3", [], {}, { text: "a", tags: [] }, { text: 1, tags: [] }, { text: "a", tags: ["x", 2] }, { text: "a", tags: [], n: "1" },
    { text: "a", tags: [], "odd key": 1.5 }, { text: "a", tags: [], extra: { deep: true } }, { nested: { ok: true } }, { nested: { ok: true, any: null } },
    { nested: { ok: "yes", any: 1 } }, { nested: { ok: false, any: [] }, list: [[1], [2, 2.5]] }, [1, 2, "x"], [1.5, 2], "a".repeat(100),
  ];
  for (const s of shapes) {
    const json = s.toJSONSchema();
    for (const v of values) assert.equal(checkInput(json, v), s.validate(v), `${JSON.stringify(json)} against ${JSON.stringify(v)}`);
    assert.equal(s.validate(exampleInput(json)), undefined, `the printed example fits ${JSON.stringify(json)}`);
  }
});
