/**
 * Exit codes and the one place that turns any thrown value into a line on stderr and a code.
 * Scripts branch on these codes, so each one keeps its meaning once released.
 */
import { ApiError } from "beta9";

export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  unreachable: 5,
} as const;

/** An error raised by the CLI itself (not by the gateway), with the exit code it ends with. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof ApiError) {
    if (err.code === "UNREACHABLE") return EXIT.unreachable;
    if (err.status === 401 || err.status === 403) return EXIT.auth;
    if (err.status === 404) return EXIT.notFound;
  }
  return EXIT.error;
}

/** `error: <CODE>: <message>`, never a stack trace: the code is what to search for. */
export function formatError(err: unknown): string {
  if (err instanceof CliError || err instanceof ApiError) return `error: ${err.code}: ${err.message}`;
  const message = err instanceof Error ? err.message : String(err);
  return `error: INTERNAL: ${message}`;
}

/** Thrown after the failures were already printed (e.g. some IDs of a batch): exit without a second line. */
export class ReportedError extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = "ReportedError";
  }
}
