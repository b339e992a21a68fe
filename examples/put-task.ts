// Put a task on the deployed queue from your own app and wait for its result.
//   BETA9_GATEWAY=http://127.0.0.1:1994 BETA9_TOKEN=... node --import tsx examples/put-task.ts
import { Client } from "beta9";

const client = new Client({ gateway: process.env.BETA9_GATEWAY ?? "http://127.0.0.1:1994", token: process.env.BETA9_TOKEN });
// A handle: status(), result({ wait }), cancel(); it prints as the task id.
const task = await client.putTask("image-processor", { imageUrl: "https://example.com/image.jpg" });
console.log(`queued ${task}`);
console.log((await task.status()).status);
console.log(await task.result()); // waits; throws TASK_FAILED if it ended ERROR, TIMEOUT, CANCELLED or EXPIRED
await client.close();
