/**
 * Workspace secrets: write-only values that become environment variables of the containers and
 * sandboxes that name them. Values are sealed in the store (vault.ts) and kept open in this
 * process only, so starting a container needs no store round trip.
 */
import { Beta9Error, type Secret } from "@beta9/protocol";
import type { Page, SecretRepo } from "../store/types.js";
import type { Vault } from "./vault.js";

/** At most this many secrets per workspace: bounds what one tenant keeps in the gateway's memory. */
export const MAX_SECRETS_PER_WORKSPACE = 1000;

export class Secrets {
  /** workspace id → name → value */
  private readonly values = new Map<string, Map<string, string>>();

  constructor(private readonly repo: SecretRepo, private readonly vault: Vault) {}

  /** Opens every stored value; fails when one was sealed under another key (the message says what to do). */
  async load(): Promise<void> {
    for (const s of await this.repo.sealedAll()) {
      let value: string;
      try {
        value = this.vault.open(s.workspaceId, s.name, s.sealed);
      } catch {
        throw new Error(`secret ${s.name} of workspace ${s.workspaceId} does not open with this gateway's key ` +
          "(secrets.key in the data dir, or BETA9_SECRETS_KEY): start it with the key the secrets were written with" +
          " (a key rotation that was interrupted leaves secrets.key.new: run beta9 gateway rotate-secrets-key again to finish it)");
      }
      this.inWorkspace(s.workspaceId).set(s.name, value);
    }
  }

  private inWorkspace(workspaceId: string): Map<string, string> {
    let m = this.values.get(workspaceId);
    if (!m) this.values.set(workspaceId, (m = new Map()));
    return m;
  }

  async create(workspaceId: string, name: string, value: string): Promise<Secret> {
    if (await this.repo.count(workspaceId) >= MAX_SECRETS_PER_WORKSPACE) throw new Beta9Error("SECRETS_FULL", { limit: MAX_SECRETS_PER_WORKSPACE });
    const secret = await this.repo.create(workspaceId, name, this.vault.seal(workspaceId, name, value));
    this.inWorkspace(workspaceId).set(name, value);
    return secret;
  }

  async update(workspaceId: string, name: string, value: string): Promise<Secret> {
    const secret = await this.repo.update(workspaceId, name, this.vault.seal(workspaceId, name, value));
    if (!secret) throw new Beta9Error("SECRET_NOT_FOUND", { name });
    this.inWorkspace(workspaceId).set(name, value);
    return secret;
  }

  async delete(workspaceId: string, name: string): Promise<void> {
    if (!(await this.repo.delete(workspaceId, name))) throw new Beta9Error("SECRET_NOT_FOUND", { name });
    this.values.get(workspaceId)?.delete(name);
  }

  list(workspaceId: string, page: Page): Promise<Secret[]> {
    return this.repo.list(workspaceId, page);
  }

  /** Throws SECRET_NOT_FOUND naming the first of `names` the workspace does not have. */
  check(workspaceId: string, names: readonly string[]): void {
    const have = this.values.get(workspaceId);
    const missing = names.find((n) => !have?.has(n));
    if (missing !== undefined) throw new Beta9Error("SECRET_NOT_FOUND", { name: missing });
  }

  /** The environment a container gets for `names`: the current values (a deleted one is left out). */
  env(workspaceId: string, names: readonly string[]): Record<string, string> {
    const have = this.values.get(workspaceId);
    const env: Record<string, string> = {};
    for (const n of names) {
      const v = have?.get(n);
      if (v !== undefined) env[n] = v;
    }
    return env;
  }
}
