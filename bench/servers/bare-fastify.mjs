// The floor: a bare fastify route returning the same JSON body, no auth, no store, no hooks.
import Fastify from "fastify";
import { readFileSync } from "node:fs";

const body = JSON.parse(readFileSync(process.argv[2], "utf8"));
const app = Fastify({ logger: false });
app.get("/api/v1/deployment", async () => body);
await app.listen({ host: "127.0.0.1", port: 0 });
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${app.server.address().port}` })}\n`);
process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));
