/**
 * A gateway in its own process, for tests that kill it: `node gateway-child.js DATA_DIR`.
 * Prints one JSON line `{ url, adminKey? }` once it is listening.
 */
import { startGateway } from "../server.js";

const dataDir = process.argv[2];
if (!dataDir) {
  process.stderr.write("usage: gateway-child.js DATA_DIR\n");
  process.exit(2);
}
const gateway = await startGateway({ dataDir, port: 0, logLevel: "warn", maxObjectBytes: 64 * 1024 });
process.stdout.write(`${JSON.stringify({ url: gateway.url, adminKey: gateway.bootstrap?.token.key })}\n`);
process.on("SIGTERM", () => void gateway.close().then(() => process.exit(0)));
