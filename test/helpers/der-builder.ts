// A small DER writer that builds X.509 certificates and CRLs field by field, signed with
// node:crypto. The chain generator (chains.ts) needs what no CA library will write on
// purpose: v1 CAs, CAs without basicConstraints, malformed or misplaced name constraints,
// unknown critical extensions, DSA and P-192 keys, CRLs with a critical cRLNumber.
// Test-only; nothing here is ever committed as a key or certificate.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 255);
  return [0x80 | out.length, ...out];
}

export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag, ...lengthBytes(body.length)]), body]);
}
export const seq = (...p: Buffer[]) => tlv(0x30, ...p);
export const set = (...p: Buffer[]) => tlv(0x31, ...p);
export const octet = (b: Buffer) => tlv(0x04, b);
export const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
export const ia5 = (s: string) => tlv(0x16, Buffer.from(s, 'latin1'));
export const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
export const nul = () => Buffer.from([0x05, 0x00]);

export function oid(s: string): Buffer {
  const p = s.split('.').map(Number);
  const bytes = [40 * p[0]! + p[1]!];
  for (const n of p.slice(2)) {
    const enc = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) enc.unshift((v & 0x7f) | 0x80);
    bytes.push(...enc);
  }
  return tlv(0x06, Buffer.from(bytes));
}

export function int(v: number | Buffer): Buffer {
  let b = typeof v === 'number' ? Buffer.from(v.toString(16).padStart(2, '0').replace(/^(.(..)*)$/, '0$1'), 'hex') : v;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

export function time(d: Date): Buffer {
  const iso = d.toISOString();
  return tlv(0x17, Buffer.from(`${iso.slice(2, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`));
}

export function bitString(b: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.from([unused]), b);
}

/** A Name: O first, then CN (DER order, most general first); emailAddress as IA5String. */
export function name(n: { cn?: string; o?: string; email?: string }): Buffer {
  const rdns: Buffer[] = [];
  if (n.o) rdns.push(set(seq(oid('2.5.4.10'), utf8(n.o))));
  if (n.cn) rdns.push(set(seq(oid('2.5.4.3'), utf8(n.cn))));
  if (n.email) rdns.push(set(seq(oid('1.2.840.113549.1.9.1'), ia5(n.email))));
  return seq(...rdns);
}

export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octet(value));
}

const KU_BITS = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign'] as const;
export type KeyUsage = (typeof KU_BITS)[number];

export function keyUsage(usages: KeyUsage[]): Buffer {
  let byte = 0;
  for (const u of usages) byte |= 0x80 >> KU_BITS.indexOf(u);
  let unused = 0;
  while (unused < 7 && byte !== 0 && ((byte >> unused) & 1) === 0) unused++;
  return bitString(Buffer.from([byte]), unused);
}

/** GeneralName for SANs and constraints; ip as bytes (4/16, or 8/32 with a mask). */
export type GN = { dns: string } | { email: string } | { uri: string } | { ip: Buffer } | { dir: Buffer };

export function generalName(g: GN): Buffer {
  if ('dns' in g) return tlv(0x82, Buffer.from(g.dns, 'latin1'));
  if ('email' in g) return tlv(0x81, Buffer.from(g.email, 'latin1'));
  if ('uri' in g) return tlv(0x86, Buffer.from(g.uri, 'latin1'));
  if ('ip' in g) return tlv(0x87, g.ip);
  return tlv(0xa4, g.dir);
}

export function ipBytes(text: string): Buffer {
  if (text.includes('.')) return Buffer.from(text.split('.').map(Number));
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.map((g) => g.padStart(4, '0')).join(''), 'hex');
}

export interface NameConstraintSpec {
  permitted?: GN[];
  excluded?: GN[];
  /** write this DER as the extension value instead (malformed or empty constraints) */
  raw?: Buffer;
  /** add maximum 1 to every subtree (RFC 5280 forbids it) */
  withMaximum?: boolean;
}

export function nameConstraints(nc: NameConstraintSpec): Buffer {
  if (nc.raw) return nc.raw;
  const subtree = (g: GN) => seq(generalName(g), ...(nc.withMaximum ? [tlv(0x81, Buffer.from([1]))] : []));
  return seq(...(nc.permitted ? [tlv(0xa0, ...nc.permitted.map(subtree))] : []), ...(nc.excluded ? [tlv(0xa1, ...nc.excluded.map(subtree))] : []));
}

export type KeyKind = 'ec-p256' | 'ec-p192' | 'rsa-1024' | 'rsa-2048' | 'dsa';

export function newKey(kind: KeyKind): { publicKey: KeyObject; privateKey: KeyObject } {
  switch (kind) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p192':
      return generateKeyPairSync('ec', { namedCurve: 'prime192v1' });
    case 'rsa-1024':
      return generateKeyPairSync('rsa', { modulusLength: 1024 });
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'dsa':
      return generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 });
  }
}

function signatureAlgorithm(key: KeyObject): Buffer {
  const t = key.asymmetricKeyType;
  if (t === 'rsa') return seq(oid('1.2.840.113549.1.1.11'), nul());
  if (t === 'dsa') return seq(oid('2.16.840.1.101.3.4.3.2'));
  return seq(oid('1.2.840.10045.4.3.2'));
}

export function signed(tbs: Buffer, key: KeyObject): Buffer {
  return seq(tbs, signatureAlgorithm(key), bitString(sign('sha256', tbs, key)));
}

export function keyId(spki: Buffer): Buffer {
  return createHash('sha1').update(spki).digest();
}

export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}
