// The protocol-independent decision for one HTTP request: header scrubbing, Host checks,
// path normalization, SNI/Host agreement (421), route match, per-route client auth,
// authorization, declared body size, and the header list sent upstream. The HTTP/1.1,
// HTTP/2 and WebSocket paths all call admitRequest, so identity headers, scrubbing and
// authorization are identical on every protocol by construction, not by copying.
import { randomUUID } from 'node:crypto';
import { connRules, type ConnState, type RouteRuntime } from '../../runtime/types.js';
import { filterRequestHeaders } from '../request-headers.js';
import { renderIdentityHead } from '../identity-headers.js';
import { normalizePath } from '../../routing/path.js';
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
  /** [name, value, ...] as received; for HTTP/2 without pseudo-headers, :authority as host */
  rawHeaders: readonly string[];
  /** declared Content-Length, if any */
  contentLength: number | undefined;
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
}

function refusal(requestId: string, code: HttpErrorCode, message: string, extra: Partial<Refusal> = {}): Refusal {
  return { ok: false, requestId, code, message, ...extra };
}

export function admitRequest(input: RequestInput): Admission | Refusal {
  const { conn, method } = input;
  const l = conn.listener;
  const f = filterRequestHeaders(input.rawHeaders);
  const requestId = f.requestId ?? randomUUID();
  if (f.duplicateHost) return refusal(requestId, 'bad_request', 'the request has more than one Host header; send exactly one');

  let rawTarget = input.target;
  let host = f.host ?? '';
  if (rawTarget.startsWith('http://') || rawTarget.startsWith('https://')) {
    // absolute-form (RFC 9112 §3.2.2): the target's authority wins over Host
    const abs = absoluteTarget(rawTarget);
    if (!abs) return refusal(requestId, 'bad_request', 'the request target is not a valid absolute URI; send an origin-form path like /path');
    rawTarget = abs.path;
    host = abs.host;
    replaceHost(f.headers, host);
  }
  const target = normalizePath(rawTarget);
  if (!target.ok) return refusal(requestId, 'bad_request', `the request path is not acceptable (${target.reason}); send a normalized path`);
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
  };
}

function absoluteTarget(t: string): { host: string; path: string } | undefined {
  try {
    const u = new URL(t);
    if (!u.host || u.username || u.password) return undefined;
    // keep the path exactly as sent (URL() would already normalize dot segments)
    const afterAuthority = t.indexOf('/', t.indexOf('//') + 2);
    return { host: u.host, path: afterAuthority < 0 ? '/' : t.slice(afterAuthority) };
  } catch {
    return undefined;
  }
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
}

/** One access line + the request/authz metrics, the same on every protocol. */
export function logRequest(conn: ConnState, start: number, requestId: string, method: string, path: string, status: number, extra: LogExtra): void {
  const l = conn.listener;
  const seconds = (performance.now() - start) / 1000;
  const routeName = extra.route?.name ?? '-'; // unmatched requests share one label value
  l.telemetry.request(l.name, routeName, status, seconds);
  if (extra.decision) l.telemetry.authz(l.name, routeName, extra.decision.allowed);
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
