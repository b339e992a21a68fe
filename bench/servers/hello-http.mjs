// The "container" behind a tunnel: a plain HTTP server answering a small JSON body.
import { createServer } from "node:http";

const body = JSON.stringify({ ok: true, message: "hello from the container" });
const server = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(body));
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on("SIGTERM", () => process.exit(0));
