// The seed's sandbox example, in TypeScript:
//   node --import tsx examples/sandbox.ts     (the gateway and token: BETA9_GATEWAY / BETA9_TOKEN, else the CLI's context)
import { Image, Sandbox } from "beta9";

const sandbox = await new Sandbox({ image: new Image() }).create();
const response = await sandbox.process.runCode("print('I am running remotely')");
console.log(response.result);
await sandbox.terminate();
