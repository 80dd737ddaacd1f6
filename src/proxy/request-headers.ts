// Builds the header list sent upstream from what the client sent: drops hop-by-hop
// headers (RFC 9110 §7.6.1) and anything the client named in Connection, and drops every
// header in portcullis' identity namespace (SPEC §4) in any letter case and with '_' for
// '-', so a client can never supply an identity. The proxy's own values are appended after.

/** A header value with one of these would end its line early (header injection). */
// eslint-disable-next-line no-control-regex
export const UNSAFE_HEADER_VALUE = /[\r\n\0]/;
/** A header name must be a token (RFC 9110 §5.1). */
export const HEADER_NAME_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Headers the client may never set (compared lowercased with '_' → '-'). */
const IDENTITY_HEADERS = new Set([
  'x-forwarded-client-cert',
  'client-cert',
  'client-cert-chain',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  // they claim the client's address too; portcullis is the edge and sets X-Forwarded-For
  'forwarded',
  'x-real-ip',
]);
const IDENTITY_PREFIX = 'x-client-';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
  // Node's server already answered 100-continue; the upstream request is sent whole
  'expect',
]);

export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replace(/_/g, '-') : lower;
}

export function isIdentityHeader(canonical: string): boolean {
  return canonical.startsWith(IDENTITY_PREFIX) || IDENTITY_HEADERS.has(canonical);
}

export interface FilteredHeaders {
  headers: string[];
  /** the client's X-Request-Id when it was valid */
  requestId: string | undefined;
  host: string | undefined;
  /** more than one Host header: RFC 9112 §3.2 says answer 400 */
  duplicateHost: boolean;
  /** the client asked for trailers (te: trailers), which gRPC needs */
  teTrailers: boolean;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** rawHeaders: Node's [name, value, name, value, ...] as received. */
export function filterRequestHeaders(raw: readonly string[]): FilteredHeaders {
  let connectionTokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      connectionTokens ??= new Set();
      for (const t of raw[i + 1]!.split(',')) {
        const tok = canonicalName(t.trim());
        if (tok) connectionTokens.add(tok);
      }
    }
  }
  const headers: string[] = [];
  let requestId: string | undefined;
  let host: string | undefined;
  let teTrailers = false;
  let duplicateHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const c = canonicalName(name);
    // Host is end-to-end and routes the request: a Connection token never removes it
    if (c === 'host') {
      if (host !== undefined) {
        duplicateHost = true;
        continue;
      }
      host = value;
      headers.push(name, value);
      continue;
    }
    if (isIdentityHeader(c)) {
      if (c === 'x-request-id' && requestId === undefined && REQUEST_ID_RE.test(value)) requestId = value;
      continue;
    }
    if (HOP_BY_HOP.has(c)) {
      if (c === 'te' && /(^|,)\s*trailers\s*(,|$)/i.test(value)) teTrailers = true;
      continue;
    }
    if (connectionTokens?.has(c)) continue;
    headers.push(name, value);
  }
  return { headers, requestId, host, duplicateHost, teTrailers };
}

/** Response headers from an HTTP/1.1 upstream, [name, value, ...]: drop hop-by-hop ones (and those named in Connection) before relaying; keeps their case, order and repeats. */
export function filterRawResponseHeaders(raw: readonly string[]): string[] {
  let connectionTokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 10 && n.toLowerCase() === 'connection') {
      connectionTokens ??= new Set();
      for (const t of raw[i + 1]!.split(',')) {
        const tok = t.trim().toLowerCase();
        if (tok) connectionTokens.add(tok);
      }
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(k) || connectionTokens?.has(k)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** [name, value, ...] → a lowercased map; repeated names become arrays (HTTP/2 and trailers want a map). */
export function headerMapOf(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (typeof prev === 'string') out[k] = [prev, v];
    else prev.push(v);
  }
  return out;
}
