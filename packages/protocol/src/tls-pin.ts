/**
 * Trusting one gateway certificate (a self-signed one from `beta9 up --tls`): the TLS options every
 * client of the gateway uses (SDK, CLI, worker, b9agent; HTTP and WebSocket). The handshake must
 * present exactly this certificate (it is the only trust anchor), so the name the client dialled
 * need not be in it: a machine behind NAT dials the gateway by whatever address reaches it.
 */
import { X509Certificate } from "node:crypto";

export function pinnedTlsOptions(certificatePem: string): { ca: string; checkServerIdentity: () => undefined } {
  return { ca: certificatePem, checkServerIdentity: () => undefined };
}

/** "AB:CD:…" or "abcd…" → "AB:CD:…" (64 hex digits), or undefined when it is not a SHA-256 fingerprint. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.trim().replace(/^sha256:/i, "").replace(/:/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(":");
}

export function certificateFingerprint256(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}
