/**
 * The shell helper and the worker's session stream on their own (no container: the host argv is a
 * plain command here; runc's `exec -t` is the shell-e2e test's). Real PTYs, real processes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Duplex } from "node:stream";
import { execFileSync } from "node:child_process";
import {
  resizeFrame, shellDataFrames, shellFrame, ShellFrameReader, SHELL_EOF, SHELL_ERROR, SHELL_EXIT, SHELL_INPUT, SHELL_STDERR, SHELL_STDOUT,
} from "@beta9/protocol";
import { openShells, startShellProcess } from "./session.js";

const skip = (() => {
  try {
    execFileSync("python3", ["-c", "import pty"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "python3 is not installed";
  }
})();

/** Collects a session's frames: output by stream, and its exit code or error. */
function collect(session: Duplex) {
  const reader = new ShellFrameReader();
  const out = { stdout: "", stderr: "", exit: undefined as number | undefined, error: undefined as string | undefined };
  const ended = new Promise<typeof out>((resolve, reject) => {
    session.on("data", (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (f.type === SHELL_STDOUT) out.stdout += f.payload.toString();
        else if (f.type === SHELL_STDERR) out.stderr += f.payload.toString();
        else if (f.type === SHELL_EXIT) out.exit = f.payload.readInt32BE(0);
        else if (f.type === SHELL_ERROR) out.error = f.payload.toString();
      }
    });
    session.on("end", () => resolve(out));
    session.on("error", reject);
  });
  return { out, ended };
}

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; !probe(); i++) {
    if (i > 3000) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a PTY: sized, resized, raw on the host side (no echo; ^C passes as a byte: the container's PTY makes it a signal), exit status through", { skip }, async () => {
  const session = startShellProcess({ tty: true, cols: 81, rows: 21 }, ["/bin/sh"]);
  const { out, ended } = collect(session);
  session.write(shellFrame(SHELL_INPUT, Buffer.from("tty; stty size\n")));
  await until("the size", () => /21 81/.test(out.stdout));
  assert.match(out.stdout, /\/dev\/pts\/\d+/);
  assert.doesNotMatch(out.stdout, /stty size/, "the host side echoes nothing");
  session.write(resizeFrame(132, 50));
  session.write(shellFrame(SHELL_INPUT, Buffer.from("stty size\n")));
  await until("the new size", () => /50 132/.test(out.stdout));
  session.write(shellFrame(SHELL_INPUT, Buffer.from("exit 3\n")));
  assert.equal((await ended).exit, 3);

  const od = startShellProcess({ tty: true, cols: 80, rows: 24 }, ["od", "-An", "-c", "-N1"]);
  const read = collect(od);
  od.write(shellFrame(SHELL_INPUT, Buffer.from("\x03")));
  const done = await read.ended;
  assert.match(done.stdout, /003/);
  assert.equal(done.exit, 0);
});

test("pipes: stdout and stderr apart, EOF closes stdin, a signal's death is 128+N", { skip }, async () => {
  const session = startShellProcess({ tty: false, cols: 80, rows: 24 }, ["/bin/sh", "-c", "cat; echo err >&2; exit 4"]);
  const { ended } = collect(session);
  for (const f of shellDataFrames(SHELL_INPUT, Buffer.alloc(200_000, "x"))) session.write(f);
  session.write(shellFrame(SHELL_EOF));
  const done = await ended;
  assert.equal(done.stdout.length, 200_000, "large input arrives whole, in frames of at most 64 KiB");
  assert.equal(done.stderr, "err\n");
  assert.equal(done.exit, 4);

  const killed = startShellProcess({ tty: false, cols: 80, rows: 24 }, ["/bin/sh", "-c", "kill -9 $$"]);
  assert.equal((await collect(killed).ended).exit, 137);
});

test("the client leaving hangs the process up; a command that is not there is exit 127; bad frames end the stream", { skip }, async () => {
  const before = openShells();
  const session = startShellProcess({ tty: true, cols: 80, rows: 24 }, ["/bin/sh", "-c", "trap 'exit 9' HUP; while :; do sleep 1; done"]);
  const { ended } = collect(session);
  assert.equal(openShells(), before + 1);
  session.end();
  assert.equal((await ended).exit, 129, "the helper SIGHUPs the command; sh's trap does not run during sleep's wait, so it dies of it");
  assert.equal(openShells(), before);

  const missing = startShellProcess({ tty: true, cols: 80, rows: 24 }, ["/nonexistent/cmd"]);
  const m = await collect(missing).ended;
  assert.equal(m.exit, 127);
  assert.match(m.stdout, /cannot run \/nonexistent\/cmd/);

  const bad = startShellProcess({ tty: true, cols: 80, rows: 24 }, ["/bin/sh"]);
  const failed = new Promise<Error>((resolve) => bad.on("error", resolve));
  bad.write(shellFrame(SHELL_EXIT, Buffer.alloc(4)));
  assert.match((await failed).message, /may not send/);
});

test("no python3: the session says so in an error frame", async () => {
  const session = startShellProcess({ tty: true, cols: 80, rows: 24 }, ["/bin/sh"], "/nonexistent/python3");
  const done = await collect(session).ended;
  assert.match(done.error ?? "", /not installed on this worker/);
});
