// Upstream endpoint pools: one undici Pool (keep-alive, connection reuse) per endpoint,
// chosen round robin. Built once per configuration generation and closed when the
// generation is released.
import { Pool } from 'undici';
import type { ConnectionOptions } from 'node:tls';
import { buildUpstreamTls } from './upstream-tls.js';
import type { UpstreamConfig } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

export interface Endpoint {
  url: URL;
  /** endpoint as written in the config, for logs and metric labels */
  label: string;
  dispatcher: Pool;
}

export class UpstreamPool {
  readonly name: string;
  readonly endpoints: Endpoint[];
  readonly requestTimeout: number;
  readonly idleTimeout: number;
  private next = 0;

  constructor(name: string, cfg: UpstreamConfig, field: string) {
    this.name = name;
    this.requestTimeout = cfg.timeouts.request;
    this.idleTimeout = cfg.timeouts.idle;
    const tlsOpts: ConnectionOptions | undefined = cfg.tls ? buildUpstreamTls(cfg.tls, `${field}.tls`) : undefined;
    this.endpoints = cfg.endpoints.map((raw, i) => {
      const url = new URL(raw);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new PortcullisError(
          ErrorCodes.CONFIG_INVALID,
          `${field}.endpoints[${i}]: scheme ${url.protocol.slice(0, -1)} is not supported for HTTP routes yet; use http:// or https://`,
        );
      }
      const secure = url.protocol === 'https:';
      const dispatcher = new Pool(url.origin, {
        connect: {
          timeout: cfg.timeouts.connect,
          ...(secure ? tlsOpts ?? {} : {}),
        },
        // undici honours a shorter Keep-Alive hint from the upstream, so an upstream
        // that closes idle connections sooner does not cause resets on reuse
        keepAliveTimeout: cfg.timeouts.idle,
        headersTimeout: cfg.timeouts.request,
        bodyTimeout: cfg.timeouts.idle,
        pipelining: 1,
      });
      return { url, label: raw, dispatcher };
    });
  }

  /** Round robin over the endpoints. */
  pick(): Endpoint {
    const ep = this.endpoints[this.next]!;
    this.next = this.next + 1 === this.endpoints.length ? 0 : this.next + 1;
    return ep;
  }

  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.dispatcher.close().catch(() => undefined)));
  }
}
