// The probe listener (admin.probe_address): plain HTTP, read-only, serving only
// GET/HEAD /healthz and /readyz, like Istio's health port 15021. It lets Kubernetes
// probes (which come from the node, to the pod IP) work while the admin API itself stays
// on loopback or behind mTLS. Anything else gets 404 JSON naming what it serves; nothing
// here can change the proxy or reveal more than "up" and "ready".
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { healthz, readyz, type HealthSource } from './health.js';

export interface ProbeOptions {
  host: string;
  port: number;
  source: HealthSource;
  log: Logger;
}

export interface ProbeServer {
  port: number;
  close(): Promise<void>;
}

const SERVES = 'this is the probe listener (admin.probe_address): it serves only GET /healthz and GET /readyz; the admin API is on admin.address';

export async function startProbe(opts: ProbeOptions): Promise<ProbeServer> {
  const server = http.createServer((req, res) => {
    req.resume();
    const path = (req.url ?? '/').split('?', 1)[0]!;
    let status: number;
    let body: object;
    let allow: string | undefined;
    if (path !== '/healthz' && path !== '/readyz') {
      status = 404;
      body = { error: 'not_found', message: `no endpoint ${path} here; ${SERVES}` };
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      status = 405;
      allow = 'GET, HEAD';
      body = { error: 'method_not_allowed', message: `${path} accepts GET and HEAD, not ${req.method}; ${SERVES}` };
    } else {
      ({ status, body } = path === '/healthz' ? healthz() : readyz(opts.source));
    }
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...(allow ? { allow } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const addr = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
      reject(new PortcullisError(ErrorCodes.LISTEN_FAILED, `admin: cannot listen on ${addr} for probes (${err.code ?? err.message}); change admin.probe_address or stop what uses it`, { path: 'admin.probe_address', cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => opts.log.error({ event: 'admin_error', err }, 'probe listener error'));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
