// The certificate policy's view of a public key: its family (as named in
// cert_policy.key_types) and size in bits. Shared by the leaf policy check (tls/cert-policy)
// and the chain rules that hold CA keys to the same floor (pki/chain-rules).
import type { X509Certificate } from 'node:crypto';

export type KeyFamily = 'rsa' | 'ec' | 'ed25519';

export interface KeyFacts {
  /** e.g. "rsa", "ec prime256v1", "dsa", "ec (explicit curve)" */
  type: string;
  family: KeyFamily | undefined;
  bits: number | undefined;
}

export function keyFacts(cert: X509Certificate): KeyFacts {
  let key;
  try {
    key = cert.publicKey;
  } catch {
    // OpenSSL could not load the key (explicit curve parameters on some builds, unknown algorithm)
    return { type: 'unreadable', family: undefined, bits: undefined };
  }
  const type = key.asymmetricKeyType ?? 'unknown';
  const d = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') return { type, family: 'rsa', bits: d.modulusLength };
  if (type === 'ec') {
    // prime256v1, secp384r1, secp521r1, brainpoolP512r1...: the size is in the curve name;
    // a key with explicit curve parameters has no name, and no size the policy accepts
    const m = /(\d{3})/.exec(d.namedCurve ?? '');
    return { type: `ec ${d.namedCurve ?? '(explicit curve parameters)'}`, family: 'ec', bits: m ? Number(m[1]) : undefined };
  }
  if (type === 'ed25519') return { type, family: 'ed25519', bits: 256 };
  return { type, family: undefined, bits: d.modulusLength };
}

export interface KeyFloor {
  key_types: readonly string[];
  min_rsa_bits: number;
  min_ec_bits: number;
}

/** Which cert_policy key rule `k` breaks, as "<key>: <what>", or undefined when it passes. */
export function keyFloorProblem(k: KeyFacts, p: KeyFloor): string | undefined {
  if (!k.family || !p.key_types.includes(k.family)) return `cert_policy.key_types: ${k.type} key, allowed: ${p.key_types.join(', ')}`;
  if (k.family === 'rsa' && (k.bits ?? 0) < p.min_rsa_bits) return `cert_policy.min_rsa_bits: RSA key of ${k.bits ?? '?'} bits, minimum ${p.min_rsa_bits}`;
  if (k.family === 'ec' && (k.bits ?? 0) < p.min_ec_bits) return `cert_policy.min_ec_bits: ${k.type} key of ${k.bits ?? '?'} bits, minimum ${p.min_ec_bits}`;
  return undefined;
}
