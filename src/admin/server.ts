// The admin listener (SPEC §1 `admin`): loopback by default, serving /healthz, /readyz,
// /metrics, /status and POST /reload from an AdminProvider the runtime supplies. Plain
// HTTP, or with admin.tls HTTPS that requires a client certificate from its own
// client_ca and admin.allow (admin-tls.ts): a connection is judged once at its
// handshake, and a refused one gets 401/403 JSON with the reason and is closed. It holds
// no state of its own, so it can run in the primary, which never serves proxy traffic.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { isIP, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { prometheusContentType } from 'prom-client';
import { ErrorCodes, HttpErrors, PortcullisError } from '../errors.js';
import { startHandshake } from '../tls/listener-tls.js';
import { judgeAdminClient, type AdminTls, type AdminVerdict } from './admin-tls.js';
import { healthz, readyz } from './health.js';
import { uiRoutes } from './ui.js';

export interface ReloadResponse {
  ok: boolean;
  generation?: number | undefined;
  error?: string | undefined;
}

export interface AdminProvider {
  /** listeners bound and config loaded, and not shutting down */
  ready(): boolean;
  /** a shutdown signal came (readiness stays 503 while shutdown.delay and the drain run) */
  shuttingDown?(): boolean;
  /** Prometheus text (e.g. collectClusterMetrics) */
  metrics(): Promise<string>;
  /** the /status document (e.g. buildStatus) */
  status(): Promise<object> | object;
  /** builds and swaps in a new generation; absent where reload is not supported */
  reload?(): Promise<ReloadResponse>;
  /** the dashboard's data (admin/ui-data.ts); /ui is served only where this is given */
  ui?(): Promise<object> | object;
}

export interface AdminOptions {
  host: string;
  port: number;
  provider: AdminProvider;
  log: Logger;
  /** admin.tls: HTTPS with client certificates and admin.allow (buildAdminTls) */
  tls?: AdminTls | undefined;
}

export interface AdminServer {
  /** the bound port (useful with port 0) */
  port: number;
  /** a reload's admin.tls (rotated certificate, CA, CRL, allow rules): new connections get it */
  setTls(tls: AdminTls): void;
  close(): Promise<void>;
}

/** How long an admin client may take for its TLS handshake. */
const ADMIN_HANDSHAKE_MS = 10_000;

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function errorBody(error: string, message: string) {
  return { error, message };
}

function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** The host part of a Host header ("[::1]:9901" -> "::1", "localhost:9901" -> "localhost"). */
function hostOnly(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const { provider, log } = opts;
  const loopbackOnly = isLoopbackHost(opts.host);
  // one reload at a time: two overlapping generation builds would race to swap in
  let reloadChain: Promise<unknown> = Promise.resolve();

  const routes: Record<string, { method: 'GET' | 'POST'; handle: Handler }> = {
    '/healthz': { method: 'GET', handle: (_q, res) => { const h = healthz(); send(res, h.status, h.body); } },
    '/readyz': { method: 'GET', handle: (_q, res) => { const r = readyz(provider); send(res, r.status, r.body); } },
    '/metrics': {
      method: 'GET',
      handle: async (_q, res) => {
        const text = await provider.metrics();
        send(res, 200, text, { 'content-type': prometheusContentType });
      },
    },
    '/status': { method: 'GET', handle: async (_q, res) => send(res, 200, await provider.status()) },
    '/reload': {
      method: 'POST',
      handle: async (_q, res) => {
        const reload = provider.reload?.bind(provider);
        if (!reload) {
          send(res, 501, { ok: false, error: 'this process cannot reload its configuration' });
          return;
        }
        const run = reloadChain.then(() => reload());
        reloadChain = run.catch(() => undefined);
        let r: ReloadResponse;
        try {
          r = await run;
        } catch (err) {
          r = { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
        if (r.ok) send(res, 200, { ok: true, ...(r.generation !== undefined ? { generation: r.generation } : {}) });
        else send(res, 500, { ok: false, generation: r.generation, error: r.error ?? 'reload failed; see the log for the reason' });
      },
    },
    // GET /ui and /ui/data.json (admin/ui.ts), behind the same guards as everything here
    ...(provider.ui ? uiRoutes(provider.ui.bind(provider)) : {}),
  };

  let adminTls = opts.tls;
  /** each TLS connection's verdict, decided once when its handshake completed */
  const verdicts = new WeakMap<Socket, AdminVerdict>();

  const server = http.createServer(async (req, res) => {
    // nothing here reads a body; discard one if sent so keep-alive still works
    req.resume();
    const path = (req.url ?? '/').split('?', 1)[0]!;
    try {
      if (adminTls) {
        const v = verdicts.get(req.socket);
        if (!v || !v.ok) {
          const code = v?.code ?? 'client_certificate_invalid';
          send(res, HttpErrors[code], errorBody(code, v?.message ?? 'the client certificate could not be judged; connect again'), { connection: 'close' });
          return;
        }
      }
      // A browser page must not drive the admin API: a DNS-rebound name reaching a
      // loopback-only listener, or a cross-site form POSTing /reload.
      if (loopbackOnly && !isLoopbackHost(hostOnly(req.headers.host ?? ''))) {
        send(res, 403, errorBody('forbidden', 'the admin listener answers only requests addressed to localhost or a loopback IP'));
        return;
      }
      if (req.method === 'POST' && req.headers.origin !== undefined) {
        send(res, 403, errorBody('forbidden', 'the admin API does not accept requests from web pages (Origin header present)'));
        return;
      }
      const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
      if (!route) {
        send(res, 404, errorBody('not_found', `no admin endpoint ${path}; try /healthz, /readyz, /metrics, /status, /ui or POST /reload`));
        return;
      }
      const method = req.method === 'HEAD' && route.method === 'GET' ? 'GET' : req.method;
      if (method !== route.method) {
        const allow = route.method === 'GET' ? 'GET, HEAD' : 'POST';
        send(res, 405, errorBody('method_not_allowed', `${path} accepts ${allow}, not ${req.method}`), { allow });
        return;
      }
      await route.handle(req, res);
    } catch (err) {
      log.error({ event: 'admin_error', path, err }, `admin ${path} failed`);
      if (!res.headersSent) send(res, 500, errorBody('internal_error', `admin ${path} failed: ${err instanceof Error ? err.message : String(err)}`));
      else res.destroy();
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  // With admin.tls the socket that listens is a net.Server: each connection's handshake
  // runs on the current admin.tls runtime (a reload swaps it), is judged, and only then
  // handed to the HTTP server, as the proxy's listeners do.
  const listening: net.Server = adminTls ? net.createServer((raw) => onTlsConnection(raw)) : server;
  if (adminTls) server.emit('listening'); // starts http.Server's header timeout bookkeeping
  function onTlsConnection(raw: Socket): void {
    const a = adminTls!;
    const remote = raw.remoteAddress;
    raw.on('error', () => raw.destroy());
    let sock: TLSSocket;
    try {
      sock = startHandshake(raw, a.tls, ['http/1.1'], listening);
    } catch (err) {
      log.warn({ event: 'admin_error', err }, 'admin: TLS handshake could not start');
      raw.destroy();
      return;
    }
    const timer = setTimeout(() => sock.destroy(), ADMIN_HANDSHAKE_MS);
    sock.once('close', () => clearTimeout(timer));
    sock.on('error', (err: Error & { code?: string }) => {
      if (!verdicts.has(sock)) log.info({ event: 'admin_refused', remote_addr: remote, reason: err.code ?? err.message }, `admin: TLS handshake from ${remote} failed (${err.code ?? err.message})`);
      sock.destroy();
    });
    sock.once('secure', () => {
      clearTimeout(timer);
      judgeAdminClient(sock, a).then(
        (v) => {
          if (sock.destroyed) return;
          verdicts.set(sock, v);
          if (!v.ok) log.warn({ event: 'admin_refused', remote_addr: remote, reason: v.reason, error: v.code }, `admin: refused ${remote}: ${v.message}`);
          server.emit('connection', sock);
        },
        () => sock.destroy(),
      )
      // whatever goes wrong with one admin connection ends that connection, never the primary
      .catch((err: unknown) => {
        log.warn({ event: 'admin_error', err }, 'admin: a connection failed');
        sock.destroy();
      });
    });
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const addr = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
      reject(
        new PortcullisError(ErrorCodes.LISTEN_FAILED, `admin: cannot listen on ${addr} (${err.code ?? err.message}); change admin.address or stop what uses it`, {
          path: 'admin.address',
          cause: err,
        }),
      );
    };
    listening.once('error', onError);
    listening.listen(opts.port, opts.host, () => {
      listening.off('error', onError);
      resolve();
    });
  });
  listening.on('error', (err) => log.error({ event: 'admin_error', err }, 'admin listener error'));
  const port = (listening.address() as AddressInfo).port;
  log.debug({ event: 'admin_listening', host: opts.host, port, tls: !!adminTls }, 'admin listener ready');

  return {
    port,
    setTls: (t) => {
      // a plain admin listener stays plain until a restart (primary.ts warns)
      if (adminTls) adminTls = t;
    },
    close: () =>
      new Promise<void>((resolve) => {
        listening.close(() => resolve());
        // with admin.tls the HTTP server never listened: close() stops its timeout sweep
        if (listening !== server) server.close();
        server.closeIdleConnections();
      }),
  };
}
