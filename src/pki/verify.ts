// Explains whether a certificate would be accepted and, if not, every reason why, each
// with a fix. Pure and synchronous (node:crypto X509Certificate only, no sockets). It is
// the explainer, not the judge: `cert verify` and `doctor` take the verdict from the
// listener's own engine (tls/verify-engine.ts) and use this for the reasons; where the two
// disagree the engine wins and the disagreement is a bug (the agreement tests look for it).
// The rules follow what OpenSSL enforces in a Node TLS server (a chain to a self-signed
// trusted CA, validity of every certificate, the TLS purpose: EKU and key usage), plus
// portcullis' own: the chain rules (pki/chain-rules.ts, the same function the proxy runs),
// the leaf key policy, and with CRLs configured a usable CRL from the issuer of every
// certificate the crl_mode covers (pki/crl.ts crlUnusable, shared with the proxy).
import type { X509Certificate } from 'node:crypto';
import { x509 } from './x509.js';
import { crlSignedBy, crlUnusable, normalizeSerial, type CrlInfo, type CrlMode } from './crl.js';
import { chainRuleFindings } from './chain-rules.js';
import { readCertificate } from './der.js';
import { keyFacts, keyFloorProblem, type KeyFloor } from './key-facts.js';

export type VerifyCode =
  | 'unknown_ca'
  | 'missing_intermediate'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_eku'
  | 'ca_as_leaf'
  | 'depth_exceeded'
  | 'revoked'
  | 'bad_signature'
  /** CRLs are configured but none (valid, correctly signed) covers a certificate in the chain */
  | 'crl_missing'
  /** the only CRL from the issuer must not be used (critical extension, no cRLSign, no cRLNumber in chain mode) */
  | 'crl_unusable'
  /** a name in the chain breaks a CA's name constraints */
  | 'name_constraint'
  /** a certificate breaks RFC 5280 (critical extension not processed, strict rules) */
  | 'invalid_cert'
  /** a key (leaf or CA) or validity period the certificate policy refuses */
  | 'policy';

/** The listener's handshake result (X-Client-Verify FAILED:<result>) each explanation stands for. */
export const RESULT_OF_CODE: Record<VerifyCode, string> = {
  unknown_ca: 'unknown_ca',
  missing_intermediate: 'unknown_ca',
  bad_signature: 'unknown_ca',
  expired: 'expired',
  not_yet_valid: 'not_yet_valid',
  bad_eku: 'bad_eku',
  ca_as_leaf: 'ca_as_leaf',
  depth_exceeded: 'depth_exceeded',
  revoked: 'revoked',
  crl_missing: 'revocation_unknown',
  crl_unusable: 'revocation_unknown',
  name_constraint: 'name_constraint',
  invalid_cert: 'invalid_cert',
  policy: 'policy',
};

export interface VerifyReason {
  code: VerifyCode;
  /** one sentence: what is wrong, naming the certificate and dates involved */
  message: string;
  /** one sentence: what to do about it */
  fix: string;
}

export interface VerifyContext {
  /** trust anchors (and any intermediates the verifier trusts, as OpenSSL's store would) */
  cas: X509Certificate[];
  /** certificates the peer presented after its leaf (the leaf itself is ignored if present) */
  intermediates?: X509Certificate[];
  /**
   * CA certificates the verifier knows but that the peer must send itself. Used only to
   * tell "missing intermediate" apart from "unknown CA"; they never make a chain valid.
   */
  knownIntermediates?: X509Certificate[];
  crls?: CrlInfo[];
  /** the clock; default: now */
  now?: Date;
  /** maximum number of intermediates between leaf and trust anchor; default 3 (config default) */
  verifyDepth?: number;
  /** which TLS purpose the leaf must serve; default 'client' */
  purpose?: 'client' | 'server';
  /** tls.crl_mode; default 'chain' */
  crlMode?: CrlMode;
  /** cert_policy.strict_rfc5280; default false */
  strict?: boolean;
  /** the cert_policy key floor (and max_validity in ms, 0 = none) for the leaf and CA keys; absent: not checked */
  policy?: KeyFloor & { max_validity?: number };
}

export interface VerifyResult {
  accepted: boolean;
  reasons: VerifyReason[];
  /** the path that was built, leaf first; ends with the trust anchor when `trusted` */
  chain: X509Certificate[];
  trusted: boolean;
  /** what does not refuse but deserves attention (a CRL past its nextUpdate...) */
  warnings: string[];
}

const EKU_OID = { client: '1.3.6.1.5.5.7.3.2', server: '1.3.6.1.5.5.7.3.1' } as const;
const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};

/** RFC 4514 form of Node's multi-line name (most specific RDN first). */
export function rfc4514(nodeName: string | undefined): string {
  // Node leaves `subject`/`issuer` undefined for an empty name
  return (nodeName ?? '').split('\n').reverse().join(',');
}

export function notBeforeOf(x: X509Certificate): Date {
  return (x as { validFromDate?: Date }).validFromDate ?? new Date(x.validFrom);
}

export function notAfterOf(x: X509Certificate): Date {
  return (x as { validToDate?: Date }).validToDate ?? new Date(x.validTo);
}

/** Extended key usage OIDs, or undefined when the extension is absent (Node renamed the getter in 22). */
export function ekuOf(x: X509Certificate): string[] | undefined {
  return (x as { extKeyUsage?: string[] }).extKeyUsage ?? x.keyUsage;
}

export function ekuName(oid: string): string {
  return EKU_NAMES[oid] ?? oid;
}

interface ExtraFacts {
  pathLen: number | undefined;
  /** key usage bit flags, undefined when the extension is absent */
  keyUsage: number | undefined;
  issuerDer: Buffer;
}
const facts = new WeakMap<X509Certificate, ExtraFacts>();

/** What Node's X509Certificate does not expose: pathLen, key usage bits, issuer DER. */
export function extraFacts(x: X509Certificate): ExtraFacts {
  let f = facts.get(x);
  if (!f) {
    try {
      const p = new x509.X509Certificate(x.raw);
      f = {
        pathLen: p.getExtension(x509.BasicConstraintsExtension)?.pathLength,
        keyUsage: p.getExtension(x509.KeyUsagesExtension)?.usages,
        issuerDer: Buffer.from(p.issuerName.toArrayBuffer()),
      };
    } catch {
      // an extension the library cannot decode (a malformed AIA...): the chain rules name
      // the fault; here only the issuer is needed, read with the plain DER reader
      let issuerDer: Buffer = Buffer.alloc(0);
      try {
        issuerDer = readCertificate(x.raw).issuer;
      } catch {
        // unparseable: no CRL will match it
      }
      f = { pathLen: undefined, keyUsage: undefined, issuerDer };
    }
    facts.set(x, f);
  }
  return f;
}

function isSelfSigned(x: X509Certificate): boolean {
  return x.subject === x.issuer && x.checkIssued(x) && safeVerify(x, x);
}

function safeVerify(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function days(ms: number): string {
  const d = Math.round(Math.abs(ms) / 86_400_000);
  return d === 1 ? '1 day' : `${d} days`;
}

export function explainVerify(leaf: X509Certificate, ctx: VerifyContext): VerifyResult {
  const now = ctx.now ?? new Date();
  const purpose = ctx.purpose ?? 'client';
  const depthLimit = ctx.verifyDepth ?? 3;
  const reasons: VerifyReason[] = [];
  const add = (code: VerifyCode, message: string, fix: string): void => {
    reasons.push({ code, message, fix });
  };
  const anchors = new Set(ctx.cas.map((c) => c.fingerprint256));
  const presented = (ctx.intermediates ?? []).filter((c) => c.fingerprint256 !== leaf.fingerprint256);
  const known = ctx.knownIntermediates ?? [];
  const peer = purpose === 'client' ? 'client' : 'server';

  // --- build the path: presented intermediates and trusted certificates only ---------------
  const chain: X509Certificate[] = [leaf];
  const usedKnown: X509Certificate[] = [];
  let trusted = false;
  let cur = leaf;
  for (let guard = 0; guard < 32; guard++) {
    if (guard > 0 && anchors.has(cur.fingerprint256) && isSelfSigned(cur)) {
      trusted = true;
      break;
    }
    if (isSelfSigned(cur)) {
      const twin = ctx.cas.find((c) => c.subject === cur.subject);
      if (guard === 0 && anchors.has(cur.fingerprint256)) trusted = true;
      else if (twin)
        add(
          'unknown_ca',
          `the chain ends at a self-signed CA named "${rfc4514(cur.subject)}" that is not the trusted CA of that name: same name, different key (a re-created CA?)`,
          `trust the CA certificate that really issued this chain, or re-issue the certificate from the trusted CA`,
        );
      else
        add(
          'unknown_ca',
          `the chain ends at the self-signed ${cur.ca ? 'CA' : 'certificate'} "${rfc4514(cur.subject)}", which is not among the trusted CAs (${listNames(ctx.cas)})`,
          `add "${rfc4514(cur.subject)}" to the trusted CAs (client_ca / --ca) if it is yours, or use a certificate issued by a trusted CA`,
        );
      break;
    }
    const seen = new Set(chain.map((c) => c.fingerprint256));
    const byName = (pool: X509Certificate[]): X509Certificate[] => pool.filter((c) => c.subject === cur.issuer && !seen.has(c.fingerprint256));
    const nameMatches = [...byName(ctx.cas), ...byName(presented)];
    const next = nameMatches.find((c) => cur.checkIssued(c) && safeVerify(cur, c));
    if (next) {
      chain.push(next);
      cur = next;
      continue;
    }
    if (nameMatches.length) {
      add(
        'bad_signature',
        `the signature on "${rfc4514(cur.subject)}" does not verify with the key of "${rfc4514(cur.issuer)}": it was altered, or issued by a different CA that has the same name (a re-created CA?)`,
        `re-issue the certificate from the current CA, or trust the CA certificate that really issued it`,
      );
      break;
    }
    const hint = byName(known).find((c) => cur.checkIssued(c) && safeVerify(cur, c));
    if (hint) {
      // The verifier knows this intermediate, but the peer did not send it: finish the
      // walk with it only to tell whether sending it would be enough.
      usedKnown.push(hint);
      chain.push(hint);
      cur = hint;
      continue;
    }
    add(
      'unknown_ca',
      `"${rfc4514(cur.subject)}" was issued by "${rfc4514(cur.issuer)}", which is not a trusted CA (trusted: ${listNames(ctx.cas)}) and was not sent in the chain`,
      `if "${rfc4514(cur.issuer)}" is an intermediate below a trusted CA, the ${peer} must send it after its certificate (use the chain file: leaf then intermediates); otherwise add its root CA to the trusted CAs, or issue the ${peer} a certificate from a trusted CA`,
    );
    break;
  }
  if (usedKnown.length) {
    const names = usedKnown.map((c) => `"${rfc4514(c.subject)}"`).join(', ');
    reasons.unshift({
      code: 'missing_intermediate',
      message: `the ${peer} did not send the intermediate CA certificate ${names} needed to link its certificate to a trusted CA`,
      fix: `configure the ${peer} with the chain file (its certificate followed by ${names}), e.g. the .chain.crt that \`portcullis cert issue\` writes`,
    });
    // the path only closed thanks to a certificate the peer did not send
    trusted = false;
  }
  const anchorIndex = trusted ? chain.length - 1 : -1;
  const describe = (i: number): string => {
    const name = `"${rfc4514(chain[i]!.subject)}"`;
    if (i === 0) return `the certificate ${name}`;
    if (i === anchorIndex) return `the trusted CA ${name}`;
    return `the intermediate CA ${name}`;
  };

  // --- the leaf's own properties -----------------------------------------------------------
  if (leaf.ca) {
    add(
      'ca_as_leaf',
      `${describe(0)} is a CA certificate (basicConstraints CA:TRUE); a CA certificate is never accepted as a ${peer} certificate`,
      `issue a ${peer} certificate from this CA (portcullis cert issue --type ${peer}) and present that instead`,
    );
  }
  const eku = ekuOf(leaf);
  if (eku && !eku.includes(EKU_OID[purpose])) {
    add(
      'bad_eku',
      `${describe(0)} is limited to ${eku.map(ekuName).join(', ') || 'no usage'} by its extended key usage; a ${peer} certificate needs ${purpose === 'client' ? 'clientAuth' : 'serverAuth'}`,
      `re-issue it with --type ${purpose} (or --type both)`,
    );
  }
  const ku = extraFacts(leaf).keyUsage;
  if (!leaf.ca && ku !== undefined && (ku & (x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement)) === 0) {
    add(
      'bad_eku',
      `${describe(0)} has a key usage without digitalSignature, so it cannot sign the TLS handshake`,
      `re-issue it with key usage digitalSignature (portcullis cert issue does this)`,
    );
  }

  // --- every certificate in the path ---------------------------------------------------------
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!;
    const nb = notBeforeOf(c);
    const na = notAfterOf(c);
    if (now.getTime() > na.getTime()) {
      add(
        'expired',
        `${describe(i)} expired on ${iso(na)} (${days(now.getTime() - na.getTime())} ago; this clock says ${iso(now)})`,
        i === 0 ? `issue a new certificate (portcullis cert issue) and deploy it; if that date looks wrong, check the clock` : `renew that CA certificate and re-issue what it signed`,
      );
    } else if (now.getTime() < nb.getTime()) {
      add(
        'not_yet_valid',
        `${describe(i)} is not valid until ${iso(nb)} (in ${days(nb.getTime() - now.getTime())}; this clock says ${iso(now)})`,
        `check the clocks of this machine and of the issuing machine (NTP), or wait until it becomes valid`,
      );
    }
    if (i === 0) continue;
    const ceku = ekuOf(c);
    if (ceku && !ceku.includes(EKU_OID[purpose])) {
      add(
        'bad_eku',
        `${describe(i)} restricts everything below it to ${ceku.map(ekuName).join(', ')} by its extended key usage, which excludes ${purpose === 'client' ? 'clientAuth' : 'serverAuth'}`,
        `use a CA without an extended key usage restriction, or one that includes ${purpose === 'client' ? 'clientAuth' : 'serverAuth'}`,
      );
    }
    const pathLen = extraFacts(c).pathLen;
    const below = i - 1;
    if (pathLen !== undefined && below > pathLen) {
      add(
        'depth_exceeded',
        `${describe(i)} allows ${pathLen} intermediate CA(s) below it (pathLen) but the chain has ${below}`,
        `issue from a CA closer to the leaf, or re-create the CA with a larger pathLen`,
      );
    }
  }
  if (trusted) {
    const intermediates = chain.length - 2;
    if (intermediates > depthLimit) {
      add(
        'depth_exceeded',
        `the chain has ${intermediates} intermediate CAs, more than the allowed verify depth of ${depthLimit}`,
        `raise verify_depth (tls.verify_depth / --verify-depth) to at least ${intermediates}, or issue from a CA closer to the root`,
      );
    }
  }

  // --- portcullis' chain rules: the function the proxy runs after the handshake -------------
  for (const f of chainRuleFindings(chain, trusted, { strict: ctx.strict ?? false, policy: ctx.policy })) {
    add(f.reason, f.message, f.fix);
  }
  if (ctx.policy) {
    const weak = keyFloorProblem(keyFacts(leaf), ctx.policy);
    if (weak) add('policy', `${describe(0)} has a key the certificate policy refuses (${weak})`, `issue it with an allowed key type and size (portcullis cert issue --key-type), or change cert_policy`);
    const maxValidity = ctx.policy.max_validity ?? 0;
    const period = notAfterOf(leaf).getTime() - notBeforeOf(leaf).getTime();
    // the same hour of grace for backdated notBefore as tls/cert-policy.ts
    if (maxValidity > 0 && period > maxValidity + 3_600_000) {
      add('policy', `${describe(0)} is valid for ${days(period)}, longer than cert_policy.max_validity (${days(maxValidity)})`, `issue it for a shorter period (portcullis cert issue --days), or raise max_validity`);
    }
  }

  // --- revocation ---------------------------------------------------------------------------
  const crls = ctx.crls ?? [];
  const warnings: string[] = [];
  const mode = ctx.crlMode ?? 'chain';
  if (crls.length) {
    const lastChecked = mode === 'leaf' ? 1 : trusted ? chain.length - 1 : chain.length;
    for (let i = 0; i < lastChecked; i++) {
      const c = chain[i]!;
      const issuer = chain[i + 1];
      const issuerDer = extraFacts(c).issuerDer;
      const signed = crls
        .filter((l) => l.issuerDer.equals(issuerDer) && (!issuer || crlSignedBy(l, issuer)))
        .sort((a, b) => b.thisUpdate.getTime() - a.thisUpdate.getTime());
      const crl = signed.find((l) => crlUnusable(l, issuer, mode) === undefined);
      if (!crl && signed.length && trusted) {
        add(
          'crl_unusable',
          `the CRL of "${rfc4514(c.issuer)}"${signed[0]!.source ? ` (${signed[0]!.source})` : ''} must not be used: ${crlUnusable(signed[0]!, issuer, mode)}; so ${describe(i)} cannot be checked for revocation`,
          `publish a conforming CRL for "${rfc4514(c.issuer)}" (portcullis crl --ca DIR writes one) and reload`,
        );
        continue;
      }
      if (crl && crl.crlNumber === undefined) warnings.push(`the CRL of "${rfc4514(c.issuer)}"${crl.source ? ` (${crl.source})` : ''} has no cRLNumber (RFC 5280 §5.2.3); crl_mode: leaf uses it, crl_mode: chain would refuse it`);
      if (!crl) {
        if (trusted) {
          add(
            'crl_missing',
            `CRLs are configured, but none of them is issued (and signed) by "${rfc4514(c.issuer)}", so ${describe(i)} cannot be checked for revocation`,
            `add the CRL of "${rfc4514(c.issuer)}" to the crl list (portcullis crl --ca DIR writes one for every CA it holds a key for)`,
          );
        }
        continue;
      }
      const hit = crl.revoked.get(normalizeSerial(c.serialNumber));
      if (hit) {
        add(
          'revoked',
          `${describe(i)} (serial ${c.serialNumber.toUpperCase()}) was revoked on ${iso(hit.date)}${hit.reason ? ` (reason: ${hit.reason})` : ''} according to the CRL of "${rfc4514(c.issuer)}"${crl.source ? ` in ${crl.source}` : ''}`,
          hit.reason === 'certificateHold'
            ? `the certificate is on hold: release the hold at the CA and publish a new CRL, or issue a new certificate`
            : `issue a new certificate (portcullis cert issue) and deploy it; a revocation cannot be undone`,
        );
      }
      // the proxy keeps using a CRL past its nextUpdate (listed certificates stay refused) and
      // logs crl_expired: a stale CRL is a warning there, not an outage, so here too
      if (crl.nextUpdate && now.getTime() > crl.nextUpdate.getTime()) {
        warnings.push(`the CRL of "${rfc4514(c.issuer)}"${crl.source ? ` (${crl.source})` : ''} expired on ${iso(crl.nextUpdate)} (nextUpdate): it still applies, but may miss recent revocations; publish a fresh CRL (portcullis crl --ca DIR) and reload`);
      } else if (now.getTime() < crl.thisUpdate.getTime()) {
        warnings.push(`the CRL of "${rfc4514(c.issuer)}"${crl.source ? ` (${crl.source})` : ''} is not valid until ${iso(crl.thisUpdate)} (this clock says ${iso(now)}): check this machine's clock and the CA machine's clock (NTP)`);
      }
    }
  }
  return { accepted: reasons.length === 0, reasons: dedupe(reasons), chain, trusted, warnings: [...new Set(warnings)] };
}

function listNames(cas: X509Certificate[]): string {
  if (!cas.length) return 'none';
  return cas.map((c) => `"${rfc4514(c.subject)}"`).join(', ');
}

/** The same CRL can fail several certificates; say it once. */
function dedupe(reasons: VerifyReason[]): VerifyReason[] {
  const seen = new Set<string>();
  return reasons.filter((r) => {
    const k = `${r.code}\n${r.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
