// The seed's background task queue: resilient tasks with retries, in TypeScript.
//   ./beta9 deploy examples/task-queue.ts:processImage
//   node --import tsx examples/put-task.ts          (or POST /taskqueue/ts-image-processor)
import { Image, schema, TaskPolicy, taskQueue } from "beta9";

export const processImage = taskQueue(
  {
    name: "ts-image-processor",
    image: Image.scratch(), // plain TypeScript needs nothing but the runner's own node
    cpu: 0.5,  // the seed asks for 1; half leaves room for the README's other examples on a 2-CPU machine
    memory: 1024,
    inputs: schema.object({ imageUrl: schema.string() }),
    taskPolicy: new TaskPolicy({ maxRetries: 3 }),
  },
  async (input) => {
    console.log(`Processing image: ${input.imageUrl}`);
    return { imageUrl: input.imageUrl };
  },
);
