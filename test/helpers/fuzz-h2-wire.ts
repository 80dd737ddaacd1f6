// HTTP/2 on the wire for the fuzz test's raw-frame client (RFC 9113, RFC 7541): a frame
// writer that can also lie about lengths, an HPACK encoder (static and dynamic table,
// literals without Huffman, so every byte of a header block is under the test's
// control), and a reader that checks the frames the proxy sends back are well-formed.
// node:http2 cannot be used for this: it refuses to send most malformed input.

export const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PADDED: 8, PRIORITY: 0x20 } as const;
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** One frame; `length` overrides the 24-bit length field (a lie when it differs from the payload). */
export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0), length = payload.length): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(length & 0xffffff, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

export function settings(pairs: [number, number][], ack = false): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return frame(T.SETTINGS, ack ? F.ACK : 0, 0, p);
}

export const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

// RFC 7541 Appendix A
const STATIC: [string, string][] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'],
  [':status', '200'], [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'],
  ['accept-charset', ''], ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''], ['content-location', ''], ['content-range', ''], ['content-type', ''],
  ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''], ['referer', ''],
  ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

export function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7, 0), b]);
}

export type Representation = 'indexed-or-literal' | 'incremental' | 'without' | 'never';

/** Tracks the decoder's dynamic table as the proxy sees it, so indexed references stay right. */
export class HpackEncoder {
  private dyn: [string, string][] = [];
  private size = 0;
  /** false once a mutated block may have left the proxy's table different from ours */
  dynamicTrusted = true;

  constructor(private readonly max = 4096) {}

  private find(name: string, value: string): { full: number; name: number } {
    let nameIdx = 0;
    for (let i = 0; i < STATIC.length; i++) {
      if (STATIC[i]![0] !== name) continue;
      if (STATIC[i]![1] === value) return { full: i + 1, name: i + 1 };
      nameIdx ||= i + 1;
    }
    if (this.dynamicTrusted) {
      for (let i = 0; i < this.dyn.length; i++) {
        if (this.dyn[i]![0] !== name) continue;
        if (this.dyn[i]![1] === value) return { full: STATIC.length + 1 + i, name: nameIdx || STATIC.length + 1 + i };
        nameIdx ||= STATIC.length + 1 + i;
      }
    }
    return { full: 0, name: nameIdx };
  }

  /** `pick` chooses each literal's representation (the fuzz mixes them). */
  encode(headers: readonly (readonly [string, string])[], pick: () => Representation): Buffer {
    const parts: Buffer[] = [];
    for (const [name, value] of headers) {
      const rep = pick();
      const idx = this.find(name, value);
      if (idx.full && rep === 'indexed-or-literal') {
        parts.push(hpackInt(idx.full, 7, 0x80));
        continue;
      }
      const incremental = rep === 'incremental' && this.dynamicTrusted;
      const [bits, first] = incremental ? [6, 0x40] : rep === 'never' ? [4, 0x10] : [4, 0x00];
      parts.push(hpackInt(idx.name, bits, first));
      if (!idx.name) parts.push(hpackString(name));
      parts.push(hpackString(value));
      if (incremental) this.insert(name, value);
    }
    return Buffer.concat(parts);
  }

  private insert(name: string, value: string): void {
    const n = Buffer.byteLength(name, 'latin1') + Buffer.byteLength(value, 'latin1') + 32;
    this.dyn.unshift([name, value]);
    this.size += n;
    while (this.size > this.max && this.dyn.length > 0) {
      const [a, b] = this.dyn.pop()!;
      this.size -= Buffer.byteLength(a, 'latin1') + Buffer.byteLength(b, 'latin1') + 32;
    }
    if (n > this.max) {
      this.dyn = [];
      this.size = 0;
    }
  }
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Reads the proxy's frames and says what is wrong with them, from the client's side. */
export class FrameReader {
  private buf = Buffer.alloc(0);
  private first = true;
  problem: string | null = null;
  frames = 0;

  /** maxStream: the highest stream id the client opened */
  push(chunk: Buffer, maxStream: number): Frame[] {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: Frame[] = [];
    while (this.buf.length >= 9 && !this.problem) {
      const len = this.buf.readUIntBE(0, 3);
      if (len > 16_384) {
        this.problem = `frame of ${len} bytes over the default SETTINGS_MAX_FRAME_SIZE`;
        break;
      }
      if (this.buf.length < 9 + len) break;
      const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.frames++;
      this.problem = checkServerFrame(f, this.first, maxStream);
      this.first = false;
      out.push(f);
    }
    return out;
  }
}

function checkServerFrame(f: Frame, first: boolean, maxStream: number): string | null {
  const len = f.payload.length;
  if (first && (f.type !== T.SETTINGS || f.flags & F.ACK)) return `server preface is a frame of type ${f.type}, not SETTINGS`;
  switch (f.type) {
    case T.SETTINGS:
      if (f.stream !== 0 || len % 6 !== 0 || (f.flags & F.ACK && len !== 0)) return 'malformed SETTINGS';
      return null;
    case T.PING:
      return f.stream !== 0 || len !== 8 ? 'malformed PING' : null;
    case T.GOAWAY:
      return f.stream !== 0 || len < 8 ? 'malformed GOAWAY' : null;
    case T.RST_STREAM:
      return f.stream === 0 || len !== 4 ? 'malformed RST_STREAM' : null;
    case T.WINDOW_UPDATE:
      return len !== 4 ? 'malformed WINDOW_UPDATE' : (f.payload.readUInt32BE(0) & 0x7fffffff) === 0 ? 'WINDOW_UPDATE of 0 from the proxy' : null;
    case T.HEADERS:
    case T.DATA:
    case T.CONTINUATION:
      if (f.stream === 0 || f.stream % 2 === 0 || f.stream > maxStream) return `${f.type === T.DATA ? 'DATA' : 'HEADERS'} on stream ${f.stream} the client never opened`;
      return null;
    case T.PUSH_PROMISE:
      return 'PUSH_PROMISE although the client disabled push';
    case T.PRIORITY:
      return null;
    default:
      return null; // unknown frame types must be ignored (RFC 9113 §5.5)
  }
}
