// The HTTP/1.1 front end: an http.Server that never listens itself. The listener hands
// it TLS sockets whose handshake (and identity) is already done. Per request it routes,
// checks client authentication and authorization, then forwards and logs one line.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { connOf, type ConnState, type ListenerRuntime, type RouteRuntime } from '../../runtime/types.js';
import { filterRequestHeaders } from '../request-headers.js';
import { normalizePath } from '../../routing/path.js';
import { hostWithoutPort, matchRoute } from '../../routing/route-table.js';
import { authorize } from '../../policy/authorize.js';
import { sendError } from './respond.js';
import { forward, type ForwardResult } from './forward.js';
import { writeAccess } from '../../telemetry/telemetry.js';
import { httpErrorBody, type HttpErrorCode } from '../../errors.js';
import type { Frontend } from '../frontend.js';
import { selectEntry } from '../../tls/listener-tls.js';

export interface Http1Options {
  maxHeaderBytes: number;
  headerTimeout: number;
  idleTimeout: number;
}

/** The HTTP/1.1 front end as a Frontend: hands connections to a non-listening http.Server. */
export function http1Frontend(opts: Http1Options): Frontend {
  const server = createHttp1Frontend(opts);
  // 'listening' starts Node's header/request timeout bookkeeping, which it only sets up
  // for servers that listen themselves
  server.emit('listening');
  return {
    accept: (sock) => server.emit('connection', sock),
    closeIdle: () => server.closeIdleConnections(),
  };
}

export function createHttp1Frontend(opts: Http1Options): http.Server {
  const server = http.createServer(
    {
      maxHeaderSize: opts.maxHeaderBytes,
      requestTimeout: 0,
      headersTimeout: opts.headerTimeout,
      keepAliveTimeout: opts.idleTimeout,
      // we add X-Forwarded-*; the client's copies are dropped anyway
      joinDuplicateHeaders: false,
    },
    handleRequest,
  );
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    let error: HttpErrorCode = 'bad_request';
    let message = 'the request could not be parsed as HTTP/1.1; check the client';
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      error = 'headers_too_large';
      message = `the request headers exceed ${opts.maxHeaderBytes} bytes; send smaller headers or raise limits.max_header_bytes`;
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT') {
      socket.destroy();
      return;
    }
    const status = error === 'headers_too_large' ? 431 : 400;
    const body = httpErrorBody(error, message, requestId);
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\nx-request-id: ${requestId}\r\n\r\n${body}`,
    );
  });
  return server;
}

function handleRequest(req: IncomingMessage, res: ServerResponse): void {
  const conn = connOf(req.socket);
  if (!conn) {
    res.destroy();
    return;
  }
  const start = performance.now();
  const l = conn.listener;
  const f = filterRequestHeaders(req.rawHeaders);
  const requestId = f.requestId ?? randomUUID();
  const method = req.method ?? 'GET';
  const log = (status: number, extra: { route?: RouteRuntime; decision?: { allowed: boolean; rule?: string | undefined; reason?: string | undefined }; bytesIn?: number; bytesOut?: number; error?: string; path?: string }) => {
    const seconds = (performance.now() - start) / 1000;
    const routeName = extra.route?.name ?? '-'; // unmatched requests share one label value
    l.telemetry.request(l.name, routeName, status, seconds);
    if (extra.decision) l.telemetry.authz(l.name, routeName, extra.decision.allowed);
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
      path: extra.path ?? req.url,
      error: extra.error,
    });
  };
  const refuse = (code: HttpErrorCode, message: string, extra: Parameters<typeof log>[1] = {}) => {
    // do not leave an unread request body on a kept-alive connection
    if (!req.complete) res.shouldKeepAlive = false;
    const status = sendError(res, code, message, requestId);
    log(status, { ...extra, error: code });
  };

  if (f.duplicateHost) {
    refuse('bad_request', 'the request has more than one Host header; send exactly one');
    return;
  }
  let rawTarget = req.url ?? '/';
  let host = f.host ?? '';
  if (rawTarget.startsWith('http://') || rawTarget.startsWith('https://')) {
    // absolute-form (RFC 9112 §3.2.2): the target's authority wins over Host
    const abs = absoluteTarget(rawTarget);
    if (!abs) {
      refuse('bad_request', 'the request target is not a valid absolute URI; send an origin-form path like /path');
      return;
    }
    rawTarget = abs.path;
    host = abs.host;
    replaceHost(f.headers, host);
  }
  const target = normalizePath(rawTarget);
  if (!target.ok) {
    refuse('bad_request', `the request path is not acceptable (${target.reason}); send a normalized path`);
    return;
  }
  const tlsRt = l.tls;
  if (tlsRt && tlsRt.entries.length > 0 && selectEntry(tlsRt, hostWithoutPort(host)) !== conn.entry) {
    // the Host belongs to another certificate entry (its own CA and rules) than the one the
    // handshake verified against: CVE-2025-23419-style bypass, so refuse (RFC 9110 §15.5.20)
    refuse('misdirected_request', `the Host ${hostWithoutPort(host) || '(none)'} is not served by the certificate this connection negotiated${conn.servername ? ` for ${conn.servername}` : ' (no SNI)'}; open a new connection for that host`);
    return;
  }
  const m = matchRoute(l.table, hostWithoutPort(host), target.path, method);
  if (!m) {
    refuse('no_route', `no route on listener ${l.name} matches ${method} ${target.path}${host ? ` for host ${hostWithoutPort(host)}` : ''}; check the listener's routes`, { path: target.path });
    return;
  }
  const route = l.routes[m.index]!;
  if (route.clientAuth === 'require' && conn.peer.verify !== 'SUCCESS') {
    if (conn.peer.verify === 'NONE') {
      refuse('client_certificate_required', `route ${route.name} requires a client certificate; present one issued by a CA this listener trusts`, { route, path: target.path });
    } else {
      refuse('client_certificate_invalid', `${conn.peer.reason}: ${conn.peer.message}`, { route, path: target.path });
    }
    return;
  }
  const identity = conn.peer.verify === 'SUCCESS' ? conn.peer.identity : undefined;
  const entry = conn.entry;
  const decision = authorize({
    listenerAllow: entry && entry.allow.length > 0 ? entry.allow : l.allow,
    listenerDeny: entry && entry.deny.length > 0 ? [...l.deny, ...entry.deny] : l.deny,
    routeAllow: route.allow,
    routeDeny: route.deny,
    identity,
    facts: { method, host: hostWithoutPort(host), path: target.path },
  });
  if (!decision.allowed) {
    refuse('forbidden', `route ${route.name} does not allow this client (${decision.reason}); ask for access or use an allowed identity`, { route, decision, path: target.path });
    return;
  }

  const maxBody = l.cfg.limits.max_body_bytes;
  const cl = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const declared = cl === undefined ? undefined : Number(cl);
  if (maxBody > 0 && declared !== undefined && declared > maxBody) {
    refuse('body_too_large', `the request body of ${declared} bytes exceeds ${maxBody} bytes; send less or raise limits.max_body_bytes`, { route, decision, path: target.path });
    return;
  }
  let bytesIn = declared ?? 0;
  let body: IncomingMessage | AsyncIterable<Buffer> | null = null;
  if (chunked) {
    bytesIn = 0;
    body = countBody(req, maxBody, (n) => (bytesIn = n));
  } else if (declared !== undefined && declared > 0) {
    body = req;
  }
  const headers = f.headers;
  headers.push(
    'x-forwarded-for', conn.remoteAddress,
    'x-forwarded-proto', 'https',
    'x-request-id', requestId,
  );
  if (host) headers.push('x-forwarded-host', host);
  for (let i = 0; i < conn.identityHeaders.length; i++) headers.push(conn.identityHeaders[i]!);
  const endpoint = route.upstream.pick();
  forward(
    req,
    res,
    {
      endpoint,
      method,
      path: target.path + target.query,
      headers,
      body,
      headersTimeout: route.timeout ?? route.upstream.requestTimeout,
      bodyTimeout: route.upstream.idleTimeout,
    },
    route.upstreamName,
    (r: ForwardResult) => {
      if (r.error) {
        if (r.error.code === 'body_too_large' || !res.headersSent) {
          res.shouldKeepAlive = false;
          const status = sendError(res, r.error.code, r.error.message, requestId);
          log(status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path: target.path });
        } else {
          res.destroy();
          log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path: target.path });
        }
        return;
      }
      log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, path: target.path });
    },
  );
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

class BodyTooLarge extends Error {
  code = 'PCL_BODY_TOO_LARGE';
}

/** Counts a chunked body as it streams and stops it at limits.max_body_bytes (0 = no limit). */
async function* countBody(req: IncomingMessage, max: number, report: (n: number) => void): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    report(n);
    if (max > 0 && n > max) throw new BodyTooLarge(`request body exceeds ${max} bytes`);
    yield chunk;
  }
}

export type { ConnState, ListenerRuntime };
