/**
 * `b9agent init --tls-fingerprint`: fetch the gateway's certificate once and keep it only if its
 * SHA-256 fingerprint is the one `beta9 machine create` printed. From then on the agent trusts that
 * certificate alone, so the machine token never goes to anyone without the gateway's private key.
 */
import { connect } from "node:tls";
import { normalizeFingerprint } from "@beta9/protocol";

export class FingerprintMismatchError extends Error {
  override name = "FingerprintMismatchError";
}

/** The PEM of the certificate `host:port` presents, after checking it against `fingerprint`. */
export function fetchPinnedCertificate(host: string, port: number, fingerprint: string, timeoutMs = 10_000): Promise<string> {
  const expected = normalizeFingerprint(fingerprint);
  if (!expected) return Promise.reject(new FingerprintMismatchError(`--tls-fingerprint ${JSON.stringify(fingerprint)} is not a SHA-256 fingerprint (64 hex digits, colons optional)`));
  return new Promise((resolve, reject) => {
    // Not verified by a CA on purpose: the fingerprint is the check. Nothing is sent before it.
    const socket = connect({ host, port, rejectUnauthorized: false, ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }) });
    const timer = setTimeout(() => socket.destroy(new Error(`no TLS answer from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    socket.once("secureConnect", () => {
      const certificate = socket.getPeerX509Certificate();
      clearTimeout(timer);
      socket.destroy();
      if (!certificate) return reject(new Error(`${host}:${port} presented no certificate`));
      if (certificate.fingerprint256 !== expected) {
        return reject(new FingerprintMismatchError(`the gateway at ${host}:${port} presented a certificate with fingerprint ${certificate.fingerprint256}, not ${expected}: refusing it (check the address, or ask for the fingerprint again)`));
      }
      resolve(certificate.toString());
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the gateway at ${host}:${port} over TLS: ${err.message}`));
    });
  });
}
