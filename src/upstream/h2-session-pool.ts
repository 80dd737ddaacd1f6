// HTTP/2 sessions toward one upstream endpoint: cleartext h2c (undici cannot speak it) or
// https with ALPN h2, used for gRPC and h2c upstreams. One multiplexed session per
// endpoint is enough for h2; it is replaced when it closes, fails or receives GOAWAY
// (streams already on it finish there), and closed after the upstream idle timeout.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { ConnectionOptions } from 'node:tls';

export interface H2SessionOptions {
  connectTimeout: number;
  idleTimeout: number;
  /** TLS options for https endpoints; undefined for h2c */
  tls: ConnectionOptions | undefined;
}

/** Codes our forwarder classifies (see classifyUpstreamError). */
export class UpstreamConnectTimeout extends Error {
  code = 'PCL_UPSTREAM_CONNECT_TIMEOUT';
}

export class H2SessionPool {
  private session: ClientHttp2Session | undefined;
  private closed = false;

  constructor(
    readonly url: URL,
    private readonly opts: H2SessionOptions,
  ) {}

  /** Opens a stream on the current session (connecting first when there is none). */
  request(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    if (this.closed) throw new Error(`upstream endpoint ${this.url.origin} is closed`);
    return this.current().request(headers, { endStream });
  }

  private current(): ClientHttp2Session {
    const s = this.session;
    if (s && !s.closed && !s.destroyed) return s;
    return (this.session = this.connect());
  }

  private connect(): ClientHttp2Session {
    const secure = this.url.protocol === 'https:';
    const origin = secure ? this.url.origin : `http://${this.url.host}`;
    const session = http2.connect(origin, {
      ...(secure ? { ...this.opts.tls, ALPNProtocols: ['h2'] } : {}),
      settings: { enablePush: false },
    });
    const timer = setTimeout(() => {
      session.destroy(new UpstreamConnectTimeout(`no HTTP/2 connection to ${origin} within ${this.opts.connectTimeout} ms`));
    }, this.opts.connectTimeout);
    session.once('connect', () => clearTimeout(timer));
    const forget = () => {
      clearTimeout(timer);
      if (this.session === session) this.session = undefined;
    };
    // errors reach the streams on the session (as the cause of their cancel error)
    session.on('error', forget);
    session.once('close', forget);
    // GOAWAY: no new streams here; the ones in flight finish on the old session
    session.once('goaway', forget);
    session.setTimeout(this.opts.idleTimeout, () => {
      forget();
      session.close();
    });
    return session;
  }

  close(): Promise<void> {
    this.closed = true;
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
