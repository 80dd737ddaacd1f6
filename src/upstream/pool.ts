// Upstream endpoint pools: one H1Pool (keep-alive, connection reuse) per http/https
// endpoint, HTTP/2 sessions for h2c endpoints (and for gRPC to https endpoints, ALPN h2),
// chosen by the upstream's Balancer (balancer.ts). Built once per configuration generation
// and closed when the generation is released. All pools of an upstream share one UpstreamLimiter
// (upstreams.<name>.limits), which also bounds its WebSocket connections.
// An endpoint written with a host name is one endpoint per address (dns.ts); when the
// address set changes, new addresses join the balancer at once and removed ones drain:
// no new requests, the ones in flight finish, then their connections close.
import type { ConnectionOptions } from 'node:tls';
import { buildUpstreamTls } from './upstream-tls.js';
import { H2SessionPool } from './h2-session-pool.js';
import { H1Pool } from './h1-pool.js';
import { UpstreamLimiter, type UpstreamOverloaded, type Waiter } from './limiter.js';
import type { UpstreamConfig } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { Balancer, type UpstreamObserver } from './balancer.js';
import { endpointState, forgetEndpointState, type EndpointState } from './endpoint-state.js';
import { isNamedEndpoint, nextEndpointSet, onAddressesChanged, type EndpointTarget } from './dns.js';

export interface Endpoint {
  /** where to connect (an IP literal once a name is resolved) */
  url: URL;
  /** for logs and metric labels: the URL as written, or `scheme://addr:port (name)` */
  label: string;
  /** host:port as written in the config: Host / :authority when the request has none */
  authority: string;
  /** the address and the name it came from */
  target: EndpointTarget;
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
    cfg.endpoints.forEach((raw, i) => {
      const url = new URL(raw);
      if (url.protocol !== 'http:' && url.protocol !== 'https:' && url.protocol !== 'h2c:') {
        throw new PortcullisError(
          ErrorCodes.CONFIG_INVALID,
          `${field}.endpoints[${i}]: scheme ${url.protocol.slice(0, -1)} is not supported for HTTP routes; use http://, https:// or h2c://`,
        );
      }
    });
    this.make = (t) => {
      const url = t.url;
      const secure = url.protocol === 'https:';
      // a resolved name keeps its name for SNI and the certificate check (unless tls.server_name says otherwise)
      const tls = secure ? (t.name && !tlsOpts?.servername ? { ...tlsOpts, servername: t.name } : tlsOpts ?? {}) : undefined;
      const state = endpointState(name, t.label);
      const base = { url, label: t.label, authority: t.authority, target: t, tls, state };
      const h2 = url.protocol === 'http:' ? undefined : new H2SessionPool(url, { connectTimeout: cfg.timeouts.connect, idleTimeout: cfg.timeouts.idle, tls, limiter });
      if (url.protocol === 'h2c:') return { ...base, h1: undefined, h2 };
      // a shorter Keep-Alive hint from the upstream is honoured, so an upstream that
      // closes idle connections sooner does not cause resets on reuse
      const h1 = new H1Pool(url, { connectTimeout: cfg.timeouts.connect, idleTimeout: cfg.timeouts.idle, tls, limiter, authority: t.authority });
      return { ...base, h1, h2 };
    };
    this.configured = cfg.endpoints;
    this.balancer = new Balancer<Endpoint>(name, [], cfg, observer);
    this.refresh();
    if (cfg.endpoints.some(isNamedEndpoint)) this.unsubscribe = onAddressesChanged(() => this.refresh());
    const on = cfg.balance === 'hash' ? cfg.hash_on ?? { kind: 'identity' as const } : undefined;
    this.hashHeader = on?.kind === 'header' ? on.name : undefined;
  }

  private readonly make: (t: EndpointTarget) => Endpoint;
  private readonly configured: readonly string[];
  private unsubscribe: (() => void) | undefined;
  /** removed by DNS, still carrying requests: closed when the last one has finished */
  private readonly draining = new Set<Endpoint>();
  private drainTimer: NodeJS.Timeout | undefined;

  /** The endpoints picks choose from now (every address of every configured endpoint). */
  get endpoints(): readonly Endpoint[] {
    return this.balancer.endpoints;
  }

  /** Rebuilds the endpoint set from the address book: keeps endpoints that stay, adds new addresses, drains removed ones. */
  private refresh(): void {
    const { next, unresolved, gone: removed } = nextEndpointSet(this.configured, this.balancer.endpoints, this.make);
    this.balancer.setEndpoints(next, unresolved);
    for (const gone of removed) {
      // a later answer with this address starts from a clean slate (healthy, not ejected)
      forgetEndpointState(this.name, gone.label);
      this.draining.add(gone);
    }
    this.closeDrained();
  }

  private closeDrained(): void {
    for (const e of this.draining) {
      if (e.state.inflight > 0) continue;
      this.draining.delete(e);
      void e.h1?.close();
      void e.h2?.close();
    }
    if (this.draining.size === 0) {
      clearInterval(this.drainTimer);
      this.drainTimer = undefined;
    } else if (!this.drainTimer) {
      this.drainTimer = setInterval(() => this.closeDrained(), 1_000);
      this.drainTimer.unref();
    }
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
    this.unsubscribe?.();
    clearInterval(this.drainTimer);
    const all = [...this.endpoints, ...this.draining];
    this.draining.clear();
    await Promise.all(all.flatMap((e) => [e.h1?.close(), e.h2?.close()]));
  }
}
