// What one process knows about the health of each upstream endpoint: the active health
// check's verdict (sent by the primary's prober, see health-check.ts), passive failure
// counts and ejections (outlier.ts), and requests in flight (least_request). Kept per
// process and keyed by upstream name and endpoint, not per configuration generation, so a
// reload does not forget that an endpoint is down or ejected.

export interface ProbeOutcome {
  ok: boolean;
  /** ms since the epoch */
  at: number;
  /** why the probe failed: errno, timeout, or the status it got */
  error?: string | undefined;
}

export class EndpointState {
  /** the active health check's verdict; true until a configured check has failed */
  probeHealthy = true;
  lastProbe: ProbeOutcome | undefined;
  /** requests (or TCP connections) in flight from this process */
  inflight = 0;
  /** failures in a row since the last success (outlier detection) */
  consecutiveFailures = 0;
  /** ms since the epoch until which the endpoint is ejected; 0 = not ejected */
  ejectedUntil = 0;
  /** how many times it was ejected (the ejection time grows with it) */
  ejections = 0;
  lastError: string | undefined;
  lastErrorAt = 0;
  /** pending "returned from ejection" timer */
  returnTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly upstream: string,
    readonly endpoint: string,
  ) {}

  ejected(now = Date.now()): boolean {
    return this.ejectedUntil > now;
  }

  available(now = Date.now()): boolean {
    return this.probeHealthy && this.ejectedUntil <= now;
  }

  /** "failed health check: ECONNREFUSED", "ejected for 12 s more after 5 failures in a row: ..." */
  downReason(now = Date.now()): string {
    if (!this.probeHealthy) return `failed health check${this.lastProbe?.error ? `: ${this.lastProbe.error}` : ''}`;
    if (this.ejected(now)) return `ejected for ${Math.ceil((this.ejectedUntil - now) / 1000)} s more after failures in a row${this.lastError ? `: ${this.lastError}` : ''}`;
    return 'up';
  }
}

const states = new Map<string, EndpointState>();

/** The one state object of an endpoint in this process (created on first use). */
export function endpointState(upstream: string, endpoint: string): EndpointState {
  const key = `${upstream}\u0000${endpoint}`;
  let s = states.get(key);
  if (!s) states.set(key, (s = new EndpointState(upstream, endpoint)));
  return s;
}

/** Drops an endpoint's state (its address left the DNS answer); a later one starts afresh. */
export function forgetEndpointState(upstream: string, endpoint: string): void {
  const key = `${upstream}\u0000${endpoint}`;
  const s = states.get(key);
  if (s) clearTimeout(s.returnTimer);
  states.delete(key);
}

/** Every endpoint state of this process (for /status and tests). */
export function allEndpointStates(): EndpointState[] {
  return [...states.values()];
}

/**
 * An active health check verdict from the prober; returns true when it changed the
 * endpoint's health (the caller logs changes once).
 */
export function applyProbe(upstream: string, endpoint: string, healthy: boolean, outcome: ProbeOutcome): boolean {
  const s = endpointState(upstream, endpoint);
  s.lastProbe = outcome;
  if (s.probeHealthy === healthy) return false;
  s.probeHealthy = healthy;
  if (healthy) {
    // it passes again after failing: a passive ejection from the outage ends too (Envoy's
    // successful_active_health_check_uneject_host), or a restarted endpoint would sit out
    // the rest of its ejection
    s.ejectedUntil = 0;
    s.consecutiveFailures = 0;
  }
  return true;
}
