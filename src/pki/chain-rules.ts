// The chain rules portcullis enforces beyond OpenSSL's own verification, as one pure
// function over a built path (leaf first, trust anchor last when anchored). The proxy runs
// it after the handshake (tls/trust.ts), and the explainer behind `cert verify` and
// `doctor` runs the very same function, so they cannot disagree about these rules.
//
// On by default, because RFC 5280 is clear and Go's crypto/x509 or rustls-webpki enforce it:
//   name-constraints           DNS, e-mail, URI (SPIFFE trust domains), IP and directory
//                              name constraints of every CA, trust anchor included
//   name-constraints-misplaced name constraints in an end-entity certificate
//   leaf-key-cert-sign         a leaf whose key usage allows signing certificates
//   ca-not-v3-ca               a CA (intermediate or anchor) that is a v1 certificate or has
//                              no basicConstraints cA:TRUE (OpenSSL accepts v1 roots and
//                              keyUsage-only CAs)
//   critical-extension         a critical extension OpenSSL does not process (the same
//                              list as OpenSSL's, so the explanation matches its verdict)
//   ca-key-policy              a CA key (anchor or intermediate) under cert_policy's
//                              floor, or of no family it knows (DSA, explicit curves...);
//                              the floor is capped at the defaults (2048-bit RSA, 256-bit
//                              EC), so raising it for client keys does not refuse the CA
//                              that issued them, and key_types restricts client keys only
// Only with cert_policy.strict_rfc5280 (real private CAs often fail them, Go and webpki
// do not enforce them):
//   strict-aki                 no authorityKeyIdentifier in a certificate that is not self-signed
//   strict-ski                 no subjectKeyIdentifier in a CA certificate
//   strict-critical            basicConstraints or nameConstraints of a CA not marked critical
import type { X509Certificate } from 'node:crypto';
import { readCertificate, type RawTbs } from './der.js';
import { constraintProblems, nameViolations, readGeneralNames, readNameConstraints, type NameConstraints, type NamesOf } from './name-constraints.js';
import { keyFacts, keyFloorProblem, type KeyFloor } from './key-facts.js';

export type RuleReason = 'name_constraint' | 'invalid_cert' | 'ca_as_leaf' | 'unknown_ca' | 'policy';

export interface RuleFinding {
  /** stable rule id, as listed above and in docs/security.md */
  rule: string;
  reason: RuleReason;
  /** index in the path of the certificate at fault */
  index: number;
  message: string;
  fix: string;
  /** cert_policy findings run "after the handshake" in SPEC §2's sense (403 on HTTP listeners) */
  afterHandshake?: boolean;
}

export interface RuleOptions {
  strict: boolean;
  /** the cert_policy key floor (caKeyFloor derives what CA keys must meet); absent: no key rule */
  policy?: KeyFloor;
}

/** What CA keys must meet under a cert_policy: its floor, capped at the defaults; any known family. */
export function caKeyFloor(p: KeyFloor): KeyFloor {
  return { key_types: ['rsa', 'ec', 'ed25519'], min_rsa_bits: Math.min(p.min_rsa_bits, 2048), min_ec_bits: Math.min(p.min_ec_bits, 256) };
}

const OID = {
  keyUsage: '2.5.29.15',
  san: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  aki: '2.5.29.35',
  ski: '2.5.29.14',
  emailAddress: '1.2.840.113549.1.9.1',
  cn: '2.5.4.3',
} as const;

/** Extensions OpenSSL 3 processes, so may be critical (X509_supported_extension). */
const PROCESSED = new Set([
  '2.16.840.1.113730.1.1', // nsCertType
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.32', // certificatePolicies
  '2.5.29.31', // cRLDistributionPoints
  '2.5.29.37', // extKeyUsage
  '1.3.6.1.5.5.7.1.7', // sbgp-ipAddrBlock
  '1.3.6.1.5.5.7.1.8', // sbgp-autonomousSysNum
  '1.3.6.1.5.5.7.48.1.5', // OCSP noCheck
  '2.5.29.36', // policyConstraints
  '1.3.6.1.5.5.7.1.14', // proxyCertInfo
  '2.5.29.30', // nameConstraints
  '2.5.29.33', // policyMappings
  '2.5.29.54', // inhibitAnyPolicy
]);

const EXT_NAMES: Record<string, string> = {
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.14': 'subjectKeyIdentifier',
  '1.3.6.1.5.5.7.1.1': 'authorityInfoAccess',
  '1.3.6.1.5.5.7.1.11': 'subjectInfoAccess',
  '2.5.29.18': 'issuerAltName',
  '2.5.29.9': 'subjectDirectoryAttributes',
};

interface Facts {
  raw: RawTbs | undefined;
  parseError: string | undefined;
  nc: NameConstraints | undefined;
  ncError: string | undefined;
  names: NamesOf | undefined;
  namesError: string | undefined;
  keyCertSign: boolean;
}

const factsCache = new WeakMap<X509Certificate, Facts>();

/** KeyUsage BIT STRING: keyCertSign is bit 5. */
function hasKeyCertSign(value: Buffer): boolean {
  // 03 len unused bits...
  return value.length >= 4 && value[0] === 0x03 && (value[3]! & 0x04) !== 0;
}

function nameAttrs(subject: Buffer, oid: string): string[] {
  // Name: SEQUENCE OF SET OF SEQUENCE { type OID, value }; read with the DER helpers
  const out: string[] = [];
  const hexOid = oidDer(oid);
  // scan AVAs: cheap and exact enough for emailAddress/CN, whose OIDs cannot appear elsewhere
  let i = subject.indexOf(hexOid);
  while (i >= 0) {
    const v = i + hexOid.length;
    const len = subject[v + 1]!;
    if (len < 0x80) out.push(subject.subarray(v + 2, v + 2 + len).toString('utf8'));
    i = subject.indexOf(hexOid, v);
  }
  return out;
}

function oidDer(oid: string): Buffer {
  const p = oid.split('.').map(Number);
  const bytes = [40 * p[0]! + p[1]!];
  for (const n of p.slice(2)) {
    const enc = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) enc.unshift((v & 0x7f) | 0x80);
    bytes.push(...enc);
  }
  return Buffer.from([0x06, bytes.length, ...bytes]);
}

/** A CN that OpenSSL would treat as a host name (dots, LDH labels). */
function looksLikeHost(cn: string): boolean {
  return cn.includes('.') && /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/.test(cn);
}

function factsOf(x: X509Certificate): Facts {
  let f = factsCache.get(x);
  if (f) return f;
  f = { raw: undefined, parseError: undefined, nc: undefined, ncError: undefined, names: undefined, namesError: undefined, keyCertSign: false };
  try {
    f.raw = readCertificate(x.raw);
  } catch (err) {
    f.parseError = (err as Error).message;
  }
  if (f.raw) {
    const ext = (oid: string) => f!.raw!.extensions.find((e) => e.oid === oid);
    const nc = ext(OID.nameConstraints);
    if (nc) {
      try {
        f.nc = readNameConstraints(nc.value);
      } catch (err) {
        f.ncError = (err as Error).message;
      }
    }
    const ku = ext(OID.keyUsage);
    f.keyCertSign = !!ku && hasKeyCertSign(ku.value);
    try {
      const san = ext(OID.san);
      f.names = {
        sans: san ? readGeneralNames(san.value) : [],
        subject: f.raw.subject,
        subjectEmails: nameAttrs(f.raw.subject, OID.emailAddress),
        cnHosts: nameAttrs(f.raw.subject, OID.cn).filter(looksLikeHost),
      };
    } catch (err) {
      f.namesError = (err as Error).message;
    }
  }
  factsCache.set(x, f);
  return f;
}

function rfc4514(name: string | undefined): string {
  return (name ?? '').split('\n').reverse().join(',');
}

function selfIssued(x: X509Certificate): boolean {
  const f = factsOf(x);
  return !!f.raw && f.raw.issuer.equals(f.raw.subject);
}

/**
 * Every rule `path` breaks, in path order (leaf first). `anchored`: the last certificate
 * is the trust anchor the path ends at (it is then not subject to the intermediate rules).
 */
export function chainRuleFindings(path: readonly X509Certificate[], anchored: boolean, opts: RuleOptions): RuleFinding[] {
  const out: RuleFinding[] = [];
  const last = path.length - 1;
  const describe = (i: number): string => {
    const name = `"${rfc4514(path[i]!.subject) || '(empty subject)'}"`;
    if (i === 0) return `the certificate ${name}`;
    if (i === last && anchored) return `the trusted CA ${name}`;
    return `the intermediate CA ${name}`;
  };
  const add = (rule: string, reason: RuleReason, index: number, message: string, fix: string, afterHandshake = false): void => {
    out.push({ rule, reason, index, message, fix, ...(afterHandshake ? { afterHandshake } : {}) });
  };

  path.forEach((x, i) => {
    const f = factsOf(x);
    if (!f.raw) {
      add('critical-extension', 'invalid_cert', i, `${describe(i)} cannot be parsed (${f.parseError})`, 're-issue it; the CA software wrote malformed DER');
      return;
    }
    const raw = f.raw;
    for (const e of raw.extensions) {
      if (e.critical && !PROCESSED.has(e.oid)) {
        add(
          'critical-extension',
          'invalid_cert',
          i,
          `${describe(i)} has the extension ${EXT_NAMES[e.oid] ?? e.oid} marked critical, which the verifier does not process; RFC 5280 requires refusing such a certificate`,
          i === 0 ? 'have the CA re-issue it without marking that extension critical' : 're-create that CA certificate without marking that extension critical, and re-issue what it signed',
        );
      }
    }
    const isCa = i > 0;
    if (!isCa) {
      if (f.keyCertSign && !x.ca) {
        add('leaf-key-cert-sign', 'ca_as_leaf', i, `${describe(i)} has the keyCertSign key usage but is not a CA (basicConstraints cA is not TRUE): RFC 5280 §4.2.1.3 forbids this combination`, 're-issue it with key usage digitalSignature only (portcullis cert issue does this)');
      }
      if (f.nc || f.ncError) {
        add('name-constraints-misplaced', 'name_constraint', i, `${describe(i)} carries name constraints, which RFC 5280 §4.2.1.10 allows only in CA certificates`, 're-issue it without the nameConstraints extension');
      }
    } else {
      if (raw.version !== 3 || !x.ca) {
        add(
          'ca-not-v3-ca',
          'unknown_ca',
          i,
          raw.version !== 3
            ? `${describe(i)} is a version ${raw.version} certificate, which cannot say it is a CA; it is not accepted as an issuer`
            : `${describe(i)} has no basicConstraints cA:TRUE, so it is not a CA certificate (a keyCertSign key usage alone does not make one)`,
          're-create that CA as a v3 certificate with basicConstraints cA:TRUE (portcullis ca init does this), and re-issue what it signed',
        );
      }
      if (opts.policy) {
        const weak = keyFloorProblem(keyFacts(x), caKeyFloor(opts.policy));
        if (weak) add('ca-key-policy', 'policy', i, `${describe(i)} has a key the certificate policy refuses (${weak}); a chain is no stronger than its weakest CA key`, 'replace that CA (and what it signed) with one whose key meets cert_policy, or lower the floor if you accept the risk', true);
      }
      if (f.ncError) {
        add('name-constraints', 'name_constraint', i, `${describe(i)} has name constraints that cannot be parsed (${f.ncError})`, 're-create that CA certificate with well-formed name constraints');
      } else if (f.nc) {
        for (const p of constraintProblems(f.nc)) add('name-constraints', 'name_constraint', i, `${describe(i)}: ${p}`, 're-create that CA certificate with well-formed name constraints');
        // RFC 5280 §6.1.3: the constraints bind every certificate below, except self-issued CAs
        for (let j = i - 1; j >= 0; j--) {
          if (j > 0 && selfIssued(path[j]!)) continue;
          const below = factsOf(path[j]!);
          if (!below.names) {
            add('name-constraints', 'name_constraint', j, `${describe(j)} has names that cannot be parsed (${below.namesError ?? below.parseError}) under the name constraints of ${describe(i)}`, 're-issue it with well-formed subject alternative names');
            continue;
          }
          for (const v of nameViolations(below.names, f.nc)) {
            add('name-constraints', 'name_constraint', j, `${describe(j)}: ${v}, set by the name constraints of ${describe(i)}`, `issue names inside what ${describe(i)} permits, or have it issued by a CA whose name constraints cover them`);
          }
        }
      }
    }
    if (opts.strict) {
      const ext = (oid: string) => raw.extensions.find((e) => e.oid === oid);
      if (!ext(OID.aki) && !(x.checkIssued(x) && raw.issuer.equals(raw.subject))) {
        add('strict-aki', 'invalid_cert', i, `${describe(i)} has no authorityKeyIdentifier (cert_policy.strict_rfc5280: RFC 5280 §4.2.1.1 requires it in every certificate that is not self-signed)`, 're-issue it with an authorityKeyIdentifier, or set strict_rfc5280: false');
      }
      if (isCa && !ext(OID.ski)) {
        add('strict-ski', 'invalid_cert', i, `${describe(i)} has no subjectKeyIdentifier (cert_policy.strict_rfc5280: RFC 5280 §4.2.1.2 requires it in CA certificates)`, 're-create that CA certificate with a subjectKeyIdentifier, or set strict_rfc5280: false');
      }
      for (const oid of isCa ? [OID.basicConstraints, OID.nameConstraints] : []) {
        const e = ext(oid);
        if (e && !e.critical) {
          add('strict-critical', 'invalid_cert', i, `${describe(i)} has ${oid === OID.basicConstraints ? 'basicConstraints' : 'nameConstraints'} not marked critical (cert_policy.strict_rfc5280: RFC 5280 requires it critical in CA certificates)`, 're-create that CA certificate with the extension marked critical, or set strict_rfc5280: false');
        }
      }
    }
  });
  return out;
}
