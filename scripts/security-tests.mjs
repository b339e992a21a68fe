// The `security` test group (`npm run test:security`): the tests that prove the isolation and
// hardening claims of the README's "Security model", each named after what it proves. CI runs this
// group first, then every test (which includes these again).
export const SECURITY_NODE_TESTS = [
  "packages/protocol/dist/tar-reader.test.js", // malicious tar shapes refused by the one reader
  "packages/worker/dist/images/tar-escape.test.js", // fuzzed corpus: nothing lands outside the target
  "packages/protocol/dist/egress.test.js", // tenant allow lists parsed strictly (no injection, no octal)
  "packages/worker/dist/runtime/runc/runc-egress.test.js", // container → host, → other container, → private: blocked
  "packages/worker/dist/runtime/runc/runc-runtime.test.js", // namespaces, limits, seccomp, read-only binds
  "packages/worker/dist/runtime/runc/runc-reap.test.js", // a killed worker's containers, mounts and chains reaped
  "packages/worker/dist/runtime/runc/runc-userns.test.js", // container root is an unprivileged host uid (uid_map); binds' owners; writable layer bounded (ENOSPC); nosuid,nodev
  "packages/worker/dist/runtime/runc/pure.test.js", // config.json: user namespace and mappings; seccomp an allow-list
  "packages/worker/dist/images/registry.test.js", // registry pulls to private addresses refused
  "packages/protocol/dist/tunnel-mux.test.js", // a peer ignoring PAUSE loses its channel
  "packages/gateway/dist/api/routes.test.js", // cross-workspace image use → 404
  "packages/gateway/dist/api/slow-client.test.js", // slow bodies closed after the timeout
  "packages/gateway/dist/api/quotas.test.js", // quota hit → 429 QUOTA_EXCEEDED, nothing changed
  "packages/gateway/dist/api/storage-full.test.js", // a full disk → 507 STORAGE_FULL, reads go on
  "packages/gateway/dist/tasks/callback.test.js", // callbacks to loopback and private addresses refused
  "packages/gateway/dist/sandboxes/proxy.test.js", // exposed ports: no token/cookie leak, own origin only when configured
  "packages/gateway/dist/api/websocket.test.js", // WebSocket messages over the limit closed with 1009 both ways; a non-reader stalls the sender; handshake answers lose cookies (host-only on a port's own origin) and extensions; a revoked token's socket cut; oversized/fragmented control frames and interleaved messages refused
  "packages/gateway/dist/api/upgrade-paths.test.js", // upgrades on dot-segment paths (encoded too) or nobody's answered and closed (sockets back to baseline); a worker connect through one handled once
  "packages/gateway/dist/api/websocket-quota.test.js", // anonymous sockets to public targets never use up the workspace's quota; per target and gateway-wide bounds
  "packages/cli/dist/realtime-e2e.test.js", // WebSockets end to end: a revoked token's sockets close (endpoint, sandbox port); a port's 101 cookies and extensions stripped
  "packages/worker/dist/volumes/control.test.js", // volume control socket: connections capped, partial headers cut after the timeout
  "packages/worker/dist/volumes/changes-race.test.js", // a directory swapped for a link during the volume walk: no host name listed, no host file taken
  "packages/gateway/dist/metrics/series.test.js", // dashboard series bounded per workspace: one workspace never evicts another's
  "packages/gateway/dist/scheduler/scheduler.test.js", // no work on non-isolating workers; policies only where enforced
  "packages/gateway/dist/scheduler/worker-socket.test.js", // token revoke closes live sockets
  "packages/gateway/dist/scheduler/worker-trust.test.js", // machines cannot claim other workspaces' containers
  "packages/gateway/dist/secrets/secrets.test.js", // secrets sealed, never returned
  "packages/cli/dist/unisolated-e2e.test.js", // sandbox on a process-runtime worker refused
  "packages/cli/dist/log-flood-e2e.test.js", // a 60,000-character log flood keeps the worker connected, loses no line
  "packages/cli/dist/tls-e2e.test.js", // TLS: only the pinned certificate is trusted
  "packages/gateway/dist/objects/bundle.test.js", // bundles: no escaping paths, no link chains climbing out
  "packages/worker/dist/images/build-fs.test.js", // image COPY never reads the host through links
  "packages/worker/dist/images/registry-auth.test.js", // registry credentials only to their registry
  "packages/protocol/dist/dockerfile.test.js", // Dockerfile substitutions bounded
  "packages/gateway/dist/api/runner-answer.test.js", // a tenant's runner answer held only up to a bound
  "packages/gateway/dist/api/input-check.test.js", // tenants' input schemas bounded and checked
  "packages/gateway/dist/api/logs.test.js", // logs scoped to the workspace; follows bounded per workspace
  "packages/gateway/dist/api/volumes.test.js", // volume paths never escape; quotas
  "packages/protocol/dist/shell-protocol.test.js", // shell frames a client may not send refused; frame sizes bounded
  "packages/cli/dist/shell-e2e.test.js", // shells: another workspace's container 404, restricted 403, confined as the container, ended on revoke, 16 per workspace
];

export const SECURITY_PYTHON_TESTS = [
  "sdk/python/tests/test_sandbox.py::test_sandbox_egress_block_network_and_allow_list",
];
