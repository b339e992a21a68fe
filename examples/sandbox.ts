// The seed's sandbox example, in TypeScript:
//   BETA9_GATEWAY=http://127.0.0.1:1994 BETA9_TOKEN=… node --import tsx examples/sandbox.ts
import { Image, Sandbox } from "beta9";

const sandbox = await new Sandbox({ image: new Image() }).create();
const response = await sandbox.process.runCode("print('I am running remotely')");
console.log(response.result);
await sandbox.terminate();
