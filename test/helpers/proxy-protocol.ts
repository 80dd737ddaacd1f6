// An independent reader of PROXY protocol headers for tests: walks the bytes by the
// offsets HAProxy's proxy-protocol.txt gives, so a test checks what is on the wire rather
// than what the writer meant to put there.

export const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

export interface Tlv {
  type: number;
  value: Buffer;
}

export interface V2Header {
  /** bytes the header occupies, including the 16-byte fixed part */
  length: number;
  versionCommand: number;
  familyProtocol: number;
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
  tlvs: Tlv[];
  /** the PP2_TYPE_SSL TLV, split into its fields */
  ssl?: { client: number; verify: number; subs: Tlv[] };
}

export function readTlvs(buf: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < buf.length) {
    if (i + 3 > buf.length) throw new Error(`truncated TLV header at ${i}`);
    const type = buf[i]!;
    const len = (buf[i + 1]! << 8) | buf[i + 2]!;
    if (i + 3 + len > buf.length) throw new Error(`TLV 0x${type.toString(16)} claims ${len} bytes, ${buf.length - i - 3} left`);
    out.push({ type, value: buf.subarray(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return out;
}

function v6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(':');
}

/** The v2 header at the start of `buf`, or undefined while it is incomplete. Throws on garbage. */
export function parseV2(buf: Buffer): V2Header | undefined {
  if (buf.length < 16) return undefined;
  if (!buf.subarray(0, 12).equals(SIGNATURE)) throw new Error(`not a PROXY v2 signature: ${buf.subarray(0, 12).toString('hex')}`);
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return undefined;
  const body = buf.subarray(16, 16 + len);
  const h: V2Header = { length: 16 + len, versionCommand: buf[12]!, familyProtocol: buf[13]!, tlvs: [] };
  let rest = body;
  if (h.familyProtocol === 0x11) {
    h.src = [...body.subarray(0, 4)].join('.');
    h.dst = [...body.subarray(4, 8)].join('.');
    h.srcPort = body.readUInt16BE(8);
    h.dstPort = body.readUInt16BE(10);
    rest = body.subarray(12);
  } else if (h.familyProtocol === 0x21) {
    h.src = v6(body.subarray(0, 16));
    h.dst = v6(body.subarray(16, 32));
    h.srcPort = body.readUInt16BE(32);
    h.dstPort = body.readUInt16BE(34);
    rest = body.subarray(36);
  }
  h.tlvs = readTlvs(rest);
  const ssl = h.tlvs.find((t) => t.type === 0x20);
  if (ssl) h.ssl = { client: ssl.value[0]!, verify: ssl.value.readUInt32BE(1), subs: readTlvs(ssl.value.subarray(5)) };
  return h;
}

/** The v1 line at the start of `buf` (without CRLF), or undefined while incomplete. */
export function parseV1(buf: Buffer): { line: string; length: number } | undefined {
  const end = buf.indexOf('\r\n');
  if (end < 0) return undefined;
  return { line: buf.subarray(0, end).toString('latin1'), length: end + 2 };
}
