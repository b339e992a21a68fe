// The seed's inference endpoint, in TypeScript.
//   ./beta9 deploy examples/inference.ts:classify
//   curl -X POST http://127.0.0.1:1994/endpoint/classifier -H "Authorization: Bearer $(./beta9 config token)" -H "Content-Type: application/json" -d '{}'
import { endpoint, Image, QueueDepthAutoscaler } from "beta9";

export const classify = endpoint(
  {
    name: "classifier",
    image: new Image(), // Debian bookworm + python3; add .pipInstall([...]) for your model's packages
    // gpu: "A10G",     // on a worker with an A10G (the scheduler places it there)
    cpu: 0.5,           // the seed asks for cpu 2 and "16Gi"; sized down to run beside the README's other examples on a laptop
    memory: "1Gi",
    autoscaler: new QueueDepthAutoscaler({ maxContainers: 5, tasksPerContainer: 30 }),
  },
  async () => ({ label: "cat", confidence: 0.97 }),
);
