import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { systemdUnit } from "./service.js";

const MAIN = realpathSync(join(dirname(fileURLToPath(import.meta.url)), "main.js"));

test("install-service writes a unit running the agent without TUI, restarting, as root, and prints the enable line", (t) => {
  const h = mkdtempSync(join(tmpdir(), "b9agent-svc-"));
  t.after(() => rmSync(h, { recursive: true, force: true }));
  const env = { ...process.env, B9AGENT_HOME: h };
  assert.equal(spawnSync(process.execPath, [MAIN, "init", "--gateway", "10.0.0.1:1994", "--token", "b9m_0123456789abcdef", "--pool", "p"], { env }).status, 0);
  const out = join(h, "b9agent.service");
  const r = spawnSync(process.execPath, [MAIN, "install-service", "--output", out], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /systemctl enable --now b9agent/);
  const unit = readFileSync(out, "utf8");
  assert.ok(unit.includes(`ExecStart=${process.execPath} ${MAIN} run --no-tui\n`), unit);
  assert.match(unit, /^User=root$/m);
  assert.match(unit, /^Restart=always$/m);
  assert.match(unit, new RegExp(`^Environment=B9AGENT_HOME=${h}$`, "m"));
  assert.match(unit, /^After=network-online\.target$/m);
  assert.match(unit, /^WantedBy=multi-user\.target$/m);
  assert.match(unit, /^Delegate=yes$/m);
  // Hardening must not break runc: no NoNewPrivileges=yes, no private devices, no capability bounding.
  assert.doesNotMatch(unit, /^NoNewPrivileges=yes/m);
  assert.doesNotMatch(unit, /^PrivateDevices=yes/m);
  assert.doesNotMatch(unit, /^CapabilityBoundingSet=/m);
  assert.match(unit, new RegExp(`^ReadWritePaths=${h}$`, "m"));
});

test("the unit refuses relative paths, spaces and bad user names", () => {
  const ok = { nodePath: "/usr/bin/node", scriptPath: "/opt/b9/main.js", user: "b9", home: "/var/lib/b9agent" };
  assert.match(systemdUnit(ok), /^User=b9$/m);
  assert.throws(() => systemdUnit({ ...ok, nodePath: "node" }), /absolute/);
  assert.throws(() => systemdUnit({ ...ok, scriptPath: "/opt/my dir/main.js" }), /spaces/);
  assert.throws(() => systemdUnit({ ...ok, user: "root; rm -rf /" }), /user name/);
});
