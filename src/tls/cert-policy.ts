// Pins and key policy for client certificates: checks on the leaf alone that run after
// the chain verified. Pins narrow a CA's whole population down to known certificates (or
// keys, which survive re-issuance); the policy refuses weak keys and long-lived
// certificates a CA should not have issued. Each failure names the rule that decided.
import type { X509Certificate } from 'node:crypto';
import type { CertPolicyConfig } from '../config/schema.js';
import type { PeerCheck } from './trust.js';
import type { Identity } from '../pki/identity-types.js';
import { keyFacts, keyFloorProblem, type KeyFacts } from '../pki/key-facts.js';

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

export { keyFacts, type KeyFamily } from '../pki/key-facts.js';

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
  return (leaf, _chain, id) => {
    const k = cachedKeyFacts(leaf, id);
    const weak = keyFloorProblem(k, p);
    if (weak) return { reason: 'policy', detail: weak, afterHandshake: true };
    if (p.max_validity > 0) {
      const period = id.notAfter.getTime() - id.notBefore.getTime();
      if (period > p.max_validity + BACKDATE_GRACE_MS) {
        return { reason: 'policy', detail: `cert_policy.max_validity: valid for ${days(period)} (notBefore to notAfter), maximum ${days(p.max_validity)}`, afterHandshake: true };
      }
    }
    return undefined;
  };
}
