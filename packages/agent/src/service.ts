/**
 * `b9agent install-service`: a systemd unit that runs the agent without its TUI. The agent runs as
 * root by default because runc, cgroups, netns and iptables need it; the hardening below keeps what
 * runc needs (devices, /sys/fs/cgroup, mounts, namespaces) and removes what it does not.
 */
import { isAbsolute } from "node:path";

export interface ServiceOptions {
  nodePath: string;
  scriptPath: string;
  user: string;
  /** $B9AGENT_HOME for the service: where its config.yaml is. */
  home: string;
}

export function systemdUnit(o: ServiceOptions): string {
  for (const [name, path] of [["node", o.nodePath], ["script", o.scriptPath], ["home", o.home]] as const) {
    if (!isAbsolute(path)) throw new Error(`${name} path ${path} must be absolute`);
    if (/\s/.test(path)) throw new Error(`${name} path ${JSON.stringify(path)} must not contain spaces (systemd would split it)`);
  }
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw new Error(`--user ${JSON.stringify(o.user)} is not a valid user name`);
  return `[Unit]
Description=beta9 agent (b9agent): joins this machine to a beta9-ts gateway and runs its worker
Documentation=https://github.com/beam-cloud/beta9
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=${o.user}
Environment=B9AGENT_HOME=${o.home}
Environment=NODE_ENV=production
ExecStart=${o.nodePath} ${o.scriptPath} run --no-tui
# The agent reconnects by itself; systemd restarts it only if it exits.
Restart=always
RestartSec=5
# SIGTERM stops its containers (each gets its grace period) before the agent exits.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=60
# Containers are the agent's children: raise the limits they inherit.
LimitNOFILE=1048576
LimitNPROC=infinity
TasksMax=infinity
Delegate=yes
# Hardening that leaves runc working: no new privileges for the agent's own files, a private /tmp,
# and read-only system directories except what the worker writes (its state under B9AGENT_HOME).
# NoNewPrivileges stays off: it would be inherited by containers and break setuid programs in their images.
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ReadWritePaths=${o.home}
ProtectClock=yes
ProtectHostname=yes
ProtectKernelLogs=yes
RestrictRealtime=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
`;
}
