// The subject: the real gateway on a real data dir (SQLite file, WAL), started as `beta9 gateway` does.
import { startGateway } from "@beta9/gateway";

const gateway = await startGateway({ dataDir: process.argv[2], port: 0, logLevel: "warn" });
process.stdout.write(`${JSON.stringify({ url: gateway.url, adminKey: gateway.bootstrap?.token.key })}\n`);
process.on("SIGTERM", () => void gateway.close().then(() => process.exit(0)));
