/**
 * Seals secret values with AES-256-GCM under a key held apart from the database: a file
 * (`<data dir>/secrets.key`, 32 random bytes, mode 0600, made on first start) or the operator's
 * own key in BETA9_SECRETS_KEY (base64 or hex of 32 bytes). Each value is bound to its workspace
 * and name (associated data), so a sealed value copied to another row does not open.
 *
 * Sealed form: "v1:" + base64(12-byte IV | 16-byte tag | ciphertext).
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class VaultKeyError extends Error {
  override name = "VaultKeyError";
}

/** A key written as hex or base64 of 32 bytes; `source` names where it came from, for the message. */
export function parseVaultKey(text: string, source: string): Buffer {
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "base64");
  if (key.length !== KEY_BYTES) throw new VaultKeyError(`${source} must hold ${KEY_BYTES} bytes in hex or base64 (openssl rand -base64 32)`);
  return key;
}

/** The key from BETA9_SECRETS_KEY, else the key file (created when missing). */
export function loadVaultKey(keyFile: string, fromEnv = process.env.BETA9_SECRETS_KEY): Buffer {
  if (fromEnv) return parseVaultKey(fromEnv, "BETA9_SECRETS_KEY");
  let text: string;
  try {
    text = readFileSync(keyFile, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const key = randomBytes(KEY_BYTES);
    writeFileSync(keyFile, `${key.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(keyFile, 0o600);
    return key;
  }
  const key = Buffer.from(text, "base64");
  if (key.length !== KEY_BYTES) throw new VaultKeyError(`${keyFile} does not hold a ${KEY_BYTES}-byte base64 key`);
  return key;
}

export class Vault {
  constructor(private readonly key: Buffer) {}

  seal(workspaceId: string, name: string, value: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(`${workspaceId}\0${name}`));
    const body = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return `v1:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64")}`;
  }

  /** Throws when the value was sealed under another key, for another row, or was altered. */
  open(workspaceId: string, name: string, sealed: string): string {
    if (!sealed.startsWith("v1:")) throw new VaultKeyError(`secret ${name}: unknown sealed format`);
    const raw = Buffer.from(sealed.slice(3), "base64");
    if (raw.length < IV_BYTES + TAG_BYTES) throw new VaultKeyError(`secret ${name}: sealed value too short`);
    const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(`${workspaceId}\0${name}`));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString("utf8");
  }
}
