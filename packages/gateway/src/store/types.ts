/**
 * The store interfaces: every read and write of durable state goes through these, so a second
 * backend (Postgres) plugs in without touching callers. `conformance.ts` is the shared suite that
 * every implementation must pass.
 *
 * Conventions: every workspace-owned lookup takes the workspace id first and returns `undefined`
 * for rows of another workspace, exactly as for rows that do not exist; multi-row writes are
 * atomic; conflicts throw `Beta9Error` with a catalogue code.
 */
import type {
  App, EgressPolicy, Image, Deployment, Machine, MachineMetrics, Pool, Secret, StoredObject, Stub, StubConfig, StubType, Task, TaskStatus, Token, TokenType,
  TokenWithKey, Workspace,
} from "@beta9/protocol";

export interface Page {
  limit: number;
  offset: number;
}

export interface WorkspaceRepo {
  /** Creates a workspace and its first token in one transaction. */
  create(name: string, firstTokenType: TokenType): Promise<{ workspace: Workspace; token: TokenWithKey }>;
  /** On an empty store only: creates the first workspace with an admin token; otherwise `undefined`. */
  bootstrap(name: string): Promise<{ workspace: Workspace; token: TokenWithKey } | undefined>;
  get(id: string): Promise<Workspace | undefined>;
  list(page: Page): Promise<Workspace[]>;
  /** The secret that signs the workspace's task callbacks. */
  signingKey(id: string): Promise<string | undefined>;
}

/** What authentication needs to know about a presented token. */
export interface AuthenticatedToken {
  id: string;
  workspaceId: string;
  type: TokenType;
}

export interface TokenRepo {
  create(workspaceId: string, type: TokenType, name?: string): Promise<TokenWithKey>;
  /** Looks a presented key up by its hash; revoked or unknown keys give `undefined`. */
  authenticate(key: string): Promise<AuthenticatedToken | undefined>;
  get(workspaceId: string, id: string): Promise<Token | undefined>;
  list(workspaceId: string, page: Page): Promise<Token[]>;
  /** Idempotent; refuses (CONFLICT) to revoke the last active admin token of the cluster. */
  revoke(workspaceId: string, id: string): Promise<Token | undefined>;
  /** Calls `listener` with each token id revoked from now on (open sockets of that token are closed); returns the unsubscribe. */
  onRevoked(listener: (tokenId: string) => void): () => void;
}

export interface AppRepo {
  getOrCreate(workspaceId: string, name: string): Promise<App>;
  get(workspaceId: string, id: string): Promise<App | undefined>;
  list(workspaceId: string, page: Page): Promise<App[]>;
}

export interface ObjectRepo {
  get(workspaceId: string, hash: string): Promise<StoredObject | undefined>;
  /** Records that the workspace holds the object; idempotent. */
  put(workspaceId: string, hash: string, size: number): Promise<{ object: StoredObject; created: boolean }>;
  list(workspaceId: string, page: Page): Promise<StoredObject[]>;
  /** The bytes of every object the workspace holds (its storage quota). */
  totalBytes(workspaceId: string): Promise<number>;
}

export interface NewStub {
  workspaceId: string;
  appId: string;
  name: string;
  type: StubType;
  objectId: string | null;
  config: StubConfig;
  configHash: string;
}

export interface StubRepo {
  /** Reuses the stub with the same workspace, app, name, type, object and config hash. */
  getOrCreate(stub: NewStub): Promise<{ stub: Stub; created: boolean }>;
  get(workspaceId: string, id: string): Promise<Stub | undefined>;
  /** Any workspace's stub: for the dispatcher resuming work after a restart. */
  getAny(id: string): Promise<Stub | undefined>;
  list(workspaceId: string, page: Page): Promise<Stub[]>;
  /** The names of the workspace's stubs among `ids`, in one read (lists show them beside ids). */
  names(workspaceId: string, ids: readonly string[]): Promise<Map<string, string>>;
}

export interface DeploymentFilter extends Page {
  name?: string;
  active?: boolean;
}

export interface DeploymentRepo {
  /** Next version for the name (versions are never reused, even after delete); active. */
  create(workspaceId: string, stubId: string, name: string): Promise<Deployment>;
  get(workspaceId: string, id: string): Promise<Deployment | undefined>;
  /** `latest` is the newest active version. */
  resolve(workspaceId: string, name: string, version: number | "latest"): Promise<Deployment | undefined>;
  list(workspaceId: string, filter: DeploymentFilter): Promise<Deployment[]>;
  setActive(workspaceId: string, id: string, active: boolean): Promise<Deployment | undefined>;
  /** Soft delete: the row leaves every list and lookup; its version number stays taken. */
  delete(workspaceId: string, id: string): Promise<boolean>;
}

export interface TaskPolicy {
  maxRetries: number;
  /** Seconds an attempt may run; -1 for no limit. */
  timeout: number;
  /** Seconds a task may wait before its first attempt. */
  ttl: number;
}

/** A claimed task; `inputJson`, when set, is its input as stored (what `input()` would parse). */
export type ClaimedTask = Task & { inputJson?: string };

/** Which tasks a listing returns (all of them match every field given), newest first. */
export interface TaskFilter extends Page {
  /** Any of these statuses. */
  status?: readonly TaskStatus[];
  /** This stub's tasks. */
  stubId?: string;
  /** The tasks of every (not deleted) version of the workspace's deployment of this name. */
  deployment?: string;
}

export interface TaskRepo {
  /**
   * A PENDING task; `input` is stored as given (JSON) and handed to the handler. With `claim`, the
   * task starts at once on that container: written RUNNING (as if claimed), with `inputJson`.
   */
  create(workspaceId: string, stubId: string, input?: unknown, policy?: TaskPolicy, claim?: { containerId: string }): Promise<ClaimedTask>;
  get(workspaceId: string, id: string): Promise<Task | undefined>;
  getAny(id: string): Promise<Task | undefined>;
  list(workspaceId: string, filter: TaskFilter): Promise<Task[]>;
  /** The task's input (not part of the listing entity: it may be large). */
  input(id: string): Promise<unknown>;
  /**
   * Atomically moves the oldest due PENDING or RETRY task of the stub to RUNNING (attempt starts);
   * a backend that reads the input in the same step hands it along as JSON text (`inputJson`).
   */
  claimNext(stubId: string, containerId: string): Promise<ClaimedTask | undefined>;
  /** PENDING + RUNNING + RETRY tasks of the stub (queue depth). */
  inflight(stubId: string): Promise<number>;
  /** PENDING + RETRY tasks of the stub (waiting for an attempt), whichever gateway put them. */
  waiting(stubId: string): Promise<number>;
  /**
   * Whether other gateways write the same tasks (Postgres): then a gateway's own count of a queue
   * drifts (another gateway puts or claims) and is taken again from `waiting` when it may have.
   */
  readonly shared: boolean;
  /**
   * Calls `listener` with the stub id of each task another gateway queued (put PENDING) from now
   * on; returns the unsubscribe. Never called where this gateway is the only one (SQLite). A
   * notification may be missed (a lost listening connection): it only hurries what the queue's
   * periodic check finds anyway.
   */
  onQueuedElsewhere(listener: (stubId: string) => void): () => void;
  /**
   * Calls `listener` with the id of each task another gateway ended (finish) from now on: a
   * function call or a follower waiting on this gateway for a task another runs. As
   * onQueuedElsewhere: never on SQLite, and a missed one is found by the periodic check.
   */
  onEndedElsewhere(listener: (taskId: string) => void): () => void;
  /** Ends a PENDING, RUNNING or RETRY task; no-op (false) if it already ended (e.g. cancelled meanwhile). */
  finish(id: string, status: "COMPLETE" | "ERROR" | "TIMEOUT" | "CANCELLED" | "EXPIRED", fields?: { result?: unknown; error?: string }): Promise<boolean>;
  /**
   * RUNNING → RETRY (error kept, retry counted, `nextAttemptAt` = now + `delayMs`); claimable when
   * due. `resumeOn`: the attempt may still run in that container (its exchange was lost, not its
   * container): offered to it at once, to others only after RESUME_ELSEWHERE_AFTER_MS. `uncounted`:
   * the attempt never started (the runner had no free slot): no retry is counted.
   */
  retry(id: string, error: string, delayMs: number, options?: { resumeOn?: string; uncounted?: boolean }): Promise<boolean>;
  /** Attempts offered to `containerId` (resumes) go to any container now: it exited. Returns their stubs' ids. */
  releaseResumes(containerId: string): Promise<string[]>;
  /**
   * PENDING tasks past their TTL → EXPIRED (a RETRY task already started: its TTL is spent); returns
   * their ids. Each one's error is `waited longer than its ttl`, followed by what `waitedFor` says
   * its stub waited for (e.g. capacity), when it says something.
   */
  expireDue(waitedFor?: (stubId: string) => string | undefined): Promise<{ id: string; stubId: string }[]>;
  /**
   * At start-up: attempts that were running when the gateway stopped are counted (retries + 1)
   * and become RETRY, due now, or ERROR when that exceeds their maxRetries.
   */
  requeueRunning(): Promise<{ id: string; stubId: string; status: "RETRY" | "ERROR" }[]>;
  /**
   * While running, with other gateways on the same database: the attempts of gateways that stopped
   * or went silent (no heartbeat for a while), re-queued as `requeueRunning` does its own. Nothing
   * where this gateway is the only one (SQLite), nor while its own heartbeat is not steady (after
   * losing the database, the others must first have had the time to be seen again).
   */
  requeueOrphaned(): Promise<{ id: string; stubId: string; status: "RETRY" | "ERROR" }[]>;
  /** Stub ids with PENDING or RETRY tasks (to resume dispatch after a restart). */
  stubsWithPending(): Promise<string[]>;
}

/**
 * An attempt cut off by its gateway's stop or death is first offered to the container that ran
 * it (a claim by that container takes it at once: its runner joins the handler still running or
 * answers its kept result, so the handler runs once); other containers take it once the gateway
 * sees that container exit (releaseResumes), or after this long, in case it is gone unseen (its
 * worker died with the gateway). Under the runner's 120 s orphan grace, so a resume still finds it.
 */
export const RESUME_ELSEWHERE_AFTER_MS = 60_000;

/** A secret's value, sealed (secrets/vault.ts): the store never sees plaintext. */
export interface SealedSecret {
  workspaceId: string;
  name: string;
  sealed: string;
}

export interface SecretRepo {
  /** Throws SECRET_EXISTS when the name is taken in the workspace. */
  create(workspaceId: string, name: string, sealed: string): Promise<Secret>;
  /** Undefined when there is no such secret. */
  update(workspaceId: string, name: string, sealed: string): Promise<Secret | undefined>;
  delete(workspaceId: string, name: string): Promise<boolean>;
  list(workspaceId: string, page: Page): Promise<Secret[]>;
  count(workspaceId: string): Promise<number>;
  /** Every sealed value of every workspace (loading the vault, rotating its key). */
  sealedAll(): Promise<SealedSecret[]>;
  /**
   * Re-seals every secret in one transaction (rotating the vault's key): `reseal` gives each row's
   * new sealed value; if it throws for any row, nothing changes. Returns how many rows were re-sealed.
   */
  resealAll(reseal: (secret: SealedSecret) => string): Promise<number>;
}

export interface PoolRepo {
  create(name: string, description: string): Promise<Pool>;
  getByName(name: string): Promise<Pool | undefined>;
  list(page: Page): Promise<Pool[]>;
}

/** A machine as stored: the entity without the scheduler's live fields, plus its token's id. */
export type StoredMachine = Omit<Machine, "workerConnected" | "runningContainers"> & { tokenId: string | null };
export type MachineRegistration = Pick<Machine, "cpuMillicores" | "memoryMiB" | "gpus"> &
  { hostname: string; os: string; arch: string; agentVersion: string };

export interface MachineRepo {
  /** A new machine (state pending) and its machine token, in one transaction. */
  create(workspaceId: string, pool: string): Promise<{ machine: StoredMachine; token: TokenWithKey }>;
  get(workspaceId: string, id: string): Promise<StoredMachine | undefined>;
  getByToken(tokenId: string): Promise<StoredMachine | undefined>;
  list(workspaceId: string, page: Page & { pool?: string }): Promise<StoredMachine[]>;
  /** → registered (from any state); `undefined` if the machine is gone. */
  register(id: string, info: MachineRegistration): Promise<StoredMachine | undefined>;
  /** → ready; `undefined` unless the machine is registered or ready (an expired one registers again). */
  keepalive(id: string, metrics: MachineMetrics): Promise<StoredMachine | undefined>;
  setFlags(workspaceId: string, id: string, flags: { cordoned: boolean; draining: boolean }): Promise<StoredMachine | undefined>;
  /** Registered or ready machines whose last keepalive is older than `before` → expired; returns them. */
  expireSilent(before: string): Promise<StoredMachine[]>;
  /** Revokes the machine's token and removes the machine. */
  delete(workspaceId: string, id: string): Promise<StoredMachine | undefined>;
  /** Every workspace's machines by state, and how many are cordoned (for /metrics). */
  counts(): Promise<{ states: Record<string, number>; cordoned: number }>;
}

/** Another live gateway on a shared store, as its last heartbeat described it. */
export interface Peer {
  id: string;
  /** Where it answers (its --advertise-url). */
  url: string;
  /** The pools it has a connected worker in. */
  pools: string[];
}

/** The gateways on a shared store (Postgres only). */
export interface PeerDirectory {
  /** This gateway's id among them. */
  readonly self: string;
  /** What this gateway says of itself at each heartbeat (`host`: its machine's name, for loopback URLs). */
  advertise(describe: () => { url: string; pools: string[]; host: string }): void;
  /** The other gateways seen within the stale period that advertised a URL (cached about a second). */
  list(): Promise<Peer[]>;
  /** Says it now (a worker connected), not at the next heartbeat. */
  announce(): void;
}

export interface ImageRepo {
  /**
   * Records that the workspace wants this image. Returns `build: true` when nobody is building it
   * and it is not ready (new, or failed before): the caller must start a build.
   */
  request(workspaceId: string, id: string, spec: unknown): Promise<{ image: Image; build: boolean }>;
  /** Workspace-scoped: an image another workspace built is invisible until this one requests it. */
  get(workspaceId: string, id: string): Promise<Image | undefined>;
  /** Any workspace's image: for workers, which serve every workspace. */
  getAny(id: string): Promise<Image | undefined>;
  list(workspaceId: string, page: Page): Promise<Image[]>;
  markReady(id: string, size: number, sha256: string): Promise<void>;
  markFailed(id: string, error: string): Promise<void>;
  /** Bytes of the ready images the workspace has asked for (its image quota counts these). */
  bytes(workspaceId: string): Promise<number>;
  /**
   * The workspace stops using the image, in one transaction: `absent` when it had no such image,
   * `building` (nothing changed) while a build runs, `unlinked` when other workspaces still use it,
   * `orphaned` when none does and the image's row is gone (the caller removes its packed file).
   */
  unlink(workspaceId: string, id: string): Promise<"absent" | "building" | "unlinked" | "orphaned">;
  /**
   * At start-up: builds that were running when the gateway stopped will never report; fail them
   * (on a shared store: this gateway's, and those of gateways gone silent, never a live one's).
   */
  failInterrupted(): Promise<number>;
  /** While running, on a shared store: fails the builds of gateways that stopped or went silent since (0 elsewhere). */
  failOrphaned(): Promise<number>;
  /**
   * Shared store: hands a build this gateway started, but has no worker for, to whichever gateway
   * takes it (takeOffered); the others hear of it (onOffered). False where nobody else could (SQLite).
   */
  offer(id: string): Promise<boolean>;
  /** The oldest build offered by another gateway, now this gateway's (one taker per build), with a workspace that asked for it. */
  takeOffered(): Promise<{ id: string; spec: unknown; workspaceId: string } | undefined>;
  /** Takes back this gateway's offer that nobody took: true when it was still offered (then it is this gateway's again). */
  withdraw(id: string): Promise<boolean>;
  /** Calls `listener` when another gateway offers a build; returns the unsubscribe (never called on SQLite). */
  onOffered(listener: () => void): () => void;
}

/** A deployed schedule's stub, with when its earliest live deployment was created. */
export type ActiveSchedule = Stub & { deployedAt: string };

export interface ScheduleRepo {
  /**
   * Records `tickIso` as the stub's last fired tick; true only for the first caller whose tick
   * is newer than the stored one (atomic across processes sharing the store): fire on true only.
   */
  claimTick(stubId: string, tickIso: string): Promise<boolean>;
  /** The last claimed tick (ISO 8601, UTC), if any. */
  lastTick(stubId: string): Promise<string | undefined>;
  /** Stubs of type `schedule/deployment` with at least one active, not deleted deployment. */
  activeSchedules(): Promise<ActiveSchedule[]>;
}

export type SandboxState = "PENDING" | "RUNNING" | "TERMINATED";
/** Why a sandbox ended: terminate(), its TTL, its daemon exited, it never started, its worker went away. */
export type SandboxEndReason = "terminated" | "expired" | "exited" | "failed" | "worker_lost";

/** What a sandbox was created with (normalised), plus the ports it exposes through the gateway. */
export interface SandboxConfig {
  imageId: string | null;
  cpuMillicores: number;
  memoryMiB: number;
  env: Record<string, string>;
  /** Names of workspace secrets set in its environment (values are read when it starts, never stored here). */
  secrets?: string[];
  /** Lifetime in seconds from creation (or from the last updateTtl); -1: until terminated. */
  ttlSeconds: number;
  pool: string | null;
  /** Exposed container ports; `public` ones need no token. */
  exposed: { port: number; public: boolean }[];
  /**
   * What the gateway shows the sandbox's daemon (Bearer) on every call, so that another container
   * on the same bridge cannot drive it. Set by the manager at creation; never sent to clients.
   */
  secret?: string;
  /** Named volumes of the workspace, mounted read-write (see volumes/volume-store.ts). */
  volumes?: { name: string; mountPath: string }[];
  /** Egress narrower than the default (blockNetwork / allowList); absent: the default. */
  egress?: EgressPolicy;
}

export interface SandboxRecord {
  id: string;
  workspaceId: string;
  containerId: string;
  state: SandboxState;
  reason: SandboxEndReason | null;
  config: SandboxConfig;
  /** ISO 8601; null: never. */
  expiresAt: string | null;
  createdAt: string;
  endedAt: string | null;
}

export interface SandboxRepo {
  create(input: { id: string; workspaceId: string; containerId: string; config: SandboxConfig; expiresAt: string | null }): Promise<SandboxRecord>;
  get(workspaceId: string, id: string): Promise<SandboxRecord | undefined>;
  /** Any workspace's (public exposed ports). */
  getAny(id: string): Promise<SandboxRecord | undefined>;
  list(workspaceId: string, page: Page & { active?: boolean }): Promise<SandboxRecord[]>;
  /** PENDING → RUNNING; false if it was not PENDING. */
  markRunning(id: string): Promise<boolean>;
  /** → TERMINATED with the reason; false if it already was (the first reason stays). */
  markTerminated(id: string, reason: SandboxEndReason): Promise<boolean>;
  setExpiry(id: string, expiresAt: string | null): Promise<boolean>;
  setConfig(id: string, config: SandboxConfig): Promise<boolean>;
  /** Not terminated, with expires_at at or before `at`. */
  expired(at: string): Promise<SandboxRecord[]>;
  /** Every sandbox not terminated, oldest first. */
  live(): Promise<SandboxRecord[]>;
}

export interface Store {
  readonly workspaces: WorkspaceRepo;
  readonly tokens: TokenRepo;
  readonly apps: AppRepo;
  readonly objects: ObjectRepo;
  readonly stubs: StubRepo;
  readonly deployments: DeploymentRepo;
  readonly tasks: TaskRepo;
  /** The other gateways on this store; absent where this gateway is the only one (SQLite). */
  readonly peers?: PeerDirectory;
  readonly pools: PoolRepo;
  readonly secrets: SecretRepo;
  readonly machines: MachineRepo;
  readonly images: ImageRepo;
  readonly schedules: ScheduleRepo;
  readonly sandboxes: SandboxRepo;
  close(): Promise<void>;
}
