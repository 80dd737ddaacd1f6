// The HTTP/1.1 front end: one Node http.Server per listener generation that never listens
// itself; the listener hands it TLS sockets whose handshake (and identity) is already done.
// Per request it runs the shared admission pipeline (routing, client auth, authorization,
// identity headers), then forwards and logs one line. Upgrade requests go to the WebSocket
// relay. This is the only HTTP/1.1 request path (a hand-written parser beside it saved
// under 10% CPU per request and was removed; see docs/performance.md).
//
// Rules on top of http.Server's parsing:
// - Requests on one connection are served one at a time, in order. http.Server emits
//   pipelined requests as soon as it has parsed them; a pipelined request waits here until
//   the previous response is complete, and is dropped unanswered (never forwarded) when
//   that response ended the connection (Connection: close, HTTP/1.0, a refusal with body
//   bytes unread). At most MAX_PIPELINED requests wait; more close the connection.
// - `Expect: 100-continue` is answered only after the request is admitted, so a refused
//   client never sends its body.
// - Every entry point and upstream callback runs inside the per-connection error boundary
//   (../boundary.ts): an exception ends that connection, never the worker.
// - Draining (shutdown, a listener that moved): every response from then on says
//   Connection: close, and a connection is closed by us only once it has been idle for
//   DRAIN_IDLE_MS. Closing idle connections at once (http.Server's closeIdleConnections)
//   races a client that sends its next request in the same instant; it gets a reset.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { connOf, type ConnState, type ListenerRuntime } from '../context.js';
import { sendError, parseErrorResponse } from './respond.js';
import type { ForwardResult, HeaderMap, ResponseSink } from './forward.js';
import type { Frontend } from '../frontend.js';
import { admitRequest, countBody, logRequest, type LogExtra } from './pipeline.js';
import { dispatchUpstream } from './upstream-dispatch.js';
import { handleUpgrade } from './websocket.js';
import { guard, guarded, injectedFault, throwInjected } from '../boundary.js';

export interface Http1Options {
  maxHeaderBytes: number;
  headerTimeout: number;
  idleTimeout: number;
}

/** Pipelined requests that may wait behind the one in flight on a connection. */
export const MAX_PIPELINED = 16;

/**
 * While draining, how long a connection must have been idle before we close it. A client
 * sending requests back to back is never idle this long, so it always gets its answer
 * with Connection: close instead of a reset; an idle pooled connection costs at most this
 * much extra shutdown time.
 */
export const DRAIN_IDLE_MS = 1000;

interface DrainState {
  draining: boolean;
}

export function http1Frontend(opts: Http1Options): Frontend {
  const state: DrainState = { draining: false };
  const server = createHttp1Frontend(opts, state);
  const sockets = new Set<Socket>();
  // 'listening' starts Node's header/request timeout bookkeeping, which it only sets up
  // for servers that listen themselves
  server.emit('listening');
  return {
    accept: (sock, conn) =>
      guard(conn, sock, 'http1 accept', () => {
        sockets.add(sock);
        sock.once('close', () => sockets.delete(sock));
        sequencers.set(sock, { busy: false, closing: false, queue: [], idleSince: Date.now(), idleBytes: sock.bytesRead });
        server.emit('connection', sock);
      }),
    closeIdle: () => {
      state.draining = true;
      const now = Date.now();
      for (const sock of sockets) {
        const s = sequencers.get(sock);
        if (!s) continue;
        if (s.busy) {
          // the answer in flight closes the connection, if its head is not out yet
          if (s.res && !s.res.headersSent) closeAfterResponse(s.res);
        } else if (sock.bytesRead === s.idleBytes && now - s.idleSince >= DRAIN_IDLE_MS) {
          // no byte of a next request since it went idle, for long enough
          sock.destroy();
        }
      }
    },
  };
}

export function createHttp1Frontend(opts: Http1Options, state: DrainState = { draining: false }): http.Server {
  const server = http.createServer(
    {
      maxHeaderSize: opts.maxHeaderBytes,
      requestTimeout: 0,
      headersTimeout: opts.headerTimeout,
      keepAliveTimeout: opts.idleTimeout,
      // http.Server enforces headersTimeout (from a head's first byte) on this sweep; its
      // 30 s default would let a partial head outlive header_timeout by up to 30 s
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(opts.headerTimeout / 2))),
      // we add X-Forwarded-*; the client's copies are dropped anyway
      joinDuplicateHeaders: false,
      // admitRequest refuses a missing Host with portcullis' JSON 400 (HTTP/1.0 may omit it)
      requireHostHeader: false,
    },
    (req, res) => onRequest(req, res, false, state),
  );
  // Node's default (2000) silently drops the fields past it from req.headers;
  // limits.max_headers is enforced in admitRequest on the whole list instead, and the
  // count stays bounded by maxHeaderSize. 0 = no truncation.
  server.maxHeadersCount = 0;
  // without this listener http.Server answers 100 Continue itself, before admission
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, true, state));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const conn = connOf(socket);
    if (!conn) return socket.destroy();
    sequence(socket, conn, () => handleUpgrade(req, socket, head, opts.idleTimeout, (r, s) => serve(r, s, conn, false)));
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    // bytes after a request that closes the connection (Connection: close, HTTP/1.0) are
    // never parsed: the connection ends after that request's answer
    if (err.code === 'HPE_CLOSED_CONNECTION') return afterInFlight(socket, () => socket.destroy());
    // the client ended its side inside a message (a body shorter than declared, a cut
    // head): no request is left to answer, and one already answered must not get a second
    // answer; like nginx ("client prematurely closed connection"), just close
    if (err.code === 'HPE_INVALID_EOF_STATE') return afterInFlight(socket, () => socket.destroy());
    const { close, response } = parseErrorResponse(err.code, opts.maxHeaderBytes);
    // a parse error behind a request still being answered waits for that answer, so the
    // error response never lands in the middle of it (after an answer that ended the
    // connection the socket is no longer writable: nothing more is written). A HEAD
    // request's error answer has no body.
    afterInFlight(socket, () => {
      if (close || !socket.writable) socket.destroy();
      else socket.end(failedHead(err) ? response.slice(0, response.indexOf('\r\n\r\n') + 4) : response);
    });
  });
  return server;
}

/**
 * Whether the message that failed to parse is a HEAD request: its answer then has no body
 * (RFC 9110 §9.3.2), else a client reads the error's body as the start of the next
 * response. llhttp has read the method when it fails on the target or a field; the failing
 * message starts after the last blank line before the error in the chunk it was parsing.
 * (A head split over several reads is not seen here; its answer keeps the body.)
 */
function failedHead(err: Error & { rawPacket?: unknown; bytesParsed?: unknown }): boolean {
  const raw = err.rawPacket;
  if (!Buffer.isBuffer(raw)) return false;
  const upTo = typeof err.bytesParsed === 'number' ? err.bytesParsed : raw.length;
  const blank = raw.lastIndexOf('\r\n\r\n', Math.max(0, upTo - 1));
  let from = blank < 0 ? 0 : blank + 4;
  // whitespace and empty lines before the request line (lenient readers skip them)
  while (from < upTo && (raw[from] === 0x20 || raw[from] === 0x09 || raw[from] === 0x0d || raw[from] === 0x0a)) from++;
  return raw.subarray(from, from + 5).toString('latin1') === 'HEAD ';
}

/** Per-connection request sequencing (see the file comment). */
interface Sequencer {
  busy: boolean;
  /** a response ended (or will end) the connection: later requests are never served */
  closing: boolean;
  queue: (() => void)[];
  /** runs once the request in flight is answered, instead of any later request */
  last?: () => void;
  /** close by lingering (see closeAfterResponse) */
  linger?: boolean;
  /** the response being served */
  res?: ServerResponse;
  /** when the last response ended (or the connection was accepted), and bytesRead then: for draining */
  idleSince: number;
  idleBytes: number;
}

/** Runs `fn` now, or once the request in flight on `sock` is answered; nothing is served after it. */
function afterInFlight(sock: Socket, fn: () => void): void {
  const s = sequencers.get(sock);
  if (!s || !s.busy) return fn();
  s.closing = true;
  s.queue.length = 0;
  s.last ??= fn;
}
const sequencers = new WeakMap<Socket, Sequencer>();

function sequence(sock: Socket, conn: ConnState, run: () => void): void {
  let s = sequencers.get(sock);
  if (!s) sequencers.set(sock, (s = { busy: false, closing: false, queue: [], idleSince: 0, idleBytes: 0 }));
  if (s.closing) return;
  if (!s.busy) {
    s.busy = true;
    guard(conn, sock, 'http1 request', run);
    return;
  }
  if (s.queue.length >= MAX_PIPELINED) {
    s.closing = true;
    s.queue.length = 0;
    sock.destroy();
    return;
  }
  s.queue.push(run);
}

/** The response on `sock` is complete (or the socket is gone): serve the next request or stop. */
function next(sock: Socket, conn: ConnState): void {
  const s = sequencers.get(sock);
  if (!s) return;
  s.busy = false;
  s.res = undefined;
  s.idleSince = Date.now();
  s.idleBytes = sock.bytesRead;
  // http.Server ends the socket right after a response that closes the connection
  if (!sock.writable || sock.destroyed) s.closing = true;
  if (s.closing) {
    s.queue.length = 0;
    if (s.linger && !sock.destroyed) {
      s.linger = false;
      sock.end();
      const t = setTimeout(() => sock.destroy(), LINGER_MS).unref();
      sock.once('close', () => clearTimeout(t));
    }
    const last = s.last;
    s.last = undefined;
    if (last) last();
    return;
  }
  const run = s.queue.shift();
  if (run) {
    s.busy = true;
    guard(conn, sock, 'http1 request', run);
  }
}

function onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean, state: DrainState): void {
  const sock = req.socket;
  const conn = connOf(sock);
  if (!conn) {
    res.destroy();
    return;
  }
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    next(sock, conn);
  };
  res.once('finish', done);
  res.once('close', done);
  sequence(sock, conn, () => {
    const s = sequencers.get(sock);
    if (s) s.res = res;
    if (state.draining) closeAfterResponse(res);
    serve(req, res, conn, expectContinue);
  });
}

/**
 * The forwarders' view of a ServerResponse. A class, not an object of closures: one small
 * allocation per request on the hot path.
 */
class Http1Sink implements ResponseSink {
  constructor(
    private readonly res: ServerResponse,
    private readonly req: IncomingMessage,
    private readonly declared: number | undefined,
  ) {}
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
    // the upstream answers before the request body has arrived: the answer says close
    if (bodyPending(this.req, this.declared)) closeAfterResponse(res, true);
    if (Array.isArray(headers)) {
      // straight into the response head: no header map built and read back
      res.writeHead(status, statusMessage || undefined, headers);
      return;
    }
    res.statusCode = status;
    if (statusMessage) res.statusMessage = statusMessage;
    for (const k in headers) res.setHeader(k, headers[k]!);
  }
  write(chunk: Buffer, flushed?: () => void): boolean {
    return flushed ? this.res.write(chunk, flushed) : this.res.write(chunk);
  }
  queued(): number {
    const res = this.res;
    return res.destroyed ? 0 : res.writableLength;
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

/**
 * What http.Server parses but HTTP/1.1 forbids a server to act on: a version other than
 * HTTP/1.0 or 1.1 (llhttp reads `GET /x` as HTTP/0.9 and accepts `HTTP/2.0`), and
 * Transfer-Encoding in an HTTP/1.0 request, whose framing RFC 9112 §6.1 calls faulty
 * (an HTTP/1.0 hop behind us could read the body by Content-Length or to the end).
 */
function framingProblem(req: IncomingMessage): string | undefined {
  const major = req.httpVersionMajor;
  const minor = req.httpVersionMinor;
  if (major === 0) return 'the request line has no HTTP version (an HTTP/0.9 request); send HTTP/1.1';
  if (major !== 1 || minor > 1) return `the request line says HTTP/${major}.${minor}, and only HTTP/1.0 and HTTP/1.1 are served on a connection without ALPN h2; send HTTP/1.1`;
  if (minor === 0 && req.headers['transfer-encoding'] !== undefined) return 'the HTTP/1.0 request has a Transfer-Encoding header, which HTTP/1.0 does not have (RFC 9112 §6.1); send Content-Length or use HTTP/1.1';
  return undefined;
}

/** Request body bytes http.Server may read and discard after an answer to keep the connection. */
const DISCARD_LIMIT = 64 * 1024;

/**
 * Whether answering now would leave request body bytes on the connection that are not
 * worth reading: a chunked body or a declared one over DISCARD_LIMIT that has not all
 * arrived. Smaller ones http.Server reads and discards after the answer (like nginx's
 * discarded bodies), and the connection carries the next request.
 */
function bodyPending(req: IncomingMessage, declared: number | undefined): boolean {
  if (req.complete) return false;
  if (req.headers['transfer-encoding'] !== undefined) return true;
  return declared !== undefined && declared > DISCARD_LIMIT;
}

/** How long a connection closed with request body bytes unread keeps reading (and discarding) them. */
const LINGER_MS = 2000;

/**
 * Stops serving the connection after this response: later requests on it are never parsed
 * or forwarded. `linger`: request body bytes are still arriving. Closing a socket with
 * unread bytes makes the kernel send a reset that can destroy the response before the
 * client reads it, so instead of "Connection: close" the answer goes out, our side
 * half-closes, and the unread bytes are read and discarded for up to LINGER_MS (nginx's
 * lingering close) before the socket is destroyed.
 */
function closeAfterResponse(res: ServerResponse, linger = false): void {
  const s = sequencers.get(res.socket as Socket);
  if (s) {
    s.closing = true;
    if (linger) s.linger = true;
  }
  if (!linger) res.shouldKeepAlive = false;
  // a drain may already have said close: http.Server would then close with body bytes unread
  else if (!res.headersSent) res.shouldKeepAlive = true;
}

function serve(req: IncomingMessage, res: ServerResponse, conn: ConnState, expectContinue: boolean): void {
  const start = performance.now();
  const method = req.method ?? 'GET';
  const cl = req.headers['content-length'];
  const declared = cl === undefined ? undefined : Number(cl);
  const adm = admitRequest({ conn, method, target: req.url ?? '/', rawHeaders: req.rawHeaders, contentLength: declared, hostOptional: req.httpVersionMinor === 0 });
  const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, method, req.url ?? '/', status, extra);
  const fault = injectedFault(req.rawHeaders);
  if (fault === 'request') throwInjected(fault);
  // a refused connection's answer comes before any check of the request itself
  const framing = conn.refusal ? undefined : framingProblem(req);
  if (framing) {
    // the framing of what follows on the connection cannot be trusted: answer and close
    if (expectContinue) closeAfterResponse(res);
    else closeAfterResponse(res, bodyPending(req, declared));
    const status = sendError(res, 'bad_request', framing, adm.requestId);
    log(status, { error: 'bad_request' });
    return;
  }
  if (!adm.ok) {
    // a body that has not all arrived (or was never sent, under Expect) is not read: the
    // connection closes after the answer
    if (expectContinue) closeAfterResponse(res);
    else if (bodyPending(req, declared)) closeAfterResponse(res, true);
    else if (adm.close) closeAfterResponse(res);
    const status = sendError(res, adm.code, adm.message, adm.requestId);
    log(status, { route: adm.route, decision: adm.decision, path: adm.path, error: adm.code, message: adm.message });
    return;
  }
  if (expectContinue) res.writeContinue();
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
  const sock = req.socket;
  const onDone = (r: ForwardResult) => {
    if (fault === 'response') throwInjected(fault);
    if (r.error) {
      if (r.error.code === 'body_too_large' || !res.headersSent) {
        // 502/504/413 close the connection: its state after a failed exchange is not worth trusting
        closeAfterResponse(res, bodyPending(req, declared));
        const status = sendError(res, r.error.code, r.error.message, adm.requestId);
        log(status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
      } else {
        res.destroy();
        log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
      }
      return;
    }
    log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, path });
  };
  dispatchUpstream(new Http1Sink(res, req, declared), adm, { method, body, grpc: false, grpcTimeout: 0 }, guarded(conn, sock, 'http1 upstream response', onDone));
}

export type { ConnState, ListenerRuntime };
