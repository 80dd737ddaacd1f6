// HTTP/1.1 toward one upstream endpoint (http:// or https://): keep-alive sockets, one
// request at a time on each, responses parsed by Node's own llhttp binding (the parser
// http.Server uses). It replaced undici on the proxy's hot path: under the keep-alive
// bench undici's layers (dispatcher, request validation, wasm parser, handler wrappers,
// a setImmediate before every reuse) were the largest JavaScript cost per request; see
// the README's performance section for the numbers.
//
// Rules it keeps (RFC 9112, and what nginx does): a socket is reused only after a
// complete response that allows keep-alive and a completely sent request body; bytes the
// upstream sends with no request outstanding close the socket; an upstream Keep-Alive
// timeout shorter than ours is honoured; a reused socket that fails before any response
// byte is retried once on a new socket for idempotent requests without a body (the
// upstream closed it while idle: the keep-alive race); nothing is retried after a byte of
// response or of request body has gone.
//
// Every socket holds a slot of the upstream's UpstreamLimiter (limits.max_connections):
// a request that finds no idle socket and no free slot waits in the limiter's queue, and
// a socket that turns idle serves the queue's head or closes to hand its slot over.
// The socket and its request (parsing, timeouts, the retry) are in h1-conn.ts.
import type { ConnectionOptions } from 'node:tls';
import { requestHead, upstreamError } from './h1-wire.js';
import { unlimited, type IdleCloser, type UpstreamLimiter } from './limiter.js';
import { Exchange, H1Conn } from './h1-conn.js';

export interface H1PoolOptions {
  /** ms to establish the connection (and TLS handshake); 0 = no limit */
  connectTimeout: number;
  /** ms an idle keep-alive socket is kept; 0 = no limit */
  idleTimeout: number;
  /** set for https:// endpoints */
  tls: ConnectionOptions | undefined;
  /** largest response head accepted, bytes */
  maxHeaderSize?: number;
  /** the upstream's connection limits, shared with its other pools; none when absent */
  limiter?: UpstreamLimiter;
  /** Host header when the request has none (default the URL's host:port; a resolved name keeps its name) */
  authority?: string;
}

export interface H1Request {
  method: string;
  /** origin-form target */
  path: string;
  /** [name, value, ...] */
  headers: readonly string[];
  /**
   * headers[from..] are already rendered as header lines in `head` and checked (the
   * connection's identity headers, rendered once per connection): appended as they are
   */
  trusted?: { from: number; head: string } | undefined;
  /** null: no body. Without a content-length header the body is sent chunked. */
  body: AsyncIterable<Buffer> | null;
  /** ms from sending the request to the response head; 0 = no limit */
  headersTimeout: number;
  /** ms between response body chunks; 0 = no limit */
  bodyTimeout: number;
}

export interface H1Handler {
  /** headers as received: [name, value, ...], names in their original case */
  /** lengthKnown: a content-length body or none, so no trailers can follow */
  onResponseStart(status: number, headers: string[], statusMessage: string, lengthKnown: boolean): void;
  /**
   * false: the consumer is full; reading pauses until the call's resume().
   * borrowed: the chunk is a view of the connection's read buffer, which the next read
   * overwrites. The consumer returns true only when nothing of it is still queued, and
   * otherwise calls resume() once its queue is empty (see h1-conn.ts, "Read buffer").
   */
  onResponseData(chunk: Buffer, borrowed: boolean): boolean;
  /** trailers as received, [name, value, ...] */
  onResponseEnd(trailers: string[] | undefined): void;
  onResponseError(err: Error & { code?: string }): void;
}

export interface H1Call {
  /** stop the request (the client went away); the handler gets onResponseError(err) */
  abort(err: Error): void;
  /** the consumer drained: read on */
  resume(): void;
}

export class H1Pool implements IdleCloser {
  readonly host: string;
  readonly port: number;
  /** Host header when the request has none */
  readonly defaultHost: string;
  tlsSession: Buffer | undefined;
  readonly limiter: UpstreamLimiter;
  private readonly idle: H1Conn[] = [];
  private readonly all = new Set<H1Conn>();
  private closed = false;

  constructor(
    url: URL,
    readonly options: H1PoolOptions,
  ) {
    const secure = url.protocol === 'https:';
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port ? Number(url.port) : secure ? 443 : 80;
    this.defaultHost = options.authority ?? url.host;
    this.limiter = options.limiter ?? unlimited(url.host);
    this.limiter.addIdleCloser(this);
  }

  /** Starts one request; the handler hears how it ends. */
  request(req: H1Request, handler: H1Handler): H1Call {
    let head: string;
    try {
      head = requestHead(req, this.defaultHost);
    } catch (err) {
      const ex = new Exchange(this, req, '', handler);
      ex.done = true;
      handler.onResponseError(err as Error);
      return ex;
    }
    const ex = new Exchange(this, req, head, handler);
    if (this.closed) {
      ex.done = true;
      handler.onResponseError(upstreamError('PCL_UPSTREAM_CLOSED', 'the upstream pool was closed by a reload'));
      return ex;
    }
    let conn: H1Conn | undefined;
    // most recently used first: the least likely to have been closed by the upstream
    while ((conn = this.idle.pop())) {
      const s = conn.socket;
      if (!s.destroyed && s.writable && !s.readableEnded) break;
      conn.destroy();
    }
    if (conn) conn.send(ex);
    else this.acquire(ex);
    return ex;
  }

  /** The retry after the keep-alive race: a new socket, through the limiter like any other. */
  sendFresh(ex: Exchange): void {
    if (this.closed) {
      ex.done = true;
      ex.handler.onResponseError(upstreamError('PCL_UPSTREAM_CLOSED', 'the upstream pool was closed by a reload'));
      return;
    }
    this.acquire(ex);
  }

  /** A new socket for ex when a slot is free, else a place in the limiter's queue, else 503. */
  private acquire(ex: Exchange): void {
    if (this.limiter.tryOpen()) {
      this.open().send(ex);
      return;
    }
    if (this.limiter.wait(ex)) {
      ex.waiting = true;
      return;
    }
    ex.done = true;
    ex.handler.onResponseError(this.limiter.pendingRefusal());
  }

  /** ex waited and got a slot. */
  openFor(ex: Exchange): void {
    if (ex.done || this.closed) {
      // the slot is not needed after all: pass it on
      this.limiter.closed();
      if (!ex.done) {
        ex.done = true;
        ex.handler.onResponseError(upstreamError('PCL_UPSTREAM_CLOSED', 'the upstream pool was closed by a reload'));
      }
      return;
    }
    this.open().send(ex);
  }

  private open(): H1Conn {
    const c = new H1Conn(this);
    this.all.add(c);
    return c;
  }

  release(c: H1Conn): void {
    if (this.closed) {
      c.destroy();
      return;
    }
    // a request waits for this endpoint: serve it on this socket at once
    const next = this.limiter.takeHeadFor(this) as Exchange | undefined;
    if (next) {
      next.waiting = false;
      c.send(next);
      return;
    }
    // a request waits for another endpoint: closing this socket hands it our slot
    if (this.limiter.mustYield()) {
      c.destroy();
      return;
    }
    c.armIdle();
    this.idle.push(c);
  }

  forget(c: H1Conn): void {
    if (c.idle) c.idle = false;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    this.all.delete(c);
    if (c.counted) {
      c.counted = false;
      this.limiter.closed();
    }
  }

  /** The limiter needs a slot for another endpoint: close our least recently used idle socket. */
  closeIdle(): boolean {
    const c = this.idle[0];
    if (!c) return false;
    c.destroy();
    return true;
  }

  /** sockets open now (idle or busy) */
  get size(): number {
    return this.all.size;
  }

  /** Closes idle sockets now and busy ones when their response ends. */
  close(): Promise<void> {
    this.closed = true;
    this.limiter.removeIdleCloser(this);
    for (const c of [...this.idle]) c.destroy();
    return Promise.resolve();
  }
}
