// The HTTP/1.1 wire details H1Pool needs, kept apart from its connection state machine:
// the request head (with header-injection checks), and the framing facts read from a
// response head (content-length, the Keep-Alive hint).
import type { H1Request } from './h1-pool.js';

const NEEDS_LENGTH = new Set(['POST', 'PUT', 'PATCH']);
/** would end the header line early: header injection */
const BAD_VALUE = /[\r\n\0]/;
const BAD_NAME = /[\r\n\0: ]/;

export function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** Builds the request head; throws on a header that would break the framing. */
export function requestHead(r: H1Request, defaultHost: string): string {
  if (BAD_VALUE.test(r.path) || r.path.includes(' ')) throw upstreamError('PCL_BAD_REQUEST_HEAD', 'the request target cannot be sent upstream');
  let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
  let host = false;
  let length = false;
  const h = r.headers;
  const end = r.trusted ? r.trusted.from : h.length;
  for (let i = 0; i < end; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (BAD_NAME.test(name) || BAD_VALUE.test(value)) {
      throw upstreamError('PCL_BAD_REQUEST_HEAD', `header ${JSON.stringify(name)} cannot be sent upstream (it contains a line break or NUL)`);
    }
    if (name.length === 4 && !host && name.toLowerCase() === 'host') host = true;
    else if (name.length === 14 && !length && name.toLowerCase() === 'content-length') length = true;
    // framing is ours to choose (hop-by-hop): a caller's transfer-encoding never goes out
    else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') continue;
    head += `${name}: ${value}\r\n`;
  }
  if (r.trusted) head += r.trusted.head;
  if (!host) head += `host: ${defaultHost}\r\n`;
  if (!length) {
    if (r.body) head += 'transfer-encoding: chunked\r\n';
    else if (NEEDS_LENGTH.has(r.method)) head += 'content-length: 0\r\n';
  }
  return head + '\r\n';
}

/** The body length a response declares, or -1 (none, or chunked, which takes precedence). */
export function contentLength(raw: readonly string[]): number {
  let len = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 14 && n.toLowerCase() === 'content-length') len = Number(raw[i + 1]);
    else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') return -1;
  }
  return Number.isSafeInteger(len) ? len : -1;
}

/** `Keep-Alive: timeout=N` → ms to keep the socket, one second short of the upstream's limit (as undici does). */
export function keepAliveHint(raw: readonly string[]): number {
  let v: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 10 && n.toLowerCase() === 'keep-alive') v = v === undefined ? raw[i + 1]! : `${v},${raw[i + 1]!}`;
  }
  if (v === undefined) return 0;
  const m = /(?:^|[\s,])timeout=(\d+)/i.exec(v);
  if (!m) return 0;
  return Math.max(Number(m[1]) * 1000 - 1000, 1000);
}

/** The sole transfer coding of a response is `chunked` and it has no content-length: the framing ChunkedDecoder reads. */
export function plainChunked(raw: readonly string[]): boolean {
  let te: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 14 && n.toLowerCase() === 'content-length') return false;
    if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') {
      if (te !== undefined) return false;
      te = raw[i + 1]!;
    }
  }
  return te !== undefined && te.trim().toLowerCase() === 'chunked';
}

const CR = 13;
const LF = 10;
/** a chunk-size line (size and extensions) longer than this is refused, as Node's own server does */
const MAX_CHUNK_LINE = 16 * 1024;
/** RFC 9110 token characters */
const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN = new RegExp(`^${TCHAR}+$`);
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
/** chunk-ext (RFC 9112 §7.1.1): `;name`, `;name=token` or `;name="quoted"` after optional BWS; an empty value passes, as llhttp lets it */
const CHUNK_EXT = new RegExp(`^(?:[ \\t]*;[ \\t]*${TCHAR}+(?:[ \\t]*=[ \\t]*(?:${TCHAR}+|${QUOTED}|))?)+[ \\t]*$`);
// eslint-disable-next-line no-control-regex
const BAD_FIELD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;

const enum St {
  Size,
  SizeWs,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  TrailerLf,
  Done,
}

/**
 * A chunked response body (RFC 9112 §7.1), decoded without copying: chunk data is handed
 * on as views of the caller's buffer. llhttp could frame it too, but Node's binding copies
 * every piece of body it reports, which at hundreds of MB/s is garbage enough to make V8
 * run full collections (the same cost the read buffer in h1-conn.ts removed for bodies of
 * known length). As strict as llhttp where framing is at stake: hex sizes of at most 13
 * digits, CRLF everywhere (no bare LF), no obsolete line folding, token trailer names.
 */
export class ChunkedDecoder {
  private st = St.Size;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private line = '';
  private trailerBytes = 0;
  /** trailer fields as [name, value, ...], once the body is done */
  trailers: string[] = [];

  constructor(private readonly maxTrailerBytes: number) {}

  /**
   * Reads `buf` from `off`; `data` gets each piece of chunk data. Returns the offset just
   * past the body once it is complete, -1 while more is needed, or an Error.
   */
  feed(buf: Buffer, off: number, data: (piece: Buffer) => void): number | (Error & { code: string }) {
    const end = buf.length;
    let i = off;
    while (i < end) {
      switch (this.st) {
        case St.Data: {
          const n = Math.min(this.size, end - i);
          this.size -= n;
          data(i === 0 && n === end ? buf : buf.subarray(i, i + n));
          i += n;
          if (this.size === 0) this.st = St.DataCr;
          continue;
        }
        case St.Size: {
          const c = buf[i]!;
          const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (d >= 0) {
            if (++this.digits > 13) return bad('HPE_INVALID_CHUNK_SIZE');
            this.size = this.size * 16 + d;
          } else if (this.digits === 0) {
            return bad('HPE_INVALID_CHUNK_SIZE');
          } else if (c === CR) {
            this.st = St.SizeLf;
          } else if (c === 0x3b) {
            // an extension: checked, then ignored, as RFC 9112 allows
            this.st = St.Ext;
            this.lineBytes = 1;
            this.line = ';';
          } else if (c === 0x20 || c === 0x09) {
            this.st = St.SizeWs;
          } else {
            return bad('HPE_INVALID_CHUNK_SIZE');
          }
          break;
        }
        case St.SizeWs: {
          // whitespace after the size may only lead to an extension
          const c = buf[i]!;
          if (c === 0x3b) {
            this.st = St.Ext;
            this.line = ';';
          } else if (c === CR) this.st = St.SizeLf;
          else if (c !== 0x20 && c !== 0x09) return bad('HPE_INVALID_CHUNK_SIZE');
          else if (++this.lineBytes > MAX_CHUNK_LINE) return bad('HPE_CHUNK_EXTENSIONS_OVERFLOW');
          break;
        }
        case St.Ext: {
          const cr = buf.indexOf(CR, i);
          const stop = cr < 0 ? end : cr;
          this.lineBytes += stop - i;
          if (this.lineBytes > MAX_CHUNK_LINE) return bad('HPE_CHUNK_EXTENSIONS_OVERFLOW');
          this.line += buf.toString('latin1', i, stop);
          i = stop;
          if (cr < 0) continue;
          if (!CHUNK_EXT.test(this.line)) return bad('HPE_STRICT');
          this.line = '';
          this.st = St.SizeLf;
          break;
        }
        case St.SizeLf: {
          if (buf[i] !== LF) return bad('HPE_STRICT');
          this.digits = 0;
          this.lineBytes = 0;
          if (this.size === 0) this.st = St.Trailer;
          else this.st = St.Data;
          break;
        }
        case St.DataCr:
          if (buf[i] !== CR) return bad('HPE_STRICT');
          this.st = St.DataLf;
          break;
        case St.DataLf:
          if (buf[i] !== LF) return bad('HPE_STRICT');
          this.st = St.Size;
          break;
        case St.Trailer: {
          const cr = buf.indexOf(CR, i);
          const stop = cr < 0 ? end : cr;
          const lf = buf.indexOf(LF, i);
          if (lf >= 0 && lf < stop) return bad('HPE_STRICT');
          this.trailerBytes += stop - i;
          if (this.trailerBytes > this.maxTrailerBytes) return bad('HPE_HEADER_OVERFLOW');
          this.line += buf.toString('latin1', i, stop);
          i = stop;
          if (cr >= 0) {
            this.st = St.TrailerLf;
            i++;
          }
          continue;
        }
        case St.TrailerLf: {
          if (buf[i] !== LF) return bad('HPE_STRICT');
          i++;
          if (this.line === '') {
            this.st = St.Done;
            return i;
          }
          const err = this.addTrailer(this.line);
          if (err) return err;
          this.line = '';
          this.st = St.Trailer;
          continue;
        }
        case St.Done:
          return i;
      }
      i++;
    }
    return -1;
  }

  private addTrailer(line: string): (Error & { code: string }) | undefined {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // no name, whitespace before the colon, or an obs-fold continuation line
    if (!TOKEN.test(name)) return bad('HPE_INVALID_HEADER_TOKEN');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_FIELD_VALUE.test(value)) return bad('HPE_INVALID_HEADER_TOKEN');
    this.trailers.push(name, value);
    return undefined;
  }
}

function bad(code: string): Error & { code: string } {
  return upstreamError(code, `the upstream's chunked body is malformed (${code})`);
}
