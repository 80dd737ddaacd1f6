// The /status document of the admin listener: what runs (version, uptime, workers,
// listeners, config generation, last reload) and which certificates are loaded with how
// long each has left. Field names are public contract, like metric names.
import type { LoadedCert } from '../tls/listener-tls.js';
import { rfc3339 } from '../pki/identity.js';

export interface CertificateStatus {
  role: LoadedCert['role'];
  file: string;
  subject: string;
  issuer: string;
  serial: string;
  /** RFC 3339 UTC, seconds precision */
  not_after: string;
  /** whole days until not_after, rounded down; negative once expired */
  days_left: number;
}

export interface ReloadOutcome {
  at: Date;
  ok: boolean;
  generation?: number | undefined;
  error?: string | undefined;
}

export interface StatusInput {
  version: string;
  startedAt: Date;
  generation: number;
  certificates: readonly LoadedCert[];
  /** passed through as given (e.g. id, pid, ready, started per worker) */
  workers?: readonly unknown[] | undefined;
  /** passed through as given (e.g. name, address, protocol, client_auth per listener) */
  listeners?: readonly unknown[] | undefined;
  lastReload?: ReloadOutcome | undefined;
  now?: Date | undefined;
}

export interface StatusDocument {
  status: 'ok';
  version: string;
  started_at: string;
  uptime_seconds: number;
  generation: number;
  workers: readonly unknown[];
  listeners: readonly unknown[];
  certificates: CertificateStatus[];
  last_reload: { at: string; ok: boolean; generation?: number; error?: string } | null;
}

const DAY_MS = 86_400_000;

/**
 * One entry per distinct certificate: a CA file shared by several listeners is listed
 * once. Order is kept (server certificates first, as the listeners load them).
 */
export function certificateStatus(certs: readonly LoadedCert[], now: Date = new Date()): CertificateStatus[] {
  const seen = new Set<string>();
  const out: CertificateStatus[] = [];
  for (const c of certs) {
    const key = JSON.stringify([c.role, c.file, c.serial, c.subject, c.notAfter.getTime()]);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      role: c.role,
      file: c.file,
      subject: c.subject,
      issuer: c.issuer,
      serial: c.serial,
      not_after: rfc3339(c.notAfter),
      days_left: Math.floor((c.notAfter.getTime() - now.getTime()) / DAY_MS),
    });
  }
  return out;
}

export function buildStatus(input: StatusInput): StatusDocument {
  const now = input.now ?? new Date();
  const r = input.lastReload;
  return {
    status: 'ok',
    version: input.version,
    started_at: rfc3339(input.startedAt),
    uptime_seconds: Math.max(0, Math.floor((now.getTime() - input.startedAt.getTime()) / 1000)),
    generation: input.generation,
    workers: input.workers ?? [],
    listeners: input.listeners ?? [],
    certificates: certificateStatus(input.certificates, now),
    last_reload: r
      ? {
          at: rfc3339(r.at),
          ok: r.ok,
          ...(r.generation !== undefined ? { generation: r.generation } : {}),
          ...(r.error !== undefined ? { error: r.error } : {}),
        }
      : null,
  };
}
