// Active health checks (upstreams.<name>.health_check): one prober per endpoint for the
// whole process tree. The primary runs them (runtime/primary.ts) and sends every change of
// an endpoint's health to the workers over IPC, so probe traffic does not grow with
// `workers`; a process without workers (the demo) runs them itself.
//
// A probe uses the endpoint's own scheme: http and https (with the upstream's tls, the
// client certificate included, so mTLS upstreams can be checked) get GET <path> over
// HTTP/1.1, h2c a GET over cleartext HTTP/2, tcp a connect, tls a connect and handshake.
// Healthy: any 2xx or 3xx unless `expect` lists the statuses. The first probe of each
// endpoint is jittered over one interval (a restart does not probe every endpoint at once),
// later ones by up to 10%. The first result decides at once; after that `unhealthy`
// failures in a row mark an endpoint down and `healthy` successes in a row bring it back.
// An endpoint written with a host name has one prober per address (dns.ts): update() is
// called again when an address set changes; a new address starts healthy until its
// first probe says otherwise, as every endpoint does.
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { buildUpstreamTls } from './upstream-tls.js';
import type { Config, HealthCheckConfig, UpstreamConfig } from '../config/schema.js';
import type { ProbeOutcome } from './endpoint-state.js';
import { endpointTargets, type EndpointTarget } from './dns.js';

export interface ProbeReport {
  upstream: string;
  endpoint: string;
  healthy: boolean;
  /** the verdict changed with this probe (log it, tell the workers) */
  changed: boolean;
  outcome: ProbeOutcome;
}

export interface ProberStatus {
  upstream: string;
  endpoint: string;
  healthy: boolean;
  last_probe: ProbeOutcome | null;
}

type ProbeFn = (timeoutMs: number, done: (error: string | undefined) => void) => void;

function probeFor(target: EndpointTarget, hc: HealthCheckConfig, tlsOpts: ConnectionOptions | undefined): ProbeFn {
  const url = target.url;
  const scheme = url.protocol.slice(0, -1);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // a resolved address keeps its name for SNI and the certificate check
  if (target.name && !tlsOpts?.servername) tlsOpts = { ...tlsOpts, servername: target.name };
  const statusOk = (s: number) => (hc.expect ? hc.expect.includes(s) : s >= 200 && s < 400);
  const verdict = (s: number) => (statusOk(s) ? undefined : `status ${s}`);
  if (scheme === 'tcp' || scheme === 'tls') {
    const port = Number(url.port);
    return (timeoutMs, done) => {
      const sock =
        scheme === 'tls'
          ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...tlsOpts })
          : net.connect({ host, port });
      const finish = (err: string | undefined) => {
        clearTimeout(timer);
        sock.destroy();
        done(err);
      };
      const timer = setTimeout(() => finish(`no ${scheme === 'tls' ? 'handshake' : 'connection'} within ${timeoutMs} ms`), timeoutMs);
      sock.once('error', (e: Error & { code?: string }) => finish(e.code ?? e.message));
      sock.once(scheme === 'tls' ? 'secureConnect' : 'connect', () => finish(undefined));
    };
  }
  if (scheme === 'h2c') {
    return (timeoutMs, done) => {
      const session = http2.connect(`http://${url.host}`);
      const authority = target.authority;
      let settled = false;
      const finish = (err: string | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session.destroy();
        done(err);
      };
      const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs);
      session.once('error', (e: Error & { code?: string }) => finish(e.code ?? e.message));
      const req = session.request({ ':method': 'GET', ':path': hc.path, ':authority': authority, 'user-agent': 'portcullis-health-check' }, { endStream: true });
      req.once('response', (h) => finish(verdict(Number(h[':status']))));
      // a refused connection reaches the stream as a cancel whose cause is the errno: name that
      req.once('error', (e: Error & { code?: string; cause?: unknown }) => {
        const root = (e.code === 'ERR_HTTP2_STREAM_CANCEL' && e.cause instanceof Error ? e.cause : e) as Error & { code?: string };
        finish(root.code ?? root.message);
      });
      req.resume();
    };
  }
  const secure = scheme === 'https';
  return (timeoutMs, done) => {
    let settled = false;
    const finish = (err: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      done(err);
    };
    const req = (secure ? https : http).request({
      host,
      port: url.port || (secure ? 443 : 80),
      method: 'GET',
      path: hc.path,
      headers: { host: target.authority, 'user-agent': 'portcullis-health-check', connection: 'close' },
      agent: false,
      ...(secure ? { ...tlsOpts, ALPNProtocols: ['http/1.1'] } : {}),
    });
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs);
    req.once('response', (res) => {
      res.resume();
      finish(verdict(res.statusCode ?? 0));
    });
    req.once('error', (e: Error & { code?: string }) => finish(e.code ?? e.message));
    req.end();
  };
}

class EndpointProber {
  healthy = true;
  last: ProbeOutcome | undefined;
  private run = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly upstream: string,
    readonly endpoint: string,
    readonly key: string,
    private readonly hc: HealthCheckConfig,
    private readonly probe: ProbeFn,
    private readonly report: (r: ProbeReport) => void,
  ) {}

  start(): void {
    this.schedule(Math.random() * this.hc.interval);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.once(), ms);
    this.timer.unref();
  }

  private once(): void {
    this.probe(this.hc.timeout, (error) => {
      if (this.stopped) return;
      const ok = error === undefined;
      const first = this.last === undefined;
      this.last = { ok, at: Date.now(), ...(error ? { error } : {}) };
      // a run of successes (positive) or failures (negative)
      this.run = ok ? Math.max(0, this.run) + 1 : Math.min(0, this.run) - 1;
      let next = this.healthy;
      if (first) next = ok;
      else if (this.healthy && this.run <= -this.hc.unhealthy) next = false;
      else if (!this.healthy && this.run >= this.hc.healthy) next = true;
      const changed = next !== this.healthy;
      this.healthy = next;
      this.report({ upstream: this.upstream, endpoint: this.endpoint, healthy: next, changed, outcome: this.last });
      this.schedule(this.hc.interval * (1 + Math.random() * 0.1));
    });
  }
}

/**
 * Every prober of a configuration. update() on reload keeps the probers (and their
 * verdicts) of endpoints whose check did not change, and starts or stops the others.
 */
export class HealthProbers {
  private readonly probers = new Map<string, EndpointProber>();

  constructor(private readonly report: (r: ProbeReport) => void) {}

  update(config: Pick<Config, 'upstreams'>): void {
    const wanted = new Map<string, { name: string; target: EndpointTarget; up: UpstreamConfig; hc: HealthCheckConfig }>();
    for (const [name, up] of Object.entries(config.upstreams)) {
      if (!up.health_check) continue;
      for (const raw of up.endpoints) {
        for (const target of endpointTargets(raw).targets) {
          const key = JSON.stringify([name, target.label, target.authority, up.health_check, up.tls ?? null]);
          wanted.set(key, { name, target, up, hc: up.health_check });
        }
      }
    }
    for (const [key, p] of this.probers) {
      if (wanted.has(key)) continue;
      p.stop();
      this.probers.delete(key);
    }
    for (const [key, w] of wanted) {
      if (this.probers.has(key)) continue;
      const scheme = w.target.url.protocol.slice(0, -1);
      const tlsOpts = (scheme === 'https' || scheme === 'tls') && w.up.tls ? buildUpstreamTls(w.up.tls, `upstreams.${w.name}.tls`) : undefined;
      const p = new EndpointProber(w.name, w.target.label, key, w.hc, probeFor(w.target, w.hc, tlsOpts), this.report);
      this.probers.set(key, p);
      p.start();
    }
  }

  /** The current verdicts (for /status, and for a worker that starts). */
  status(): ProberStatus[] {
    return [...this.probers.values()].map((p) => ({ upstream: p.upstream, endpoint: p.endpoint, healthy: p.healthy, last_probe: p.last ?? null }));
  }

  stop(): void {
    for (const p of this.probers.values()) p.stop();
    this.probers.clear();
  }
}
