// Pins and key policy for client certificates: checks on the leaf alone that run after
// the chain verified. Pins narrow a CA's whole population down to known certificates (or
// keys, which survive re-issuance); the policy refuses weak keys and long-lived
// certificates a CA should not have issued. Each failure names the rule that decided.
import type { X509Certificate } from 'node:crypto';
import type { CertPolicyConfig } from '../config/schema.js';
import type { PeerCheck } from './trust.js';
import type { Identity } from '../pki/identity-types.js';

/** Refuses a leaf whose DER and SPKI SHA-256 are both outside `pins` ("sha256:<hex>"). */
export function buildPinCheck(pins: string[]): PeerCheck | undefined {
  if (pins.length === 0) return undefined;
  const set = new Set(pins.map((p) => p.toLowerCase()));
  return (_leaf, _chain, id) => {
    if (set.has(`sha256:${id.fingerprint}`) || set.has(`sha256:${id.spkiFingerprint}`)) return undefined;
    return {
      reason: 'pin_mismatch',
      detail: `certificate sha256:${id.fingerprint} (SPKI sha256:${id.spkiFingerprint}) is not among the ${set.size} tls.pins`,
      afterHandshake: true,
    };
  };
}

export type KeyFamily = 'rsa' | 'ec' | 'ed25519';

/** The policy's view of a public key: its family (as named in key_types) and size in bits. */
export function keyFacts(cert: X509Certificate): { type: string; family: KeyFamily | undefined; bits: number | undefined } {
  const key = cert.publicKey;
  const type = key.asymmetricKeyType ?? 'unknown';
  const d = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') return { type, family: 'rsa', bits: d.modulusLength };
  if (type === 'ec') {
    // prime256v1, secp384r1, secp521r1, brainpoolP512r1...: the size is in the curve name
    const m = /(\d{3})/.exec(d.namedCurve ?? '');
    return { type: `ec ${d.namedCurve ?? '?'}`, family: 'ec', bits: m ? Number(m[1]) : undefined };
  }
  if (type === 'ed25519') return { type, family: 'ed25519', bits: 256 };
  return { type, family: undefined, bits: undefined };
}

type KeyFacts = ReturnType<typeof keyFacts>;
/**
 * By identity, which is shared per certificate and chain (pki/identity.ts), so this lives
 * as long as the identity cache keeps it: asking OpenSSL for an EC key's curve costs ~2%
 * of a full handshake.
 */
const keyFactsOf = new WeakMap<Identity, KeyFacts>();

function cachedKeyFacts(leaf: X509Certificate, id: Identity): KeyFacts {
  let k = keyFactsOf.get(id);
  if (!k) keyFactsOf.set(id, (k = keyFacts(leaf)));
  return k;
}

/**
 * CAs backdate notBefore by minutes against clock skew (`portcullis cert issue` by 5), so a
 * "--days 90" certificate spans 90 days and 5 minutes; max_validity forgives up to an hour.
 */
const BACKDATE_GRACE_MS = 3_600_000;

function days(ms: number): string {
  const d = ms / 86_400_000;
  return Number.isInteger(d) ? `${d}d` : `${d.toFixed(1)}d`;
}

/** Refuses a leaf that breaks cert_policy (key type, RSA/EC size, validity period). */
export function buildPolicyCheck(p: CertPolicyConfig): PeerCheck {
  const types = new Set<string>(p.key_types);
  return (leaf, _chain, id) => {
    const k = cachedKeyFacts(leaf, id);
    if (!k.family || !types.has(k.family)) {
      return { reason: 'policy', detail: `cert_policy.key_types: ${k.type} key, allowed: ${p.key_types.join(', ')}`, afterHandshake: true };
    }
    if (k.family === 'rsa' && (k.bits ?? 0) < p.min_rsa_bits) {
      return { reason: 'policy', detail: `cert_policy.min_rsa_bits: RSA key of ${k.bits ?? '?'} bits, minimum ${p.min_rsa_bits}`, afterHandshake: true };
    }
    if (k.family === 'ec' && (k.bits ?? 0) < p.min_ec_bits) {
      return { reason: 'policy', detail: `cert_policy.min_ec_bits: ${k.type} key of ${k.bits ?? '?'} bits, minimum ${p.min_ec_bits}`, afterHandshake: true };
    }
    if (p.max_validity > 0) {
      const period = id.notAfter.getTime() - id.notBefore.getTime();
      if (period > p.max_validity + BACKDATE_GRACE_MS) {
        return { reason: 'policy', detail: `cert_policy.max_validity: valid for ${days(period)} (notBefore to notAfter), maximum ${days(p.max_validity)}`, afterHandshake: true };
      }
    }
    return undefined;
  };
}
