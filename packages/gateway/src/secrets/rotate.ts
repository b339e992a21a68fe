/**
 * Rotating the key that seals secrets (`beta9 gateway rotate-secrets-key`), run by the operator on
 * the gateway's machine with every gateway on the store stopped (the key is the gateway's: no
 * client can do it). Every secret is re-sealed under the new key in one store transaction, and the
 * key files change only after that commit, in an order that always leaves each secret openable by
 * a key on disk:
 *
 *   1. the new key is written to `secrets.key.new` (0600, flushed), or read from there when an
 *      earlier run was interrupted (so a re-run finishes that rotation rather than starting another);
 *   2. one transaction re-seals every secret: each is opened with the current key, else the new one
 *      (an earlier run committed already), else `secrets.key.old`; one that none opens aborts the
 *      whole transaction, naming it, and nothing changes;
 *   3. the current key is copied to `secrets.key.old`, then `secrets.key.new` renamed over
 *      `secrets.key` (atomic); 4. `secrets.key.old` is removed unless asked to keep it.
 *
 * Interrupted anywhere, running the same command again finishes the job. With BETA9_SECRETS_KEY
 * (the operator keeps the key, not the data dir), the new key must be given (--new-key-file) and
 * no key file is touched: the operator then starts the gateway with the new key.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { SecretRepo } from "../store/types.js";
import { loadVaultKey, parseVaultKey, Vault } from "./vault.js";

export interface RotateOptions {
  dataDir: string;
  secrets: SecretRepo;
  /** A file holding the new key (base64 or hex of 32 bytes); default: a random one. */
  newKeyFile?: string;
  /** BETA9_SECRETS_KEY, when the gateway's key comes from there. */
  envKey?: string;
  keepOldKey?: boolean;
  /** Tests: called after each step; throwing there is a crash at that point. */
  step?: (name: "new-key-written" | "resealed" | "old-key-copied" | "swapped") => void | Promise<void>;
}

export interface RotateResult {
  /** Secrets re-sealed under the new key. */
  rotated: number;
  /** Of those, how many an interrupted earlier run had re-sealed already. */
  resumed: number;
  /** Where the key now is (undefined: BETA9_SECRETS_KEY mode, the operator sets it). */
  keyFile?: string;
  oldKeyKept?: string;
}

export class RotateError extends Error {
  override name = "RotateError";
}

async function writeKeyDurably(path: string, key: Buffer): Promise<void> {
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w", 0o600);
  try {
    await handle.writeFile(`${key.toString("base64")}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const readKey = (path: string) => parseVaultKey(readFileSync(path, "utf8").trim(), path);

export async function rotateSecretsKey(o: RotateOptions): Promise<RotateResult> {
  const keyFile = join(o.dataDir, "secrets.key");
  const pending = `${keyFile}.new`;
  const oldFile = `${keyFile}.old`;
  const given = o.newKeyFile === undefined ? undefined : readKey(o.newKeyFile);
  const step = o.step ?? (() => {});

  if (o.envKey) {
    if (!given) throw new RotateError("the gateway's key comes from BETA9_SECRETS_KEY: give the new one with --new-key-file, then start the gateway with BETA9_SECRETS_KEY set to it");
    const current = loadVaultKey(keyFile, o.envKey);
    const { rotated, resumed } = await reseal(o.secrets, [current, given], given);
    return { rotated, resumed };
  }

  if (!existsSync(keyFile)) throw new RotateError(`${keyFile} does not exist: this data dir has no secrets key to rotate (is it the gateway's --data-dir?)`);
  const current = readKey(keyFile);
  let next: Buffer;
  if (existsSync(pending)) {
    // An earlier run was interrupted: finish that rotation, to that key.
    next = readKey(pending);
    if (given && !given.equals(next)) {
      throw new RotateError(`an interrupted rotation to another key is pending (${pending}); run this again without --new-key-file, or with that key, to finish it first`);
    }
  } else {
    next = given ?? randomBytes(32);
    await writeKeyDurably(pending, next);
  }
  await step("new-key-written");
  const openers = [current, next, ...(existsSync(oldFile) ? [readKey(oldFile)] : [])];
  const { rotated, resumed } = await reseal(o.secrets, openers, next);
  await step("resealed");
  if (!current.equals(next)) {
    await copyFile(keyFile, `${oldFile}.tmp`);
    await rename(`${oldFile}.tmp`, oldFile);
    await step("old-key-copied");
  }
  await rename(pending, keyFile);
  await syncDir(o.dataDir);
  await step("swapped");
  if (!o.keepOldKey) await rm(oldFile, { force: true });
  return { rotated, resumed, keyFile, ...(o.keepOldKey && existsSync(oldFile) && { oldKeyKept: oldFile }) };
}

/** One transaction: every secret opened with one of `openers` and sealed under `next`; one that none opens changes nothing. */
async function reseal(secrets: SecretRepo, openers: Buffer[], next: Buffer): Promise<{ rotated: number; resumed: number }> {
  const vaults = openers.map((k) => new Vault(k));
  const target = new Vault(next);
  let resumed = 0;
  const rotated = await secrets.resealAll((s) => {
    for (const [i, vault] of vaults.entries()) {
      let value: string;
      try {
        value = vault.open(s.workspaceId, s.name, s.sealed);
      } catch {
        continue;
      }
      if (openers[i]!.equals(next)) resumed += 1;
      return target.seal(s.workspaceId, s.name, value);
    }
    throw new RotateError(`secret ${s.name} of workspace ${s.workspaceId} opens with neither the current key nor the new one; nothing was changed`);
  });
  return { rotated, resumed };
}

/**
 * The operator's command: locks the data dir (no gateway may run on it meanwhile), opens its store
 * (SQLite there, or the Postgres `storeSpec`), rotates, and closes.
 */
export async function rotateSecretsKeyInDataDir(o: Omit<RotateOptions, "secrets"> & { storeSpec?: string }): Promise<RotateResult> {
  const { lockDataDir } = await import("../server.js");
  const { openStore } = await import("../store/open.js");
  const unlock = lockDataDir(o.dataDir);
  try {
    const store = await openStore(o.storeSpec, o.dataDir);
    try {
      return await rotateSecretsKey({ ...o, secrets: store.secrets });
    } finally {
      await store.close();
    }
  } finally {
    unlock();
  }
}
