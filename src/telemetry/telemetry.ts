// The one place the proxy reports what happened: access/audit log lines (SPEC §9) and
// the hooks metrics attach to. Field names here are public contract.
import pino, { type Logger } from 'pino';
import { noActivity, type ActivityHooks } from './activity.js';

export interface AccessRecord {
  event: 'request' | 'connection' | 'tls_handshake_failed';
  listener: string;
  route?: string | undefined;
  remote_addr: string;
  tls_version?: string | null | undefined;
  client?: Record<string, string | undefined> | undefined;
  decision?: { allowed: boolean; rule?: string | undefined; reason?: string | undefined } | undefined;
  upstream?: string | undefined;
  status?: number | undefined;
  bytes_in?: number | undefined;
  bytes_out?: number | undefined;
  duration_ms?: number | undefined;
  request_id?: string | undefined;
  error?: string | undefined;
  method?: string | undefined;
  path?: string | undefined;
}

/** What the proxy reports as it runs; metrics implement these (they must be cheap: hot path). */
export interface MetricHooks {
  /** one TLS handshake finished: result is a SPEC §8 value (ok, no_cert, unknown_ca, ...) */
  handshake(listener: string, result: string): void;
  /** one HTTP request answered (by the upstream or by portcullis) */
  request(listener: string, route: string, status: number, seconds: number): void;
  /** one authorization decision */
  authz(listener: string, route: string, allowed: boolean): void;
  /** a connection opened (+1) or closed (-1) */
  connection(listener: string, delta: 1 | -1): void;
  /** a connection ended by an unexpected error while serving it (the error boundary) */
  connectionError(listener: string): void;
  /** one attempt on an upstream endpoint finished; result is a UPSTREAM_RESULTS value */
  upstreamResult(upstream: string, endpoint: string, result: string): void;
  /** a request went to another endpoint (failover or retry) */
  upstreamRetry(upstream: string): void;
  /** outlier detection ejected an endpoint */
  upstreamEjection(upstream: string, endpoint: string): void;
}

export interface Telemetry extends MetricHooks, ActivityHooks {
  /** operational log (stderr) */
  log: Logger;
  /** one line per request / connection / failed handshake; null when log.access is off */
  access: Logger | null;
}

export const noMetrics: MetricHooks = {
  handshake: () => undefined,
  request: () => undefined,
  authz: () => undefined,
  connection: () => undefined,
  connectionError: () => undefined,
  upstreamResult: () => undefined,
  upstreamRetry: () => undefined,
  upstreamEjection: () => undefined,
};

export interface LogConfig {
  level: 'debug' | 'info' | 'warn' | 'error';
  access: string;
}

const baseOptions = {
  base: undefined,
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label: string) => ({ level: label }) },
};

function destination(target: string) {
  if (target === 'stdout') return pino.destination({ dest: 1, sync: false });
  if (target === 'stderr') return pino.destination({ dest: 2, sync: false });
  return pino.destination({ dest: target, sync: false, mkdir: true });
}

/** `activity` records what the admin dashboard shows (telemetry/activity.ts); cheap, like the metric hooks. */
export function createTelemetry(cfg: LogConfig, metrics: MetricHooks = noMetrics, activity: ActivityHooks = noActivity): Telemetry {
  const log = pino({ ...baseOptions, level: cfg.level }, pino.destination({ dest: 2, sync: true }));
  const access = cfg.access === 'off' ? null : pino({ ...baseOptions, level: 'info' }, destination(cfg.access));
  return {
    log,
    access,
    handshake: metrics.handshake,
    request: metrics.request,
    authz: metrics.authz,
    connection: metrics.connection,
    connectionError: metrics.connectionError,
    upstreamResult: metrics.upstreamResult,
    upstreamRetry: metrics.upstreamRetry,
    upstreamEjection: metrics.upstreamEjection,
    clientActivity: activity.clientActivity,
    handshakeRefused: activity.handshakeRefused,
  };
}

/** Writes one access/audit line. Failed handshakes are warnings, everything else info. */
export function writeAccess(t: Telemetry, rec: AccessRecord): void {
  if (!t.access) return;
  if (rec.event === 'tls_handshake_failed') t.access.warn(rec);
  else t.access.info(rec);
}

export function flushTelemetry(t: Telemetry): void {
  try {
    t.access?.flush();
  } catch {
    // a destination that is not ready yet has nothing to flush
  }
}
