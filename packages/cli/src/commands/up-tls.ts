/**
 * `beta9 up --tls` / `beta9 gateway --tls`: HTTPS for the gateway with a certificate made on first
 * start in the data dir (or the operator's, `--tls-cert`/`--tls-key`). Clients on this machine
 * trust exactly that certificate (saved in the context); machines pin it by its fingerprint.
 */
import { join } from "node:path";
import { Option, type Command } from "commander";
import { CliError } from "../errors.js";
import { importPlatform } from "../platform.js";

export interface TlsCliOptions {
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsHost?: string[];
}

export interface GatewayTls {
  /** The PEM pair the gateway serves. */
  tls: { cert: string; key: string };
  /** Where the certificate is (for `curl --cacert`, `beta9 config create --tls-ca`). */
  certPath: string;
  /** The certificate's SHA-256 fingerprint ("AB:CD:…"). */
  fingerprint: string;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export function withTlsOptions(command: Command): Command {
  return command
    .option("--tls", "serve HTTPS with a certificate made on first start in the data dir (tls/gateway.crt), trusted by this machine's CLI")
    .addOption(new Option("--tls-cert <file>", "serve HTTPS with this PEM certificate (with --tls-key) instead").implies({ tls: true }))
    .addOption(new Option("--tls-key <file>", "the private key of --tls-cert (PEM)").implies({ tls: true }))
    .option("--tls-host <name>", "another name or address clients use for the gateway, put in the made certificate (repeatable)", collect);
}

/** Undefined without --tls; otherwise the certificate to serve, made or read, with its fingerprint. */
export async function gatewayTls(opts: TlsCliOptions, dataDir: string): Promise<GatewayTls | undefined> {
  if (!opts.tls) return undefined;
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
    throw new CliError("INVALID_ARGUMENT", "--tls-cert and --tls-key go together: give both, or neither to use a made certificate");
  }
  const { certificateFingerprint, ensureSelfSignedCertificate, localNames, readTlsFiles } = await importPlatform("@beta9/gateway", "up --tls");
  const files = opts.tlsCert && opts.tlsKey
    ? { cert: opts.tlsCert, key: opts.tlsKey }
    : ensureSelfSignedCertificate(join(dataDir, "tls"), [...localNames(), ...(opts.tlsHost ?? [])]);
  let tls: { cert: string; key: string };
  try {
    tls = readTlsFiles(files);
  } catch (err) {
    throw new CliError("INVALID_ARGUMENT", `TLS: ${(err as Error).message}`);
  }
  return { tls, certPath: files.cert, fingerprint: certificateFingerprint(tls.cert) };
}
