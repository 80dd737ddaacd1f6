// WebSocket relay. HTTP/1.1 `Upgrade: websocket` and RFC 8441 extended CONNECT over h2
// both run the shared admission pipeline (authorization, scrubbing, identity headers),
// then open an HTTP/1.1 Upgrade to the upstream, relay the handshake answer and pipe
// bytes both ways until either side closes or the listener's idle timeout passes.
// Frames are never parsed: the relay is byte for byte, extensions stay end to end.
// The upstream connection counts against upstreams.<name>.limits: it holds a connection
// slot and a request slot from the upgrade request until it closes.
import http, { ServerResponse, type IncomingMessage } from 'node:http';
import https from 'node:https';
import http2, { type ServerHttp2Stream } from 'node:http2';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { connOf, type ConnState } from '../context.js';
import { admitRequest, logRequest, type Admission, type LogExtra } from './pipeline.js';
import { rawErrorResponse } from './respond.js';
import { classifyUpstreamError } from './forward.js';
import type { Endpoint } from '../../upstream/pool.js';
import { HttpErrors, type HttpErrorCode } from '../../errors.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

interface UpstreamHandlers {
  upgraded(res: IncomingMessage, sock: Socket, head: Buffer): void;
  /** the upstream answered without switching protocols */
  refused(res: IncomingMessage): void;
  /** connect: nothing reached the upstream (the balancer may try another endpoint) */
  failed(code: HttpErrorCode, message: string, cause: string, connect?: boolean): void;
}

/**
 * Picks the endpoint with the upstream's balancer and opens the upgrade; a connect failure
 * (nothing reached the upstream) moves on to an endpoint not tried yet, at most
 * `retries` times, as for plain requests. No available endpoint: 503 no_healthy_upstream.
 */
function openBalanced(adm: Admission, headers: string[], h: UpstreamHandlers): () => void {
  const up = adm.route.upstream;
  const b = up.balancer;
  const tried: Endpoint[] = [];
  let cancel: () => void = () => undefined;
  let gone = false;
  const attempt = (ep: Endpoint | undefined) => {
    if (!ep) {
      h.failed('no_healthy_upstream', `upstream ${adm.route.upstreamName} has no healthy endpoint: ${b.downReason()}; start or fix an endpoint`, 'no_healthy_upstream');
      return;
    }
    tried.push(ep);
    b.begin(ep);
    let ended = false;
    const end = () => {
      if (!ended) b.end(ep);
      ended = true;
    };
    cancel = openUpstream(adm, ep, headers, {
      upgraded(res, sock, head) {
        b.succeeded(ep);
        sock.once('close', end);
        h.upgraded(res, sock, head);
      },
      refused(res) {
        end();
        if (res.statusCode! >= 500) b.failed(ep, '5xx', `answered ${res.statusCode}`);
        else b.succeeded(ep);
        h.refused(res);
      },
      failed(code, message, cause, connect) {
        end();
        if (code === 'upstream_overloaded' || cause === 'websocket_needs_http1') return h.failed(code, message, cause);
        b.failed(ep, connect ? 'connect_failure' : code === 'upstream_timeout' ? 'timeout' : 'reset', cause);
        const next = connect && !gone && tried.length <= b.retries ? b.pick(undefined, tried) : undefined;
        if (!next) return h.failed(code, message, cause);
        b.countRetry();
        attempt(next);
      },
    });
  };
  attempt(b.pick(up.hashKey(adm.clientKey, adm.headers)));
  return () => {
    gone = true;
    cancel();
  };
}

/**
 * Sends the upgrade request (GET + Connection: upgrade) to one endpoint once the
 * upstream's limits allow another connection. Returns a function to call when the client
 * goes away first: it leaves the queue for a connection slot.
 */
function openUpstream(adm: Admission, endpoint: Endpoint, headers: string[], h: UpstreamHandlers): () => void {
  const route = adm.route;
  const url = endpoint.url;
  if (url.protocol === 'h2c:') {
    h.failed('upstream_unavailable', `upstream ${route.upstreamName} (${endpoint.label}) is h2c; WebSocket needs an http:// or https:// upstream`, 'websocket_needs_http1');
    return () => undefined;
  }
  const limiter = route.upstream.limiter;
  if (!limiter.startRequest()) {
    const e = limiter.requestsRefusal();
    h.failed('upstream_overloaded', e.message, e.limit);
    return () => undefined;
  }
  let requestHeld = true;
  const endRequest = () => {
    if (requestHeld) limiter.endRequest();
    requestHeld = false;
  };
  return route.upstream.acquireConnection(
    (release) =>
      sendUpgrade(adm, endpoint, headers, h, () => {
        release();
        endRequest();
      }),
    (e) => {
      endRequest();
      h.failed('upstream_overloaded', e.message, e.limit);
    },
  );
}

/** The upgrade request itself; `closed` runs once when its connection is gone. */
function sendUpgrade(adm: Admission, endpoint: Endpoint, headers: string[], h: UpstreamHandlers, closed: () => void): void {
  const route = adm.route;
  const url = endpoint.url;
  const secure = url.protocol === 'https:';
  const opts: https.RequestOptions = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || (secure ? 443 : 80),
    method: 'GET',
    path: adm.pathWithQuery,
    headers: headers as unknown as http.OutgoingHttpHeaders,
    agent: false,
    ...(secure ? { ...endpoint.tls, ALPNProtocols: ['http/1.1'] } : {}),
  };
  const req = (secure ? https : http).request(opts);
  // the same socket carries the relay after an upgrade; its close ends both slots
  let connected = false;
  req.once('socket', (s) => {
    s.once('close', closed);
    s.once(secure ? 'secureConnect' : 'connect', () => (connected = true));
  });
  let done = false;
  const timeout = route.timeout ?? route.upstream.requestTimeout;
  req.setTimeout(timeout, () => {
    const e = new Error('no upgrade answer in time') as Error & { code: string };
    e.code = 'PCL_UPSTREAM_TIMEOUT';
    req.destroy(e);
  });
  req.on('upgrade', (res, sock, head) => {
    done = true;
    req.setTimeout(0);
    h.upgraded(res, sock as Socket, head);
  });
  req.on('response', (res) => {
    done = true;
    req.setTimeout(0);
    h.refused(res);
  });
  req.on('error', (err: Error & { code?: string }) => {
    closed();
    if (done) return;
    done = true;
    const e = classifyUpstreamError(err, route.upstreamName, endpoint.label);
    h.failed(e.code, e.message, err.code ?? err.message, !connected && err.code !== 'PCL_UPSTREAM_TIMEOUT');
  });
  req.end();
}

/** Pipes two byte streams both ways; calls done once both are closed. */
function relay(client: Duplex, upstream: Socket, idleMs: number, onIdle: () => void, done: (bytesIn: number, bytesOut: number) => void): void {
  let bytesIn = 0;
  let bytesOut = 0;
  client.on('data', (c: Buffer) => (bytesIn += c.length));
  upstream.on('data', (c: Buffer) => (bytesOut += c.length));
  // pipe ends the other side when one side ends, so a close handshake passes through
  client.pipe(upstream);
  upstream.pipe(client);
  let closed = 0;
  const onClose = (other: Duplex) => () => {
    // an error or reset on one side leaves nothing to relay to the other
    if (!other.destroyed) other.end();
    setTimeout(() => other.destroy(), 2_000).unref();
    if (++closed === 2) done(bytesIn, bytesOut);
  };
  client.once('close', onClose(upstream));
  upstream.once('close', onClose(client));
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  if (idleMs > 0) {
    // traffic either way touches both sockets (one reads, the other writes)
    upstream.setTimeout(idleMs, onIdle);
  }
}

/** A WebSocket close frame 1001 "idle timeout"; frames to a server must be masked. */
function closeFrame(masked: boolean): Buffer {
  const payload = Buffer.concat([Buffer.from([0x03, 0xe9]), Buffer.from('idle timeout')]);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = randomBytes(4);
  const out = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, out]);
}

function idleClose(client: Duplex, upstream: Socket): void {
  // say goodbye on both sides (1001 going away), then close the sockets
  if (client.writable) client.end(closeFrame(false));
  if (upstream.writable) upstream.end(closeFrame(true));
  setTimeout(() => {
    client.destroy();
    upstream.destroy();
  }, 1_000).unref();
}

/**
 * HTTP/1.1 Upgrade (the http.Server 'upgrade' event). Upgrades to anything but WebSocket
 * (h2c from `curl --http2` on a plain listener, say) are served as the ordinary request
 * they also are, as a server without an 'upgrade' listener would; the connection closes
 * after the response because the HTTP parser has already let go of the socket.
 */
export function handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, idleMs: number, plain: (req: IncomingMessage, res: ServerResponse) => void): void {
  const conn = connOf(socket);
  if (!conn) {
    socket.destroy();
    return;
  }
  socket.on('error', () => socket.destroy());
  if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.end();
    });
    plain(req, res);
    return;
  }
  const start = performance.now();
  const method = req.method ?? 'GET';
  const target = req.url ?? '/';
  const adm = admitRequest({ conn, method, target, rawHeaders: req.rawHeaders, contentLength: undefined });
  const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, method, target, status, extra);
  const refuse = (code: HttpErrorCode, message: string, extra: LogExtra) => {
    socket.end(rawErrorResponse(code, message, adm.requestId));
    log(statusOf(code), { ...extra, error: code, message });
  };
  if (!adm.ok) return refuse(adm.code, adm.message, { route: adm.route, decision: adm.decision, path: adm.path });
  const { route, decision, path } = adm;
  if (method !== 'GET') {
    return refuse('bad_request', 'a WebSocket upgrade must be a GET request; send GET with Upgrade: websocket', { route, decision, path });
  }
  const headers = [...adm.headers, 'connection', 'Upgrade', 'upgrade', 'websocket'];
  const cancel = openBalanced(adm, headers, {
    upgraded(res, usock, uhead) {
      if (socket.destroyed) {
        usock.destroy();
        return;
      }
      let out = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\n`;
      for (let i = 0; i < res.rawHeaders.length; i += 2) out += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
      socket.write(`${out}\r\n`);
      if (uhead.length > 0) socket.write(uhead);
      if (head.length > 0) usock.write(head);
      socket.setTimeout(0);
      relay(socket, usock, idleMs, () => idleClose(socket, usock), (bytesIn, bytesOut) => log(101, { route, decision, path, bytesIn, bytesOut }));
    },
    refused(res) {
      let out = `HTTP/1.1 ${res.statusCode} ${res.statusMessage || http.STATUS_CODES[res.statusCode!] || ''}\r\n`;
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        if (!HOP.has(res.rawHeaders[i]!.toLowerCase())) out += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
      }
      socket.write(`${out}connection: close\r\n\r\n`);
      let bytesOut = 0;
      res.on('data', (c: Buffer) => (bytesOut += c.length));
      res.pipe(socket);
      res.once('end', () => log(res.statusCode!, { route, decision, path, bytesOut }));
    },
    failed(code, message, cause) {
      socket.end(rawErrorResponse(code, message, adm.requestId));
      log(statusOf(code), { route, decision, path, error: cause });
    },
  });
  socket.once('close', cancel);
}

/**
 * RFC 8441 extended CONNECT on an HTTP/2 stream (`:method CONNECT`, `:protocol websocket`):
 * the upstream is asked with an HTTP/1.1 Upgrade, whose Sec-WebSocket-Key we make up and
 * whose answer we check, and the h2 stream then carries the frames.
 */
export function handleH2WebSocket(
  stream: ServerHttp2Stream,
  conn: ConnState,
  path: string,
  rawHeaders: string[],
  idleMs: number,
  refuse: (code: HttpErrorCode, message: string, requestId: string, extra: LogExtra) => void,
): void {
  const start = performance.now();
  const adm = admitRequest({ conn, method: 'GET', target: path, rawHeaders, contentLength: undefined });
  const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, 'CONNECT', path, status, extra);
  if (!adm.ok) return refuse(adm.code, adm.message, adm.requestId, { route: adm.route, decision: adm.decision, path: adm.path });
  const { route, decision } = adm;
  const key = randomBytes(16).toString('base64');
  const headers = [...adm.headers, 'connection', 'Upgrade', 'upgrade', 'websocket', 'sec-websocket-key', key];
  const cancel = openBalanced(adm, headers, {
    upgraded(res, usock, uhead) {
      const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
      if (stream.destroyed || res.headers['sec-websocket-accept'] !== accept) {
        usock.destroy();
        if (!stream.destroyed) refuse('upstream_unavailable', `upstream ${route.upstreamName} answered the WebSocket handshake with a wrong Sec-WebSocket-Accept; check the upstream`, adm.requestId, { route, decision, path: adm.path });
        return;
      }
      const h: http2.OutgoingHttpHeaders = { ':status': 200 };
      for (const name of ['sec-websocket-protocol', 'sec-websocket-extensions']) {
        const v = res.headers[name];
        if (v !== undefined) h[name] = v;
      }
      stream.respond(h);
      if (uhead.length > 0) stream.write(uhead);
      relay(stream, usock, idleMs, () => idleClose(stream, usock), (bytesIn, bytesOut) => log(200, { route, decision, path: adm.path, bytesIn, bytesOut }));
    },
    refused(res) {
      const h: http2.OutgoingHttpHeaders = { ':status': res.statusCode! };
      for (const k in res.headers) if (!HOP.has(k)) h[k] = res.headers[k];
      stream.respond(h);
      res.pipe(stream);
      res.once('end', () => log(res.statusCode!, { route, decision, path: adm.path }));
    },
    failed(code, message, cause) {
      refuse(code, message, adm.requestId, { route, decision, path: adm.path, error: cause });
    },
  });
  stream.once('close', cancel);
}

function statusOf(code: HttpErrorCode): number {
  return HttpErrors[code];
}
