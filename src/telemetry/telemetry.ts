// The one place the proxy reports what happened: access/audit log lines (SPEC §9) and
// the hooks metrics attach to. Field names here are public contract.
import pino, { type Logger } from 'pino';

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

export interface Telemetry {
  /** operational log (stderr) */
  log: Logger;
  /** one line per request / connection / failed handshake; null when log.access is off */
  access: Logger | null;
  handshake(listener: string, result: string): void;
}

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

export function createTelemetry(cfg: LogConfig): Telemetry {
  const log = pino({ ...baseOptions, level: cfg.level }, pino.destination({ dest: 2, sync: true }));
  const access = cfg.access === 'off' ? null : pino({ ...baseOptions, level: 'info' }, destination(cfg.access));
  return {
    log,
    access,
    handshake: () => undefined,
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
