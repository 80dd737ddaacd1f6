// A strict HTTP/1.1 parser of its own for the fuzz test (RFC 9112), written independently
// of llhttp so that it can disagree with the proxy. It is used three ways:
// - 'upstream' mode, by the recording upstream: what the proxy sends must be clean
//   HTTP/1.1 (CRLF only, no obs-fold, one Content-Length or chunked, never both);
// - 'reference' mode, on the bytes a fuzz client is about to send: the requests a correct
//   proxy may forward, and exactly how (method, target, body). Where RFC 9112 lets a
//   recipient choose (a bare LF as line end, obs-fold replaced by SP, whitespace runs in
//   the request line, CL+TE handled by TE alone and then closing), it accepts, so that a
//   proxy making the other allowed choice is never reported;
// - parseResponses, on what a fuzz client received: a sequence of well-formed responses.
import { createHash, type Hash } from 'node:crypto';

export type ParseMode = 'upstream' | 'reference';

export interface ParsedHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  /** [name as sent, value trimmed] */
  headers: [string, string][];
  /** byte offset in the stream where the request began */
  start: number;
  chunked: boolean;
  contentLength: number;
  /** the connection must close after this request (Connection: close, HTTP/1.0, CL+TE) */
  closeAfter: boolean;
  /**
   * Why a proxy must refuse this request although its framing is clear (no or a bad Host,
   * a target of the wrong form, CONNECT); parsing goes on after it, because a lenient
   * server reads the next request at the same place. null: a valid request.
   */
  invalid: string | null;
}

export interface ParsedRequest extends ParsedHead {
  bodyLength: number;
  bodySha: string;
}

export interface ParseError {
  reason: string;
  /** byte offset in the stream */
  offset: number;
  /** the head of the request it happened in, as far as it was read */
  head: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?$/;
const CHUNK_LINE = /^([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"))?)*)$/;
const MAX_HEAD = 1 << 20;

/** JSON-quoted, with bytes 0x7f-0xff escaped too, so a report shows exactly what was there. */
export function show(s: string, max = 40): string {
  return JSON.stringify(s.slice(0, max)).replace(/[\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
export const EMPTY_SHA = sha256(Buffer.alloc(0));

/** Validates one field line; returns [name, value] or an error reason. */
function fieldLine(line: string): [string, string] | string {
  const colon = line.indexOf(':');
  if (colon <= 0) return 'field line without a name and colon';
  const name = line.slice(0, colon);
  if (!TOKEN.test(name)) return /[ \t]$/.test(name) ? 'whitespace between field name and colon' : `field name ${show(name)} is not a token`;
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
  if (value.includes('\0')) return 'NUL in a field value';
  return [name, value];
}

const enum S {
  Head,
  Body,
  ChunkSize,
  ChunkData,
  ChunkCrlf,
  Trailer,
  Done,
}

/**
 * Incremental: push() bytes as they arrive; onHead fires when a request head is complete
 * (the upstream may answer then), onRequest when its body is, onError once (parsing stops).
 */
export class RequestStreamParser {
  error: ParseError | null = null;
  /** stopped after a request that closes the connection; later bytes are not requests */
  closed = false;
  onHead: (h: ParsedHead) => void = () => undefined;
  onRequest: (r: ParsedRequest) => void = () => undefined;
  onError: (e: ParseError) => void = () => undefined;

  private buf: Buffer = Buffer.alloc(0);
  /** stream offset of buf[0] */
  private base = 0;
  private scan = 0;
  private state = S.Head;
  private lines: string[] = [];
  private headStart = -1;
  private head: ParsedHead | null = null;
  private left = 0;
  private hash: Hash | null = null;
  private bodyLength = 0;
  /** the current request's head lines, for error reports */
  private lastHead = '';

  constructor(private readonly mode: ParseMode) {}

  /** a request has begun and is not complete */
  get midRequest(): boolean {
    return this.state !== S.Head || this.lines.length > 0 || this.buf.length > 0;
  }

  push(chunk: Buffer): void {
    if (this.error || this.closed || chunk.length === 0) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.run();
  }

  private fail(reason: string, at: number): void {
    if (this.error) return;
    this.error = { reason, offset: this.base + at, head: this.lastHead || this.lines.join('\n') };
    this.state = S.Done;
    this.onError(this.error);
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
    this.base += n;
    this.scan = 0;
  }

  /** Next line ending in CRLF (LF alone in reference mode, for heads only); undefined: need more. */
  private line(allowBareLf: boolean): string | undefined {
    const nl = this.buf.indexOf(0x0a, this.scan);
    if (nl < 0) {
      this.scan = this.buf.length;
      if (this.buf.length > MAX_HEAD) this.fail('line longer than 1 MiB', 0);
      return undefined;
    }
    let end = nl;
    if (nl > 0 && this.buf[nl - 1] === 0x0d) end = nl - 1;
    else if (!allowBareLf) {
      this.fail('bare LF as line terminator', nl);
      return undefined;
    }
    const text = this.buf.toString('latin1', 0, end);
    const cr = text.indexOf('\r');
    if (cr >= 0) {
      this.fail('bare CR', cr);
      return undefined;
    }
    this.consume(nl + 1);
    return text;
  }

  private run(): void {
    while (!this.error && !this.closed) {
      if (this.state === S.Head) {
        if (this.headStart < 0 && this.buf.length > 0) this.headStart = this.base;
        const l = this.line(this.mode === 'reference');
        if (l === undefined) return;
        if (l === '' && this.lines.length === 0) {
          // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request
          if (this.mode === 'upstream') return this.fail('empty line before the request line', 0);
          this.headStart = -1;
          continue;
        }
        if (l !== '') {
          this.lines.push(l);
          if (this.lines.length > 10_000) return this.fail('more than 10000 header lines', 0);
          continue;
        }
        const start = this.headStart;
        const lines = this.lines;
        this.lastHead = lines.join('\n').slice(0, 2000);
        this.lines = [];
        this.headStart = -1;
        const h = this.parseHead(lines, start);
        if (typeof h === 'string') return this.fail(h, 0);
        this.head = h;
        this.hash = createHash('sha256');
        this.bodyLength = 0;
        this.onHead(h);
        if (h.chunked) this.state = S.ChunkSize;
        else if (h.contentLength > 0) {
          this.state = S.Body;
          this.left = h.contentLength;
        } else this.complete();
      } else if (this.state === S.Body || this.state === S.ChunkData) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.left, this.buf.length);
        this.hash!.update(this.buf.subarray(0, n));
        this.bodyLength += n;
        this.left -= n;
        this.consume(n);
        if (this.left > 0) return;
        if (this.state === S.Body) this.complete();
        else this.state = S.ChunkCrlf;
      } else if (this.state === S.ChunkCrlf) {
        if (this.buf.length < 2) {
          if (this.buf.length === 1 && this.buf[0] !== 0x0d) return this.fail('chunk data not followed by CRLF', 0);
          return;
        }
        if (this.buf[0] !== 0x0d || this.buf[1] !== 0x0a) return this.fail('chunk data not followed by CRLF', 0);
        this.consume(2);
        this.state = S.ChunkSize;
      } else if (this.state === S.ChunkSize) {
        const l = this.line(false);
        if (l === undefined) return;
        const m = CHUNK_LINE.exec(l);
        if (!m) return this.fail(`bad chunk-size line ${show(l, 40)}`, 0);
        const hex = m[1]!.replace(/^0+(?=.)/, '');
        if (hex.length > 13) return this.fail('chunk size too large', 0);
        const size = parseInt(hex, 16);
        if (size === 0) this.state = S.Trailer;
        else {
          this.left = size;
          this.state = S.ChunkData;
        }
      } else if (this.state === S.Trailer) {
        const l = this.line(false);
        if (l === undefined) return;
        if (l === '') {
          this.complete();
          continue;
        }
        if (l.charCodeAt(0) === 0x20 || l.charCodeAt(0) === 0x09) return this.fail('obs-fold in the trailer section', 0);
        const f = fieldLine(l);
        if (typeof f === 'string') return this.fail(`trailer: ${f}`, 0);
      } else return;
    }
  }

  private complete(): void {
    const h = this.head!;
    const r: ParsedRequest = { ...h, bodyLength: this.bodyLength, bodySha: this.hash!.digest('hex') };
    this.head = null;
    this.hash = null;
    this.lastHead = '';
    this.state = S.Head;
    this.onRequest(r);
    if (h.closeAfter) this.closed = true;
  }

  private parseHead(lines: string[], start: number): ParsedHead | string {
    const ref = this.mode === 'reference';
    const rl = lines[0]!;
    const parts = ref ? rl.replace(/^[ \t]+|[ \t]+$/g, '').split(/[ \t]+/) : rl.split(' ');
    // "GET /" alone is an HTTP/0.9 request line; some parsers go on to read fields after it
    const v09 = ref && parts.length === 2;
    if (parts.length !== 3 && !v09) return `request line ${show(rl, 60)} is not "method target version"`;
    const [method, target, ver] = (v09 ? [...parts, 'HTTP/1.0'] : parts) as [string, string, string];
    if (!TOKEN.test(method)) return 'method is not a token';
    const vm = /^HTTP\/(\d)\.(\d)$/.exec(ver);
    if (!vm) return `version ${show(ver, 20)} is not HTTP/<digit>.<digit>`;
    if (!ref && ver !== 'HTTP/1.1') return 'the proxy sent a version other than HTTP/1.1';
    // RFC 9110 §6.2: HTTP/1.2 and up are read as HTTP/1.1; another major version is refused (505)
    const version = ver === 'HTTP/1.0' ? '1.0' : '1.1';
    let invalid: string | null = v09 ? 'request line without an HTTP version (HTTP/0.9)' : vm[1] !== '1' ? `${ver} in an HTTP/1.1 request line` : null;
    if (!/^[\x21-\x7e]+$/.test(target)) invalid = 'request target has a byte outside visible ASCII';
    else if (method === 'CONNECT') invalid = 'CONNECT is not an ordinary request';
    else if (target === '*' && method !== 'OPTIONS') invalid = '"*" target with a method other than OPTIONS';
    else if (target !== '*' && target.charCodeAt(0) !== 0x2f && !/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target)) invalid = 'request target is neither origin-form, absolute-form nor "*"';

    const headers: [string, string][] = [];
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      if (l.charCodeAt(0) === 0x20 || l.charCodeAt(0) === 0x09) {
        if (!ref) return 'obs-fold (a field line starting with whitespace)';
        // RFC 9112 §2.2 / §5.2: whitespace before the first field is consumed unprocessed,
        // obs-fold may be replaced by SP
        if (headers.length === 0) continue;
        const prev = headers[headers.length - 1]!;
        const more = l.replace(/^[ \t]+|[ \t]+$/g, '');
        if (more.includes('\0')) return 'NUL in a field value';
        prev[1] = prev[1] === '' ? more : more === '' ? prev[1] : `${prev[1]} ${more}`;
        continue;
      }
      const f = fieldLine(l);
      if (typeof f === 'string') return f;
      headers.push(f);
    }

    let te: string[] = [];
    const cls: string[] = [];
    let clFields = 0;
    let hosts = 0;
    let hostValue = '';
    const conn = new Set<string>();
    for (const [n, v] of headers) {
      const k = n.toLowerCase();
      if (k === 'transfer-encoding') te = te.concat(v.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean));
      else if (k === 'content-length') {
        clFields++;
        for (const x of v.split(',')) cls.push(x.trim());
      } else if (k === 'host') {
        hosts++;
        hostValue = v;
      } else if (k === 'connection') for (const t of v.split(',')) conn.add(t.trim().toLowerCase());
    }
    // RFC 9112 §3.2: a server MUST answer 400 to these
    if (version === '1.1' && hosts === 0) invalid ??= 'HTTP/1.1 request without Host';
    if (hosts > 1) invalid ??= 'more than one Host';
    if (hosts === 1 && !HOST_VALUE.test(hostValue)) invalid ??= `invalid Host ${show(hostValue)}`;
    if (invalid && !ref) return invalid;

    let chunked = false;
    let contentLength = 0;
    let closeAfter = conn.has('close') || (version === '1.0' && !conn.has('keep-alive'));
    if (te.length > 0) {
      // RFC 9112 §6.1: the framing of such a message is faulty; read it as chunked to go on
      if (version === '1.0') {
        invalid ??= 'Transfer-Encoding in an HTTP/1.0 request';
        closeAfter = true;
      }
      // chunked last: the framing is clear (RFC 9112 §6.3), but no proxy may drop the other codings
      if (te[te.length - 1] !== 'chunked' || te.filter((c) => c === 'chunked').length > 1) return `transfer coding ${show(te.join(', '))} does not end in one chunked`;
      if (te.length !== 1) invalid ??= `transfer coding ${show(te.join(', '))} other than chunked`;
      if (cls.length > 0) {
        if (!ref) return 'both Content-Length and Transfer-Encoding';
        // RFC 9112 §6.1: process by Transfer-Encoding alone, then close the connection
        closeAfter = true;
      }
      chunked = true;
    } else if (cls.length > 0) {
      if (!ref && (clFields !== 1 || cls.length !== 1)) return 'more than one Content-Length value';
      if (!cls.every((x) => /^\d+$/.test(x))) return `Content-Length ${JSON.stringify(cls.join(',').slice(0, 40))} is not digits`;
      const n = Number(cls[0]);
      if (!cls.every((x) => Number(x) === n)) return 'Content-Length values differ';
      if (!Number.isSafeInteger(n)) return 'Content-Length too large';
      contentLength = n;
    }
    return { method, target, version, headers, start, chunked, contentLength, closeAfter, invalid };
  }
}

/**
 * Reference-parses a whole client byte stream: the requests in it (valid or not), the
 * head of a request the stream ends inside of, and where parsing stopped.
 */
export function referenceRequests(stream: Buffer): { requests: ParsedRequest[]; cut: ParsedHead | null; error: ParseError | null; closed: boolean } {
  const p = new RequestStreamParser('reference');
  const requests: ParsedRequest[] = [];
  let head: ParsedHead | null = null;
  p.onHead = (h) => (head = h);
  p.onRequest = (r) => {
    requests.push(r);
    head = null;
  };
  p.push(stream);
  return { requests, cut: p.error ? null : head, error: p.error, closed: p.closed };
}

export interface ResponseInfo {
  status: number;
  headers: [string, string][];
  closes: boolean;
}

export interface ResponsesParse {
  /** final (non-1xx) responses */
  finals: ResponseInfo[];
  interim: number;
  /** what was wrong, if anything; parsing stops there */
  problem: string | null;
  /** where in the data the problem is */
  problemAt: number;
  /** the last response was cut off by the end of the data */
  truncated: boolean;
}

/**
 * Parses what a client received. `requests` are the method and version of the requests
 * in the order the proxy answers them (for HEAD and HTTP/1.0 framing rules).
 */
export function parseResponses(data: Buffer, requests: readonly { method: string; version: string }[]): ResponsesParse {
  const out: ResponsesParse = { finals: [], interim: 0, problem: null, problemAt: 0, truncated: false };
  let off = 0;
  const lineAt = (): string | undefined | null => {
    const nl = data.indexOf(0x0a, off);
    if (nl < 0) return undefined;
    if (nl === off || data[nl - 1] !== 0x0d) return null;
    const s = data.toString('latin1', off, nl - 1);
    off = nl + 1;
    return s;
  };
  while (off < data.length) {
    const req = requests[out.finals.length];
    const begin = off;
    const sl = lineAt();
    if (sl === undefined) return { ...out, truncated: true };
    if (sl === null || sl.includes('\r')) return { ...out, problemAt: begin, problem: `status line at byte ${begin} does not end in CRLF` };
    const m = /^HTTP\/1\.[01] ([1-5]\d\d) ([\t\x20-\x7e\x80-\xff]*)$/.exec(sl);
    if (!m) return { ...out, problemAt: begin, problem: `not a status line at byte ${begin}: ${show(sl, 60)}` };
    const status = Number(m[1]);
    const headers: [string, string][] = [];
    for (;;) {
      const l = lineAt();
      if (l === undefined) return { ...out, truncated: true };
      if (l === null || l.includes('\r')) return { ...out, problemAt: begin, problem: `response header line of ${status} does not end in CRLF` };
      if (l === '') break;
      if (l.charCodeAt(0) === 0x20 || l.charCodeAt(0) === 0x09) return { ...out, problemAt: begin, problem: 'obs-fold in a response' };
      const f = fieldLine(l);
      if (typeof f === 'string') return { ...out, problemAt: begin, problem: `response of ${status}: ${f}` };
      headers.push(f);
    }
    if (status >= 100 && status < 200) {
      if (status === 101) return { ...out, problemAt: begin, problem: '101 Switching Protocols without an upgrade request' };
      out.interim++;
      continue;
    }
    const get = (n: string) => headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
    const conn = get('connection').join(',').toLowerCase().split(',').map((x) => x.trim());
    const te = get('transfer-encoding');
    const cl = get('content-length');
    const info: ResponseInfo = { status, headers, closes: conn.includes('close') };
    const bodyless = req?.method === 'HEAD' || status === 204 || status === 304;
    if (te.length > 0 && cl.length > 0) return { ...out, problemAt: begin, problem: `response of ${status} has both Content-Length and Transfer-Encoding` };
    if (te.length > 0 && req?.version === '1.0') return { ...out, problemAt: begin, problem: `chunked response of ${status} to an HTTP/1.0 request` };
    if (bodyless) {
      // HEAD, 204, 304: no body whatever the headers say
    } else if (te.length > 0) {
      if (te.join(',').toLowerCase().replace(/\s/g, '') !== 'chunked') return { ...out, problemAt: begin, problem: `response transfer coding ${te.join(',')}` };
      for (;;) {
        const l = lineAt();
        if (l === undefined) return { ...out, truncated: true, finals: [...out.finals, info] };
        if (l === null || !CHUNK_LINE.test(l)) return { ...out, problemAt: begin, problem: `bad chunk-size line in response of ${status}` };
        const size = parseInt(/^[0-9A-Fa-f]+/.exec(l)![0], 16);
        if (size === 0) {
          for (;;) {
            const t = lineAt();
            if (t === undefined) return { ...out, truncated: true, finals: [...out.finals, info] };
            if (t === null) return { ...out, problemAt: begin, problem: 'bad trailer line in response' };
            if (t === '') break;
          }
          break;
        }
        if (off + size + 2 > data.length) return { ...out, truncated: true, finals: [...out.finals, info] };
        if (data[off + size] !== 0x0d || data[off + size + 1] !== 0x0a) return { ...out, problemAt: begin, problem: `chunk of ${size} bytes in response of ${status} not followed by CRLF` };
        off += size + 2;
      }
    } else if (cl.length > 0) {
      const vals = cl.join(',').split(',').map((x) => x.trim());
      if (!vals.every((v) => /^\d+$/.test(v) && v === vals[0])) return { ...out, problemAt: begin, problem: `response Content-Length ${cl.join(',')}` };
      const n = Number(vals[0]);
      if (off + n > data.length) return { ...out, truncated: true, finals: [...out.finals, info] };
      off += n;
    } else {
      // delimited by the close: everything left is this body
      out.finals.push(info);
      off = data.length;
      break;
    }
    out.finals.push(info);
    if (info.closes && off < data.length) return { ...out, problemAt: off, problem: `${data.length - off} bytes after a response that said Connection: close` };
  }
  return out;
}
