// Put a task on the deployed queue from your own app and wait for its result.
//   node --import tsx examples/put-task.ts
// The client comes from BETA9_GATEWAY / BETA9_TOKEN, else the CLI's current context (what `beta9 up` saved).
import { Client } from "beta9";

const client = new Client();
// A handle: status(), result({ wait }), cancel(); it prints as the task id.
const task = await client.putTask("ts-image-processor", { imageUrl: "https://example.com/image.jpg" });
console.log(`queued ${task}`);
console.log((await task.status()).status);
console.log(await task.result()); // waits; throws TASK_FAILED if it ended ERROR, TIMEOUT, CANCELLED or EXPIRED
await client.close();
