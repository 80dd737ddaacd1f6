// One HTTP/1.1 upstream socket of an H1Pool (H1Conn) and the request on it (Exchange):
// connect, send the head and stream the body, parse the response with llhttp, the
// timeouts, and the keep-alive race retry. The rules are written out in h1-pool.ts's
// header; the pool decides which socket a request gets and when one may open.
import net from 'node:net';
import tls from 'node:tls';
import { HTTPParser, HEAD_HAS_BODY, HEAD_NO_BODY, HEAD_STOP, type NativeParser } from '../platform/node-internals.js';
import { ChunkedDecoder, contentLength, keepAliveHint, plainChunked, upstreamError } from './h1-wire.js';
import type { UpstreamOverloaded, Waiter } from './limiter.js';
import type { H1Call, H1Handler, H1Pool, H1Request } from './h1-pool.js';

/**
 * Read buffer. A cleartext upstream socket reads into one buffer of its own (net's
 * documented `onread` option) instead of a fresh 64 KiB allocation per read. Those
 * allocations are memory outside V8's heap; at hundreds of MB/s they made V8 run a full
 * mark-compact several times a second (74 in a 1 GiB download, 1 with the buffer), which
 * cost about a third of the proxy's throughput. Body bytes are handed on as views of the
 * buffer (`borrowed`): the consumer keeps reading paused until its writes have left the
 * queue, so the next read never overwrites bytes still waiting to be sent. Header bytes
 * are safe: Node's parser copies what it keeps between reads. TLS upstreams read as
 * before (tls.connect has no such option).
 */
const READ_BUFFER_BYTES = 64 * 1024;

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** A restartable one-shot timer: restarting with the same duration reuses the timer (refresh), so a request costs no allocation. Callbacks check state, so a stale firing is harmless. */
class Countdown {
  private timer: NodeJS.Timeout | undefined;
  private ms = 0;
  constructor(private readonly fire: () => void) {}
  start(ms: number): void {
    if (this.timer && this.ms === ms) {
      this.timer.refresh();
      return;
    }
    clearTimeout(this.timer);
    this.ms = ms;
    this.timer = setTimeout(this.fire, ms).unref();
  }
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export class Exchange implements H1Call, Waiter {
  conn: H1Conn | null = null;
  done = false;
  /** in the limiter's queue, waiting for a connection slot */
  waiting = false;
  /** a response byte arrived: never retried after this */
  responded = false;
  /** the whole request (head and body) was written */
  sent = false;
  retried = false;
  /** an informational (1xx) response arrived */
  informed = false;
  constructor(
    readonly pool: H1Pool,
    readonly req: H1Request,
    readonly head: string,
    readonly handler: H1Handler,
  ) {}

  get owner(): H1Pool {
    return this.pool;
  }

  /** A slot was taken for us: open a socket (the pool may have closed meanwhile). */
  granted(): void {
    this.waiting = false;
    this.pool.openFor(this);
  }

  expired(err: UpstreamOverloaded): void {
    this.waiting = false;
    if (this.done) return;
    this.done = true;
    this.handler.onResponseError(err);
  }

  abort(err: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.waiting) {
      // the client left while waiting for a slot: leave the queue, nothing was sent
      this.waiting = false;
      this.pool.limiter.cancel(this);
    }
    const c = this.conn;
    this.conn = null;
    if (c) {
      c.ex = null;
      c.destroy();
    }
    this.handler.onResponseError(err);
  }

  resume(): void {
    const c = this.conn;
    if (c && c.paused) {
      c.paused = false;
      c.socket.resume();
      if (this.req.bodyTimeout > 0) c.bodyTimer.start(this.req.bodyTimeout);
    }
  }
}

export class H1Conn {
  readonly socket: net.Socket;
  readonly parser: NativeParser;
  ex: Exchange | null = null;
  /** holds one of the limiter's connection slots until it is forgotten */
  counted = true;
  /** served a request before: a failure may be the keep-alive race */
  reused = false;
  paused = false;
  idle = false;
  /** the upstream sent something no request asked for */
  broken = false;
  /** a response completed during the current execute() */
  completed = false;
  reusable = false;
  private informational = false;
  /** reading a content-length body ourselves, without the parser: bytes still to come */
  private bodyLeft = 0;
  /** reading a chunked body ourselves, without the parser */
  private chunked: ChunkedDecoder | null = null;
  private readonly onPiece = (piece: Buffer) => this.onBody(piece, this.borrowing);
  private flushed: string[] = [];
  private readonly connectTimer = new Countdown(() => this.onConnectTimeout());
  private readonly headersTimer = new Countdown(() => this.onHeadersTimeout());
  readonly bodyTimer = new Countdown(() => this.onBodyTimeout());
  private readonly idleTimer = new Countdown(() => this.idle && this.destroy());
  private connecting = true;
  /** onData is looking at the read buffer (see "Read buffer") */
  private borrowing = false;
  private keepAliveMs: number;

  constructor(readonly pool: H1Pool) {
    const o = pool.options;
    this.keepAliveMs = o.idleTimeout;
    const { host, port } = pool;
    if (o.tls) {
      const servername = o.tls.servername ?? (net.isIP(host) ? undefined : host);
      const s = tls.connect({ ALPNProtocols: ['http/1.1'], ...o.tls, host, port, servername, session: pool.tlsSession });
      s.on('session', (sess: Buffer) => (pool.tlsSession = sess));
      s.once('secureConnect', () => this.connected());
      s.setNoDelay(true);
      this.socket = s;
    } else {
      this.socket = net.connect({
        host,
        port,
        noDelay: true,
        onread: { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer) },
      });
      this.socket.once('connect', () => this.connected());
    }
    if (o.connectTimeout > 0) this.connectTimer.start(o.connectTimeout);
    const p = new HTTPParser();
    p.initialize(HTTPParser.RESPONSE, {}, o.maxHeaderSize ?? 0, 0);
    p[HTTPParser.kOnMessageBegin] = () => {
      if (!this.ex) this.broken = true;
    };
    p[HTTPParser.kOnHeaders] = (headers: string[]) => {
      for (const x of headers) this.flushed.push(x);
    };
    p[HTTPParser.kOnHeadersComplete] = this.onHead.bind(this);
    p[HTTPParser.kOnBody] = this.onBody.bind(this);
    p[HTTPParser.kOnMessageComplete] = this.onMessageComplete.bind(this);
    this.parser = p;
    const sock = this.socket;
    if (o.tls) sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('end', () => this.onEnd());
    sock.on('error', (err: Error) => this.fail(err));
    sock.on('close', () => this.onClose());
  }

  private connected(): void {
    this.connecting = false;
    this.connectTimer.stop();
  }

  private onConnectTimeout(): void {
    if (this.connecting) this.fail(upstreamError('PCL_UPSTREAM_CONNECT_TIMEOUT', `connecting took longer than ${this.pool.options.connectTimeout} ms`));
  }

  /** Sends ex on this socket. */
  send(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    this.idle = false;
    const req = ex.req;
    // a request without a limit must not inherit the previous request's timer
    if (req.headersTimeout > 0) this.headersTimer.start(req.headersTimeout);
    else this.headersTimer.stop();
    this.socket.write(ex.head, 'latin1');
    if (!req.body) {
      ex.sent = true;
      return;
    }
    void this.pump(ex, req.body, ex.head.endsWith('\r\ntransfer-encoding: chunked\r\n\r\n'));
  }

  private async pump(ex: Exchange, body: AsyncIterable<Buffer>, chunked: boolean): Promise<void> {
    const sock = this.socket;
    try {
      for await (const chunk of body) {
        // the response ended (or failed) first: read the rest of the body and drop it, so
        // the client's connection stays in step
        if (ex.conn !== this || sock.destroyed) continue;
        let ok: boolean;
        if (chunked) {
          if (chunk.length === 0) continue;
          sock.cork();
          sock.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
          sock.write(chunk);
          ok = sock.write('\r\n', 'latin1');
          sock.uncork();
        } else ok = sock.write(chunk);
        if (!ok) await drained(sock);
      }
      if (ex.conn !== this || sock.destroyed) return;
      if (chunked) sock.write('0\r\n\r\n', 'latin1');
      ex.sent = true;
    } catch (err) {
      // the client's body failed (it went away, or it is larger than allowed)
      if (ex.conn === this) this.fail(err as Error);
      else if (!ex.done) ex.abort(err as Error);
    }
  }

  private onHead(_maj: number, _min: number, headers: string[] | undefined, _m: unknown, _u: unknown, status: number, statusMessage: string, _upgrade: boolean, keepAlive: boolean): number {
    const ex = this.ex;
    const raw = headers ?? this.flushed;
    this.flushed = [];
    if (!ex) {
      this.broken = true;
      return HEAD_NO_BODY;
    }
    if (status < 200) {
      if (status === 101) {
        this.broken = true;
        this.fail(upstreamError('PCL_UPSTREAM_PROTOCOL', 'the upstream switched protocols (101) on a request that did not ask for it'));
        return HEAD_NO_BODY;
      }
      // 100 Continue, 103 Early Hints: informational, the final response follows; the
      // upstream has seen the request, so it is not retried from here on
      this.informational = true;
      ex.informed = true;
      return HEAD_HAS_BODY;
    }
    ex.responded = true;
    this.reusable = keepAlive;
    const hint = keepAliveHint(raw);
    this.keepAliveMs = hint > 0 && (this.pool.options.idleTimeout === 0 || hint < this.pool.options.idleTimeout) ? hint : this.pool.options.idleTimeout;
    if (ex.req.bodyTimeout > 0) this.bodyTimer.start(ex.req.bodyTimeout);
    else this.bodyTimer.stop();
    // a response to HEAD has no body whatever its headers say
    const noBody = ex.req.method === 'HEAD' || status === 204 || status === 304;
    const len = noBody ? 0 : contentLength(raw);
    ex.handler.onResponseStart(status, raw, statusMessage, len >= 0);
    if (ex.req.method === 'HEAD') return HEAD_NO_BODY;
    if (!noBody) {
      // A body of known length, or plainly chunked, is sliced from the socket's chunks
      // here, not copied piece by piece by the parser (its on_body copies): HEAD_STOP
      // makes llhttp stop right after the head; it is re-initialized after the body.
      if (len > 0) {
        this.bodyLeft = len;
        return HEAD_STOP;
      }
      if (len < 0 && plainChunked(raw)) {
        this.chunked = new ChunkedDecoder(this.pool.options.maxHeaderSize || 16 * 1024);
        return HEAD_STOP;
      }
    }
    return HEAD_HAS_BODY;
  }

  /** A chunk of the parser's (a copy) or a view of the read buffer (borrowed). */
  private onBody(chunk: Buffer, borrowed = false): void {
    const ex = this.ex;
    if (!ex || ex.done) return;
    if (ex.req.bodyTimeout > 0) this.bodyTimer.start(ex.req.bodyTimeout);
    if (!ex.handler.onResponseData(chunk, borrowed) && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private onMessageComplete(): void {
    // llhttp reports the "upgrade" (see onHead) as a complete message: the body follows
    if (this.bodyLeft > 0 || this.chunked) return;
    if (this.informational) {
      this.informational = false;
      return;
    }
    const ex = this.ex;
    if (!ex || ex.done) {
      this.broken = true;
      return;
    }
    const trailers = this.flushed.length > 0 ? this.flushed : undefined;
    this.flushed = [];
    this.reusable = this.reusable && ex.sent;
    this.completed = true;
    // the consumer's backpressure was for this response, which is whole now
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.ex = null;
    ex.conn = null;
    ex.done = true;
    ex.handler.onResponseEnd(trailers);
  }

  /** A read into the socket's own buffer (see "Read buffer"); false stops reading. */
  private onRead(n: number, buf: Buffer): boolean {
    this.borrowing = true;
    this.onData(buf.subarray(0, n));
    this.borrowing = false;
    return !this.paused;
  }

  private onData(chunk: Buffer): void {
    let off = 0;
    if (this.bodyLeft === 0 && !this.chunked) {
      const r = this.parser.execute(chunk);
      if (r instanceof Error) {
        this.fail(upstreamError((r as Error & { code?: string }).code ?? 'HPE_INVALID', `the upstream's response could not be parsed (${(r as Error & { code?: string }).code ?? r.message})`));
        return;
      }
      if (this.bodyLeft === 0 && !this.chunked) {
        this.settle();
        return;
      }
      off = r; // the head ended here; the rest is body
    }
    if (this.chunked) this.takeChunked(this.chunked, chunk, off);
    else this.takeBody(chunk, off);
  }

  /** A chunked body, decoded here (zero copy, see ChunkedDecoder). */
  private takeChunked(dec: ChunkedDecoder, chunk: Buffer, off: number): void {
    const r = dec.feed(chunk, off, this.onPiece);
    if (r === -1 || this.socket.destroyed) return;
    this.chunked = null;
    if (r instanceof Error) {
      this.fail(r);
      return;
    }
    this.flushed = dec.trailers;
    this.bodyDone(r < chunk.length);
  }

  /** A content-length body, sliced from the socket's chunks (zero copy). */
  private takeBody(chunk: Buffer, off: number): void {
    const avail = chunk.length - off;
    if (avail > 0) {
      const n = avail < this.bodyLeft ? avail : this.bodyLeft;
      this.bodyLeft -= n;
      this.onBody(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), this.borrowing);
      off += n;
    }
    if (this.bodyLeft > 0 || this.socket.destroyed) return;
    this.bodyDone(off < chunk.length);
  }

  /** A body read without the parser is complete; `extra`: bytes follow it in the same read. */
  private bodyDone(extra: boolean): void {
    // the parser starts afresh for the next response
    this.parser.initialize(HTTPParser.RESPONSE, {}, this.pool.options.maxHeaderSize ?? 0, 0);
    this.onMessageComplete();
    // anything after the body was not asked for
    if (extra) this.broken = true;
    this.settle();
  }

  /** After a parse: hand the socket back to the pool, or close it. */
  private settle(): void {
    if (this.broken) {
      this.destroy();
      return;
    }
    if (!this.completed) return;
    this.completed = false;
    if (!this.reusable || this.socket.destroyed) {
      this.destroy();
      return;
    }
    this.reused = true;
    this.pool.release(this);
  }

  /** Called by the pool when the socket goes idle. */
  armIdle(): void {
    this.idle = true;
    if (this.keepAliveMs > 0) this.idleTimer.start(this.keepAliveMs);
  }

  private onHeadersTimeout(): void {
    const ex = this.ex;
    if (ex && !ex.responded) this.fail(upstreamError('PCL_UPSTREAM_TIMEOUT', `no response head within ${ex.req.headersTimeout} ms`));
  }

  private onBodyTimeout(): void {
    const ex = this.ex;
    if (!ex || !ex.responded) return;
    // paused for a slow client: the upstream is not the one being slow
    if (this.paused) {
      this.bodyTimer.start(ex.req.bodyTimeout);
      return;
    }
    this.fail(upstreamError('PCL_UPSTREAM_TIMEOUT', `no response body data within ${ex.req.bodyTimeout} ms`));
  }

  private onEnd(): void {
    // a response without a length ends with the connection
    this.parser.finish();
    this.completed = false;
    if (this.ex) this.fail(upstreamError('PCL_UPSTREAM_CLOSED', 'the upstream closed the connection before the response was complete'));
    else this.destroy();
  }

  private onClose(): void {
    this.connectTimer.stop();
    this.headersTimer.stop();
    this.bodyTimer.stop();
    this.idleTimer.stop();
    this.pool.forget(this);
    if (this.ex) this.fail(upstreamError('PCL_UPSTREAM_CLOSED', 'the upstream closed the connection before the response was complete'));
    // after the current parse (if any) has returned
    setImmediate(() => this.parser.close());
  }

  /** The socket failed: fail the request on it (or retry it, see the file comment). */
  fail(err: Error & { code?: string }): void {
    // nothing reached the upstream: the balancer may send any request elsewhere
    if (this.connecting) (err as { connectFailed?: boolean }).connectFailed = true;
    const ex = this.ex;
    this.ex = null;
    this.destroy();
    if (!ex || ex.done) return;
    ex.conn = null;
    const timeout = err.code === 'PCL_UPSTREAM_TIMEOUT' || err.code === 'PCL_UPSTREAM_CONNECT_TIMEOUT';
    if (this.reused && !ex.responded && !ex.informed && !ex.retried && !timeout && ex.req.body === null && IDEMPOTENT.has(ex.req.method)) {
      ex.retried = true;
      this.pool.sendFresh(ex);
      return;
    }
    ex.done = true;
    ex.handler.onResponseError(err);
  }

  destroy(): void {
    this.idle = false;
    this.pool.forget(this);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

function drained(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}
