// The reference reading of a raw HTTP/2 client byte stream (RFC 9113, RFC 7541), the
// HTTP/2 counterpart of fuzz-http1-parse.ts's reference mode: which requests the bytes
// actually carry, so the fuzz test never has to guess what a mutation did. A request
// counts when its stream ended (END_STREAM) with a well-formed header list and a body that
// matches its content-length, before any connection error. Stream errors drop just that
// stream; a connection error ends the reading (requests complete before it still count,
// because a proxy may already have forwarded them). Flow control and concurrency limits
// are not modelled: they can only make a correct proxy forward less, never differently.
import { invalidH2Request, type H2Invalid } from './fuzz-h2-gen.js';

/** nghttp2 before 1.69 (Node 20) still refuses a self-dependent PRIORITY; newer ones ignore priorities. */
const NGHTTP2_CHECKS_PRIORITY = (() => {
  const [maj = 0, min = 0] = (process.versions.nghttp2 ?? '0.0').split('.').map(Number);
  return maj === 1 && min < 69;
})();

export interface RefH2Request {
  stream: number;
  headers: [string, string][];
  body: Buffer;
  /** why a proxy must refuse it (RFC 9113 §8), or null */
  invalid: H2Invalid | null;
}

const STATIC_NAMES: [string, string][] = [
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

class HpackError extends Error {}

/** RFC 7541 decoder for what the fuzz sends (Huffman strings count as errors: the fuzz never encodes them validly). */
class HpackDecoder {
  private dyn: [string, string][] = [];
  private size = 0;
  private max = 4096;

  decode(b: Buffer): [string, string][] {
    const out: [string, string][] = [];
    let i = 0;
    const int = (bits: number): number => {
      const mask = (1 << bits) - 1;
      let v = b[i++]! & mask;
      if (v < mask) return v;
      let m = 0;
      for (;;) {
        if (i >= b.length) throw new HpackError('truncated integer');
        const x = b[i++]!;
        v += (x & 0x7f) * 2 ** m;
        m += 7;
        if (v > 2 ** 32) throw new HpackError('integer overflow');
        if (!(x & 0x80)) return v;
      }
    };
    const str = (): string => {
      if (i >= b.length) throw new HpackError('truncated string');
      const huffman = (b[i]! & 0x80) !== 0;
      const n = int(7);
      if (huffman) throw new HpackError('Huffman string');
      if (i + n > b.length) throw new HpackError('string past the block');
      const s = b.toString('latin1', i, i + n);
      i += n;
      return s;
    };
    const entry = (idx: number): [string, string] => {
      if (idx === 0) throw new HpackError('index 0');
      if (idx <= STATIC_NAMES.length) return STATIC_NAMES[idx - 1]!;
      const e = this.dyn[idx - STATIC_NAMES.length - 1];
      if (!e) throw new HpackError('index past the dynamic table');
      return e;
    };
    let fields = 0;
    while (i < b.length) {
      const c = b[i]!;
      if (c & 0x80) {
        const [n, v] = entry(int(7));
        out.push([n, v]);
      } else if ((c & 0xe0) === 0x20) {
        if (fields > 0) throw new HpackError('table size update after a field');
        const n = int(5);
        if (n > 4096) throw new HpackError('table size over the limit');
        this.max = n;
        this.evict();
        continue;
      } else {
        const incremental = (c & 0xc0) === 0x40;
        const idx = int(incremental ? 6 : 4);
        const name = idx ? entry(idx)[0] : str();
        const value = str();
        out.push([name, value]);
        if (incremental) {
          this.dyn.unshift([name, value]);
          this.size += name.length + value.length + 32;
          this.evict();
        }
      }
      fields++;
    }
    return out;
  }

  private evict(): void {
    while (this.size > this.max && this.dyn.length > 0) {
      const [n, v] = this.dyn.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }
}

interface StreamState {
  headers: [string, string][] | null;
  body: Buffer[];
  ok: boolean;
  ended: boolean;
  /** RST_STREAM before the stream ended */
  reset?: boolean;
}

export interface RefH2Reading {
  requests: RefH2Request[];
  /** streams that began (a header list) but never ended: reset, cut off, or left open */
  unfinished: { stream: number; headers: [string, string][] }[];
  stoppedBy: string | null;
}

export function referenceH2(bytes: Buffer): RefH2Reading {
  const requests: RefH2Request[] = [];
  const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
  if (bytes.toString('latin1', 0, 24) !== PREFACE) return { requests, unfinished: [], stoppedBy: 'bad preface' };
  const hpack = new HpackDecoder();
  const streams = new Map<number, StreamState>();
  let maxOpened = 0;
  let off = 24;
  let block: { stream: number; parts: Buffer[]; endStream: boolean } | null = null;
  let selfDependent = false;
  const unfinished = () => [...streams].filter(([, s]) => s.headers && (!s.ended || s.reset)).map(([stream, s]) => ({ stream, headers: s.headers! }));
  const stop = (why: string) => ({ requests, unfinished: unfinished(), stoppedBy: why });
  const finish = (id: number, s: StreamState) => {
    s.ended = true;
    const body = Buffer.concat(s.body);
    if (s.ok && s.headers) requests.push({ stream: id, headers: s.headers, body, invalid: invalidH2Request(s.headers, body) });
  };
  while (off + 9 <= bytes.length) {
    const len = bytes.readUIntBE(off, 3);
    const type = bytes[off + 3]!;
    const flags = bytes[off + 4]!;
    const id = bytes.readUInt32BE(off + 5) & 0x7fffffff;
    if (off + 9 + len > bytes.length) break;
    let p = bytes.subarray(off + 9, off + 9 + len);
    off += 9 + len;
    if (block && (type !== 9 || id !== block.stream)) return stop('frame inside a header block');
    const st = streams.get(id);
    if (len > 16_384) {
      if (type === 0 && id !== 0 && st) {
        st.ok = false;
        continue;
      }
      return stop('frame over SETTINGS_MAX_FRAME_SIZE');
    }
    // a DATA frame on a stream that already ended is a stream error (STREAM_CLOSED), whatever
    // else is wrong with it: a proxy may check that first and carry on
    if (type === 0 && st?.ended) continue;
    if (type === 0 || type === 1) {
      if (flags & 0x8) {
        if (p.length < 1 || p[0]! >= p.length) return stop('padding longer than the payload');
        p = p.subarray(1, p.length - p[0]!);
      }
    }
    if (type === 0) {
      if (id === 0) return stop('DATA on stream 0');
      if (!st) return stop('DATA on an idle stream');
      st.body.push(p);
      if (flags & 1) finish(id, st);
    } else if (type === 1 || type === 9) {
      if (type === 9 && !block) return stop('CONTINUATION without HEADERS');
      if (type === 1) {
        if (id === 0) return stop('HEADERS on stream 0');
        selfDependent = false;
        if (flags & 0x20) {
          if (p.length < 5) return stop('short PRIORITY fields');
          selfDependent = (p.readUInt32BE(0) & 0x7fffffff) === id;
          p = p.subarray(5);
        }
        block = { stream: id, parts: [], endStream: (flags & 1) !== 0 };
      }
      block!.parts.push(p);
      if (!(flags & 4)) continue;
      const b = block!;
      block = null;
      let fields: [string, string][];
      try {
        fields = hpack.decode(Buffer.concat(b.parts));
      } catch (e) {
        return stop(`HPACK: ${(e as Error).message}`);
      }
      let s = streams.get(b.stream);
      if (!s) {
        if (b.stream % 2 === 0 || b.stream <= maxOpened) return stop('HEADERS opening an even or reused stream id');
        maxOpened = b.stream;
        s = { headers: fields, body: [], ok: !selfDependent, ended: false };
        streams.set(b.stream, s);
      } else if (s.ended) {
        continue;
      } else if (!b.endStream || fields.some(([n]) => n.startsWith(':'))) {
        s.ok = false; // trailers must end the stream and carry no pseudo-header
      }
      if (b.endStream) finish(b.stream, s);
    } else if (type === 3) {
      if (id === 0 || len !== 4) return stop('malformed RST_STREAM');
      if (!st) return stop('RST_STREAM on an idle stream');
      if (!st.ended) {
        st.ok = false;
        st.reset = true;
      }
      st.ended = true;
    } else if (type === 4) {
      if (id !== 0 || len % 6 !== 0 || (flags & 1 && len !== 0)) return stop('malformed SETTINGS');
      for (let i = 0; i < len; i += 6) {
        const k = p.readUInt16BE(i);
        const v = p.readUInt32BE(i + 2);
        if ((k === 2 && v > 1) || (k === 4 && v > 0x7fffffff) || (k === 5 && (v < 16_384 || v > 16_777_215))) return stop('bad SETTINGS value');
      }
    } else if (type === 5) {
      return stop('PUSH_PROMISE from a client');
    } else if (type === 6) {
      if (id !== 0 || len !== 8) return stop('malformed PING');
    } else if (type === 8) {
      if (len !== 4) return stop('malformed WINDOW_UPDATE');
      if ((p.readUInt32BE(0) & 0x7fffffff) === 0) {
        if (id === 0) return stop('WINDOW_UPDATE of 0 on the connection');
        if (st && !st.ended) st.ok = false;
      }
    } else if (type === 2) {
      if (id === 0 || len !== 5) return stop('malformed PRIORITY');
      // A stream that depends on itself is a stream error in RFC 7540; RFC 9113 deprecates
      // priorities, and the nghttp2 in Node 22 and 24 (1.69+) ignores PRIORITY frames, so
      // there the request goes on. Node's HTTP/2 layer, not portcullis, decides this.
      if ((p.readUInt32BE(0) & 0x7fffffff) === id && st && !st.ended && NGHTTP2_CHECKS_PRIORITY) st.ok = false;
    } else if (type === 7) {
      if (id !== 0) return stop('GOAWAY on a stream');
    }
    // other types: ignored (RFC 9113 §5.5)
  }
  return { requests, unfinished: unfinished(), stoppedBy: null };
}
