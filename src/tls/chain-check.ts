// The post-handshake checks that apply portcullis' chain rules (pki/chain-rules.ts) to
// the path OpenSSL has just accepted: rebuilt from the leaf, the certificates the client
// sent and the trusted CAs (trusted first, as OpenSSL builds it), then judged once per
// distinct chain and remembered (bounded), so a reconnecting client costs a map lookup.
//
// A resumed session carries the leaf only: its path is rebuilt with the intermediates seen
// in earlier full handshakes (revocation.ts remembers them). When that is impossible the
// rules still judge the leaf; the session itself was accepted under the same trust digest.
import type { X509Certificate } from 'node:crypto';
import { chainRuleFindings, type RuleFinding } from '../pki/chain-rules.js';
import type { CertPolicyConfig } from '../config/schema.js';
import { issuerOf, rememberChain } from './revocation.js';
import type { ChainRules, CheckFailure, PeerCheck } from './trust.js';

const CACHE_MAX = 1024;

/**
 * Name and signature only: OpenSSL's issuer check (checkIssued) also refuses an issuer whose
 * key usage lacks keyCertSign, and the rules must still see such a CA to name the fault.
 */
function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.issuer === issuer.subject && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** The path OpenSSL most likely built: leaf first, the trust anchor last when `anchored`. */
export function pathFor(leaf: X509Certificate, chain: readonly X509Certificate[], caCerts: readonly X509Certificate[]): { path: X509Certificate[]; anchored: boolean } {
  const path = [leaf];
  let cur = leaf;
  for (let n = 0; n < 32; n++) {
    if (n > 0 || caCerts.some((c) => c.fingerprint256 === leaf.fingerprint256)) {
      if (caCerts.some((c) => c.fingerprint256 === cur.fingerprint256) && signedBy(cur, cur)) return { path, anchored: true };
    }
    const seen = (c: X509Certificate) => path.some((p) => p.fingerprint256 === c.fingerprint256);
    const next =
      caCerts.find((c) => !seen(c) && signedBy(cur, c)) ??
      chain.find((c) => !seen(c) && signedBy(cur, c)) ??
      (() => {
        const r = issuerOf(cur, undefined, []);
        return r && !seen(r) && signedBy(cur, r) ? r : undefined;
      })();
    if (!next) break;
    path.push(next);
    cur = next;
  }
  return { path, anchored: false };
}

function failure(f: RuleFinding): CheckFailure {
  return { reason: f.reason, detail: `${f.rule}: ${f.message}`, ...(f.afterHandshake ? { afterHandshake: true } : {}) };
}

export interface ChainRuleChecks {
  /** structural rules (name constraints, CA markings, critical extensions, strict RFC 5280) */
  structure: ChainRules;
  /** CA keys under the cert_policy floor: a policy failure, "after the handshake" (SPEC §2) */
  caKeys: PeerCheck;
  /** the first finding of either kind, to name a refusal OpenSSL already made */
  any: ChainRules;
}

export function buildChainRuleChecks(caCerts: readonly X509Certificate[], policy: CertPolicyConfig): ChainRuleChecks {
  const cache = new Map<string, RuleFinding[]>();
  const findings = (leaf: X509Certificate, chain: readonly X509Certificate[]): RuleFinding[] => {
    const key = [leaf, ...chain].map((c) => c.fingerprint256).join('|');
    let f = cache.get(key);
    if (f) {
      // least recently used last
      cache.delete(key);
      cache.set(key, f);
      return f;
    }
    if (chain.length > 0) rememberChain([...chain]);
    const { path, anchored } = pathFor(leaf, chain, caCerts);
    f = chainRuleFindings(path, anchored, { strict: policy.strict_rfc5280, policy });
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, f);
    return f;
  };
  return {
    structure: (leaf, chain) => {
      const f = findings(leaf, chain).find((x) => !x.afterHandshake);
      return f ? failure(f) : undefined;
    },
    caKeys: (leaf, chain) => {
      const f = findings(leaf, chain).find((x) => x.afterHandshake);
      return f ? failure(f) : undefined;
    },
    any: (leaf, chain) => {
      const all = findings(leaf, chain);
      const f = all.find((x) => !x.afterHandshake) ?? all[0];
      // OpenSSL refused during the handshake: it stays a handshake refusal whatever the rule
      return f ? { reason: f.reason, detail: `${f.rule}: ${f.message}` } : undefined;
    },
  };
}
