// Load for the WebSocket bench, in a child process of its own: opens `sockets` WebSockets to `url`
// and on each sends a small text message, waits for its echo, and sends the next, for `seconds`.
// Prints one JSON line: { messages, seconds } (echoes received in the measured time).
import { WebSocket } from "ws";

const { url, headers, sockets, seconds, bytes } = JSON.parse(process.argv[2]);
const payload = "m".repeat(bytes);
const open = await Promise.all(Array.from({ length: sockets }, () => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, { headers, perMessageDeflate: false });
  ws.once("open", () => resolve(ws));
  ws.once("error", reject);
})));
let counting = false;
let messages = 0;
let stopped = false;
for (const ws of open) {
  ws.on("message", () => {
    if (counting) messages += 1;
    if (!stopped) ws.send(payload);
  });
}
// A short warm-up, then the measured window.
for (const ws of open) ws.send(payload);
await new Promise((r) => setTimeout(r, 500));
counting = true;
const start = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, seconds * 1000));
counting = false;
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
stopped = true;
await Promise.all(open.map((ws) => new Promise((resolve) => {
  ws.once("close", resolve);
  ws.close(1000);
})));
process.stdout.write(`${JSON.stringify({ messages, seconds: elapsed })}\n`);
