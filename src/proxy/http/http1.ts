// The HTTP/1.1 front end: an http.Server that never listens itself. The listener hands
// it TLS sockets whose handshake (and identity) is already done. Per request it runs the
// shared admission pipeline (routing, client auth, authorization, identity headers), then
// forwards and logs one line. Upgrade requests go to the WebSocket relay.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { connOf, type ConnState, type ListenerRuntime } from '../../runtime/types.js';
import { sendError, parseErrorResponse } from './respond.js';
import type { ForwardResult, HeaderMap, ResponseSink } from './forward.js';
import type { Frontend } from '../frontend.js';
import { admitRequest, countBody, logRequest, type LogExtra } from './pipeline.js';
import { dispatchUpstream } from './upstream-dispatch.js';
import { handleUpgrade } from './websocket.js';
import { FastHttp1 } from './http1-fast.js';

export interface Http1Options {
  maxHeaderBytes: number;
  headerTimeout: number;
  idleTimeout: number;
}

/**
 * The HTTP/1.1 front end as a Frontend: connections start on portcullis' own request path
 * (http1-fast.ts), which hands them to a non-listening http.Server for anything beyond
 * body-less HTTP/1.1 requests. PORTCULLIS_HTTP1=node sends every connection straight to
 * http.Server (for comparisons and as an escape hatch).
 */
export function http1Frontend(opts: Http1Options): Frontend {
  const server = createHttp1Frontend(opts);
  // 'listening' starts Node's header/request timeout bookkeeping, which it only sets up
  // for servers that listen themselves
  server.emit('listening');
  if (process.env.PORTCULLIS_HTTP1 === 'node') {
    return {
      accept: (sock) => server.emit('connection', sock),
      closeIdle: () => server.closeIdleConnections(),
    };
  }
  const fast = new FastHttp1(opts, server);
  return {
    accept: (sock, conn) => fast.accept(sock, conn),
    closeIdle: () => fast.closeIdle(),
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
      // admitRequest refuses a missing Host with the JSON error the fast path gives
      requireHostHeader: false,
    },
    handleRequest,
  );
  // Node's default (2000) silently drops the fields past it from req.headers;
  // limits.max_headers is enforced in admitRequest on the whole list instead, and the
  // count stays bounded by maxHeaderSize. 0 = no truncation.
  server.maxHeadersCount = 0;
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handleUpgrade(req, socket, head, opts.idleTimeout, handleRequest));
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    const { close, response } = parseErrorResponse(err.code, opts.maxHeaderBytes);
    if (close || !socket.writable) socket.destroy();
    else socket.end(response);
  });
  return server;
}

/**
 * The forwarders' view of a ServerResponse. A class, not an object of closures: one small
 * allocation per request on the hot path.
 */
class Http1Sink implements ResponseSink {
  constructor(private readonly res: ServerResponse) {}
  get closed(): boolean {
    return this.res.destroyed;
  }
  get headersSent(): boolean {
    return this.res.headersSent;
  }
  get status(): number {
    return this.res.statusCode;
  }
  start(status: number, headers: HeaderMap | string[], statusMessage: string | undefined): void {
    const res = this.res;
    if (Array.isArray(headers)) {
      // straight into the response head: no header map built and read back
      res.writeHead(status, statusMessage || undefined, headers);
      return;
    }
    res.statusCode = status;
    if (statusMessage) res.statusMessage = statusMessage;
    for (const k in headers) res.setHeader(k, headers[k]!);
  }
  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }
  onceDrain(cb: () => void): void {
    this.res.once('drain', cb);
  }
  end(trailers: HeaderMap | undefined): void {
    if (trailers) this.res.addTrailers(trailers);
    this.res.end();
  }
  onAbort(cb: () => void): () => void {
    const res = this.res;
    const onClose = () => {
      if (!res.writableFinished) cb();
    };
    res.on('close', onClose);
    return () => res.off('close', onClose);
  }
}

function handleRequest(req: IncomingMessage, res: ServerResponse): void {
  const conn = connOf(req.socket);
  if (!conn) {
    res.destroy();
    return;
  }
  const start = performance.now();
  const method = req.method ?? 'GET';
  const cl = req.headers['content-length'];
  const declared = cl === undefined ? undefined : Number(cl);
  const adm = admitRequest({ conn, method, target: req.url ?? '/', rawHeaders: req.rawHeaders, contentLength: declared, hostOptional: req.httpVersionMinor === 0 });
  const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, method, req.url ?? '/', status, extra);
  if (!adm.ok) {
    // do not leave an unread request body on a kept-alive connection
    if (!req.complete) res.shouldKeepAlive = false;
    const status = sendError(res, adm.code, adm.message, adm.requestId);
    log(status, { route: adm.route, decision: adm.decision, path: adm.path, error: adm.code });
    return;
  }
  const { route, decision, path } = adm;
  const chunked = req.headers['transfer-encoding'] !== undefined;
  let bytesIn = declared ?? 0;
  let body: AsyncIterable<Buffer> | null = null;
  if (chunked) {
    bytesIn = 0;
    body = countBody(req, conn.listener.cfg.limits.max_body_bytes, (n) => (bytesIn = n));
  } else if (declared !== undefined && declared > 0) {
    body = req;
  }
  dispatchUpstream(new Http1Sink(res), adm, { method, body, grpc: false, grpcTimeout: 0 }, (r: ForwardResult) => {
    if (r.error) {
      if (r.error.code === 'body_too_large' || !res.headersSent) {
        res.shouldKeepAlive = false;
        const status = sendError(res, r.error.code, r.error.message, adm.requestId);
        log(status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
      } else {
        res.destroy();
        log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
      }
      return;
    }
    log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, path });
  });
}

export type { ConnState, ListenerRuntime };
