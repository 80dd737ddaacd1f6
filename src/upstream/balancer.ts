// The one balancer every front end uses (HTTP/1.1, HTTP/2, gRPC, WebSocket, TCP): picks an
// endpoint among those that are available (active health check not failed, not ejected),
// records outcomes for passive outlier detection, and holds the retry budget.
//
// Policies (upstreams.<name>.balance):
//   round_robin    the next available endpoint in order
//   least_request  power of two choices (Envoy): two random available endpoints, the one
//                  with fewer requests in flight from this process
//   random         uniform over the available endpoints
//   hash           consistent hashing (a ring of 160 points per endpoint) on hash_on: a
//                  key keeps its endpoint while the set is stable; when one leaves, only
//                  the keys it held move (~1/N). No key (no client certificate, header
//                  absent): round robin.
// A pick never returns an endpoint in `tried`, so a retry goes to another endpoint.
//
// Outlier detection (upstreams.<name>.outlier) is per process, like nginx's max_fails:
// `consecutive_failures` failures in a row eject an endpoint for base_ejection x (times
// ejected so far + 1), at most max_ejection; a success resets the run. At most
// max_ejected_percent of the endpoints are ejected at once (but one always may be), and
// never the last endpoint that is still available (nginx: a lone server is never marked
// unavailable by max_fails).
import type { EndpointState } from './endpoint-state.js';
import type { OutlierConfig, UpstreamConfig } from '../config/schema.js';

/** `result` label of portcullis_upstream_requests_total (telemetry/metric-names.ts) */
export type UpstreamResult = 'ok' | '5xx' | 'connect_failure' | 'reset' | 'timeout';

/** What the balancer reports; the generation wires it to metrics and the log. */
export interface UpstreamObserver {
  result(upstream: string, endpoint: string, result: UpstreamResult): void;
  retry(upstream: string): void;
  ejected(upstream: string, endpoint: string, ms: number, reason: string): void;
  returned(upstream: string, endpoint: string): void;
}

export const noObserver: UpstreamObserver = {
  result: () => undefined,
  retry: () => undefined,
  ejected: () => undefined,
  returned: () => undefined,
};

export interface Balanced {
  label: string;
  state: EndpointState;
}

const POINTS_PER_ENDPOINT = 160;

/** FNV-1a with murmur3's finalizer: fast, and spreads similar strings over the ring. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Balancer<E extends Balanced> {
  private next = 0;
  private ring = new Uint32Array(0);
  private ringOwner = new Uint16Array(0);
  private _endpoints: readonly E[] = [];
  /** endpoint names with no address (DNS): `label: reason`, named in downReason() */
  private unresolved: readonly { label: string; reason: string }[] = [];
  private readonly outlier: OutlierConfig;
  private readonly balance: UpstreamConfig['balance'];
  readonly retries: number;
  private readonly budget: UpstreamConfig['retry_budget'];
  /** requests in flight and retries in flight, for the retry budget */
  private active = 0;
  private activeRetries = 0;

  constructor(
    readonly upstream: string,
    endpoints: readonly E[],
    cfg: Pick<UpstreamConfig, 'balance' | 'outlier' | 'retries' | 'retry_budget'>,
    private readonly observer: UpstreamObserver = noObserver,
  ) {
    this.balance = cfg.balance;
    this.outlier = cfg.outlier;
    this.retries = cfg.retries;
    this.budget = cfg.retry_budget;
    this.setEndpoints(endpoints);
  }

  get endpoints(): readonly E[] {
    return this._endpoints;
  }

  /**
   * A new endpoint set (DNS answered differently). Picks from now on see only these; a
   * request already on a removed endpoint keeps it. The hash ring is rebuilt from labels,
   * so keys of endpoints that stay keep their endpoint.
   */
  setEndpoints(endpoints: readonly E[], unresolved: readonly { label: string; reason: string }[] = []): void {
    this._endpoints = endpoints;
    this.unresolved = unresolved;
    if (this.next >= endpoints.length) this.next = 0;
    if (this.balance !== 'hash') return;
    const points: [number, number][] = [];
    for (let i = 0; i < endpoints.length; i++) {
      for (let p = 0; p < POINTS_PER_ENDPOINT; p++) points.push([hash32(`${endpoints[i]!.label}#${p}`), i]);
    }
    points.sort((a, b) => a[0] - b[0]);
    this.ring = Uint32Array.from(points, (p) => p[0]);
    this.ringOwner = Uint16Array.from(points, (p) => p[1]);
  }

  /** An available endpoint not in `tried`, or undefined when there is none. */
  pick(key?: string, tried?: readonly E[]): E | undefined {
    const eps = this.endpoints;
    const n = eps.length;
    const now = Date.now();
    const usable = (e: E) => e.state.available(now) && !(tried && tried.includes(e));
    if (this.balance === 'hash' && key !== undefined && n > 0) return this.pickHash(key, usable);
    if (this.balance === 'random' || this.balance === 'least_request') {
      const c = eps.filter(usable);
      if (c.length <= 1) return c[0];
      const a = Math.floor(Math.random() * c.length);
      if (this.balance === 'random') return c[a];
      let b = Math.floor(Math.random() * (c.length - 1));
      if (b >= a) b++;
      return c[b]!.state.inflight < c[a]!.state.inflight ? c[b] : c[a];
    }
    for (let i = 0; i < n; i++) {
      const e = eps[this.next]!;
      this.next = this.next + 1 === n ? 0 : this.next + 1;
      if (usable(e)) return e;
    }
    return undefined;
  }

  private pickHash(key: string, usable: (e: E) => boolean): E | undefined {
    const ring = this.ring;
    const h = hash32(key);
    // first point at or after h, wrapping around
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<number>();
    for (let k = 0; k < ring.length && seen.size < this.endpoints.length; k++) {
      const owner = this.ringOwner[(lo + k) % ring.length]!;
      if (seen.has(owner)) continue;
      seen.add(owner);
      const e = this.endpoints[owner]!;
      if (usable(e)) return e;
    }
    return undefined;
  }

  /** Why no endpoint can be picked: "2 of 2 endpoints are down (a: failed health check: ECONNREFUSED; b: ...)". */
  downReason(): string {
    const now = Date.now();
    const down = this.endpoints.filter((e) => !e.state.available(now));
    const list = [...this.unresolved.map((u) => `${u.label}: ${u.reason}`), ...down.map((e) => `${e.label}: ${e.state.downReason(now)}`)].join('; ');
    const total = this.endpoints.length + this.unresolved.length;
    return `${down.length + this.unresolved.length} of ${total} endpoints are down (${list})`;
  }

  // --- requests in flight and the retry budget

  begin(e: E): void {
    e.state.inflight++;
    this.active++;
  }

  end(e: E): void {
    e.state.inflight--;
    this.active--;
  }

  /** May one more retry start? (retries in flight within the budget) */
  takeRetry(): boolean {
    const allowed = Math.max(this.budget.min_concurrent, Math.floor((this.active * this.budget.percent) / 100));
    if (this.activeRetries >= allowed) return false;
    this.activeRetries++;
    this.observer.retry(this.upstream);
    return true;
  }

  /** A failover after a connect failure: counted as a retry, free of budget (nothing reached the upstream). */
  countRetry(): void {
    this.observer.retry(this.upstream);
  }

  retryDone(): void {
    if (this.activeRetries > 0) this.activeRetries--;
  }

  // --- outcomes (passive health)

  /** The endpoint answered (`status` < 500, or 5xx when count_5xx is off): the failure run ends. */
  succeeded(e: E, result: UpstreamResult = 'ok'): void {
    this.observer.result(this.upstream, e.label, result);
    const s = e.state;
    s.consecutiveFailures = 0;
    // a long healthy stretch forgives an earlier ejection (Envoy decrements its multiplier)
    if (s.ejections > 0 && !s.ejected() && Date.now() - s.ejectedUntil > this.outlier.base_ejection) s.ejections--;
  }

  /** A connect failure, reset, timeout or (count_5xx) a 5xx answer. */
  failed(e: E, result: UpstreamResult, reason: string): void {
    if (result === '5xx' && !this.outlier.count_5xx) return this.succeeded(e, '5xx');
    this.observer.result(this.upstream, e.label, result);
    const s = e.state;
    const now = Date.now();
    s.lastError = reason;
    s.lastErrorAt = now;
    s.consecutiveFailures++;
    const limit = this.outlier.consecutive_failures;
    if (limit === 0 || s.consecutiveFailures < limit || s.ejected(now)) return;
    // like nginx, the last endpoint still taking traffic is never ejected: passive failures
    // alone must not turn "some errors" into "every request refused"; an upstream that is
    // really all down is found by active health checks (503 no_healthy_upstream)
    if (!this.endpoints.some((x) => x !== e && x.state.available(now))) return;
    const ejectedNow = this.endpoints.filter((x) => x.state.ejected(now)).length;
    const max = Math.max(1, Math.floor((this.endpoints.length * this.outlier.max_ejected_percent) / 100));
    if (ejectedNow >= max) return;
    const ms = Math.min(this.outlier.max_ejection, this.outlier.base_ejection * (s.ejections + 1));
    s.ejections++;
    s.ejectedUntil = now + ms;
    s.consecutiveFailures = 0;
    this.observer.ejected(this.upstream, e.label, ms, reason);
    clearTimeout(s.returnTimer);
    s.returnTimer = setTimeout(() => {
      s.returnTimer = undefined;
      this.observer.returned(this.upstream, e.label);
    }, ms);
    s.returnTimer.unref();
  }
}
