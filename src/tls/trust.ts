// Client-certificate trust for one certificate entry (the listener default or an SNI
// entry): which CAs, how deep, and the checks that run after OpenSSL's chain verification
// (revocation, pins, key policy). Built once per configuration generation.
import { createHash, type X509Certificate } from 'node:crypto';
import { readCaFiles, type CertFile } from './pem.js';
import type { ClientAuth, TrustConfig } from '../config/schema.js';
import type { VerifyReason } from './verify-result.js';
import type { Identity } from '../pki/identity-types.js';

/** A failed post-verification check: the reason label and the detail for the message. */
export interface CheckFailure {
  reason: VerifyReason;
  detail: string;
}

/**
 * A check that runs once per handshake after the chain verified: leaf, the chain above it
 * (trust anchor excluded) and the identity built from them. May be async (OCSP).
 */
export type PeerCheck = (leaf: X509Certificate, chain: X509Certificate[], identity: Identity) => CheckFailure | undefined | Promise<CheckFailure | undefined>;

export interface TrustRuntime {
  clientAuth: ClientAuth;
  verifyDepth: number;
  caCerts: X509Certificate[];
  caFiles: CertFile[];
  /** PEM CRLs handed to OpenSSL (chain-wide checking), when configured */
  crlPem: string[];
  /** checks after chain verification, in order; the first failure decides */
  checks: PeerCheck[];
  /**
   * Digest of everything that decides whether a certificate is accepted. Sessions are
   * bound to it (session-id context, ticket keys), so none resumes across a change.
   */
  digest: string;
}

/** Hooks that add revocation/pin/policy checks and their inputs to the digest (issue 5). */
export interface TrustExtension {
  (cfg: TrustConfig, field: string, trust: TrustRuntime, digest: ReturnType<typeof createHash>): void;
}

const extensions: TrustExtension[] = [];

/** Registers a trust extension (called at module load by the revocation/pin/policy code). */
export function registerTrustExtension(ext: TrustExtension): void {
  extensions.push(ext);
}

export function buildTrust(cfg: TrustConfig, field: string, minVersion: string): TrustRuntime {
  const caFiles = cfg.client_auth === 'none' ? [] : readCaFiles(cfg.client_ca, `${field}.client_ca`);
  const caCerts = caFiles.flatMap((f) => f.certs);
  const trust: TrustRuntime = {
    clientAuth: cfg.client_auth,
    verifyDepth: cfg.verify_depth,
    caCerts,
    caFiles,
    crlPem: [],
    checks: [],
    digest: '',
  };
  const digest = createHash('sha256');
  digest.update(JSON.stringify({ a: cfg.client_auth, d: cfg.verify_depth, v: minVersion }));
  for (const c of caCerts) digest.update(c.raw);
  for (const ext of extensions) ext(cfg, field, trust, digest);
  trust.digest = digest.digest('hex');
  return trust;
}
