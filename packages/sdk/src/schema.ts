/**
 * `schema`: a tiny validator builder for workload inputs, with static type inference. A schema
 * checks a JSON value and names the path of the first problem; `schema.Infer<typeof s>` is the
 * TypeScript type of the values it accepts. Unknown object fields are allowed (and left alone).
 *
 * @example
 * import { schema } from "beta9";
 * const Input = schema.object({ text: schema.string(), n: schema.number().optional() });
 * type Input = schema.Infer<typeof Input>;          // { text: string; n?: number | undefined }
 * Input.validate({ text: "hi", n: "3" });           // 'input.n: expected a number, got "3"'
 */
import { describeValue, fieldPath, type InputSchema } from "@beta9/protocol";

/** The base of every schema; `T` is the type of the values it accepts. */
export abstract class Schema<T> {
  /** Phantom field carrying `T` for inference; never set. */
  declare readonly __type: T;
  /** What the schema expects, for messages: "a string", "an array of a number", … */
  abstract readonly expected: string;
  /** True when `undefined` (a missing field) is accepted. */
  readonly isOptional: boolean = false;

  /** The problem at `path` (and below), or undefined when `value` fits. */
  protected abstract check(value: unknown, path: string): string | undefined;

  /**
   * The schema as JSON Schema (the subset the gateway checks): sent with the workload's config,
   * so the gateway refuses a bad input with 422 before a task exists or a container wakes.
   *
   * @example
   * schema.object({ n: schema.number() }).toJSONSchema(); // { type: "object", properties: { n: { type: "number" } }, required: ["n"] }
   */
  abstract toJSONSchema(): InputSchema;

  /**
   * Returns the first problem as `"<path>: expected …, got …"`, or undefined when `value` fits.
   *
   * @example
   * schema.number().validate("3"); // 'input: expected a number, got "3"'
   */
  validate(value: unknown, path = "input"): string | undefined {
    return this.check(value, path);
  }

  /**
   * A type guard: true when `value` fits.
   *
   * @example
   * if (schema.string().is(x)) x.toUpperCase();
   */
  is(value: unknown): value is T {
    return this.validate(value) === undefined;
  }

  /**
   * The same schema, also accepting undefined; in an object, the field becomes optional.
   *
   * @example
   * schema.object({ n: schema.number().optional() }); // { n?: number }
   */
  optional(): Schema<T | undefined> {
    return new OptionalSchema(this);
  }
}

/** The TypeScript type a schema accepts. */
export type Infer<S extends Schema<unknown>> = S["__type"];

/** Any schema; the constraint for generic parameters. */
export type AnySchema = Schema<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** How a received value is named in messages (shared with the gateway's check of the same schema). */
export const describe = describeValue;

function mismatch(path: string, expected: string, value: unknown): string {
  return `${path}: expected ${expected}, got ${describe(value)}`;
}

class OptionalSchema<T> extends Schema<T | undefined> {
  override readonly isOptional = true;
  constructor(private readonly inner: Schema<T>) {
    super();
  }
  get expected(): string {
    return this.inner.expected;
  }
  protected check(value: unknown, path: string): string | undefined {
    return value === undefined ? undefined : this.inner.validate(value, path);
  }
  toJSONSchema(): InputSchema {
    return this.inner.toJSONSchema();
  }
}

class PrimitiveSchema<T> extends Schema<T> {
  constructor(readonly expected: string, private readonly test: (value: unknown) => boolean, private readonly json: InputSchema) {
    super();
  }
  toJSONSchema(): InputSchema {
    return { ...this.json };
  }
  protected check(value: unknown, path: string): string | undefined {
    return this.test(value) ? undefined : mismatch(path, this.expected, value);
  }
}

class ArraySchema<T> extends Schema<T[]> {
  readonly expected: string;
  constructor(private readonly items: Schema<T>) {
    super();
    this.expected = `an array of ${items.expected}`;
  }
  toJSONSchema(): InputSchema {
    return { type: "array", items: this.items.toJSONSchema() };
  }
  protected check(value: unknown, path: string): string | undefined {
    if (!Array.isArray(value)) return mismatch(path, this.expected, value);
    for (let i = 0; i < value.length; i++) {
      const problem = this.items.validate(value[i], `${path}[${i}]`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
}

/** The shape of an object schema: field name → schema. */
export type Shape = Record<string, AnySchema>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S extends Shape> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;

/** The type of an object schema's values: optional() fields become `?:` properties. */
export type InferShape<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

const fieldKey = fieldPath;

class ObjectSchema<S extends Shape> extends Schema<InferShape<S>> {
  readonly expected = "an object";
  constructor(readonly shape: S) {
    super();
  }
  toJSONSchema(): InputSchema {
    const entries = Object.entries(this.shape);
    return {
      type: "object",
      properties: Object.fromEntries(entries.map(([k, v]) => [k, v.toJSONSchema()])),
      required: entries.filter(([, v]) => !v.isOptional).map(([k]) => k),
    };
  }
  protected check(value: unknown, path: string): string | undefined {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return mismatch(path, this.expected, value);
    const record = value as Record<string, unknown>;
    for (const [key, field] of Object.entries(this.shape)) {
      const fieldPath = fieldKey(path, key);
      const present = Object.prototype.hasOwnProperty.call(record, key) && record[key] !== undefined;
      if (!present && !field.isOptional) return `${fieldPath}: required (expected ${field.expected})`;
      const problem = field.validate(present ? record[key] : undefined, fieldPath);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
}

/**
 * A string.
 *
 * @example
 * schema.string().validate(3); // "input: expected a string, got 3"
 */
export function string(): Schema<string> {
  return new PrimitiveSchema<string>("a string", (v) => typeof v === "string", { type: "string" });
}

/**
 * A finite number.
 *
 * @example
 * schema.number().validate(1.5); // undefined
 */
export function number(): Schema<number> {
  return new PrimitiveSchema<number>("a number", (v) => typeof v === "number" && Number.isFinite(v), { type: "number" });
}

/**
 * A whole number.
 *
 * @example
 * schema.integer().validate(1.5); // "input: expected an integer, got 1.5"
 */
export function integer(): Schema<number> {
  return new PrimitiveSchema<number>("an integer", (v) => typeof v === "number" && Number.isInteger(v), { type: "integer" });
}

/**
 * true or false.
 *
 * @example
 * schema.boolean().validate("yes"); // 'input: expected a boolean, got "yes"'
 */
export function boolean(): Schema<boolean> {
  return new PrimitiveSchema<boolean>("a boolean", (v) => typeof v === "boolean", { type: "boolean" });
}

/**
 * Any JSON value, unchecked (beta9's `schema.JSON`).
 *
 * @example
 * schema.object({ extra: schema.json() });
 */
export function json(): Schema<unknown> {
  return new PrimitiveSchema<unknown>("a JSON value", (v) => v !== undefined, {});
}

/**
 * An array whose every item fits `items`.
 *
 * @example
 * schema.array(schema.string()).validate(["a", 1]); // "input[1]: expected a string, got 1"
 */
export function array<T>(items: Schema<T>): Schema<T[]> {
  return new ArraySchema(items);
}

/**
 * An object with the given fields (others are allowed); fields are required unless `.optional()`.
 *
 * @example
 * const Input = schema.object({ text: schema.string(), tags: schema.array(schema.string()) });
 * Input.validate({ tags: [] }); // "input.text: required (expected a string)"
 */
export function object<S extends Shape>(shape: S): Schema<InferShape<S>> & { readonly shape: S } {
  return new ObjectSchema(shape);
}
