/**
 * Where the platform's logs go when the CLI runs it (`up`, `gateway`, `worker`): pino's JSON on
 * stderr when it is not a terminal (or with --log-format json), else one readable line per
 * record: `12:04:05 WARN  scaling up  stub=hello containerId=…`.
 */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { palette } from "./output.js";

export type LogFormat = "auto" | "json" | "pretty";

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const OMIT = new Set(["level", "time", "pid", "hostname", "msg", "reqId"]);

function value(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v && typeof v === "object" && "message" in v && typeof (v as { message: unknown }).message === "string") {
    return JSON.stringify((v as { message: string }).message); // an error: its message, not its stack
  }
  return JSON.stringify(v);
}

/** One pino JSON record as a human line (unparseable input passes through unchanged). */
export function prettyLogLine(json: string, colors = palette(process.stderr)): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const level = LEVELS[Number(record.level)] ?? String(record.level);
  const time = new Date(Number(record.time)).toTimeString().slice(0, 8);
  const paint = Number(record.level) >= 50 ? colors.red : Number(record.level) >= 40 ? colors.yellow : colors.dim;
  const fields = Object.entries(record).filter(([k]) => !OMIT.has(k)).map(([k, v]) => `${k}=${value(v)}`).join(" ");
  return `${colors.dim(time)} ${paint(level.padEnd(5))} ${String(record.msg ?? "")}${fields ? `  ${colors.dim(fields)}` : ""}`;
}

export function cliLogger(level: string, format: LogFormat = "auto"): Logger {
  const pretty = format === "pretty" || (format === "auto" && process.stderr.isTTY === true);
  if (!pretty) return pino({ level }, pino.destination({ fd: 2, sync: false }));
  let partial = "";
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (line) process.stderr.write(`${prettyLogLine(line)}\n`);
      done();
    },
  });
  return pino({ level }, out);
}
