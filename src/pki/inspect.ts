// A readable summary of a certificate (`portcullis cert inspect`, `doctor`): the facts an
// operator checks when mTLS fails, with SPIFFE IDs called out and expiry made obvious.
import type { X509Certificate } from 'node:crypto';
import { ekuName, ekuOf, extraFacts, notAfterOf, notBeforeOf, rfc4514 } from './verify.js';
import { x509 } from './x509.js';

export interface CertSummary {
  subject: string;
  issuer: string;
  serial: string;
  selfSigned: boolean;
  ca: boolean;
  pathLen: number | undefined;
  san: { dns: string[]; ip: string[]; uri: string[]; email: string[] };
  spiffeId: string | undefined;
  /** names of the extended key usages; undefined when the extension is absent (any usage) */
  eku: string[] | undefined;
  keyUsage: string[] | undefined;
  key: { type: string; bits: number | undefined; curve: string | undefined };
  notBefore: string;
  notAfter: string;
  daysLeft: number;
  status: 'valid' | 'expired' | 'not_yet_valid';
  /** less than 30 days left */
  expiresSoon: boolean;
  fingerprintSha256: string;
}

const KU_NAMES: [number, string][] = [
  [x509.KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [x509.KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [x509.KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [x509.KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [x509.KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [x509.KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [x509.KeyUsageFlags.cRLSign, 'cRLSign'],
];

const CURVE_NAMES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
const CURVE_BITS: Record<string, number> = { prime256v1: 256, secp384r1: 384, secp521r1: 521 };

/** Splits Node's "DNS:a, IP Address:b, URI:c" rendering into kinds. */
export function parseSan(text: string | undefined): CertSummary['san'] {
  const san: CertSummary['san'] = { dns: [], ip: [], uri: [], email: [] };
  if (!text) return san;
  // Node quotes entries that contain a comma or quote as JSON strings
  const parts = text.match(/(?:[^,"]|"(?:\\.|[^"\\])*")+/g) ?? [];
  for (const raw of parts) {
    const part = raw.trim();
    const colon = part.indexOf(':');
    if (colon < 0) continue;
    const kind = part.slice(0, colon);
    let value = part.slice(colon + 1);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        /* keep as printed */
      }
    }
    if (kind === 'DNS') san.dns.push(value);
    else if (kind === 'IP Address') san.ip.push(value);
    else if (kind === 'URI') san.uri.push(value);
    else if (kind === 'email') san.email.push(value);
  }
  return san;
}

export function summarize(x: X509Certificate, now = new Date()): CertSummary {
  const nb = notBeforeOf(x);
  const na = notAfterOf(x);
  const san = parseSan(x.subjectAltName);
  const f = extraFacts(x);
  const pk = x.publicKey;
  const d = pk.asymmetricKeyDetails ?? {};
  const curve = d.namedCurve;
  const daysLeft = Math.floor((na.getTime() - now.getTime()) / 86_400_000);
  const status = now < nb ? 'not_yet_valid' : now > na ? 'expired' : 'valid';
  const eku = ekuOf(x);
  return {
    subject: rfc4514(x.subject),
    issuer: rfc4514(x.issuer),
    serial: x.serialNumber.toUpperCase(),
    selfSigned: x.subject === x.issuer && x.checkIssued(x),
    ca: x.ca,
    pathLen: f.pathLen,
    san,
    spiffeId: san.uri.find((u) => u.toLowerCase().startsWith('spiffe://')),
    eku: eku?.map(ekuName),
    keyUsage: f.keyUsage === undefined ? undefined : KU_NAMES.filter(([bit]) => (f.keyUsage! & bit) !== 0).map(([, n]) => n),
    key: {
      type: pk.asymmetricKeyType === 'ec' ? 'EC' : (pk.asymmetricKeyType ?? 'unknown').toUpperCase(),
      bits: d.modulusLength ?? (curve ? CURVE_BITS[curve] : pk.asymmetricKeyType === 'ed25519' ? 256 : undefined),
      curve: curve ? (CURVE_NAMES[curve] ?? curve) : undefined,
    },
    notBefore: nb.toISOString(),
    notAfter: na.toISOString(),
    daysLeft,
    status,
    expiresSoon: status === 'valid' && daysLeft < 30,
    fingerprintSha256: x.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/** Multi-line text for people; `index`/`total` label certificates within a chain. */
export function renderSummary(s: CertSummary, index = 0, total = 1): string {
  const role = s.ca ? (s.selfSigned ? 'root CA' : 'intermediate CA') : 'leaf';
  const lines: string[] = [];
  lines.push(total > 1 ? `Certificate ${index + 1} of ${total} (${role})` : `Certificate (${role})`);
  lines.push(`  Subject:      ${s.subject}`);
  lines.push(`  Issuer:       ${s.issuer}${s.selfSigned ? ' (self-signed)' : ''}`);
  lines.push(`  Serial:       ${s.serial}`);
  if (s.spiffeId) lines.push(`  SPIFFE ID:    ${s.spiffeId}`);
  const sans = [...s.san.dns.map((v) => `DNS:${v}`), ...s.san.ip.map((v) => `IP:${v}`), ...s.san.uri.map((v) => `URI:${v}`), ...s.san.email.map((v) => `email:${v}`)];
  lines.push(`  SANs:         ${sans.length ? sans.join(', ') : '(none)'}`);
  lines.push(`  CA:           ${s.ca ? `yes${s.pathLen !== undefined ? ` (pathLen ${s.pathLen})` : ''}` : 'no'}`);
  lines.push(`  Key usage:    ${s.keyUsage ? s.keyUsage.join(', ') : '(not set)'}`);
  lines.push(`  Ext. usage:   ${s.eku ? s.eku.join(', ') || '(empty)' : '(not set: any purpose)'}`);
  lines.push(`  Key:          ${s.key.type}${s.key.curve ? ` ${s.key.curve}` : ''}${s.key.bits ? ` (${s.key.bits} bits)` : ''}`);
  lines.push(`  Not before:   ${s.notBefore}`);
  let validity = `  Not after:    ${s.notAfter}`;
  if (s.status === 'expired') validity += `  EXPIRED ${-s.daysLeft} day(s) ago`;
  else if (s.status === 'not_yet_valid') validity += '  NOT YET VALID';
  else validity += `  (${s.daysLeft} day(s) left)${s.expiresSoon ? '  WARNING: expires in under 30 days' : ''}`;
  lines.push(validity);
  lines.push(`  SHA-256:      ${s.fingerprintSha256}`);
  return lines.join('\n');
}
