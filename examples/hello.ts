// The sample app `beta9 up` deploys on its first start. Try it:
//   curl -X POST http://127.0.0.1:1994/endpoint/hello -H "Authorization: Bearer $(./beta9 config token)" \
//        -H "Content-Type: application/json" -d '{"name":"beta9"}'
import { endpoint, Image, schema } from "beta9";

export const hello = endpoint(
  {
    name: "hello",
    // Nothing but the runner's own node: builds in a second, starts in about a hundred ms.
    image: Image.scratch(),
    cpu: 0.25,
    memory: "128Mi",
    keepWarmSeconds: 60,
    inputs: schema.object({ name: schema.string().optional() }),
  },
  async (input) => ({ message: `Hello, ${input.name ?? "world"}!` }),
);
