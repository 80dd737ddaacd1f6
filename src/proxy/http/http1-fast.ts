// The HTTP/1.1 front end's own request path. Under keep-alive load Node's http.Server
// (IncomingMessage and ServerResponse streams, their events and timers per request) was
// the largest JavaScript cost per request after the upstream client; see the README's
// performance section. This path parses requests on the socket with Node's own llhttp
// binding (as strict as http.Server: no lenient flags), admits and forwards them through
// the same pipeline, and writes responses itself.
//
// It serves HTTP/1.1 requests without a body or with a Content-Length body, without
// Expect, that are not upgrades or CONNECT. On the first request that is anything else,
// the connection is handed to the http.Server front end for the rest of its life, with
// every byte of that request replayed first, so chunked request bodies, 100-continue,
// WebSocket upgrades and HTTP/1.0 keep their well-tested handling.
//
// Rules it keeps: one request at a time (pipelined requests wait, buffered, and reading
// stops once that buffer is large); a parse error answers 400 (431 for headers over
// limits.max_header_bytes) and closes; a request head must arrive within
// limits.header_timeout and an idle keep-alive connection closes after limits.idle_timeout.
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { HTTPParser, methods, type NativeParser } from '../llhttp.js';
import type { ConnState } from '../../runtime/types.js';
import { HttpErrors, type HttpErrorCode } from '../../errors.js';
import { HEADER_NAME_TOKEN, UNSAFE_HEADER_VALUE } from '../request-headers.js';
import type { ForwardResult, HeaderMap, ResponseSink } from './forward.js';
import { admitRequest, logRequest, type LogExtra } from './pipeline.js';
import { dispatchUpstream } from './upstream-dispatch.js';
import { parseErrorResponse, rawErrorResponse } from './respond.js';
import type { Http1Options } from './http1.js';

/** A first body chunk up to this size goes out in one write with the response head. */
const SMALL_BODY = 4096;

/** Pipelined bytes, or request body bytes the upstream has not taken yet, buffered before reading stops. */
const MAX_PENDING = 64 * 1024;

const enum State {
  /** reading a request head (or waiting for one) */
  Head,
  /** a request is in flight */
  Busy,
  Closed,
  /** the connection now belongs to the http.Server front end */
  Handed,
}

const enum Phase {
  /** a new connection without a byte yet: header_timeout */
  Fresh,
  /** no byte of the next request yet: idle_timeout */
  Waiting,
  /** part of a head has arrived: header_timeout */
  PartHead,
  Busy,
}

let dateSecond = 0;
let dateString = '';
/** The Date header value, formatted once per second. */
function httpDate(now: number): string {
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateString = new Date(now).toUTCString();
  }
  return dateString;
}


/** The connections this path serves for one listener, and the http.Server it hands over to. */
export class FastHttp1 {
  readonly conns = new Set<FastConn>();
  constructor(
    readonly opts: Http1Options,
    readonly fallback: Server,
  ) {}

  accept(sock: Socket, conn: ConnState): void {
    this.conns.add(new FastConn(this, sock, conn));
  }

  closeIdle(): void {
    for (const c of this.conns) c.closeIfIdle();
    this.fallback.closeIdleConnections();
  }
}

interface Head {
  method: string;
  url: string;
  headers: string[];
  keepAlive: boolean;
  /** the fast path can serve it (see the file comment) */
  simple: boolean;
  contentLength: number | undefined;
}

class FastConn {
  private readonly parser: NativeParser;
  private state = State.Head;
  private phase = Phase.Fresh;
  /** when the current phase began (ms) */
  private since: number;
  private timer: NodeJS.Timeout | undefined;
  /** when the armed timer fires (ms) */
  private fireAt = 0;
  /** every byte since the current request head began: replayed on a hand-over */
  private headChunks: Buffer[] = [];
  /** bytes after the current request's head (pipelining) */
  private pending: Buffer | null = null;
  private paused = false;
  private drainScheduled = false;
  private flushedHeaders: string[] = [];
  private flushedUrl = '';
  private head: Head | null = null;
  /** the in-flight request's Content-Length body and how much of it is still to come */
  private body: RequestBody | null = null;
  private bodyLeft = 0;
  /** the client half-closed: close once the current response is out */
  private clientEnded = false;
  /** the in-flight request's abort callback (the client went away) */
  abortCb: (() => void) | undefined;
  private readonly onDataFn = (chunk: Buffer) => this.onData(chunk);
  private readonly onEndFn = () => this.onEnd();
  private readonly onCloseFn = () => this.onClose();
  private readonly onErrorFn = () => this.sock.destroy();

  constructor(
    private readonly front: FastHttp1,
    readonly sock: Socket,
    private readonly conn: ConnState,
  ) {
    const p = new HTTPParser();
    p.initialize(HTTPParser.REQUEST, {}, front.opts.maxHeaderBytes, 0);
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      for (const x of headers) this.flushedHeaders.push(x);
      this.flushedUrl += url;
    };
    p[HTTPParser.kOnHeadersComplete] = this.onHeadersComplete.bind(this);
    this.parser = p;
    this.since = Date.now();
    // a new connection gets header_timeout for its first request, as http.Server does
    this.arm(front.opts.headerTimeout);
    sock.on('data', this.onDataFn);
    sock.on('end', this.onEndFn);
    sock.on('close', this.onCloseFn);
    sock.on('error', this.onErrorFn);
  }

  private onHeadersComplete(maj: number, min: number, headers: string[] | undefined, method: number, url: string | undefined, _sc: unknown, _sm: unknown, upgrade: boolean, keepAlive: boolean): number {
    if (headers === undefined) {
      headers = this.flushedHeaders;
      this.flushedHeaders = [];
    }
    if (url === undefined) {
      url = this.flushedUrl;
      this.flushedUrl = '';
    }
    const m = methods[method] ?? 'GET';
    let simple = maj === 1 && min === 1 && !upgrade && m !== 'CONNECT';
    let contentLength: number | undefined;
    for (let i = 0; simple && i < headers.length; i += 2) {
      const n = headers[i]!;
      const len = n.length;
      if (len === 14 && n.toLowerCase() === 'content-length') {
        // llhttp has checked it is digits and not repeated with another value
        contentLength = Number(headers[i + 1]);
        if (!Number.isSafeInteger(contentLength)) simple = false;
      } else if ((len === 17 && n.toLowerCase() === 'transfer-encoding') || (len === 6 && n.toLowerCase() === 'expect')) {
        simple = false;
      }
    }
    this.head = { method: m, url, headers, keepAlive, simple, contentLength };
    // 2: llhttp stops right after the head; the parser is re-initialized per request
    return 2;
  }

  private onData(chunk: Buffer): void {
    if (this.bodyLeft > 0) {
      const off = this.takeBody(chunk, 0);
      if (off === chunk.length) {
        this.updateFlow();
        return;
      }
      chunk = chunk.subarray(off);
    }
    if (this.state !== State.Head || this.pending !== null) {
      this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
      this.updateFlow();
      if (this.state === State.Head) this.scheduleDrain();
      return;
    }
    this.feed(chunk);
  }

  /** Hands the request body's bytes in chunk[off..] to the upstream; returns where they end. */
  private takeBody(chunk: Buffer, off: number): number {
    const avail = chunk.length - off;
    const n = avail < this.bodyLeft ? avail : this.bodyLeft;
    if (n > 0) {
      this.bodyLeft -= n;
      this.body!.push(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n));
    }
    if (this.bodyLeft === 0) this.body!.end();
    return off + n;
  }

  /** Reading stops while pipelined bytes or unread body bytes pile up, and resumes when they are taken. */
  private updateFlow(): void {
    const full = (this.pending !== null && this.pending.length > MAX_PENDING) || (this.body !== null && this.body.queued > MAX_PENDING);
    if (full && !this.paused) {
      this.paused = true;
      this.sock.pause();
    } else if (!full && this.paused && this.state !== State.Closed) {
      this.paused = false;
      this.sock.resume();
    }
  }

  private feed(chunk: Buffer): void {
    this.headChunks.push(chunk);
    const r = this.parser.execute(chunk);
    if (typeof r !== 'number') {
      this.state = State.Closed;
      const { close, response } = parseErrorResponse(r.code, this.front.opts.maxHeaderBytes);
      if (close || !this.sock.writable) this.sock.destroy();
      else this.closeAfter(response);
      return;
    }
    const h = this.head;
    if (h === null) {
      // the head is not complete: header_timeout runs from its first byte
      if (this.phase !== Phase.PartHead) this.enter(Phase.PartHead, Date.now());
      return;
    }
    this.head = null;
    if (!h.simple) {
      this.handOver();
      return;
    }
    this.headChunks = [];
    this.parser.initialize(HTTPParser.REQUEST, {}, this.front.opts.maxHeaderBytes, 0);
    this.state = State.Busy;
    this.phase = Phase.Busy;
    let off = r;
    let body: RequestBody | null = null;
    if (h.contentLength !== undefined && h.contentLength > 0) {
      this.bodyLeft = h.contentLength;
      this.body = body = new RequestBody(() => this.updateFlow());
      off = this.takeBody(chunk, off);
    }
    if (off < chunk.length) this.pending = chunk.subarray(off);
    this.serve(h, body);
  }

  /** Gives the connection to http.Server, replaying the current request's bytes first. */
  private handOver(): void {
    this.state = State.Handed;
    this.stopTimer();
    this.front.conns.delete(this);
    const sock = this.sock;
    sock.off('data', this.onDataFn);
    sock.off('end', this.onEndFn);
    sock.off('close', this.onCloseFn);
    sock.off('error', this.onErrorFn);
    sock.pause();
    const chunks = this.headChunks;
    this.headChunks = [];
    sock.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    // http.Server would otherwise read the native handle directly, ahead of the bytes
    // replayed through the stream
    const handle = (sock as unknown as { _handle?: { _consumed?: boolean } })._handle;
    if (handle) handle._consumed = true;
    this.front.fallback.emit('connection', sock);
    sock.resume();
  }

  private serve(h: Head, body: RequestBody | null): void {
    const conn = this.conn;
    const start = performance.now();
    const method = h.method;
    const adm = admitRequest({ conn, method, target: h.url, rawHeaders: h.headers, contentLength: h.contentLength });
    const sink = new FastSink(this, method === 'HEAD', h.keepAlive && !this.clientEnded, this.front.opts.idleTimeout);
    const log = (status: number, extra: LogExtra) => logRequest(conn, start, adm.requestId, method, h.url, status, extra);
    if (!adm.ok) {
      // a body that has not all arrived is not read: the connection closes after the answer
      const status = sink.error(adm.code, adm.message, adm.requestId, this.bodyLeft > 0);
      log(status, { route: adm.route, decision: adm.decision, path: adm.path, error: adm.code });
      return;
    }
    const { route, decision, path } = adm;
    const bytesIn = h.contentLength ?? 0;
    dispatchUpstream(sink, adm, { method, body, grpc: false, grpcTimeout: 0 }, (r: ForwardResult) => {
      if (r.error) {
        if (!sink.headersSent) {
          const status = sink.error(r.error.code, r.error.message, adm.requestId, true);
          log(status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
        } else {
          this.sock.destroy();
          log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, error: r.error.cause, path });
        }
        return;
      }
      log(r.status, { route, decision, bytesIn, bytesOut: r.bytesOut, path });
    });
  }

  /** The response is complete: read the next request, or close. */
  responseDone(keepAlive: boolean): void {
    if (this.state !== State.Busy) return;
    this.abortCb = undefined;
    // the upstream answered before the whole request body arrived: nothing will read the
    // rest, so the connection cannot carry another request
    if (this.bodyLeft > 0) keepAlive = false;
    this.body = null;
    if (!keepAlive || this.clientEnded) {
      this.state = State.Closed;
      this.stopTimer();
      this.closeAfter('');
      return;
    }
    this.state = State.Head;
    this.enter(Phase.Waiting, Date.now());
    if (this.pending !== null) this.scheduleDrain();
    else this.updateFlow();
  }

  /** Pipelined bytes are parsed on the next tick, never inside the previous response's callbacks. */
  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    process.nextTick(() => {
      this.drainScheduled = false;
      if (this.state !== State.Head || this.pending === null) return;
      const p = this.pending;
      this.pending = null;
      this.feed(p);
      this.updateFlow();
    });
  }

  private onEnd(): void {
    this.clientEnded = true;
    if (this.state === State.Head && this.pending === null) {
      this.state = State.Closed;
      this.stopTimer();
      this.closeAfter('');
    }
  }

  /** Sends what is left, then closes (http.Server's destroySoon): a client that keeps its side open cannot hold the socket. */
  private closeAfter(last: string): void {
    const sock = this.sock;
    if (last) sock.end(last, () => sock.destroy());
    else sock.end(() => sock.destroy());
  }

  private onClose(): void {
    const wasBusy = this.state === State.Busy;
    this.state = State.Closed;
    this.stopTimer();
    this.front.conns.delete(this);
    const cb = this.abortCb;
    this.abortCb = undefined;
    if (this.bodyLeft > 0) this.body?.fail(Object.assign(new Error('the client closed the connection before the request body was complete'), { code: 'ECONNRESET' }));
    if (wasBusy && cb) cb();
  }

  closeIfIdle(): void {
    if (this.state === State.Head && (this.phase === Phase.Waiting || this.phase === Phase.Fresh) && this.pending === null) this.sock.destroy();
  }

  // Timers: one per connection, re-armed only when it fires or a deadline moves earlier,
  // so a request costs a clock read and no timer work.
  private enter(phase: Phase, now: number): void {
    this.phase = phase;
    this.since = now;
    const ms = phase === Phase.PartHead ? this.front.opts.headerTimeout : this.front.opts.idleTimeout;
    if (ms > 0 && (this.timer === undefined || this.fireAt > now + ms)) this.arm(ms);
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    if (ms <= 0) {
      this.timer = undefined;
      return;
    }
    this.fireAt = Date.now() + ms;
    this.timer = setTimeout(() => this.onTimer(), ms).unref();
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.state !== State.Head && this.state !== State.Busy) return;
    const o = this.front.opts;
    if (this.phase === Phase.Busy) {
      // nothing times out on this side while a request is in flight (the upstream's
      // timeouts bound it); check again later
      this.arm(Math.min(positive(o.idleTimeout), positive(o.headerTimeout)));
      return;
    }
    const ms = this.phase === Phase.Waiting ? o.idleTimeout : o.headerTimeout;
    if (ms <= 0) return;
    const left = this.since + ms - Date.now();
    if (left > 0) {
      this.arm(left);
      return;
    }
    // http.Server destroys in both cases (keep-alive timeout, headers timeout)
    this.state = State.Closed;
    this.sock.destroy();
  }
}

/**
 * A Content-Length request body as the upstream client reads it (for await): chunks are
 * queued as they arrive from the socket and handed out in order; onTaken lets the
 * connection resume reading once the queue shrinks.
 */
class RequestBody implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = [];
  /** bytes queued and not yet taken */
  queued = 0;
  private ended = false;
  private error: Error | null = null;
  /** the reader stopped early (for await left the loop): later chunks are dropped */
  private abandoned = false;
  private waiter: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: Error) => void } | null = null;

  constructor(private readonly onTaken: () => void) {}

  push(chunk: Buffer): void {
    if (this.abandoned) return;
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.resolve({ value: chunk, done: false });
      return;
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
  }

  end(): void {
    this.ended = true;
    const w = this.waiter;
    if (w && this.queue.length === 0) {
      this.waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }

  fail(err: Error): void {
    this.error = err;
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.reject(err);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: (): Promise<IteratorResult<Buffer>> => {
        const c = this.queue.shift();
        if (c !== undefined) {
          this.queued -= c.length;
          this.onTaken();
          return Promise.resolve({ value: c, done: false });
        }
        if (this.error) return Promise.reject(this.error);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
      },
      return: (): Promise<IteratorResult<Buffer>> => {
        this.abandoned = true;
        this.queue.length = 0;
        this.queued = 0;
        this.onTaken();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

function positive(ms: number): number {
  return ms > 0 ? ms : 60_000;
}

/** One response on a fast-path connection. */
class FastSink implements ResponseSink {
  headersSent = false;
  status = 0;
  /** the response head, held back to go out with the first body bytes */
  private head: string | null = null;
  private chunked = false;
  private done = false;

  constructor(
    private readonly c: FastConn,
    private readonly isHead: boolean,
    private readonly keepAlive: boolean,
    private readonly idleTimeout: number,
  ) {}

  get closed(): boolean {
    return this.c.sock.destroyed;
  }

  start(status: number, headers: HeaderMap | string[], statusMessage: string | undefined): void {
    if (this.done) return;
    let head = `HTTP/1.1 ${status} ${statusMessage || STATUS_CODES[status] || 'unknown'}\r\n`;
    let hasLength = false;
    let hasDate = false;
    if (Array.isArray(headers)) {
      // from the HTTP/1.1 upstream's parser: names are tokens, values have no CR/LF
      for (let i = 0; i < headers.length; i += 2) {
        const n = headers[i]!;
        if (n.length === 14 && n.toLowerCase() === 'content-length') hasLength = true;
        else if (n.length === 4 && n.toLowerCase() === 'date') hasDate = true;
        head += n + ': ' + headers[i + 1]! + '\r\n';
      }
    } else {
      for (const n in headers) {
        if (!HEADER_NAME_TOKEN.test(n)) continue;
        const v = headers[n]!;
        for (const one of typeof v === 'string' ? [v] : v) {
          if (UNSAFE_HEADER_VALUE.test(one)) continue;
          head += n + ': ' + one + '\r\n';
        }
        if (n === 'content-length') hasLength = true;
        else if (n === 'date') hasDate = true;
      }
    }
    const bodyless = this.isHead || status === 204 || status === 304 || status < 200;
    if (!bodyless && !hasLength) {
      this.chunked = true;
      head += 'Transfer-Encoding: chunked\r\n';
    }
    if (!hasDate) head += 'Date: ' + httpDate(Date.now()) + '\r\n';
    head += this.connectionHeaders() + '\r\n';
    this.head = head;
    this.status = status;
    this.headersSent = true;
  }

  /** the Connection (and Keep-Alive) lines, as http.Server writes them */
  private connectionHeaders(): string {
    if (!this.keepAlive) return 'Connection: close\r\n';
    return this.idleTimeout > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(this.idleTimeout / 1000)}\r\n` : 'Connection: keep-alive\r\n';
  }

  write(chunk: Buffer): boolean {
    const s = this.c.sock;
    if (this.done || s.destroyed) return true;
    if (this.isHead || chunk.length === 0) return true;
    if (this.head === null && !this.chunked) return s.write(chunk);
    if (this.head !== null && !this.chunked && chunk.length <= SMALL_BODY) {
      // head and a small body as one latin1 string: one write, without the writev path
      const out = this.head + chunk.toString('latin1');
      this.head = null;
      return s.write(out, 'latin1');
    }
    s.cork();
    if (this.head !== null) {
      s.write(this.head, 'latin1');
      this.head = null;
    }
    let ok: boolean;
    if (this.chunked) {
      s.write(chunk.length.toString(16) + '\r\n', 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
    } else {
      ok = s.write(chunk);
    }
    s.uncork();
    return ok;
  }

  onceDrain(cb: () => void): void {
    this.c.sock.once('drain', cb);
  }

  end(trailers: HeaderMap | undefined): void {
    if (this.done) return;
    this.done = true;
    const s = this.c.sock;
    if (s.destroyed) return;
    let tail = this.head ?? '';
    this.head = null;
    if (this.chunked) {
      tail += '0\r\n';
      if (trailers) {
        for (const n in trailers) {
          if (!HEADER_NAME_TOKEN.test(n)) continue;
          const v = trailers[n]!;
          for (const one of typeof v === 'string' ? [v] : v) if (!UNSAFE_HEADER_VALUE.test(one)) tail += n + ': ' + one + '\r\n';
        }
      }
      tail += '\r\n';
    }
    if (tail) s.write(tail, 'latin1');
    this.c.responseDone(this.keepAlive);
  }

  onAbort(cb: () => void): () => void {
    const c = this.c;
    c.abortCb = cb;
    return () => {
      if (c.abortCb === cb) c.abortCb = undefined;
    };
  }

  /** portcullis' own JSON error (SPEC §5); close: end the connection after it */
  error(code: HttpErrorCode, message: string, requestId: string, close: boolean): number {
    const status = HttpErrors[code];
    const s = this.c.sock;
    if (this.done || s.destroyed) return status;
    if (this.headersSent) {
      s.destroy();
      return status;
    }
    this.done = true;
    const keepAlive = this.keepAlive && !close;
    this.status = status;
    this.headersSent = true;
    s.write(rawErrorResponse(code, message, requestId, `Date: ${httpDate(Date.now())}\r\n${keepAlive ? this.connectionHeaders() : 'Connection: close\r\n'}`));
    this.c.responseDone(keepAlive);
    return status;
  }
}
