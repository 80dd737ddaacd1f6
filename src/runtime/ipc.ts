// Messages between the primary and its workers (node:cluster IPC). Kept in one place so
// both sides agree on the shapes. (Snapshot queries -- /metrics, /status, /ui -- use
// their own query-req / query-res messages, defined in telemetry/cluster-query.ts.)

import type { HostAddresses } from '../upstream/dns.js';
import type { LoadedConfig } from '../config/schema.js';
import { PortcullisError, PortcullisErrors } from '../errors.js';

/** An active health check verdict (the primary runs the probers; see upstream/health-check.ts). */
export interface HealthUpdate {
  upstream: string;
  endpoint: string;
  healthy: boolean;
  outcome: { ok: boolean; at: number; error?: string | undefined };
}

export type ToWorker =
  | { pcl: 'shutdown'; drainMs: number }
  /** endpoints whose health check verdict changed (or all of them, for a worker that starts) */
  | { pcl: 'health'; updates: HealthUpdate[] }
  /** host names whose address set (or lookup error) changed, or all of them for a worker that starts (upstream/dns.ts) */
  | { pcl: 'dns'; hosts: HostAddresses[] }
  | { pcl: 'ticket-secret'; secret: string }
  /**
   * The configuration the primary validated, answering a starting worker's config-request:
   * workers never parse or validate the file themselves (and so never load zod and yaml)
   */
  | { pcl: 'config'; config: LoadedConfig }
  /** reload phase 1: build generation `id` from `config` (validated by the primary), change nothing yet */
  | { pcl: 'prepare'; id: number; config: LoadedConfig }
  /** reload phase 2: every worker prepared `id`; swap it in */
  | { pcl: 'commit'; id: number }
  /** some worker failed to prepare `id`; drop it */
  | { pcl: 'abort'; id: number };

export type FromWorker =
  /** a starting worker asks for the configuration to serve (answered with 'config') */
  | { pcl: 'config-request' }
  | { pcl: 'ready'; generation: number; addresses: Record<string, { host: string; port: number }> }
  | { pcl: 'fatal'; message: string; code?: string }
  | { pcl: 'prepared'; id: number; ok: boolean; error?: string }
  | { pcl: 'committed'; id: number; ok: boolean; error?: string; addresses?: Record<string, { host: string; port: number }> };

export function isPortcullisMessage(m: unknown): m is { pcl: string } {
  return typeof m === 'object' && m !== null && typeof (m as { pcl?: unknown }).pcl === 'string';
}

/** How long in-flight requests may take on shutdown unless --drain-timeout says otherwise. */
export const DEFAULT_DRAIN_MS = 30_000;

/** Environment variables the primary sets for a worker. */
export const WORKER_ENV = {
  ticketSecret: 'PORTCULLIS_TICKET_SECRET',
  drainMs: 'PORTCULLIS_DRAIN_MS',
  generation: 'PORTCULLIS_GENERATION',
  /** JSON HealthUpdate[]: the verdicts so far, applied before the worker serves */
  health: 'PORTCULLIS_HEALTH',
  /** JSON HostAddresses[]: what the primary's resolver knows, applied before the worker builds its generation */
  dns: 'PORTCULLIS_DNS',
} as const;

/** A worker's failure as the one line (or lines) the primary logs and /status shows. */
export function describeError(err: unknown): string {
  if (err instanceof PortcullisErrors) return err.errors.map((e) => `${e.message} [${e.code}]`).join('\n');
  if (err instanceof PortcullisError) return `${err.message} [${err.code}]`;
  return (err as Error)?.message ?? String(err);
}
