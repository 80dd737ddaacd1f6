// The `upstreams` section of GET /status (docs/upstreams.md "/status"): every endpoint with
// its health check state and last probe (known in the primary, which runs the probers),
// and its live per-worker state (requests in flight, passive ejection, last error), which
// each worker reports through telemetry/cluster-query.ts (kind `upstreams`) and the primary
// merges here: in_flight summed, ejected when ejected in any worker (with how many),
// last_error the most recent of any worker. The field names are a contract (the /ui
// dashboard reads them): add fields, never rename.
import type { EndpointState, ProbeOutcome } from './endpoint-state.js';
import { endpointTargets, hostAddresses, bareHost, isNamedEndpoint } from './dns.js';

/** The cluster-query kind a worker answers with workerUpstreamSnapshot(). */
export const UPSTREAMS_QUERY = 'upstreams';

/** One worker's live state of one endpoint. */
export interface WorkerEndpointState {
  in_flight: number;
  /** ms since the epoch; 0 = not ejected */
  ejected_until: number;
  consecutive_failures: number;
  last_error: string | null;
  /** ms since the epoch; 0 = never */
  last_error_at: number;
}

/** One worker's answer: upstream name -> endpoint label -> state. */
export type WorkerUpstreams = Record<string, Record<string, WorkerEndpointState>>;

/** The worker side: the state of every endpoint of the generation it serves. */
export function workerUpstreamSnapshot(upstreams: Iterable<{ name: string; endpoints: readonly { label: string; state: EndpointState }[] }>): WorkerUpstreams {
  const out: WorkerUpstreams = {};
  const now = Date.now();
  for (const u of upstreams) {
    const eps: Record<string, WorkerEndpointState> = {};
    for (const e of u.endpoints) {
      const s = e.state;
      eps[e.label] = {
        in_flight: s.inflight,
        ejected_until: s.ejected(now) ? s.ejectedUntil : 0,
        consecutive_failures: s.consecutiveFailures,
        last_error: s.lastError ?? null,
        last_error_at: s.lastErrorAt,
      };
    }
    out[u.name] = eps;
  }
  return out;
}

interface UpstreamLike {
  endpoints: readonly string[];
  balance: string;
  health_check?: unknown;
  dns_refresh: number;
}

interface Verdict {
  upstream: string;
  endpoint: string;
  healthy: boolean;
  last_probe: ProbeOutcome | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The primary side: one entry per upstream, one per endpoint (every address of a named
 * endpoint), merged from the probers' verdicts and the workers' answers.
 */
export function upstreamStatus(upstreams: Record<string, UpstreamLike>, verdicts: readonly Verdict[], workers: readonly WorkerUpstreams[]) {
  const byKey = new Map(verdicts.map((v) => [`${v.upstream}\0${v.endpoint}`, v]));
  return Object.entries(upstreams).map(([name, up]) => {
    const unresolved: { endpoint: string; error: string }[] = [];
    const endpoints = up.endpoints.flatMap((raw) => {
      const { targets, unresolved: why } = endpointTargets(raw);
      if (why) unresolved.push({ endpoint: raw, error: why });
      return targets.map((t) => {
        const v = byKey.get(`${name}\0${t.label}`);
        const p = v?.last_probe;
        let inFlight = 0;
        let ejectedIn = 0;
        let ejectedUntil = 0;
        let lastErr: { at: number; error: string } | undefined;
        for (const w of workers) {
          const s = w[name]?.[t.label];
          if (!s) continue;
          inFlight += s.in_flight;
          if (s.ejected_until > 0) {
            ejectedIn++;
            ejectedUntil = Math.max(ejectedUntil, s.ejected_until);
          }
          if (s.last_error && s.last_error_at > (lastErr?.at ?? 0)) lastErr = { at: s.last_error_at, error: s.last_error };
        }
        return {
          endpoint: t.label,
          config: t.config,
          address: t.address,
          name: t.name ?? null,
          state: !v ? 'unchecked' : v.healthy ? 'healthy' : 'unhealthy',
          last_probe: p ? { at: iso(p.at), ok: p.ok, ...(p.error ? { error: p.error } : {}) } : null,
          in_flight: inFlight,
          ejected: ejectedIn > 0,
          ejected_workers: ejectedIn,
          ejected_until: ejectedUntil > 0 ? iso(ejectedUntil) : null,
          last_error: lastErr ? { at: iso(lastErr.at), error: lastErr.error } : null,
        };
      });
    });
    const hosts = [...new Set(up.endpoints.filter(isNamedEndpoint).map((raw) => bareHost(new URL(raw).hostname).toLowerCase()))];
    return {
      name,
      balance: up.balance,
      health_check: !!up.health_check,
      /** how many workers answered: ejected_workers is out of this */
      workers: workers.length,
      endpoints,
      unresolved,
      dns: hosts.map((host) => {
        const h = hostAddresses(host);
        return { host, addresses: h?.addresses ?? [], error: h?.error ?? null, looked_up_at: h?.at ? iso(h.at) : null, refresh_ms: up.dns_refresh };
      }),
    };
  });
}
