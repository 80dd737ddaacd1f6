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
