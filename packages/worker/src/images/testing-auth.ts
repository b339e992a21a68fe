/**
 * A token service for tests, so the registry client's Bearer flow runs against the real
 * `docker-registry` token auth: RS256 JWTs signed by a throwaway key whose self-signed certificate
 * the registry trusts (`rootcertbundle`), with the `kid` in libtrust's format. With `users`, it
 * is a private registry's: a token needs Basic credentials of one of them (else 401), as Docker
 * Hub, GHCR and ECR do for private repositories.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { run } from "../exec.js";

function base32(data: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** libtrust key id: base32 of the first 240 bits of sha256(SPKI DER), in groups of 4. */
function libtrustKeyId(spkiDer: Buffer): string {
  const encoded = base32(createHash("sha256").update(spkiDer).digest().subarray(0, 30));
  return encoded.match(/.{4}/g)!.join(":");
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certPath: string;
  requests(): number;
  /** Requests that came with an Authorization header. */
  authorizedRequests(): number;
  close(): Promise<void>;
}

export async function startTokenServer(dir: string, users?: Readonly<Record<string, string>>): Promise<TokenServer> {
  const keyPath = join(dir, "token.key");
  const certPath = join(dir, "token.crt");
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=beta9-test-token", "-days", "2", "-keyout", keyPath, "-out", certPath]);
  const key = createPrivateKey(await readFile(keyPath));
  const kid = libtrustKeyId(createPublicKey(key).export({ type: "spki", format: "der" }));
  const service = "beta9-test-registry";
  const issuer = "beta9-test-issuer";
  let count = 0;
  let authorized = 0;
  const server = createServer((req, res) => {
    count++;
    if (req.headers.authorization) authorized++;
    if (users) {
      const [scheme, encoded] = (req.headers.authorization ?? "").split(" ");
      const text = scheme === "Basic" && encoded ? Buffer.from(encoded, "base64").toString() : "";
      const colon = text.indexOf(":");
      if (colon < 0 || users[text.slice(0, colon)] !== text.slice(colon + 1)) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="beta9-test-token"', "content-type": "application/json" });
        res.end(JSON.stringify({ details: "bad credentials" }));
        return;
      }
    }
    const url = new URL(req.url ?? "/", "http://localhost");
    const access = url.searchParams.getAll("scope").map((scope) => {
      const [type, name, actions] = scope.split(":");
      return { type, name, actions: (actions ?? "").split(",").filter(Boolean) };
    });
    const now = Math.floor(Date.now() / 1000);
    const head = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", kid }));
    const claims = b64url(JSON.stringify({ iss: issuer, sub: "", aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access }));
    const signature = b64url(sign("sha256", Buffer.from(`${head}.${claims}`), key));
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ token: `${head}.${claims}.${signature}`, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests: () => count,
    authorizedRequests: () => authorized,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
