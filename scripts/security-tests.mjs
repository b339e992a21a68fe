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
  "packages/worker/dist/images/registry.test.js", // registry pulls to private addresses refused
  "packages/protocol/dist/tunnel-mux.test.js", // a peer ignoring PAUSE loses its channel
  "packages/gateway/dist/api/routes.test.js", // cross-workspace image use → 404
  "packages/gateway/dist/api/slow-client.test.js", // slow bodies closed after the timeout
  "packages/gateway/dist/api/quotas.test.js", // quota hit → 429 QUOTA_EXCEEDED, nothing changed
  "packages/gateway/dist/api/storage-full.test.js", // a full disk → 507 STORAGE_FULL, reads go on
  "packages/gateway/dist/tasks/callback.test.js", // callbacks to loopback and private addresses refused
  "packages/gateway/dist/sandboxes/proxy.test.js", // exposed ports: no token/cookie leak, own origin only when configured
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
];

export const SECURITY_PYTHON_TESTS = [
  "sdk/python/tests/test_sandbox.py::test_sandbox_egress_block_network_and_allow_list",
];
