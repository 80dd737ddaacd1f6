// /healthz and /readyz answers, shared by the admin listener and the probe listener
// (admin.probe_address), so a Kubernetes probe gets the same answer on either.
export interface HealthSource {
  /** listeners bound and config loaded, and not shutting down */
  ready(): boolean;
  /** a shutdown signal came (readiness stays 503 while shutdown.delay and the drain run) */
  shuttingDown?(): boolean;
}

export function healthz(): { status: number; body: object } {
  return { status: 200, body: { status: 'ok' } };
}

export function readyz(src: HealthSource): { status: number; body: object } {
  if (src.ready()) return { status: 200, body: { status: 'ready' } };
  return { status: 503, body: { status: src.shuttingDown?.() ? 'shutting_down' : 'not_ready' } };
}
