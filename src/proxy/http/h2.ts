// The HTTP/2 front end (ALPN h2): a node:http2 server that never listens, fed with TLS
// sockets whose handshake and identity are done. It uses the core stream API (it
// measured no slower than the compatibility API and gives trailers-only responses and
// extended CONNECT directly). Requests run the same admission pipeline as HTTP/1.1;
// gRPC calls are forwarded over h2 end to end and refused with gRPC statuses.
//
// Abuse of one connection costs that connection only (docs/limits-upstream-and-http2.md):
// limits.max_concurrent_streams is advertised in SETTINGS and enforced by nghttp2
// (REFUSED_STREAM past it); a stream the client resets gives its upstream request and
// connection slots back at once; streams are served a turn of the event loop after they
// arrive, so one reset in the same read costs no admission and no upstream request; and
// a connection that opens more than twice max_concurrent_streams streams in one turn
// (nginx's threshold), or resets most of its streams right after opening them (Envoy's), is
// closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487), on top of nghttp2's
// own RST_STREAM rate limit.
import http2, { type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { randomUUID } from 'node:crypto';
import { Transform } from 'node:stream';
import type { ConnState, ListenerRuntime } from '../context.js';
import type { Frontend } from '../frontend.js';
import type { TLSSocket } from 'node:tls';
import { HttpErrors, httpErrorBody, type HttpErrorCode } from '../../errors.js';
import { admitRequest, connectionRefusal, logRequest, type LogExtra } from './pipeline.js';
import { guard, guarded, injectedFault, throwInjected } from '../boundary.js';
import { markHandshakeDone } from '../../platform/node-internals.js';
import { dispatchUpstream } from './upstream-dispatch.js';
import type { ForwardResult, HeaderMap, ResponseSink } from './forward.js';
import { headerMapOf } from '../request-headers.js';
import { encodeGrpcMessage, grpcKind, grpcStatusFor, parseGrpcTimeout } from './grpc-status.js';
import { handleH2WebSocket } from './websocket.js';

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR, NGHTTP2_CANCEL } = http2.constants;

/**
 * Rapid reset: Envoy's rule and defaults (premature_reset_total_stream_count,
 * premature_reset_min_stream_lifetime_seconds). Once a connection has opened this many
 * streams and at least half of them were reset by the client within the lifetime below,
 * before their response was complete, the connection is closed.
 */
export const PREMATURE_RESET_MIN_STREAMS = 500;
export const PREMATURE_RESET_LIFETIME_MS = 1_000;

/** What one HTTP/2 connection has done so far. */
interface SessionState {
  conn: ConnState;
  session: ServerHttp2Session;
  streams: number;
  premature: number;
  /** sent GOAWAY for rapid reset; closing */
  cutOff: boolean;
  /** the event-loop turn its last stream arrived in, and how many arrived in that turn */
  turn: number;
  turnStreams: number;
}

/** A stream waiting for the next turn of the event loop (see the 'stream' handler). */
interface Deferred {
  stream: ServerHttp2Stream;
  st: SessionState;
  headers: IncomingHttpHeaders;
  flags: number;
  raw: string[];
  start: number;
}

/** Marks streams portcullis itself reset: they are not the client's premature resets. */
const kResetByUs = Symbol('portcullis.resetByUs');

function resetStream(stream: ServerHttp2Stream, code: number): void {
  (stream as unknown as Record<symbol, boolean>)[kResetByUs] = true;
  stream.close(code);
}

class BodyTooLarge extends Error {
  code = 'PCL_BODY_TOO_LARGE';
}

interface H2Sink extends ResponseSink {
  /** end() or a body-less start() already finished the response */
  readonly ended: boolean;
}

function clearDrainTimer(t: NodeJS.Timeout | undefined): undefined {
  if (t) clearTimeout(t);
  return undefined;
}

function streamSink(stream: ServerHttp2Stream, isHead: boolean, sendTimeout: number, onSendTimeout: () => void): H2Sink {
  let status = 0;
  let drainTimer: NodeJS.Timeout | undefined;
  let headersSent = false;
  let ended = false;
  let trailers: HeaderMap | undefined;
  const onAbort = new Set<() => void>();
  const abort = () => {
    for (const cb of onAbort) cb();
    onAbort.clear();
  };
  stream.once('close', () => {
    clearTimeout(drainTimer);
    if (!ended) abort();
  });
  return {
    get closed() {
      return stream.destroyed;
    },
    get headersSent() {
      return headersSent;
    },
    get status() {
      return status;
    },
    get ended() {
      return ended;
    },
    start(st, headers, _statusMessage, endStream, mayTrail = true) {
      if (headersSent || stream.destroyed) return;
      status = st;
      headersSent = true;
      const h = { ...(Array.isArray(headers) ? headerMapOf(headers) : headers), ':status': st };
      if (endStream || isHead || st === 204 || st === 205 || st === 304) {
        // nothing follows: a trailers-only gRPC answer must stay one HEADERS frame
        ended = true;
        stream.respond(h, { endStream: true });
        return;
      }
      if (!mayTrail) {
        // a body of known length: the stream ends with its last DATA frame
        stream.respond(h);
        return;
      }
      // trailers are known only at the end; Node sends an empty DATA frame when there are none
      stream.respond(h, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers ?? {}));
    },
    write(chunk, flushed) {
      if (ended || stream.destroyed) return true;
      if (!flushed) return stream.write(chunk);
      const ok = stream.write(chunk, () => {
        if (stream.writableLength === 0) drainTimer = clearDrainTimer(drainTimer);
        flushed();
      });
      // the caller waits for this chunk to leave the queue: bounded like a drain (below)
      if (stream.writableLength > 0 && sendTimeout > 0 && !drainTimer) drainTimer = setTimeout(onSendTimeout, sendTimeout).unref();
      return ok;
    },
    queued() {
      return ended || stream.destroyed ? 0 : stream.writableLength;
    },
    onceDrain(cb) {
      // limits.send_timeout for a client that reads its socket but grants this stream no
      // flow-control window: the listener's socket-level check (send-timeout.ts) cannot see it
      drainTimer = clearDrainTimer(drainTimer);
      if (sendTimeout > 0) drainTimer = setTimeout(onSendTimeout, sendTimeout).unref();
      stream.once('drain', () => {
        drainTimer = clearDrainTimer(drainTimer);
        cb();
      });
    },
    end(t) {
      if (ended || stream.destroyed) return;
      ended = true;
      trailers = t;
      stream.end();
    },
    onAbort(cb) {
      onAbort.add(cb);
      return () => void onAbort.delete(cb);
    },
  };
}

/** Answers a refusal as SPEC §5 JSON, or for gRPC as a trailers-only grpc-status. */
function refuse(stream: ServerHttp2Stream, grpc: string | undefined, code: HttpErrorCode, message: string, requestId: string): number {
  const status = HttpErrors[code];
  if (stream.destroyed || stream.headersSent) return status;
  if (grpc) {
    stream.respond(
      {
        ':status': 200,
        'content-type': grpc === 'grpc-web' ? 'application/grpc-web' : 'application/grpc',
        'grpc-status': String(grpcStatusFor(code)),
        'grpc-message': encodeGrpcMessage(message),
        'x-request-id': requestId,
      },
      { endStream: true },
    );
  } else {
    const body = httpErrorBody(code, message, requestId);
    stream.respond({ ':status': status, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, 'cache-control': 'no-store' });
    stream.end(body);
  }
  // the client may still be sending a body nobody will read: let it drain
  stream.resume();
  return status;
}

/** HPACK's size of a header list (RFC 7541 §4.1): what limits.max_header_bytes bounds on h2. */
function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i++) n += raw[i]!.length;
  return n + 16 * raw.length;
}

export function h2Frontend(rt: ListenerRuntime): Frontend {
  const maxHeader = rt.cfg.limits.max_header_bytes;
  const server = http2.createServer({
    // nghttp2 resets streams past its own limit; below it we answer 431 ourselves
    // It counts pseudo-headers and cookie crumbs, which limits.max_headers does not
    maxHeaderListPairs: Math.max(2000, rt.cfg.limits.max_headers + 64),
    // Node's defaults, stated because they are part of the flood defence: a session whose
    // client keeps opening streams Node must refuse, or keeps sending invalid frames, ends
    maxSessionRejectedStreams: 100,
    maxSessionInvalidFrames: 1000,
    // nghttp2's RST_STREAM token bucket (CVE-2023-44487), at nghttp2's own defaults: Node
    // 22.11+ and 24 take the options; on Node 20 nghttp2 applies the same numbers by itself
    ...({ streamResetBurst: 1000, streamResetRate: 33 } as object),
    settings: {
      enableConnectProtocol: true,
      maxHeaderListSize: Math.max(2 * maxHeader, 65_535),
      // advertised and enforced by nghttp2: streams past it get RST_STREAM REFUSED_STREAM.
      // (A front end is made per configuration generation: a reload's new value applies to
      // new connections.)
      maxConcurrentStreams: rt.cfg.limits.max_concurrent_streams,
    },
  });
  const sessions = new Set<ServerHttp2Session>();
  const states = new WeakMap<ServerHttp2Session, SessionState>();
  let accepting: ConnState | undefined;
  server.on('session', (session: ServerHttp2Session) => {
    const conn = accepting!;
    states.set(session, { conn, session, streams: 0, premature: 0, cutOff: false, turn: -1, turnStreams: 0 });
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    // idle: GOAWAY, streams in flight still finish
    const idle = conn.listener.cfg.limits.idle_timeout;
    if (idle > 0) session.setTimeout(idle, () => session.close());
  });
  // session errors (a peer protocol error, a reset socket) end the session; nothing to add
  server.on('sessionError', () => undefined);
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    // a stream reset by the client emits 'error'; unhandled it would end the process
    stream.on('error', ignore);
    const session = stream.session as ServerHttp2Session;
    const st = states.get(session);
    if (!st) {
      resetStream(stream, NGHTTP2_INTERNAL_ERROR);
      return;
    }
    st.streams++;
    // nginx's threshold: a client cannot have more than max_concurrent_streams open, and
    // the streams of one turn are answered in the next, so more than twice that many new
    // streams in one turn means streams opened and reset at once. (nginx refuses the
    // excess streams; here the connection is closed: reading on, every stream of the read
    // would become a Node stream first, which is the cost of the flood.)
    if (st.turn !== turn) {
      st.turn = turn;
      st.turnStreams = 0;
    }
    if (++st.turnStreams > burst && !st.cutOff) {
      cutOff(st, 'streams_at_once', `it opened more than ${burst} streams at once (twice limits.max_concurrent_streams), resetting them as it went`);
    }
    const d: Deferred = { stream, st, headers, flags, raw: rawHeaders, start: performance.now() };
    // counted as it happens (not when served): a flood is cut off in the middle of a read
    (stream as unknown as Record<symbol, Deferred>)[kDeferred] = d;
    stream.on('close', onStreamClose);
    // Served on the next turn of the event loop, once the rest of what was read with it
    // has been processed: a stream its client reset in the same read (rapid reset) then
    // costs no admission and no upstream request. Data frames meanwhile wait in the stream.
    // One immediate serves every stream that arrived in the turn before.
    deferred.push(d);
    if (deferred.length === 1) setImmediate(serveDeferred);
  });
  const burst = 2 * rt.cfg.limits.max_concurrent_streams;
  let turn = 0;
  let deferred: Deferred[] = [];
  const serveDeferred = () => {
    const batch = deferred;
    deferred = [];
    turn++;
    for (const d of batch) {
      // its connection is being closed for rapid reset: nothing more is served on it
      if (d.st.cutOff) continue;
      // each stream inside the per-connection error boundary: a throw ends its session only
      if (!d.stream.destroyed) guard(d.st.conn, d.stream.session as ServerHttp2Session, 'h2 stream', () => onStream(d.stream, d.st, d.headers, d.flags, d.raw, d.start));
      // reset (or its connection closed) before it was served
      else logClientReset(d.st.conn, d.start, d.headers);
    }
  };
  return {
    accept(sock, conn) {
      // Only tls.Server clears this flag after the handshake; our listener builds its
      // TLSSockets itself, and an Http2Session would wait for a 'secureConnect' that a
      // server-side socket never emits
      markHandshakeDone(sock as TLSSocket);
      accepting = conn;
      try {
        server.emit('connection', sock);
      } finally {
        accepting = undefined;
      }
    },
    closeIdle() {
      for (const s of sessions) if (!s.closed) s.close();
    },
  };
}

const kDeferred = Symbol('portcullis.h2stream');
const ignore = (): void => undefined;

/**
 * A stream closed: a premature reset if its client reset it within
 * PREMATURE_RESET_LIFETIME_MS, before its response was complete. (One listener function
 * for every stream, its facts on the stream: no closure per stream.)
 */
function onStreamClose(this: ServerHttp2Stream): void {
  const self = this as unknown as Record<symbol, unknown>;
  if (self[kResetByUs]) return;
  // a stream that ended normally closes with NO_ERROR after its response; a client may
  // also reset with NO_ERROR, which counts when nothing was answered yet
  if (this.rstCode === NGHTTP2_NO_ERROR && this.headersSent) return;
  const d = self[kDeferred] as Deferred;
  if (performance.now() - d.start > PREMATURE_RESET_LIFETIME_MS) return;
  prematureReset(d.st);
}

/**
 * Envoy's rule: closes the connection when premature resets are at least half of its
 * streams, once it has opened PREMATURE_RESET_MIN_STREAMS or more.
 */
function prematureReset(st: SessionState): void {
  st.premature++;
  if (st.streams < PREMATURE_RESET_MIN_STREAMS || st.premature * 2 < st.streams || st.cutOff) return;
  cutOff(st, 'premature_resets', `it reset ${st.premature} of its ${st.streams} streams right after opening them`);
}

/** Closes a connection for rapid reset; `why` completes "closed an HTTP/2 connection from <addr>: ". */
function cutOff(st: SessionState, rule: 'premature_resets' | 'streams_at_once', why: string): void {
  const session = st.session;
  st.cutOff = true;
  if (session.destroyed) return;
  const l = st.conn.listener;
  l.telemetry.log.warn(
    { event: 'h2_rapid_reset', rule, listener: l.name, remote_addr: st.conn.remoteAddress, streams: st.streams, premature_resets: st.premature },
    `closed an HTTP/2 connection from ${st.conn.remoteAddress}: ${why} (rapid reset)`,
  );
  session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
  // (With an error: destroy(undefined, code) sends NO_ERROR, as undefined takes the error
  // parameter's default, which is a code. The error goes to 'sessionError'.)
  const destroy = () => session.destroy(new Error('rapid reset'), NGHTTP2_ENHANCE_YOUR_CALM);
  // The GOAWAY goes out after nghttp2 has processed the rest of what was read, and every
  // stream in it still becomes a Node stream first: for a connection that sends hundreds
  // of streams at once that is up to ~1,100 more per 64 KB read. Such a client is cut off
  // at once (its GOAWAY is then best effort: often lost). Otherwise the session is
  // destroyed on the next turn, once the GOAWAY has been written.
  if (rule === 'streams_at_once') destroy();
  else setImmediate(destroy);
}

/** nginx's 499: the client closed the request (reset its stream) before it was served. */
const CLIENT_CLOSED = 499;

function logClientReset(conn: ConnState, start: number, headers: IncomingHttpHeaders): void {
  const path = headers[':path'];
  // no request id: nothing was forwarded that could carry one
  logRequest(conn, start, '-', String(headers[':method'] ?? 'GET'), path === undefined ? '' : String(path), CLIENT_CLOSED, { error: 'client_reset' });
}

function onStream(stream: ServerHttp2Stream, st: SessionState, headers: IncomingHttpHeaders, flags: number, raw: string[], start: number): void {
  const conn = st.conn;
  const l = conn.listener;
  const method = String(headers[':method'] ?? 'GET');
  const rawPath = headers[':path'];
  const path = rawPath === undefined ? '' : String(rawPath);
  const grpc = grpcKind(headers['content-type'] as string | undefined);
  let early: { code: HttpErrorCode; message: string } | undefined;

  // HTTP/1.1-shaped header list: no pseudo-headers, :authority as Host (RFC 9113 §8.3.1),
  // cookie crumbs joined with "; " (RFC 9113 §8.2.3)
  const pairs: string[] = [];
  let cookies: string[] | undefined;
  let hostHeader: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 0x3a) continue;
    const value = raw[i + 1]!;
    if (name === 'cookie') (cookies ??= []).push(value);
    else if (name === 'host') {
      if (hostHeader !== undefined) early = { code: 'bad_request', message: 'the request has more than one Host header; send exactly one' };
      hostHeader = value;
    } else pairs.push(name, value);
  }
  const authority = headers[':authority'] as string | undefined;
  if (authority !== undefined && hostHeader !== undefined && hostHeader !== authority) {
    early ??= { code: 'bad_request', message: 'the Host header differs from :authority; send one authority' };
  }
  const host = authority ?? hostHeader;
  if (host !== undefined) pairs.unshift('host', host);
  if (cookies) pairs.push('cookie', cookies.join('; '));
  if (headerListSize(raw) > l.cfg.limits.max_header_bytes) {
    early ??= { code: 'headers_too_large', message: `the request headers exceed ${l.cfg.limits.max_header_bytes} bytes; send smaller headers or raise limits.max_header_bytes` };
  }
  const fail = (code: HttpErrorCode, message: string, requestId: string, extra: LogExtra) => {
    const status = refuse(stream, grpc, code, message, requestId);
    logRequest(conn, start, requestId, method, path, status, { ...extra, error: extra.error ?? code, message });
    // a connection whose certificate was refused: GOAWAY after this answer (streams
    // already open get theirs, no new one is taken)
    const session = stream.session;
    if (conn.refusal && session && !session.closed) session.close();
  };
  // a refused connection's answer comes before any check of the request itself
  const refused = connectionRefusal(conn);
  if (refused) return fail(refused.code, refused.message, refused.requestId, { decision: refused.decision });
  if (early) return fail(early.code, early.message, randomUUID(), {});

  if (method === 'CONNECT') {
    if (headers[':protocol'] === 'websocket') {
      handleH2WebSocket(stream, conn, path, pairs, l.cfg.limits.idle_timeout, fail);
      return;
    }
    return fail('bad_request', 'CONNECT tunnels are not supported; only extended CONNECT for WebSocket (RFC 8441)', randomUUID(), {});
  }
  if (headers[':protocol'] !== undefined) {
    return fail('bad_request', ':protocol is only valid with CONNECT', randomUUID(), {});
  }

  const cl = headers['content-length'];
  const declared = cl === undefined ? undefined : Number(cl);
  const adm = admitRequest({ conn, method, target: path, rawHeaders: pairs, contentLength: declared });
  const fault = injectedFault(pairs);
  if (fault === 'request') throwInjected(fault);
  if (!adm.ok) return fail(adm.code, adm.message, adm.requestId, { route: adm.route, decision: adm.decision, path: adm.path });
  const { route, decision } = adm;
  const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, method, path, status, { route, decision, path: adm.path, ...extra });

  const sendTimeout = l.cfg.limits.send_timeout;
  const sink = streamSink(stream, method === 'HEAD', sendTimeout, () => {
    l.telemetry.log.warn({ event: 'send_timeout', listener: l.name, remote_addr: conn.remoteAddress, stream: stream.id, send_timeout_ms: sendTimeout }, `listener ${l.name}: reset HTTP/2 stream ${stream.id} from ${conn.remoteAddress} because its client granted no flow-control window for ${sendTimeout} ms (limits.send_timeout)`);
    stream.close(NGHTTP2_CANCEL);
  });
  const hasBody = (flags & NGHTTP2_FLAG_END_STREAM) === 0 && !stream.readableEnded;
  let bytesIn = 0;
  let body: Transform | null = null;
  if (hasBody) {
    // counts for the log and enforces max_body_bytes; reading the stream directly with a
    // 'data' listener would start the flow before the upstream is ready and lose data
    const maxBody = l.cfg.limits.max_body_bytes;
    body = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytesIn += chunk.length;
        if (maxBody > 0 && bytesIn > maxBody) cb(new BodyTooLarge(`the request body exceeds ${maxBody} bytes`));
        else cb(null, chunk);
      },
    });
    stream.pipe(body);
  }

  dispatchUpstream(
    sink,
    adm,
    { method, body, grpc: grpc === 'grpc', grpcTimeout: grpc === 'grpc' ? parseGrpcTimeout(headers['grpc-timeout'] as string | undefined) : 0 },
    guarded(conn, stream.session as ServerHttp2Session, 'h2 upstream response', (r: ForwardResult) => {
      if (fault === 'response') throwInjected(fault);
      if (body && !stream.readableEnded) {
        // the exchange is over but the client still sends: nobody will read it, drop it
        stream.unpipe(body);
        stream.resume();
      }
      const error = r.error;
      if (!error) return log(r.status, { bytesIn, bytesOut: r.bytesOut });
      if (!sink.headersSent) {
        const status = refuse(stream, grpc, error.code, error.message, adm.requestId);
        return log(status, { bytesIn, bytesOut: r.bytesOut, error: error.cause });
      }
      if (grpc && !sink.ended && !stream.destroyed) {
        // the response has begun: end it with a status the gRPC client understands
        sink.end({ 'grpc-status': String(grpcStatusFor(error.code)), 'grpc-message': encodeGrpcMessage(error.message) });
      } else if (!stream.destroyed) {
        resetStream(stream, NGHTTP2_INTERNAL_ERROR);
      }
      log(r.status, { bytesIn, bytesOut: r.bytesOut, error: error.cause });
    }),
  );
}
