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
