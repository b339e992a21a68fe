/**
 * TLS for the gateway: the operator's certificate, or one made on first start (self-signed, P-256,
 * ten years) in the data dir, for the names and addresses clients use. Clients trust exactly that
 * certificate: `beta9 up` saves it in the CLI's context, `beta9 machine create` prints its SHA-256
 * fingerprint, and `b9agent init --tls-fingerprint` pins it, so tokens never cross a network in clear.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";

export interface TlsFiles {
  cert: string;
  key: string;
}

/** "AB:CD:…" (64 hex digits) of a PEM certificate, as `openssl x509 -fingerprint -sha256` prints it. */
export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** This machine's names and addresses: what a client on it or its networks may dial. */
export function localNames(): string[] {
  const addresses = Object.values(networkInterfaces()).flat().filter((i) => i !== undefined && !i.internal).map((i) => i!.address.split("%")[0]!);
  return [...new Set(["localhost", hostname(), "127.0.0.1", "::1", ...addresses])];
}

function subjectAltName(names: string[]): string {
  return names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
}

/** The names a certificate covers (its SANs, IPs included). */
function coveredNames(pem: string): Set<string> {
  const san = new X509Certificate(pem).subjectAltName ?? "";
  return new Set(san.split(/,\s*/).map((entry) => entry.replace(/^(DNS|IP Address):/, "")).filter(Boolean));
}

/**
 * The self-signed certificate in `dir` (created, or made again when it does not cover `names`).
 * Written to temp files and renamed, so a crash never leaves a key without its certificate.
 */
export function ensureSelfSignedCertificate(dir: string, names: string[]): TlsFiles & { created: boolean } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = { cert: join(dir, "gateway.crt"), key: join(dir, "gateway.key") };
  if (existsSync(files.cert) && existsSync(files.key)) {
    const covered = coveredNames(readFileSync(files.cert, "utf8"));
    if (names.every((n) => covered.has(n))) return { ...files, created: false };
  }
  const tmp = { cert: `${files.cert}.tmp`, key: `${files.key}.tmp` };
  try {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
      "-subj", "/CN=beta9 gateway", "-addext", `subjectAltName=${subjectAltName(names)}`,
      "-keyout", tmp.key, "-out", tmp.cert,
    ], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    rmSync(tmp.cert, { force: true });
    rmSync(tmp.key, { force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot create a TLS certificate with openssl (install it: apt-get install openssl): ${stderr || (err as Error).message}`);
  }
  renameSync(tmp.key, files.key);
  renameSync(tmp.cert, files.cert);
  return { ...files, created: true };
}

/** Reads the PEM pair, checking that it parses (a clear error at start, not at the first handshake). */
export function readTlsFiles(files: TlsFiles): { cert: string; key: string } {
  const cert = readFileSync(files.cert, "utf8");
  const key = readFileSync(files.key, "utf8");
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${files.cert} is not a PEM certificate: ${(err as Error).message}`);
  }
  return { cert, key };
}
