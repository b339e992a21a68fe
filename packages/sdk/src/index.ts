export { Client, ApiError } from "./client.js";
export type { ClientOptions, RequestOptions, Query, Health, ListOptions, TaskListOptions, ContainerEvent, LogsEvent, LogsFilter, ServeSession } from "./client.js";
export { TaskHandle, TaskFailedError } from "./remote.js";
export { configDir, configPath, readConfig, defaultClientOptions, tlsCaFromEnv, ConfigFileError } from "./config-file.js";
export type { ConfigFile, Context as ConfigContext } from "./config-file.js";
export { bundleCode, BundleError, type CodeBundle, type ExportRef } from "./workloads-bundle.js";
export { buildImage, deployWorkload, prepareWorkloadStub, ImageBuildError } from "./workloads-deploy.js";
export type { DeployResult, PreparedStub, WorkloadSource, PrepareOptions } from "./workloads-deploy.js";
export { serveWorkload, type ServeEvent, type ServeHandle, type ServeOptions } from "./workloads-serve.js";
export type * from "@beta9/protocol";
export { Image, ImageFilesError, type DockerfileOptions, type RegistryOptions, type RegistryCredentials } from "./image.js";
export { rememberImageFiles } from "./image-files.js";
export { Sandbox, SandboxInstance, SandboxProcesses, SandboxFileSystem, SandboxProcess, OutputStream, Volume } from "./sandbox.js";
export type { SandboxOptions, SandboxInfo, RunCodeResult, ProcessInfo, FileInfo, ExitStatus } from "./sandbox.js";
export { openShell, PtySession, type PtyOptions, type ShellTarget } from "./shell.js";
export { endpoint, taskQueue, fn, schedule, TaskPolicy, QueueDepthAutoscaler } from "./workloads.js";
export { webApp, type WebApp, type WebAppOptions, type FetchHandler } from "./webapp.js";
export { realtime, upgradeWebSocket, type Realtime, type RealtimeOptions, type RealtimeHandler, type RealtimeSocket, type RealtimeMessage } from "./realtime.js";
export { VolumeSyncError, type VolumeCommitResult, type VolumeReloadResult } from "./volume-sync.js";
export { Volumes, type TransferOptions, type TransferProgress, type UploadedFile } from "./volumes.js";
export type {
  Workload, WorkloadOptions, BaseOptions, Context, Handler, WorkloadFactory, TaskPolicyOptions, QueueDepthAutoscalerOptions,
  DeployOptions,
} from "./workloads.js";
export * as schema from "./schema.js";
export { Pod, deployPod, warmDeployment, podNameFromImage, type PodOptions, type PodDeployOptions, type PodDeployment, type PodWorkload } from "./pod.js";
