/**
 * A workload's input schema on the wire: the small JSON Schema subset both SDKs emit (the TS
 * `schema.object(…)` builder and Python's `schema.Schema` classes), stored in the stub config so
 * the gateway refuses a bad input with 422 before a task exists or a container wakes. The same
 * checker words the problem the way the TypeScript SDK does ("input.n: expected a number, got
 * \"3\""), so a user sees one message wherever the input was checked.
 */
import { Type } from "@sinclair/typebox";

const MAX_DEPTH = 8;
const MAX_PROPERTIES = 256;
const TYPES = ["string", "number", "integer", "boolean", "array", "object"] as const;

export interface InputSchema {
  type?: (typeof TYPES)[number];
  properties?: Record<string, InputSchema>;
  required?: string[];
  additionalProperties?: boolean;
  items?: InputSchema;
  description?: string;
}

/**
 * The top level as the request schema sees it; nested levels are checked by
 * `inputSchemaProblem` (a recursive TypeBox schema would need an `$id` that fastify's compiler
 * and the OpenAPI document both trip over).
 */
export const InputSchemaSchema = Type.Object(
  {
    type: Type.Optional(Type.Union(TYPES.map((t) => Type.Literal(t)))),
    properties: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    required: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: MAX_PROPERTIES })),
    additionalProperties: Type.Optional(Type.Boolean()),
    items: Type.Optional(Type.Unknown()),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false, description: "the workload's input, as a JSON Schema subset (what the SDKs emit)" },
);

const KEYS = new Set(["type", "properties", "required", "additionalProperties", "items", "description"]);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** What is wrong with an untrusted schema at `at` (and below), or undefined when it is one we check. */
export function inputSchemaProblem(schema: unknown, at = "inputs", depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return `${at}: nested deeper than ${MAX_DEPTH} levels`;
  if (!isRecord(schema)) return `${at}: expected a schema object`;
  const extra = Object.keys(schema).find((k) => !KEYS.has(k));
  if (extra !== undefined) return `${at}: unknown keyword ${JSON.stringify(extra)}; expected ${[...KEYS].join(", ")}`;
  if (schema.type !== undefined && !(TYPES as readonly unknown[]).includes(schema.type)) return `${at}.type: expected one of ${TYPES.join(", ")}`;
  if (schema.additionalProperties !== undefined && typeof schema.additionalProperties !== "boolean") return `${at}.additionalProperties: expected a boolean`;
  if (schema.description !== undefined && (typeof schema.description !== "string" || schema.description.length > 1024)) return `${at}.description: expected a string of at most 1024 characters`;
  const properties = schema.properties;
  if (properties !== undefined) {
    if (!isRecord(properties)) return `${at}.properties: expected an object`;
    const names = Object.keys(properties);
    if (names.length > MAX_PROPERTIES) return `${at}.properties: at most ${MAX_PROPERTIES} fields`;
    for (const name of names) {
      if (name.length === 0 || name.length > 256) return `${at}.properties: field names are 1 to 256 characters`;
      const problem = inputSchemaProblem(properties[name], `${at}.properties.${name}`, depth + 1);
      if (problem) return problem;
    }
  }
  if (schema.required !== undefined) {
    if (!Array.isArray(schema.required) || schema.required.length > MAX_PROPERTIES) return `${at}.required: expected at most ${MAX_PROPERTIES} field names`;
    for (const name of schema.required) {
      if (typeof name !== "string" || !properties || !Object.prototype.hasOwnProperty.call(properties, name)) return `${at}.required: ${JSON.stringify(name)} is not in properties`;
    }
  }
  if (schema.items !== undefined) return inputSchemaProblem(schema.items, `${at}.items`, depth + 1);
  return undefined;
}

/**
 * Describes a received value for messages: strings quoted (and cut), numbers as they are, else
 * the kind of value.
 *
 * @example
 * describeValue("3"); // '"3"'
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "string") return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}…` : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** A field's place in messages: `input.name`, or `input["odd key"]`. */
export const fieldPath = (path: string, key: string): string =>
  /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;

/** What a schema expects, as the TS SDK words it: "a string", "an array of a number"… */
export function expectedOf(schema: InputSchema): string {
  switch (schema.type) {
    case "string": return "a string";
    case "number": return "a number";
    case "integer": return "an integer";
    case "boolean": return "a boolean";
    case "array": return schema.items ? `an array of ${expectedOf(schema.items)}` : "an array";
    case "object": return "an object";
    default: return "a JSON value";
  }
}

const fits: Record<NonNullable<InputSchema["type"]>, (v: unknown) => boolean> = {
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number" && Number.isFinite(v),
  integer: (v) => typeof v === "number" && Number.isInteger(v),
  boolean: (v) => typeof v === "boolean",
  array: (v) => Array.isArray(v),
  object: (v) => typeof v === "object" && v !== null && !Array.isArray(v),
};

/** The first problem of `value` against `schema` as "<path>: expected …, got …", or undefined. */
export function checkInput(schema: InputSchema, value: unknown, path = "input"): string | undefined {
  if (schema.type === undefined) return value === undefined ? `${path}: required (expected a JSON value)` : undefined;
  if (!fits[schema.type](value)) return `${path}: expected ${expectedOf(schema)}, got ${describeValue(value)}`;
  if (schema.type === "array" && schema.items) {
    const items = value as unknown[];
    for (let i = 0; i < items.length; i++) {
      const problem = checkInput(schema.items, items[i], `${path}[${i}]`);
      if (problem !== undefined) return problem;
    }
  }
  if (schema.type === "object" && schema.properties) {
    const record = value as Record<string, unknown>;
    const required = new Set(schema.required ?? []);
    for (const [key, field] of Object.entries(schema.properties)) {
      const at = fieldPath(path, key);
      const present = Object.prototype.hasOwnProperty.call(record, key) && record[key] !== undefined;
      if (!present) {
        if (required.has(key)) return `${at}: required (expected ${expectedOf(field)})`;
        continue;
      }
      const problem = checkInput(field, record[key], at);
      if (problem !== undefined) return problem;
    }
    if (schema.additionalProperties === false) {
      const unknown = Object.keys(record).filter((k) => !Object.prototype.hasOwnProperty.call(schema.properties, k)).sort();
      if (unknown.length > 0) return `${fieldPath(path, unknown[0]!)}: unknown field; expected one of ${Object.keys(schema.properties).sort().join(", ") || "(none)"}`;
    }
  }
  return undefined;
}

/**
 * An input that fits the schema, for commands we print (`curl … -d '<this>'`): every field
 * filled, strings as "text", numbers 1, booleans true, arrays with one item.
 */
export function exampleInput(schema: InputSchema, depth = 0): unknown {
  if (depth > MAX_DEPTH) return null;
  switch (schema.type) {
    case "string": return "text";
    case "number":
    case "integer": return 1;
    case "boolean": return true;
    case "array": return schema.items ? [exampleInput(schema.items, depth + 1)] : [];
    case "object": return Object.fromEntries(Object.entries(schema.properties ?? {}).map(([k, v]) => [k, exampleInput(v, depth + 1)]));
    default: return null;
  }
}
