// Client-certificate trust for one certificate entry (the listener default or an SNI
// entry): which CAs, how deep, and the checks that run after OpenSSL's chain verification
// (portcullis' chain rules, CRL, pins, key policy, OCSP). Built once per configuration
// generation. The same TrustRuntime also decides `cert verify` and doctor's explanation
// (tls/verify-engine.ts), so the proxy and the tools cannot disagree.
//
// Session safety: the digest covers everything that decides acceptance (CAs, CRL bytes,
// crl_mode, pins, policy, OCSP mode and responder), and sessions are bound to it (session-id
// context and ticket keys in listener-tls.ts), so no session resumes across a change of any
// of them. checkPeer runs these checks again on every resumed session, which catches what
// changes without a reload: OCSP answers, and CRLs or certificates passing their dates.
import { createHash, type X509Certificate } from 'node:crypto';
import { readCaFiles, type CertFile } from './pem.js';
import { buildCrlCheck } from './revocation.js';
import { buildOcspCheck } from './ocsp-check.js';
import { buildPinCheck, buildPolicyCheck } from './cert-policy.js';
import { buildChainRuleChecks } from './chain-check.js';
import { keyFacts, keyFloorProblem } from '../pki/key-facts.js';
import { caKeyFloor } from '../pki/chain-rules.js';
import { tlsLog } from './tls-log.js';
import type { ClientAuth, TrustConfig } from '../config/schema.js';
import type { VerifyReason } from './verify-result.js';
import type { Identity } from '../pki/identity-types.js';

/** A failed post-verification check: the reason label and the detail for the message. */
export interface CheckFailure {
  reason: VerifyReason;
  detail: string;
  /**
   * A check that SPEC §2 counts as "after the handshake" (pins, OCSP, cert_policy): on
   * HTTP listeners it ends each request with 403 and a JSON reason instead of closing.
   */
  afterHandshake?: boolean;
}

/**
 * A check that runs once per handshake after the chain verified: leaf, the chain above it
 * (trust anchor excluded) and the identity built from them. May be async (OCSP).
 */
export type PeerCheck = (leaf: X509Certificate, chain: X509Certificate[], identity: Identity) => CheckFailure | undefined | Promise<CheckFailure | undefined>;

/** A check on the chain alone (no identity needed), synchronous. */
export type ChainRules = (leaf: X509Certificate, chain: X509Certificate[]) => CheckFailure | undefined;

export interface TrustRuntime {
  clientAuth: ClientAuth;
  verifyDepth: number;
  caCerts: X509Certificate[];
  caFiles: CertFile[];
  /**
   * CRLs for OpenSSL's own check: always empty. Revocation is checked in revocation.ts
   * (see why there), which also gives the leaf-only mode OpenSSL lacks under Node.
   */
  crlPem: string[];
  /** checks after chain verification, in order; the first failure decides */
  checks: PeerCheck[];
  /**
   * portcullis' structural chain rules (chain-check.ts), also asked to name a refusal
   * OpenSSL reports vaguely (UNSPECIFIED for a name constraint on OpenSSL 3.0) or
   * differently across versions; undefined when no client certificate is asked for
   */
  rules?: ChainRules;
  /**
   * Digest of everything that decides whether a certificate is accepted. Sessions are
   * bound to it (session-id context, ticket keys), so none resumes across a change.
   */
  digest: string;
}

export function buildTrust(cfg: TrustConfig, field: string, minVersion: string): TrustRuntime {
  const caFiles = cfg.client_auth === 'none' ? [] : readCaFiles(cfg.client_ca, `${field}.client_ca`);
  const caCerts = caFiles.flatMap((f) => f.certs);
  const checks: PeerCheck[] = [];
  let ruleCheck: ChainRules | undefined;
  const digest = createHash('sha256');
  digest.update(JSON.stringify({ a: cfg.client_auth, d: cfg.verify_depth, v: minVersion }));
  for (const c of caCerts) digest.update(c.raw);
  if (cfg.client_auth !== 'none') {
    // cheapest and most certain first; OCSP (network) last, only for certificates that
    // passed everything else
    const rules = buildChainRuleChecks(caCerts, cfg.cert_policy);
    checks.push(rules.structure);
    ruleCheck = rules.any;
    if (cfg.crl.length > 0) {
      const crl = buildCrlCheck(cfg.crl, cfg.crl_mode, caCerts, field);
      checks.push(crl.check);
      for (const der of crl.ders) digest.update(der);
    }
    const pins = buildPinCheck(cfg.pins);
    if (pins) checks.push(pins);
    checks.push(buildPolicyCheck(cfg.cert_policy));
    checks.push(rules.caKeys);
    warnWeakAnchors(caFiles, cfg.cert_policy, field);
    const ocsp = buildOcspCheck(cfg.ocsp, caCerts);
    if (ocsp) checks.push(ocsp);
    // every setting that can turn a verdict around; CRL contents were hashed above
    digest.update(
      JSON.stringify({
        crl_mode: cfg.crl.length > 0 ? cfg.crl_mode : null,
        pins: [...cfg.pins].sort(),
        policy: cfg.cert_policy,
        ocsp: { mode: cfg.ocsp.mode, responder: cfg.ocsp.responder ?? null },
      }),
    );
  }
  return {
    clientAuth: cfg.client_auth,
    verifyDepth: cfg.verify_depth,
    caCerts,
    caFiles,
    crlPem: [],
    checks,
    ...(ruleCheck ? { rules: ruleCheck } : {}),
    digest: digest.digest('hex'),
  };
}

/**
 * A trust anchor under the cert_policy key floor can never complete an accepted chain (the
 * ca-key-policy rule refuses it); say so at load, where `portcullis check` shows it.
 */
function warnWeakAnchors(files: CertFile[], policy: TrustConfig['cert_policy'], field: string): void {
  for (const f of files) {
    for (const c of f.certs) {
      const weak = keyFloorProblem(keyFacts(c), caKeyFloor(policy));
      if (!weak) continue;
      const name = (c.subject ?? '').split('\n').reverse().join(',');
      tlsLog().warn(
        { event: 'weak_trust_anchor', field: `${field}.client_ca`, file: f.file, subject: name },
        `${field}.client_ca: ${f.file} holds "${name}", whose key the certificate policy refuses (${weak}); every chain ending at it is refused: replace that CA or remove it from client_ca`,
      );
    }
  }
}
