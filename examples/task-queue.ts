// The seed's background task queue: resilient tasks with retries, in TypeScript.
//   ./beta9 deploy examples/task-queue.ts:processImage
//   node --import tsx examples/put-task.ts          (or POST /taskqueue/image-processor)
import { Image, schema, TaskPolicy, taskQueue } from "beta9";

export const processImage = taskQueue(
  {
    name: "image-processor",
    image: Image.scratch(), // plain TypeScript needs nothing but the runner's own node
    cpu: 1,
    memory: 1024,
    inputs: schema.object({ imageUrl: schema.string() }),
    taskPolicy: new TaskPolicy({ maxRetries: 3 }),
  },
  async (input) => {
    console.log(`Processing image: ${input.imageUrl}`);
    return { imageUrl: input.imageUrl };
  },
);
