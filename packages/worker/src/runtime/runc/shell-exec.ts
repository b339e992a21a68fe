/**
 * The host command that runs a process inside a running runc container (shells: worker/src/shell).
 *
 * Plain `runc exec`, except for a container in a user namespace whose network namespace the host
 * made (bridge networking): runc 1.1 joins the container's user namespace first and may then no
 * longer join a network namespace owned by the host's (EPERM; runc#4390, fixed in 1.2 by a
 * two-stage join). For those, `runc exec` runs from a shadow copy of the container's state whose
 * config leaves the network namespace out, under `nsenter --net` into it (host root may join it
 * before runc enters the user namespace). The process still gets everything else runc gives the
 * container's own: user, pid, mount, ipc, uts and cgroup namespaces, cgroup, capabilities,
 * no_new_privs and seccomp (the runc e2e test checks them against the container's init).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ShellCommand, ShellCommandOptions } from "../types.js";

interface RuncState {
  init_process_pid?: number;
  config?: { namespaces?: { type: string; path?: string }[] };
}

export function runcShellCommand(runcPath: string, runcRoot: string, shadowParent: string, id: string, o: ShellCommandOptions): ShellCommand {
  const tail = [
    "exec", ...(o.tty ? ["--tty"] : []), ...Object.entries(o.env).flatMap(([k, v]) => ["--env", `${k}=${v}`]),
    ...(o.cwd ? ["--cwd", o.cwd] : []), id, ...o.command,
  ];
  let state: RuncState;
  try {
    state = JSON.parse(readFileSync(join(runcRoot, id, "state.json"), "utf8")) as RuncState;
  } catch {
    return { argv: [runcPath, "--root", runcRoot, ...tail] }; // runc says what is wrong
  }
  const namespaces = state.config?.namespaces ?? [];
  const net = namespaces.find((n) => n.type === "NEWNET");
  if (!namespaces.some((n) => n.type === "NEWUSER") || !net?.path) return { argv: [runcPath, "--root", runcRoot, ...tail] };
  const shadow = join(shadowParent, randomBytes(8).toString("hex"));
  mkdirSync(join(shadow, id), { recursive: true, mode: 0o700 });
  writeFileSync(join(shadow, id, "state.json"), JSON.stringify({
    ...state, config: { ...state.config, namespaces: namespaces.filter((n) => n.type !== "NEWNET") },
  }), { mode: 0o600 });
  return {
    argv: ["nsenter", `--net=${net.path}`, "--", runcPath, "--root", shadow, ...tail],
    release: () => {
      rmSync(shadow, { recursive: true, force: true });
      try {
        rmdirSync(shadowParent); // only when no other shell's shadow is there
      } catch {
        // not empty
      }
    },
  };
}
