// HTTP/2 sessions toward one upstream endpoint: cleartext h2c (undici cannot speak it) or
// https with ALPN h2, used for gRPC and h2c upstreams. One multiplexed session per
// endpoint is enough for h2; it is replaced when it closes, fails or receives GOAWAY
// (streams already on it finish there), and closed after the upstream idle timeout.
//
// A session holds one of the upstream's connection slots (limits.max_connections) from
// connect to close. A request that finds no session and no free slot waits in the
// limiter's queue; the session opened for the first such waiter carries every other
// waiter of this endpoint too. An idle session (no stream open) gives its slot up when
// another endpoint of the upstream needs one.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { ConnectionOptions } from 'node:tls';
import { unlimited, type IdleCloser, type UpstreamLimiter, type UpstreamOverloaded, type Waiter } from './limiter.js';

export interface H2SessionOptions {
  connectTimeout: number;
  idleTimeout: number;
  /** TLS options for https endpoints; undefined for h2c */
  tls: ConnectionOptions | undefined;
  /** the upstream's connection limits, shared with its other pools; none when absent */
  limiter?: UpstreamLimiter;
}

/** Codes our forwarder classifies (see classifyUpstreamError). */
export class UpstreamConnectTimeout extends Error {
  code = 'PCL_UPSTREAM_CONNECT_TIMEOUT';
}

/** Hears once: the stream, or why there is none (closed pool, 503 upstream_overloaded). */
export type StreamCallback = (err: Error | undefined, stream?: ClientHttp2Stream) => void;

/** A request for a stream; cancel() when the client goes away before it has one. */
export interface H2StreamRequest {
  cancel(): void;
}

const NOTHING_TO_CANCEL: H2StreamRequest = { cancel: () => undefined };

class StreamWaiter implements Waiter, H2StreamRequest {
  constructor(
    readonly owner: H2SessionPool,
    readonly headers: OutgoingHttpHeaders,
    readonly endStream: boolean,
    readonly cb: StreamCallback,
  ) {}
  granted(): void {
    this.owner.grantedTo(this);
  }
  expired(err: UpstreamOverloaded): void {
    this.cb(err);
  }
  cancel(): void {
    this.owner.limiter.cancel(this);
  }
}

interface Tracked {
  /** streams open on it: 0 means the session is idle and may give its slot up */
  streams: number;
  /** its slot was given back (on close, or when evicted) */
  released: boolean;
}

export class H2SessionPool implements IdleCloser {
  readonly limiter: UpstreamLimiter;
  private session: ClientHttp2Session | undefined;
  private readonly tracked = new Map<ClientHttp2Session, Tracked>();
  private closed = false;

  constructor(
    readonly url: URL,
    private readonly opts: H2SessionOptions,
  ) {
    this.limiter = opts.limiter ?? unlimited(url.host);
    this.limiter.addIdleCloser(this);
  }

  /**
   * Opens a stream on the current session, connecting first when there is none and a slot
   * is free; otherwise waits for a slot. `cb` hears synchronously unless the request waits.
   */
  request(headers: OutgoingHttpHeaders, endStream: boolean, cb: StreamCallback): H2StreamRequest {
    if (this.closed) {
      cb(new Error(`upstream endpoint ${this.url.origin} is closed`));
      return NOTHING_TO_CANCEL;
    }
    const s = this.usable();
    if (s) {
      this.open(s, headers, endStream, cb);
      return NOTHING_TO_CANCEL;
    }
    if (this.limiter.tryOpen()) {
      this.open((this.session = this.connect()), headers, endStream, cb);
      return NOTHING_TO_CANCEL;
    }
    const w = new StreamWaiter(this, headers, endStream, cb);
    if (this.limiter.wait(w)) return w;
    cb(this.limiter.pendingRefusal());
    return NOTHING_TO_CANCEL;
  }

  /** A waiter got a slot: a session for it, and for every other waiter of this endpoint. */
  grantedTo(w: StreamWaiter): void {
    if (this.closed) {
      this.limiter.closed();
      w.cb(new Error(`upstream endpoint ${this.url.origin} is closed`));
      return;
    }
    const all = [w, ...(this.limiter.takeAllFor(this) as StreamWaiter[])];
    const existing = this.usable();
    const s = existing ?? (this.session = this.connect());
    for (const x of all) this.open(s, x.headers, x.endStream, x.cb);
    // a session appeared meanwhile (another waiter's): this slot is not needed, pass it on
    if (existing) this.limiter.closed();
  }

  /** The limiter needs a slot for another endpoint: give up the current session if it is idle. */
  closeIdle(): boolean {
    for (const [s, t] of this.tracked) {
      if (t.streams > 0 || t.released) continue;
      if (this.session === s) this.session = undefined;
      this.release(s);
      s.destroy();
      return true;
    }
    return false;
  }

  private usable(): ClientHttp2Session | undefined {
    const s = this.session;
    return s && !s.closed && !s.destroyed ? s : undefined;
  }

  private open(s: ClientHttp2Session, headers: OutgoingHttpHeaders, endStream: boolean, cb: StreamCallback): void {
    let stream: ClientHttp2Stream;
    try {
      stream = s.request(headers, { endStream });
    } catch (err) {
      cb(err as Error);
      return;
    }
    const t = this.tracked.get(s);
    if (t) {
      t.streams++;
      stream.once('close', () => t.streams--);
    }
    cb(undefined, stream);
  }

  private release(s: ClientHttp2Session): void {
    const t = this.tracked.get(s);
    this.tracked.delete(s);
    if (t && !t.released) {
      t.released = true;
      this.limiter.closed();
    }
  }

  /** A new session; the caller has taken its slot. */
  private connect(): ClientHttp2Session {
    const secure = this.url.protocol === 'https:';
    const origin = secure ? this.url.origin : `http://${this.url.host}`;
    const session = http2.connect(origin, {
      ...(secure ? { ...this.opts.tls, ALPNProtocols: ['h2'] } : {}),
      settings: { enablePush: false },
    });
    this.tracked.set(session, { streams: 0, released: false });
    const timer =
      this.opts.connectTimeout > 0
        ? setTimeout(() => {
            session.destroy(new UpstreamConnectTimeout(`no HTTP/2 connection to ${origin} within ${this.opts.connectTimeout} ms`));
          }, this.opts.connectTimeout)
        : undefined;
    session.once('connect', () => clearTimeout(timer));
    const forget = () => {
      clearTimeout(timer);
      if (this.session === session) this.session = undefined;
    };
    // errors reach the streams on the session (as the cause of their cancel error)
    session.on('error', forget);
    session.once('close', () => {
      forget();
      this.release(session);
    });
    // GOAWAY: no new streams here; the ones in flight finish on the old session
    session.once('goaway', forget);
    if (this.opts.idleTimeout > 0) {
      session.setTimeout(this.opts.idleTimeout, () => {
        forget();
        session.close();
      });
    }
    return session;
  }

  close(): Promise<void> {
    this.closed = true;
    this.limiter.removeIdleCloser(this);
    const s = this.session;
    this.session = undefined;
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      // streams still in flight may finish; the runtime destroys what is left at drain's end
      const t = setTimeout(() => { s.destroy(); resolve(); }, 5_000);
      t.unref();
      s.close(() => { clearTimeout(t); resolve(); });
    });
  }
}
