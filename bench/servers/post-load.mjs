// A load generator in its own process (so it never shares an event loop with an in-process
// gateway): autocannon POSTing one fixed body. autocannon's own latency histogram has 1 ms
// resolution, too coarse for sub-millisecond differences, so every 2xx response's latency is kept
// from its `response` event and the percentiles are computed from those.
// argv[2]: JSON { url, headers, body, connections, duration | amount (exactly that many requests) }.
// Prints one JSON line.
import autocannon from "autocannon";

const o = JSON.parse(process.argv[2]);
const latencies = [];
const instance = autocannon({
  url: o.url, method: "POST", headers: o.headers, body: o.body, connections: o.connections,
  ...(o.amount ? { amount: o.amount } : { duration: o.duration }),
});
instance.on("response", (_client, status, _bytes, ms) => {
  if (status >= 200 && status < 300) latencies.push(ms);
});
const result = await instance;
const sorted = Float64Array.from(latencies).sort();
const pct = (p) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
process.stdout.write(`${JSON.stringify({
  rps: result.requests.average, requests: result.requests.total, p50: pct(50), p99: pct(99),
  non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts,
})}\n`);
