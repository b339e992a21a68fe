/** Test helpers other packages' integration tests use (`@beta9/worker/testing`). Not part of the runtime. */
export { startRegistry, makeTar, freePort, type TestRegistry, type TarSpec, type RegistryOptions } from "../images/testing.js";
export { captureHostState, ownedBy, type HostState } from "./host-state.js";
export { waitForHttp200, httpGet } from "./http.js";
export { RegistryClient } from "../images/registry.js";
export { MediaType } from "../images/oci.js";
export { sha256Digest } from "../images/digest.js";
export { buildTestImage, type TestImage } from "../images/testing-image.js";
export { buildShellImage } from "../images/testing-shell-image.js";
export { ImageCache } from "../images/cache.js";
export { fetchImage } from "../gateway-http.js";
export { buildPythonImage, type PythonImageOptions } from "../images/testing-python-image.js";
export { PtyDriver } from "./pty-driver.js";
