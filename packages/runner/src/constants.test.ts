/** The runner copies a few protocol constants (it may not import values); check they still match. */
import { it } from "node:test";
import assert from "node:assert/strict";
import { DAEMON_PROXY_PATH, PROXY_PATH_HEADER, PROXY_PORT_HEADER, RUNNER_PORT, TASK_ID_HEADER, TASK_RETRIES_HEADER, RUNNER_SECRET_ENV, WORKLOAD_MARKER, STREAM_HEADER, WEB_PATH_PREFIX, WEB_AUTHORIZATION_HEADER, TASK_LOG_TAG_PREFIX, TASK_LOG_TAG_END } from "@beta9/protocol";
import * as local from "./constants.js";

it("the runner's copied constants match @beta9/protocol", () => {
  assert.equal(local.DEFAULT_PORT, RUNNER_PORT);
  assert.equal(local.TASK_ID_HEADER, TASK_ID_HEADER);
  assert.equal(local.TASK_RETRIES_HEADER, TASK_RETRIES_HEADER);
  assert.equal(local.RUNNER_SECRET_ENV, RUNNER_SECRET_ENV);
  assert.equal(local.WORKLOAD_MARKER, WORKLOAD_MARKER);
  assert.equal(local.PROXY_PATH, DAEMON_PROXY_PATH);
  assert.equal(local.PROXY_PORT_HEADER, PROXY_PORT_HEADER);
  assert.equal(local.PROXY_PATH_HEADER, PROXY_PATH_HEADER);
  assert.equal(local.STREAM_HEADER, STREAM_HEADER);
  assert.equal(local.WEB_PATH_PREFIX, WEB_PATH_PREFIX);
  assert.equal(local.WEB_AUTHORIZATION_HEADER, WEB_AUTHORIZATION_HEADER);
  assert.equal(local.TASK_LOG_TAG_PREFIX, TASK_LOG_TAG_PREFIX);
  assert.equal(local.TASK_LOG_TAG_END, TASK_LOG_TAG_END);
});
