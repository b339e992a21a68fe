// Put a task on the deployed queue from your own app and wait for its result.
//   BETA9_GATEWAY=http://127.0.0.1:1994 BETA9_TOKEN=... node --import tsx examples/put-task.ts
import { Client } from "beta9";

const client = new Client({ gateway: process.env.BETA9_GATEWAY ?? "http://127.0.0.1:1994", token: process.env.BETA9_TOKEN });
const taskId = await client.putTask("image-processor", { imageUrl: "https://example.com/image.jpg" });
console.log(`queued ${taskId}`);
const task = await client.waitForTask(taskId);
console.log(task.status, task.result ?? task.error);
await client.close();
