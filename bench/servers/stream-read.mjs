// A streaming client in its own process (so it never shares an event loop with an in-process
// gateway): POSTs one body `warmup + rounds` times, one request at a time on a kept-alive
// connection, reading each answer to its end; checks every answer's size and counts its events.
// argv[2]: JSON { url, headers, body, warmup, rounds, bytes (expected per answer), events }.
// Prints one JSON line: { ms: [per measured round] }.
import { Agent, request } from "undici";

const o = JSON.parse(process.argv[2]);
const dispatcher = new Agent({ connections: 1 });
const ms = [];
for (let i = 0; i < o.warmup + o.rounds; i++) {
  const t0 = performance.now();
  const res = await request(o.url, { method: "POST", headers: o.headers, body: o.body, dispatcher });
  let bytes = 0;
  let events = 0;
  for await (const chunk of res.body) {
    bytes += chunk.length;
    // Each event is "data: <token>\n\n" and tokens hold no newline: two newlines per event.
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) events += 1;
  }
  const elapsed = performance.now() - t0;
  if (res.statusCode !== 200 || bytes !== o.bytes || events !== o.events * 2) {
    throw new Error(`${o.url}: ${res.statusCode}, ${bytes} bytes (want ${o.bytes}), ${events / 2} events (want ${o.events})`);
  }
  if (i >= o.warmup) ms.push(elapsed);
}
await dispatcher.close();
process.stdout.write(`${JSON.stringify({ ms })}\n`);
