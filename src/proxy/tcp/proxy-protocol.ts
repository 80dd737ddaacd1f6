// PROXY protocol headers (HAProxy's proxy-protocol.txt) that a TCP listener writes to its
// upstream before any client byte, so the upstream learns the client's address and, with
// v2, what the TLS layer proved about the client. Pure: no sockets, unit-tested beside.
//
// v2 layout emitted (all lengths big-endian):
//   signature (12) | 0x21 (v2, PROXY) | family/proto | length (2) | addresses | TLVs
//   TLV 0x20 PP2_TYPE_SSL: client flags (1) | verify (4) | sub-TLVs
//     0x21 VERSION "TLSv1.3" · 0x22 CN (only with a verified certificate)
//     0x23 CIPHER (OpenSSL name) · 0x28 CLIENT_CERT leaf DER (only with a verified certificate)
// 0x28 is where SPEC §4 puts the certificate; HAProxy's list assigns 0x28 to
// PP2_SUBTYPE_SSL_CLIENT_CERT too (ghostunnel sends the same), nested inside 0x20.
import { isIPv4, isIPv6 } from 'node:net';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28;

export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;

/** The verify field when the client did not prove a certificate (the spec only fixes 0 = verified). */
export const VERIFY_NOT_VERIFIED = 1;

const FAMILY_UNSPEC = 0x00;
const FAMILY_TCP4 = 0x11;
const FAMILY_TCP6 = 0x21;
const MAX_V2_PAYLOAD = 0xffff;

export interface ConnectionAddresses {
  srcAddr: string | undefined;
  srcPort: number | undefined;
  dstAddr: string | undefined;
  dstPort: number | undefined;
}

/** What the TLS handshake established, for the v2 SSL TLV. */
export interface SslFacts {
  /** e.g. "TLSv1.3", as OpenSSL names it */
  version: string;
  /** OpenSSL cipher name, e.g. "TLS_AES_256_GCM_SHA384" */
  cipher: string | undefined;
  /** set only when the client certificate verified (and passed every check) */
  verified?: { cn: string | undefined; der: Buffer } | undefined;
  /** the certificate came from a resumed session, not this handshake */
  resumed: boolean;
}

type Family = { kind: 'tcp4' | 'tcp6'; src: string; dst: string; srcPort: number; dstPort: number } | { kind: 'unknown' };

/** "::ffff:10.0.0.1" is how a dual-stack socket reports an IPv4 peer; PROXY wants it as IPv4. */
function unmap(addr: string): string {
  const lower = addr.toLowerCase();
  return lower.startsWith('::ffff:') && isIPv4(lower.slice(7)) ? lower.slice(7) : addr;
}

function family(a: ConnectionAddresses): Family {
  const { srcPort, dstPort } = a;
  if (!a.srcAddr || !a.dstAddr || srcPort === undefined || dstPort === undefined) return { kind: 'unknown' };
  const src = unmap(a.srcAddr);
  const dst = unmap(a.dstAddr);
  if (isIPv4(src) && isIPv4(dst)) return { kind: 'tcp4', src, dst, srcPort, dstPort };
  // a mapped peer on one side and a native v6 address on the other happens only on
  // odd stacks; mapping back keeps both in one family as the protocol requires
  const s6 = isIPv4(src) ? `::ffff:${src}` : src;
  const d6 = isIPv4(dst) ? `::ffff:${dst}` : dst;
  if (isIPv6(s6) && isIPv6(d6)) return { kind: 'tcp6', src: s6, dst: d6, srcPort, dstPort };
  return { kind: 'unknown' };
}

/** v1: one text line; UNKNOWN when the addresses are not a same-family IP pair. */
export function proxyV1Header(a: ConnectionAddresses): Buffer {
  const f = family(a);
  if (f.kind === 'unknown') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const proto = f.kind === 'tcp4' ? 'TCP4' : 'TCP6';
  // zone ids ("fe80::1%eth0") mean nothing to the receiver and break its parser
  const strip = (s: string) => s.replace(/%.*$/, '');
  return Buffer.from(`PROXY ${proto} ${strip(f.src)} ${strip(f.dst)} ${f.srcPort} ${f.dstPort}\r\n`, 'latin1');
}

/** 16 bytes of an IPv6 address in text form (compressed, mixed IPv4 tail, zone id). */
export function ipv6Bytes(text: string): Buffer {
  let s = text.replace(/%.*$/, '');
  const out = Buffer.alloc(16);
  // an IPv4 tail ("::ffff:1.2.3.4") becomes two hex groups first
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = ipv4Bytes(v4[1]!);
    s = s.slice(0, v4.index) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') as [string, string] : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`not an IPv6 address: ${text}`);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map((n) => Number(n)));
}

export function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** The PP2_TYPE_SSL TLV: flags, verify result, then version, CN, cipher and certificate. */
export function sslTlv(ssl: SslFacts, room: number): Buffer {
  let client = PP2_CLIENT_SSL;
  if (ssl.verified) client |= ssl.resumed ? PP2_CLIENT_CERT_SESS : PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(ssl.verified ? 0 : VERIFY_NOT_VERIFIED, 1);
  const subs = [head, tlv(PP2_SUBTYPE_SSL_VERSION, Buffer.from(ssl.version, 'latin1'))];
  if (ssl.verified?.cn !== undefined) subs.push(tlv(PP2_SUBTYPE_SSL_CN, Buffer.from(ssl.verified.cn, 'utf8')));
  if (ssl.cipher) subs.push(tlv(PP2_SUBTYPE_SSL_CIPHER, Buffer.from(ssl.cipher, 'latin1')));
  const without = subs.reduce((n, b) => n + b.length, 0);
  // the whole header has a 16-bit length: a certificate that cannot fit is left out
  // rather than truncated (the upstream still gets verify=0 and the CN)
  if (ssl.verified && 3 + without + 3 + ssl.verified.der.length <= room) subs.push(tlv(PP2_SUBTYPE_SSL_CLIENT_CERT, ssl.verified.der));
  return tlv(PP2_TYPE_SSL, Buffer.concat(subs));
}

/** v2: the binary header, with the SSL TLV when the connection is TLS. */
export function proxyV2Header(a: ConnectionAddresses, ssl: SslFacts | undefined): Buffer {
  const f = family(a);
  let fam = FAMILY_UNSPEC;
  let addrs = Buffer.alloc(0);
  if (f.kind !== 'unknown') {
    const tcp4 = f.kind === 'tcp4';
    fam = tcp4 ? FAMILY_TCP4 : FAMILY_TCP6;
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(f.srcPort, 0);
    ports.writeUInt16BE(f.dstPort, 2);
    const bytes = tcp4 ? ipv4Bytes : ipv6Bytes;
    addrs = Buffer.concat([bytes(f.src), bytes(f.dst), ports]);
  }
  const tlvs = ssl ? sslTlv(ssl, MAX_V2_PAYLOAD - addrs.length) : Buffer.alloc(0);
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head, 0);
  head[12] = 0x21; // version 2, command PROXY
  head[13] = fam;
  head.writeUInt16BE(addrs.length + tlvs.length, 14);
  return Buffer.concat([head, addrs, tlvs]);
}
