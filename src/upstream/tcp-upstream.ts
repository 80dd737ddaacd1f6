// Endpoints of an upstream that tcp listeners forward whole connections to (tcp:// and
// tls:// URLs). No pooling: every client connection gets its own upstream connection.
// Endpoints are chosen by the shared Balancer (balancer.ts); a connect failure moves on
// to the next available endpoint (see tcp-frontend.ts).
// The TLS context toward tls:// endpoints is built once per configuration generation.
// upstreams.<name>.limits apply as for HTTP: each upstream connection (being opened or
// open) holds a connection slot and counts as one request in flight; a connection that
// finds every slot busy waits in the queue (max_pending, at most timeouts.connect).
// An endpoint written with a host name is one endpoint per address (dns.ts); the set
// follows DNS changes, and connections to a removed address stay open until they end.
import net, { type Socket } from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { buildUpstreamTls, describeUpstreamTlsError } from './upstream-tls.js';
import { UpstreamLimiter, type UpstreamOverloaded, type Waiter } from './limiter.js';
import type { UpstreamConfig } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { Balancer, type UpstreamObserver } from './balancer.js';
import { endpointState, forgetEndpointState, type EndpointState } from './endpoint-state.js';
import { bareHost, isNamedEndpoint, nextEndpointSet, onAddressesChanged, type EndpointTarget } from './dns.js';

export interface TcpEndpoint {
  host: string;
  port: number;
  secure: boolean;
  /** for logs and metrics: the URL as written, or `scheme://addr:port (name)` */
  label: string;
  /** the name a resolved address came from (SNI of tls:// endpoints) */
  servername: string | undefined;
  target: EndpointTarget;
  /** health, ejection, open connections (state.inflight, for least_request) */
  state: EndpointState;
}

/** Why an endpoint could not be reached; the message names the endpoint. */
export class TcpConnectError extends Error {
  constructor(
    message: string,
    /** errno code, connect_timeout, or upstream_overloaded (no other endpoint will do better) */
    readonly code: string,
  ) {
    super(message);
  }
}

export class TcpUpstream {
  readonly name: string;
  readonly connectTimeout: number;
  readonly limiter: UpstreamLimiter;
  readonly balancer: Balancer<TcpEndpoint>;
  private readonly tlsOptions: ConnectionOptions | undefined;

  constructor(name: string, cfg: UpstreamConfig, field: string, observer?: UpstreamObserver) {
    this.name = name;
    this.connectTimeout = cfg.timeouts.connect;
    this.limiter = new UpstreamLimiter(name, cfg.limits, cfg.timeouts.connect);
    cfg.endpoints.forEach((raw, i) => {
      const scheme = new URL(raw).protocol.slice(0, -1);
      if (scheme !== 'tcp' && scheme !== 'tls') {
        throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `${field}.endpoints[${i}]: scheme ${scheme} cannot serve a tcp listener; use tcp:// or tls://`);
      }
    });
    this.configured = cfg.endpoints;
    this.balancer = new Balancer<TcpEndpoint>(name, [], cfg, observer);
    this.refresh();
    if (cfg.endpoints.some(isNamedEndpoint)) this.unsubscribe = onAddressesChanged(() => this.refresh());
    if (cfg.endpoints.some((e) => e.startsWith('tls:'))) {
      const opts = cfg.tls ? buildUpstreamTls(cfg.tls, `${field}.tls`) : { rejectUnauthorized: true };
      const { ca, cert, key, ...rest } = opts;
      // one SecureContext for every connection of this generation instead of one per
      // connect; without tls.ca it trusts Node's roots, as https:// endpoints do
      this.tlsOptions = { ...rest, secureContext: tls.createSecureContext({ ca, cert, key }) };
    }
  }

  private readonly configured: readonly string[];
  private unsubscribe: (() => void) | undefined;

  get endpoints(): readonly TcpEndpoint[] {
    return this.balancer.endpoints;
  }

  /** Follows the address book: endpoints that stay are kept (with their state), new addresses join. */
  private refresh(): void {
    const { next, unresolved, gone } = nextEndpointSet(this.configured, this.balancer.endpoints, (t) => ({
      // URL keeps the brackets of an IPv6 literal; net.connect wants the bare address
      host: bareHost(t.url.hostname),
      port: Number(t.url.port),
      secure: t.url.protocol === 'tls:',
      label: t.label,
      servername: t.name,
      target: t,
      state: endpointState(this.name, t.label),
    }));
    this.balancer.setEndpoints(next, unresolved);
    // open connections to a removed address are left to end by themselves
    for (const e of gone) forgetEndpointState(this.name, e.label);
  }

  close(): void {
    this.unsubscribe?.();
  }

  /**
   * Opens one connection (TLS handshake included for tls://). `done` is called once: with
   * the socket when it can carry data, or with an error after the connect timeout or a
   * failure. The returned abort() destroys an attempt that is still in progress.
   */
  connect(ep: TcpEndpoint, done: (err: TcpConnectError | undefined, sock?: Socket) => void): () => void {
    const limiter = this.limiter;
    const overloaded = (e: UpstreamOverloaded) => done(new TcpConnectError(e.message, 'upstream_overloaded'));
    if (!limiter.startRequest()) {
      overloaded(limiter.requestsRefusal());
      return () => undefined;
    }
    let cancelled = false;
    let abortConnect: (() => void) | undefined;
    let ended = false;
    // the request slot and the connection slot end together, once
    const end = (withSlot: boolean) => {
      if (ended) return;
      ended = true;
      limiter.endRequest();
      if (withSlot) limiter.closed();
    };
    const start = () => {
      abortConnect = this.open(ep, () => end(true), done);
    };
    if (limiter.tryOpen()) {
      start();
      return () => abortConnect?.();
    }
    const w: Waiter = {
      owner: this,
      granted: () => {
        if (cancelled) end(true);
        else start();
      },
      expired: (e) => {
        end(false);
        overloaded(e);
      },
    };
    if (!limiter.wait(w)) {
      end(false);
      overloaded(limiter.pendingRefusal());
      return () => undefined;
    }
    return () => {
      if (abortConnect) return abortConnect();
      cancelled = true;
      limiter.cancel(w);
      end(false);
    };
  }

  /** One connection attempt; `closed` runs once when its socket is gone (failed or closed). */
  private open(ep: TcpEndpoint, closed: () => void, done: (err: TcpConnectError | undefined, sock?: Socket) => void): () => void {
    let settled = false;
    const sock: Socket = ep.secure
      ? tls.connect({
          host: ep.host,
          port: ep.port,
          // SNI cannot carry an IP address; a configured tls.server_name wins
          ...(ep.servername ? { servername: ep.servername } : net.isIP(ep.host) ? {} : { servername: ep.host }),
          ...this.tlsOptions,
        })
      : net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true });
    // the upstream may finish its answer while the client is still sending, and vice versa
    // (tls.connect takes this option at run time but its types do not declare it)
    sock.allowHalfOpen = true;
    sock.once('close', closed);
    const finish = (err: TcpConnectError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.off('error', onError);
      if (err) {
        sock.destroy();
        done(err);
        return;
      }
      this.balancer.begin(ep);
      sock.once('close', () => this.balancer.end(ep));
      done(undefined, sock);
    };
    // a failed handshake is explained (names seen and wanted, whose certificate was refused)
    const onError = (e: Error & { code?: string }) =>
      finish(new TcpConnectError(describeUpstreamTlsError(e, this.name, ep.label) ?? `${ep.label}: ${e.code ?? e.message}`, e.code ?? 'error'));
    // timeouts.connect: 0 = no limit
    const timer =
      this.connectTimeout > 0
        ? setTimeout(() => finish(new TcpConnectError(`${ep.label}: no connection within ${this.connectTimeout}ms (timeouts.connect)`, 'connect_timeout')), this.connectTimeout)
        : undefined;
    sock.once('error', onError);
    sock.once(ep.secure ? 'secureConnect' : 'connect', () => finish(undefined));
    return () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
    };
  }
}
