/**
 * Output helpers: JSON for scripts, aligned plain tables for people, and colour only where a
 * person is looking (stdout is a TTY and NO_COLOR is unset), so piped output never carries escapes.
 */
import { isAbsolute } from "node:path";
import { exampleInput, type InputSchema } from "@beta9/protocol";

export interface Palette {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
}

function paint(on: boolean, open: number, close: number) {
  return (text: string) => (on ? `\x1b[${open}m${text}\x1b[${close}m` : text);
}

export function palette(stream: { isTTY?: boolean } = process.stdout, env = process.env): Palette {
  const on = stream.isTTY === true && env.NO_COLOR === undefined;
  return {
    bold: paint(on, 1, 22),
    dim: paint(on, 2, 22),
    green: paint(on, 32, 39),
    red: paint(on, 31, 39),
    yellow: paint(on, 33, 39),
  };
}

export const color = palette();

const ANSI = /\x1b\[[0-9;]*m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI, "").length;
}

/** Columns padded to their widest cell; the last column is not padded (no trailing spaces). */
export function formatTable(headers: string[], rows: string[][]): string {
  const all = [headers.map((h) => color.bold(h)), ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => visibleLength(row[i] ?? ""))));
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + " ".repeat(widths[i]! - visibleLength(cell))))
        .join("  "),
    )
    .join("\n");
}

export function printTable(headers: string[], rows: string[][], empty: string): void {
  process.stdout.write(rows.length === 0 ? `${color.dim(empty)}\n` : `${formatTable(headers, rows)}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function print(line = ""): void {
  process.stdout.write(`${line}\n`);
}

/** Progress and notes go to stderr so stdout stays parseable. */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** ISO timestamp → "2025-01-31 14:05:09" (UTC), short enough for a table column. */
export function shortTime(iso: string | null | undefined): string {
  if (!iso) return "-";
  return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "");
}

/**
 * How to run this CLI again from a pasted command, whatever the directory it is pasted in:
 * ./beta9's absolute path; when it runs from a project's node_modules (not on PATH), that
 * script's absolute path (`npx beta9` if the path needs quoting); else `beta9` on PATH.
 */
export function cliCommand(env = process.env, script = process.argv[1] ?? ""): string {
  const shellSafe = (p: string) => /^[A-Za-z0-9/._-]+$/.test(p);
  const path = env.BETA9_CLI;
  if (path && shellSafe(path)) return path;
  if (!/[/\\]node_modules[/\\]/.test(script)) return "beta9";
  return isAbsolute(script) && shellSafe(script) ? script : "npx beta9";
}

/**
 * A curl line that works when pasted: the token comes from the CLI's own context at paste time,
 * and the body is an input built from the workload's schema (every field filled), so it passes.
 */
export function invokeLine(url: string, inputs?: InputSchema): string {
  // A single quote inside '…' cannot be escaped in sh: close, escape, reopen.
  const body = (inputs ? JSON.stringify(exampleInput(inputs)) : "{}").replace(/'/g, `'\\''`);
  return `invoke: curl -X POST ${url} -H "Authorization: Bearer $(${cliCommand()} config token)" -H "Content-Type: application/json" -d '${body}'`;
}

/**
 * A line of a container's output, safe for a person's terminal: control characters (an escape
 * sequence could rewrite the screen, set the title, or feed keystrokes back) shown as `\x1b`
 * and the like, tabs kept. Piped output stays exactly as the container wrote it.
 */
export function terminalSafe(line: string, tty = process.stdout.isTTY === true): string {
  if (!tty) return line;
  return line.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
