// A minimal DER reader for the certificate and CRL fields the chain rules need raw (name
// constraints, general names with their exact bytes, extension criticality, version).
// Why not @peculiar/asn1-x509 for these: its converters turn IP constraints (address +
// mask) and malformed names into strings or exceptions, and the rules must see exactly
// what the CA wrote to judge it. Throws on anything that is not well-formed DER.

export interface Tlv {
  /** the whole identifier octet, e.g. 0x30 SEQUENCE, 0xa3 [3] constructed */
  tag: number;
  /** offsets into the buffer */
  start: number;
  header: number;
  end: number;
}

export function readTlv(buf: Uint8Array, off: number, limit = buf.length): Tlv {
  if (off + 2 > limit) throw new Error('truncated DER');
  const tag = buf[off]!;
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-byte DER tags are not supported');
  let p = off + 1;
  let len = buf[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) {
      if (p >= limit) throw new Error('truncated DER');
      len = len * 256 + buf[p++]!;
    }
  }
  if (p + len > limit) throw new Error('truncated DER');
  return { tag, start: off, header: p, end: p + len };
}

/** The TLVs inside a constructed TLV, in order. */
export function children(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = t.header;
  while (p < t.end) {
    const c = readTlv(buf, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

export function content(buf: Uint8Array, t: Tlv): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + t.header, t.end - t.header);
}

export function whole(buf: Uint8Array, t: Tlv): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + t.start, t.end - t.start);
}

/** Dotted form of an OBJECT IDENTIFIER's content octets. */
export function oidString(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new Error('empty OID');
  const parts: number[] = [];
  let v = 0;
  for (let i = 0; i < bytes.length; i++) {
    v = v * 128 + (bytes[i]! & 0x7f);
    if ((bytes[i]! & 0x80) === 0) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

export interface RawExtension {
  oid: string;
  critical: boolean;
  /** the extnValue OCTET STRING's content: the extension's own DER */
  value: Buffer;
}

export interface RawTbs {
  /** 1, 2 or 3 (the encoded value plus one) */
  version: number;
  issuer: Buffer;
  subject: Buffer;
  spkiAlgorithm: string;
  /** DER of the algorithm parameters (namedCurve OID, explicit curve, NULL...), if any */
  spkiParams: Buffer | undefined;
  extensions: RawExtension[];
}

/** The TBSCertificate fields of a certificate's DER. */
export function readCertificate(der: Uint8Array): RawTbs {
  const cert = readTlv(der, 0);
  const tbs = children(der, cert)[0];
  if (!tbs) throw new Error('no TBSCertificate');
  const f = children(der, tbs);
  let i = 0;
  let version = 1;
  if (f[0]?.tag === 0xa0) {
    const v = children(der, f[0])[0];
    version = v ? content(der, v).readUIntBE(0, Math.min(6, v.end - v.header)) + 1 : 1;
    i++;
  }
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
  const issuer = whole(der, f[i + 2]!);
  const subject = whole(der, f[i + 4]!);
  const spki = f[i + 5]!;
  const alg = children(der, children(der, spki)[0]!);
  const spkiAlgorithm = oidString(content(der, alg[0]!));
  const spkiParams = alg[1] ? whole(der, alg[1]) : undefined;
  const extensions: RawExtension[] = [];
  for (const t of f.slice(i + 6)) {
    if (t.tag !== 0xa3) continue;
    const list = children(der, t)[0];
    if (!list) continue;
    for (const e of children(der, list)) {
      const parts = children(der, e);
      const critical = parts.length === 3 && parts[1]!.tag === 0x01 && der[parts[1]!.header] !== 0;
      extensions.push({ oid: oidString(content(der, parts[0]!)), critical, value: content(der, parts[parts.length - 1]!) });
    }
  }
  return { version, issuer, subject, spkiAlgorithm, spkiParams, extensions };
}

export interface RawCrl {
  extensions: RawExtension[];
  /** the extensions of every revoked entry, flattened */
  entryExtensions: RawExtension[];
}

/** The CRL extensions and the CRL entries' extensions of a CRL's DER. */
export function readCrl(der: Uint8Array): RawCrl {
  const list = readTlv(der, 0);
  const tbs = children(der, list)[0];
  if (!tbs) throw new Error('no TBSCertList');
  const exts = (t: Tlv): RawExtension[] => {
    const seq = t.tag === 0x30 ? t : children(der, t)[0];
    if (!seq) return [];
    return children(der, seq).map((e) => {
      const parts = children(der, e);
      const critical = parts.length === 3 && parts[1]!.tag === 0x01 && der[parts[1]!.header] !== 0;
      return { oid: oidString(content(der, parts[0]!)), critical, value: content(der, parts[parts.length - 1]!) };
    });
  };
  const extensions: RawExtension[] = [];
  const entryExtensions: RawExtension[] = [];
  for (const t of children(der, tbs)) {
    if (t.tag === 0xa0) extensions.push(...exts(t));
    // revokedCertificates: SEQUENCE OF SEQUENCE { serial, date, extensions OPTIONAL }; it
    // is the only SEQUENCE of SEQUENCEs among the TBSCertList fields
    if (t.tag === 0x30) {
      const items = children(der, t);
      if (items.length > 0 && items.every((x) => x.tag === 0x30)) {
        for (const entry of items) {
          const parts = children(der, entry);
          if (parts[0]?.tag !== 0x02) break;
          if (parts[2]?.tag === 0x30) entryExtensions.push(...exts(parts[2]));
        }
      }
    }
  }
  return { extensions, entryExtensions };
}
