// The protocol-independent decision for one HTTP request: header count, header
// scrubbing, method, Host checks, path normalization, SNI/Host agreement (421), route
// match, per-route client auth, authorization, declared body size, and the header list
// sent upstream. The HTTP/1.1, HTTP/2 and WebSocket paths all call admitRequest, so
// normalization, identity headers, scrubbing and authorization are identical on every
// protocol by construction, not by copying (docs/request-normalization.md).
import { randomUUID } from 'node:crypto';
import { connRules, type ConnState, type RouteRuntime } from '../context.js';
import { filterRequestHeaders } from '../request-headers.js';
import { renderIdentityHead } from '../identity-headers.js';
import { normalizePath } from '../../routing/path.js';
import { hostProblem } from '../../routing/host.js';
import { methodProblem } from '../../routing/method.js';
import { hostWithoutPort, matchRoute } from '../../routing/route-table.js';
import { authorize, type Decision } from '../../policy/authorize.js';
import { selectEntry } from '../../tls/listener-tls.js';
import { writeAccess } from '../../telemetry/telemetry.js';
import type { HttpErrorCode } from '../../errors.js';

export interface RequestInput {
  conn: ConnState;
  method: string;
  /** request-target as sent: origin form, `*`, or absolute form (HTTP/1.1) */
  target: string;
  /**
   * [name, value, ...] as received; for HTTP/2 without pseudo-headers, :authority as host
   * and cookie crumbs joined into one field. Its length is what limits.max_headers
   * counts, so the front end must pass every field (never a truncated list).
   */
  rawHeaders: readonly string[];
  /** declared Content-Length, if any */
  contentLength: number | undefined;
  /**
   * HTTP/1.0 only: a request without Host is served (RFC 1945 has none). Any later
   * version must name its authority (RFC 9112 §3.2, RFC 9113 §8.3.1), else 400: without
   * one, no host-scoped route could match and the request would fall to a catch-all.
   */
  hostOptional?: boolean;
}

export type LogDecision = { allowed: boolean; rule?: string | undefined; reason?: string | undefined };

export interface Refusal {
  ok: false;
  requestId: string;
  code: HttpErrorCode;
  message: string;
  route?: RouteRuntime;
  decision?: LogDecision;
  /** normalized path, once known (for the log line) */
  path?: string;
  /** end the connection after this answer (a connection whose certificate was refused) */
  close?: boolean;
}

export interface Admission {
  ok: true;
  requestId: string;
  route: RouteRuntime;
  decision: Decision;
  /** Host (or :authority) the request was routed by, as sent */
  host: string;
  /** normalized path, without the query */
  path: string;
  /** normalized path + query: what goes upstream */
  pathWithQuery: string;
  /** scrubbed client headers + X-Forwarded-* + X-Request-Id + identity headers */
  headers: string[];
  /**
   * headers[identityFrom..] are the connection's identity headers, also pre-rendered as
   * checked HTTP/1.1 lines in identityHead (undefined: send them as ordinary pairs)
   */
  identityFrom: number;
  identityHead: string | undefined;
  /** the client sent `te: trailers` (gRPC needs it passed on to h2 upstreams) */
  teTrailers: boolean;
  /** balance: hash on identity: the client's SPIFFE ID, else its leaf fingerprint (none without a verified certificate) */
  clientKey: string | undefined;
}

function refusal(requestId: string, code: HttpErrorCode, message: string, extra: Partial<Refusal> = {}): Refusal {
  return { ok: false, requestId, code, message, ...extra };
}

/**
 * The answer to every request on a connection whose certificate was refused after the
 * handshake (tls.reject: http; pins, OCSP, cert_policy): checked before anything else, so
 * such a request is never routed and nothing of it is forwarded; the connection closes
 * after the answer. Front ends call it before their own protocol checks too. Without a
 * request id, a new one is made only for a refusal (one UUID per request is a measurable
 * share of what an HTTP/2 request allocates).
 */
export function connectionRefusal(conn: ConnState, requestId?: string): Refusal | undefined {
  const r = conn.refusal;
  if (!r) return undefined;
  return refusal(requestId ?? randomUUID(), r.code, r.message, { close: true, decision: { allowed: false, reason: r.code === 'client_certificate_invalid' ? r.message : `${r.reason}: ${r.message}` } });
}

export function admitRequest(input: RequestInput): Admission | Refusal {
  const { conn, method } = input;
  const l = conn.listener;
  const f = filterRequestHeaders(input.rawHeaders);
  const requestId = f.requestId ?? randomUUID();
  const refused = connectionRefusal(conn, requestId);
  if (refused) return refused;
  const maxHeaders = l.cfg.limits.max_headers;
  if (input.rawHeaders.length > 2 * maxHeaders) {
    return refusal(requestId, 'headers_too_large', `the request has ${input.rawHeaders.length / 2} header fields, more than ${maxHeaders}; send fewer or raise limits.max_headers`);
  }
  if (f.duplicateHost) return refusal(requestId, 'bad_request', 'the request has more than one Host header; send exactly one');
  // before routing: `delete` must not miss a DELETE route and land on a catch-all
  const badMethod = methodProblem(method);
  if (badMethod) return refusal(requestId, 'bad_request', badMethod);

  let rawTarget = input.target;
  let host = f.host;
  if (rawTarget.startsWith('http://') || rawTarget.startsWith('https://')) {
    // absolute-form (RFC 9112 §3.2.2): the target's authority wins over Host, but Host
    // must still be there (HTTP/1.1) and valid (RFC 9112 §3.2: 400 otherwise); a hop
    // that routes by Host instead would read another authority
    if (host === undefined && !input.hostOptional) return refusal(requestId, 'bad_request', 'the HTTP/1.1 request has no Host header (RFC 9112 §3.2 requires one, also beside an absolute-form target); send Host with the target\'s authority');
    if (host !== undefined) {
      const hp = hostProblem(host);
      if (hp) return refusal(requestId, 'bad_request', `${hp}; send host[:port], e.g. Host: api.example.com:8443, also beside an absolute-form target`);
    }
    const abs = absoluteTarget(rawTarget);
    rawTarget = abs.path;
    host = abs.host;
    const p = hostProblem(host);
    if (p) return refusal(requestId, 'bad_request', `the authority of the absolute request target is not valid: ${p}; send host[:port], e.g. api.example.com:8443`);
    replaceHost(f.headers, host);
  } else if (host !== undefined) {
    // a Host that is not one host name would miss host-scoped routes and fall through
    const p = hostProblem(host);
    if (p) return refusal(requestId, 'bad_request', `${p}; send host[:port], e.g. Host: api.example.com:8443`);
  } else if (input.hostOptional) host = '';
  else return refusal(requestId, 'bad_request', 'the request names no authority (no Host header, no :authority); send the server\'s name, e.g. Host: api.example.com');
  const target = normalizePath(rawTarget, l.cfg.merge_slashes);
  if (!target.ok) return refusal(requestId, 'bad_request', `the request path is not acceptable (${target.reason}); send a normalized path`);
  // `*` names the server, not a resource: only OPTIONS means anything with it (RFC 9112
  // §3.2.4, RFC 9113 §8.3.1); `GET *` would reach whatever route matches `*`
  if (target.path === '*' && method !== 'OPTIONS') return refusal(requestId, 'bad_request', `the request target "*" is only valid with OPTIONS, not ${method}; send a path such as /`);
  const bareHost = hostWithoutPort(host);
  const tlsRt = l.tls;
  if (tlsRt && tlsRt.entries.length > 0 && selectEntry(tlsRt, bareHost) !== conn.entry) {
    // the Host belongs to another certificate entry (its own CA and rules) than the one the
    // handshake verified against: CVE-2025-23419-style bypass, so refuse (RFC 9110 §15.5.20)
    return refusal(requestId, 'misdirected_request', `the Host ${bareHost || '(none)'} is not served by the certificate this connection negotiated${conn.servername ? ` for ${conn.servername}` : ' (no SNI)'}; open a new connection for that host`);
  }
  const m = matchRoute(l.table, bareHost, target.path, method);
  if (!m) {
    return refusal(requestId, 'no_route', `no route on listener ${l.name} matches ${method} ${target.path}${host ? ` for host ${bareHost}` : ''}; check the listener's routes`, { path: target.path });
  }
  const route = l.routes[m.index]!;
  const path = target.path;
  // the route's own setting, else the SNI entry's (it may differ from the listener's)
  const clientAuth = route.ownClientAuth ?? conn.entry?.trust.clientAuth ?? route.clientAuth;
  if (clientAuth === 'require' && conn.peer.verify !== 'SUCCESS') {
    if (conn.peer.verify === 'NONE') {
      return refusal(requestId, 'client_certificate_required', `route ${route.name} requires a client certificate; present one issued by a CA this listener trusts`, { route, path });
    }
    return refusal(requestId, 'client_certificate_invalid', `${conn.peer.reason}: ${conn.peer.message}`, { route, path });
  }
  const rules = connRules(l, conn.entry);
  const decision = authorize({
    listenerAllow: rules.allow,
    listenerDeny: rules.deny,
    routeAllow: route.allow,
    routeDeny: route.deny,
    identity: conn.peer.verify === 'SUCCESS' ? conn.peer.identity : undefined,
    facts: { method, host: bareHost, path },
  });
  if (!decision.allowed) {
    return refusal(requestId, 'forbidden', `route ${route.name} does not allow this client (${decision.reason}); ask for access or use an allowed identity`, { route, decision, path });
  }
  const maxBody = l.cfg.limits.max_body_bytes;
  if (maxBody > 0 && input.contentLength !== undefined && input.contentLength > maxBody) {
    return refusal(requestId, 'body_too_large', `the request body of ${input.contentLength} bytes exceeds ${maxBody} bytes; send less or raise limits.max_body_bytes`, { route, decision, path });
  }

  const headers = f.headers;
  headers.push('x-forwarded-for', conn.remoteAddress, 'x-forwarded-proto', 'https', 'x-request-id', requestId);
  if (host) headers.push('x-forwarded-host', host);
  const identityFrom = headers.length;
  const ids = conn.identityHeaders;
  for (let i = 0; i < ids.length; i++) headers.push(ids[i]!);
  return {
    ok: true,
    requestId,
    route,
    decision,
    host,
    path,
    pathWithQuery: path + target.query,
    headers,
    identityFrom,
    identityHead: renderIdentityHead(ids),
    teTrailers: f.teTrailers,
    clientKey: conn.peer.verify === 'SUCCESS' ? (conn.peer.identity?.spiffeId ?? conn.peer.identity?.fingerprint) : undefined,
  };
}

/**
 * Splits `http(s)://authority/path?query` as written: the authority is checked by
 * hostProblem like any Host (userinfo included), and the path is normalized by
 * normalizePath. Not URL(): it would rewrite both first (IPv4 in hex or shortened
 * forms, IDN, dot segments), so the route would be chosen on another spelling than the
 * one that was sent.
 */
function absoluteTarget(t: string): { host: string; path: string } {
  const start = t.indexOf('//') + 2;
  let end = start;
  while (end < t.length) {
    const c = t.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break; // / ? #
    end++;
  }
  const rest = t.slice(end);
  return { host: t.slice(start, end), path: rest === '' ? '/' : rest.charCodeAt(0) === 0x2f ? rest : `/${rest}` };
}

function replaceHost(headers: string[], host: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === 'host') {
      headers[i + 1] = host;
      return;
    }
  }
  headers.push('host', host);
}

export interface LogExtra {
  route?: RouteRuntime | undefined;
  decision?: LogDecision | undefined;
  bytesIn?: number;
  bytesOut?: number;
  error?: string | undefined;
  path?: string | undefined;
  /** the sentence sent with a refusal (the admin dashboard shows it beside the reason) */
  message?: string | undefined;
}

/** One access line + the request/authz metrics, the same on every protocol. */
export function logRequest(conn: ConnState, start: number, requestId: string, method: string, path: string, status: number, extra: LogExtra): void {
  const l = conn.listener;
  const seconds = (performance.now() - start) / 1000;
  const routeName = extra.route?.name ?? '-'; // unmatched requests share one label value
  l.telemetry.request(l.name, routeName, status, seconds);
  if (extra.decision) l.telemetry.authz(l.name, routeName, extra.decision.allowed);
  l.telemetry.clientActivity(l.name, routeName, conn.logClient, conn.remoteAddress, status, extra.decision, extra.error, extra.message);
  // with the access log off, do not build the record at all
  if (!l.telemetry.access) return;
  writeAccess(l.telemetry, {
    event: 'request',
    listener: l.name,
    route: extra.route?.name,
    remote_addr: conn.remoteAddress,
    tls_version: conn.tlsVersion,
    client: conn.logClient,
    decision: extra.decision,
    upstream: extra.route?.upstreamName,
    status,
    bytes_in: extra.bytesIn ?? 0,
    bytes_out: extra.bytesOut ?? 0,
    duration_ms: Math.round(seconds * 1e6) / 1000,
    request_id: requestId,
    method,
    path: extra.path ?? path,
    error: extra.error,
  });
}

class BodyTooLarge extends Error {
  code = 'PCL_BODY_TOO_LARGE';
}

/** Counts a body as it streams and stops it at limits.max_body_bytes (0 = no limit). */
export async function* countBody(body: AsyncIterable<Buffer>, max: number, report: (n: number) => void): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    report(n);
    if (max > 0 && n > max) throw new BodyTooLarge(`request body exceeds ${max} bytes`);
    yield chunk;
  }
}
