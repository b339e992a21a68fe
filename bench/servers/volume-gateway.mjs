// The volume bench's subject: the real gateway on a real data dir, as servers/gateway.mjs, also
// giving a worker token and the workspace id (to mount volumes as a worker does).
import { startGateway } from "@beta9/gateway";

const gateway = await startGateway({ dataDir: process.argv[2], port: 0, logLevel: "warn" });
const info = { url: gateway.url, adminKey: gateway.bootstrap?.token.key, workerToken: await gateway.localWorkerToken(), workspaceId: gateway.bootstrap?.workspace.id };
process.stdout.write(`${JSON.stringify(info)}\n`);
process.on("SIGTERM", () => void gateway.close().then(() => process.exit(0)));
