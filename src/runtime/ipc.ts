// Messages between the primary and its workers (node:cluster IPC). Kept in one place so
// both sides agree on the shapes.

export type ToWorker =
  | { pcl: 'shutdown'; drainMs: number }
  | { pcl: 'ticket-secret'; secret: string };

export type FromWorker =
  | { pcl: 'ready'; addresses: Record<string, { host: string; port: number }> }
  | { pcl: 'fatal'; message: string; code?: string };

export function isPortcullisMessage(m: unknown): m is { pcl: string } {
  return typeof m === 'object' && m !== null && typeof (m as { pcl?: unknown }).pcl === 'string';
}

/** Environment variables the primary sets for a worker. */
export const WORKER_ENV = {
  ticketSecret: 'PORTCULLIS_TICKET_SECRET',
  drainMs: 'PORTCULLIS_DRAIN_MS',
} as const;
