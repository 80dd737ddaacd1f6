// Upstream endpoint pools: one H1Pool (keep-alive, connection reuse) per http/https
// endpoint, HTTP/2 sessions for h2c endpoints (and for gRPC to https endpoints, ALPN h2),
// chosen by the upstream's Balancer (balancer.ts). Built once per configuration generation
// and closed when the generation is released. All pools of an upstream share one UpstreamLimiter
// (upstreams.<name>.limits), which also bounds its WebSocket connections.
import type { ConnectionOptions } from 'node:tls';
import { buildUpstreamTls } from './upstream-tls.js';
import { H2SessionPool } from './h2-session-pool.js';
import { H1Pool } from './h1-pool.js';
import { UpstreamLimiter, type UpstreamOverloaded, type Waiter } from './limiter.js';
import type { UpstreamConfig } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { Balancer, type UpstreamObserver } from './balancer.js';
import { endpointState, type EndpointState } from './endpoint-state.js';

export interface Endpoint {
  url: URL;
  /** endpoint as written in the config, for logs and metric labels */
  label: string;
  /** HTTP/1.1 over http or https; undefined for h2c endpoints */
  h1: H1Pool | undefined;
  /** HTTP/2: always for h2c, for gRPC calls on https (sessions connect lazily) */
  h2: H2SessionPool | undefined;
  /** TLS options of https endpoints (WebSocket upgrades connect with them) */
  tls: ConnectionOptions | undefined;
  /** health, ejection and requests in flight (shared across generations) */
  state: EndpointState;
}

export class UpstreamPool {
  readonly name: string;
  readonly endpoints: Endpoint[];
  readonly requestTimeout: number;
  readonly idleTimeout: number;
  readonly limiter: UpstreamLimiter;
  readonly balancer: Balancer<Endpoint>;
  /** balance: hash on a header: its lowercase name (otherwise the client identity) */
  readonly hashHeader: string | undefined;

  constructor(name: string, cfg: UpstreamConfig, field: string, observer?: UpstreamObserver) {
    this.name = name;
    this.requestTimeout = cfg.timeouts.request;
    this.idleTimeout = cfg.timeouts.idle;
    // a request waits for a connection at most as long as a connection may take to open
    const limiter = (this.limiter = new UpstreamLimiter(name, cfg.limits, cfg.timeouts.connect || cfg.timeouts.request));
    const tlsOpts: ConnectionOptions | undefined = cfg.tls ? buildUpstreamTls(cfg.tls, `${field}.tls`) : undefined;
    this.endpoints = cfg.endpoints.map((raw, i) => {
      const url = new URL(raw);
      if (url.protocol !== 'http:' && url.protocol !== 'https:' && url.protocol !== 'h2c:') {
        throw new PortcullisError(
          ErrorCodes.CONFIG_INVALID,
          `${field}.endpoints[${i}]: scheme ${url.protocol.slice(0, -1)} is not supported for HTTP routes; use http://, https:// or h2c://`,
        );
      }
      const secure = url.protocol === 'https:';
      const tls = secure ? tlsOpts ?? {} : undefined;
      const state = endpointState(name, raw);
      const h2 = url.protocol === 'http:' ? undefined : new H2SessionPool(url, { connectTimeout: cfg.timeouts.connect, idleTimeout: cfg.timeouts.idle, tls, limiter });
      if (url.protocol === 'h2c:') return { url, label: raw, h1: undefined, h2, tls, state };
      // a shorter Keep-Alive hint from the upstream is honoured, so an upstream that
      // closes idle connections sooner does not cause resets on reuse
      const h1 = new H1Pool(url, { connectTimeout: cfg.timeouts.connect, idleTimeout: cfg.timeouts.idle, tls, limiter });
      return { url, label: raw, h1, h2, tls, state };
    });
    this.balancer = new Balancer(name, this.endpoints, cfg, observer);
    const on = cfg.balance === 'hash' ? cfg.hash_on ?? { kind: 'identity' as const } : undefined;
    this.hashHeader = on?.kind === 'header' ? on.name : undefined;
  }

  /** The key balance: hash uses for a request: a header's first value, or the client identity. */
  hashKey(clientKey: string | undefined, headers: readonly string[]): string | undefined {
    const name = this.hashHeader;
    if (name === undefined) return clientKey;
    for (let i = 0; i < headers.length; i += 2) if (headers[i]!.length === name.length && headers[i]!.toLowerCase() === name) return headers[i + 1];
    return undefined;
  }

  /**
   * A connection slot for a connection the caller opens itself (a WebSocket upgrade):
   * `granted(release)` now or after a wait, where release() must be called once when that
   * connection has closed; or `refused(err)` (503 upstream_overloaded). The returned
   * function leaves the queue when the client goes away first.
   */
  acquireConnection(granted: (release: () => void) => void, refused: (err: UpstreamOverloaded) => void): () => void {
    const limiter = this.limiter;
    const releaser = () => {
      let done = false;
      return () => {
        if (done) return;
        done = true;
        limiter.closed();
      };
    };
    if (limiter.tryOpen()) {
      granted(releaser());
      return () => undefined;
    }
    const w: Waiter = { owner: this, granted: () => granted(releaser()), expired: refused };
    if (!limiter.wait(w)) {
      refused(limiter.pendingRefusal());
      return () => undefined;
    }
    return () => limiter.cancel(w);
  }

  async close(): Promise<void> {
    await Promise.all(this.endpoints.flatMap((e) => [e.h1?.close(), e.h2?.close()]));
  }
}
