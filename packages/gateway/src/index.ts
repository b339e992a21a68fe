export { startGateway, DataDirLockedError, DEFAULT_MAX_OBJECT_BYTES, type GatewayOptions, type RunningGateway } from "./server.js";
export { buildGatewayApp, JSON_BODY_LIMIT } from "./app.js";
export { SqliteStore } from "./store/sqlite/store.js";
export { describeStore, isPostgresUrl, StoreUnavailableError, type GatewayStore } from "./store/open.js";
export { ObjectStore } from "./objects/object-store.js";
export type * from "./store/types.js";
export { VERSION } from "./version.js";
export { certificateFingerprint, ensureSelfSignedCertificate, localNames, readTlsFiles, type TlsFiles } from "./tls.js";
export { copySqliteToPostgres, StoreCopyRefusedError, type StoreCopyResult } from "./store/copy.js";
