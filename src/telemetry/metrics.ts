// Prometheus metrics (SPEC §8, names in metric-names.ts): the per-request hooks a worker
// records, the gauges and counters the primary owns, and the scrape that merges every
// worker's registry with the primary's into one Prometheus text.
//
// Why the worker side does not use prom-client's Counter/Histogram for recording: their
// label children re-hash the label object (string concatenation and label validation)
// on every inc()/observe(); one request() cost ~3 µs that way. Here each (listener, route,
// ...) series is a plain object found with Map lookups and bumped in place; prom-client
// only sees the values when the registry is collected (at scrape time), through metric
// objects with the same get()/reset() shape as its own.
import { answerClusterQueries, queryWorkers, type QueryOptions } from './cluster-query.js';
import { AggregatorRegistry, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { MetricHooks } from './telemetry.js';
import type { LoadedCert } from '../tls/listener-tls.js';
import {
  HANDSHAKE_RESULTS,
  METRICS,
  REQUEST_DURATION_BUCKETS,
  type MetricDef,
  type ReloadResult,
  RELOAD_RESULTS,
  UPSTREAM_RESULTS,
} from './metric-names.js';

type Labels = Record<string, string | number>;
interface Series {
  labels: Labels;
  value: number;
}
interface SeriesValue {
  labels: Labels;
  value: number;
  metricName?: string;
}
/** The JSON shape prom-client's Registry#getMetricsAsJSON() returns for one metric. */
interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: SeriesValue[];
}

// ---------------------------------------------------------------------------------------
// Worker side: hot-path recording

export interface WorkerMetrics extends MetricHooks {
  registry: Registry;
}

interface RouteSeries {
  /** status code -> requests_total series */
  codes: Map<number, Series>;
  /** non-cumulative count per bucket; the last slot is (largest bound, +Inf) */
  buckets: Float64Array;
  sum: number;
  count: number;
  labels: Labels;
  /** the le-labelled label sets of the _bucket series, built once */
  bucketLabels: Labels[];
}

interface AuthzSeries {
  allow: Series;
  deny: Series;
}

// a typed copy: reading a frozen JS array in the hot loop measured ~2x slower
const BOUNDS = Float64Array.from(REQUEST_DURATION_BUCKETS);
const NBOUNDS = BOUNDS.length;

/** A metric object the registry can collect: what prom-client's own metrics look like to it. */
function collector(registry: Registry, def: MetricDef, values: () => SeriesValue[], reset: () => void): void {
  const metric = {
    name: def.name,
    help: def.help,
    type: def.type,
    aggregator: 'sum',
    labelNames: def.labels,
    get: async (): Promise<MetricJson> => ({ name: metric.name, help: def.help, type: def.type, aggregator: 'sum', values: values() }),
    reset,
  };
  registry.registerMetric(metric as unknown as Metric);
}

function snapshot(series: Iterable<Series>): SeriesValue[] {
  const out: SeriesValue[] = [];
  for (const s of series) out.push({ labels: s.labels, value: s.value });
  return out;
}

function* nested<T>(m: Map<string, Map<string | number, T>>): Iterable<T> {
  for (const inner of m.values()) yield* inner.values();
}

/**
 * The hooks a worker passes to createTelemetry. Every method is a closure (no `this`), so
 * they survive being copied onto the Telemetry object. Series are created on first use;
 * listener and route names come from the config, status codes are 100-599, handshake
 * results are the fixed SPEC list (anything else counts as `error`), so the number of
 * series is bounded by the config, never by clients.
 */
export function createWorkerMetrics(registry: Registry = new Registry()): WorkerMetrics {
  const handshakes = new Map<string, Map<string, Series>>();
  const requests = new Map<string, Map<string, RouteSeries>>();
  const authz = new Map<string, Map<string, AuthzSeries>>();
  const connections = new Map<string, Series>();
  const connectionErrors = new Map<string, Series>();
  /** upstream\0endpoint\0result, upstream, upstream\0endpoint: bounded by the config */
  const upstreamResults = new Map<string, Series>();
  const upstreamRetries = new Map<string, Series>();
  const upstreamEjections = new Map<string, Series>();
  const bump = (m: Map<string, Series>, key: string, labels: () => Record<string, string>) => {
    let s = m.get(key);
    if (s === undefined) m.set(key, (s = { labels: labels(), value: 0 }));
    s.value++;
  };

  // --- slow paths: the first time a listener / route / code is seen
  const newHandshakeListener = (listener: string): Map<string, Series> => {
    const m = new Map<string, Series>();
    for (const result of HANDSHAKE_RESULTS) m.set(result, { labels: { listener, result }, value: 0 });
    handshakes.set(listener, m);
    return m;
  };
  const newRoute = (listener: string, route: string): RouteSeries => {
    let routes = requests.get(listener);
    if (routes === undefined) requests.set(listener, (routes = new Map()));
    const labels = { listener, route };
    const r: RouteSeries = {
      codes: new Map(),
      buckets: new Float64Array(NBOUNDS + 1),
      sum: 0,
      count: 0,
      labels,
      bucketLabels: [...REQUEST_DURATION_BUCKETS.map((le) => ({ ...labels, le })), { ...labels, le: '+Inf' }],
    };
    routes.set(route, r);
    return r;
  };
  const newCode = (r: RouteSeries, status: number): Series => {
    const valid = Number.isInteger(status) && status >= 100 && status <= 599;
    const key = valid ? status : 0;
    let s = r.codes.get(key);
    if (s === undefined) {
      s = { labels: { listener: r.labels.listener, route: r.labels.route, code: String(key) }, value: 0 };
      r.codes.set(key, s);
    }
    return s;
  };
  const newAuthz = (listener: string, route: string): AuthzSeries => {
    let routes = authz.get(listener);
    if (routes === undefined) authz.set(listener, (routes = new Map()));
    const a = {
      allow: { labels: { listener, route, decision: 'allow' }, value: 0 },
      deny: { labels: { listener, route, decision: 'deny' }, value: 0 },
    };
    routes.set(route, a);
    return a;
  };

  // --- hot paths: Map lookups and in-place increments only
  const hooks: MetricHooks = {
    handshake(listener, result) {
      const m = handshakes.get(listener) ?? newHandshakeListener(listener);
      // a result outside the SPEC list counts as error and adds no key
      (m.get(result) ?? m.get('error')!).value++;
    },
    request(listener, route, status, seconds) {
      const r = requests.get(listener)?.get(route) ?? newRoute(listener, route);
      const c = r.codes.get(status) ?? newCode(r, status);
      c.value++;
      const v = seconds >= 0 ? seconds : 0; // NaN and negatives land in the first bucket
      let i = 0;
      while (i < NBOUNDS && v > BOUNDS[i]!) i++;
      r.buckets[i]!++;
      r.sum += v;
      r.count++;
    },
    authz(listener, route, allowed) {
      const a = authz.get(listener)?.get(route) ?? newAuthz(listener, route);
      if (allowed) a.allow.value++;
      else a.deny.value++;
    },
    connection(listener, delta) {
      let s = connections.get(listener);
      if (s === undefined) {
        connections.set(listener, (s = { labels: { listener }, value: 0 }));
        // the error counter is exported at 0 from a listener's first connection on
        if (!connectionErrors.has(listener)) connectionErrors.set(listener, { labels: { listener }, value: 0 });
      }
      s.value += delta;
    },
    connectionError(listener) {
      let s = connectionErrors.get(listener);
      if (s === undefined) connectionErrors.set(listener, (s = { labels: { listener }, value: 0 }));
      s.value++;
    },
    upstreamResult(upstream, endpoint, result) {
      // a result outside the list counts as reset and adds no label value
      const r = (UPSTREAM_RESULTS as readonly string[]).includes(result) ? result : 'reset';
      bump(upstreamResults, `${upstream}\0${endpoint}\0${r}`, () => ({ upstream, endpoint, result: r }));
    },
    upstreamRetry(upstream) {
      bump(upstreamRetries, upstream, () => ({ upstream }));
    },
    upstreamEjection(upstream, endpoint) {
      bump(upstreamEjections, `${upstream}\0${endpoint}`, () => ({ upstream, endpoint }));
    },
  };

  // --- collection (scrape time)
  collector(registry, METRICS.handshakes, () => snapshot(nested(handshakes)), () => handshakes.clear());
  collector(
    registry,
    METRICS.requests,
    () => {
      const out: SeriesValue[] = [];
      for (const r of nested(requests)) out.push(...snapshot(r.codes.values()));
      return out;
    },
    () => requests.clear(),
  );
  collector(
    registry,
    METRICS.requestDuration,
    () => {
      const out: SeriesValue[] = [];
      const bucket = `${METRICS.requestDuration.name}_bucket`;
      for (const r of nested(requests)) {
        let acc = 0;
        for (let i = 0; i <= NBOUNDS; i++) {
          acc += r.buckets[i]!;
          out.push({ metricName: bucket, labels: r.bucketLabels[i]!, value: acc });
        }
        out.push({ metricName: `${METRICS.requestDuration.name}_sum`, labels: r.labels, value: r.sum });
        out.push({ metricName: `${METRICS.requestDuration.name}_count`, labels: r.labels, value: r.count });
      }
      return out;
    },
    () => requests.clear(),
  );
  collector(
    registry,
    METRICS.authz,
    () => {
      const out: SeriesValue[] = [];
      for (const a of nested(authz)) out.push({ labels: a.allow.labels, value: a.allow.value }, { labels: a.deny.labels, value: a.deny.value });
      return out;
    },
    () => authz.clear(),
  );
  collector(registry, METRICS.activeConnections, () => snapshot(connections.values()), () => connections.clear());
  collector(registry, METRICS.connectionErrors, () => snapshot(connectionErrors.values()), () => connectionErrors.clear());
  collector(registry, METRICS.upstreamRequests, () => snapshot(upstreamResults.values()), () => upstreamResults.clear());
  collector(registry, METRICS.upstreamRetries, () => snapshot(upstreamRetries.values()), () => upstreamRetries.clear());
  collector(registry, METRICS.upstreamEjections, () => snapshot(upstreamEjections.values()), () => upstreamEjections.clear());

  return { ...hooks, registry };
}

// ---------------------------------------------------------------------------------------
// Primary side: state the primary owns (not per request, so prom-client's own metrics)

export interface PrimaryMetrics {
  registry: Registry;
  /** replaces every series of the certificate expiry gauge with these certificates */
  setCertificates(certs: readonly LoadedCert[]): void;
  /** counts one reload attempt */
  reload(result: ReloadResult): void;
  setEndpointHealth(upstream: string, endpoint: string, healthy: boolean): void;
  /** forgets every endpoint series (call when a reload changes the upstreams) */
  resetEndpointHealth(): void;
  /** counts one active health check probe */
  probe(upstream: string, endpoint: string, ok: boolean): void;
}

export function createPrimaryMetrics(registry: Registry = new Registry()): PrimaryMetrics {
  const expiry = new Gauge({
    name: METRICS.certificateExpiry.name,
    help: METRICS.certificateExpiry.help,
    labelNames: METRICS.certificateExpiry.labels,
    registers: [registry],
    // only the primary reports it; if that ever changes, the soonest expiry is what matters
    aggregator: 'min',
  });
  const reloads = new Counter({
    name: METRICS.reloads.name,
    help: METRICS.reloads.help,
    labelNames: METRICS.reloads.labels,
    registers: [registry],
  });
  for (const result of RELOAD_RESULTS) reloads.inc({ result }, 0);
  const healthy = new Gauge({
    name: METRICS.endpointHealthy.name,
    help: METRICS.endpointHealthy.help,
    labelNames: METRICS.endpointHealthy.labels,
    registers: [registry],
    // if several processes ever report one endpoint, any "unhealthy" wins
    aggregator: 'min',
  });

  const probes = new Counter({
    name: METRICS.healthChecks.name,
    help: METRICS.healthChecks.help,
    labelNames: METRICS.healthChecks.labels,
    registers: [registry],
  });

  return {
    registry,
    probe(upstream, endpoint, ok) {
      probes.inc({ upstream, endpoint, result: ok ? 'ok' : 'failure' });
    },
    setCertificates(certs) {
      // A CA rotation bundle may hold an old and a new CA with the same subject in one
      // file: keep the soonest expiry, the one an alert must fire for.
      const soonest = new Map<string, { role: string; file: string; subject: string; t: number }>();
      for (const c of certs) {
        const key = JSON.stringify([c.role, c.file, c.subject]);
        const t = Math.floor(c.notAfter.getTime() / 1000);
        const prev = soonest.get(key);
        if (!prev || t < prev.t) soonest.set(key, { role: c.role, file: c.file, subject: c.subject, t });
      }
      expiry.reset();
      for (const s of soonest.values()) expiry.set({ role: s.role, file: s.file, subject: s.subject }, s.t);
    },
    reload(result) {
      reloads.inc({ result });
    },
    setEndpointHealth(upstream, endpoint, ok) {
      healthy.set({ upstream, endpoint }, ok ? 1 : 0);
    },
    resetEndpointHealth() {
      healthy.reset();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Across processes: the primary asks each worker for its registry (cluster-query.ts) and
// merges the answers with prom-client's AggregatorRegistry.aggregate (sum per series, or
// the metric's own aggregator). A worker that does not answer in time is left out of that
// one scrape.

const QUERY_KIND = 'metrics';
let workerRegistry: Registry | undefined;

/**
 * Worker side: answer the primary's metrics requests with this registry's series. Call
 * once in each worker, with the registry given to createWorkerMetrics; calling again
 * replaces the registry. Does nothing in a process without an IPC channel.
 */
export function registerWorkerRegistry(registry: Registry): void {
  workerRegistry = registry;
  answerClusterQueries(QUERY_KIND, () => workerRegistry!.getMetricsAsJSON());
}

export type CollectOptions = QueryOptions;

/**
 * Primary side: the Prometheus text for a scrape: every connected worker's registry
 * (as given to registerWorkerRegistry) merged with the primary's own. Counters and the
 * histogram are summed across workers, and so is active_connections.
 */
export async function collectClusterMetrics(primaryRegistry: Registry, opts: CollectOptions = {}): Promise<string> {
  const [answers, own] = await Promise.all([queryWorkers<MetricJson[]>(QUERY_KIND, opts), primaryRegistry.getMetricsAsJSON()]);
  const parts: object[] = answers.filter((a) => Array.isArray(a));
  parts.push(own);
  return AggregatorRegistry.aggregate(parts).metrics();
}
