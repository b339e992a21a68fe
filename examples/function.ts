// A function: run it once with `./beta9 run examples/function.ts:square --input '{"n": 12}'`,
// or deploy it (`./beta9 deploy examples/function.ts:square`) and POST /function/square.
import { fn, Image, schema } from "beta9";

export const square = fn(
  { name: "square", image: Image.scratch(), cpu: 0.25, memory: "128Mi", inputs: schema.object({ n: schema.number() }) },
  async (input) => ({ n: input.n, square: input.n * input.n }),
);
