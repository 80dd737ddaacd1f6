// Worker and primary metrics: every SPEC §8 name with exactly its labels in the text
// output, histogram bucketing, bounded label values, and the hot-path cost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { collectClusterMetrics, createPrimaryMetrics, createWorkerMetrics } from './metrics.js';
import { HANDSHAKE_RESULTS, METRICS, REQUEST_DURATION_BUCKETS } from './metric-names.js';
import { createTelemetry } from './telemetry.js';
import type { LoadedCert } from '../tls/listener-tls.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function find(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const SPEC_NAMES = [
  'portcullis_tls_handshakes_total',
  'portcullis_requests_total',
  'portcullis_request_duration_seconds',
  'portcullis_authz_decisions_total',
  'portcullis_active_connections',
  'portcullis_upstream_endpoint_healthy',
  'portcullis_certificate_expiry_timestamp_seconds',
  'portcullis_reloads_total',
  // SPEC §10 (wave 2)
  'portcullis_connection_errors_total',
  'portcullis_upstream_requests_total',
  'portcullis_upstream_retries_total',
  'portcullis_upstream_ejections_total',
  // issue 13: active health check probes (docs/upstreams.md)
  'portcullis_upstream_health_checks_total',
];

test('metric-names lists every SPEC §8 metric, once, with valid names', () => {
  const names = Object.values(METRICS).map((m) => m.name);
  assert.deepEqual([...names].sort(), [...SPEC_NAMES].sort());
  for (const m of Object.values(METRICS)) {
    assert.match(m.name, /^portcullis_[a-z_]+$/);
    if (m.type === 'counter') assert.match(m.name, /_total$/);
    assert.ok(!(m.labels as readonly string[]).includes('le'));
  }
  assert.deepEqual([...REQUEST_DURATION_BUCKETS], [...REQUEST_DURATION_BUCKETS].sort((a, b) => a - b));
  assert.equal(REQUEST_DURATION_BUCKETS[0], 0.001);
  assert.equal(REQUEST_DURATION_BUCKETS.at(-1), 10);
});

test('worker hooks produce every worker metric with exactly its SPEC labels', async () => {
  const m = createWorkerMetrics();
  m.handshake('api', 'ok');
  m.handshake('api', 'expired');
  m.request('api', 'charge', 200, 0.003);
  m.request('api', 'charge', 403, 0.0001);
  m.authz('api', 'charge', true);
  m.authz('api', 'charge', false);
  m.authz('api', 'charge', false);
  m.connection('api', 1);
  m.connection('api', 1);
  m.connection('api', -1);
  const text = await m.registry.metrics();
  const samples = parse(text);

  const expectLabels = (name: string, labels: readonly string[]) => {
    const rows = samples.filter((s) => s.name === name);
    assert.ok(rows.length > 0, `${name} missing from:\n${text}`);
    for (const r of rows) assert.deepEqual(Object.keys(r.labels).sort(), [...labels].sort(), name);
  };
  expectLabels(METRICS.handshakes.name, METRICS.handshakes.labels);
  expectLabels(METRICS.requests.name, METRICS.requests.labels);
  expectLabels(`${METRICS.requestDuration.name}_bucket`, [...METRICS.requestDuration.labels, 'le']);
  expectLabels(`${METRICS.requestDuration.name}_sum`, METRICS.requestDuration.labels);
  expectLabels(`${METRICS.requestDuration.name}_count`, METRICS.requestDuration.labels);
  expectLabels(METRICS.authz.name, METRICS.authz.labels);
  expectLabels(METRICS.activeConnections.name, METRICS.activeConnections.labels);
  assert.match(text, /# TYPE portcullis_request_duration_seconds histogram/);
  assert.match(text, /# TYPE portcullis_requests_total counter/);
  assert.match(text, /# TYPE portcullis_active_connections gauge/);

  const H = METRICS.handshakes.name;
  assert.equal(find(samples, H, { listener: 'api', result: 'ok' }), 1);
  assert.equal(find(samples, H, { listener: 'api', result: 'expired' }), 1);
  // every result exists from the first handshake on, so rate() alerts have a series
  for (const result of HANDSHAKE_RESULTS) assert.notEqual(find(samples, H, { listener: 'api', result }), undefined, result);
  assert.equal(find(samples, H, { listener: 'api', result: 'unknown_ca' }), 0);

  assert.equal(find(samples, METRICS.requests.name, { listener: 'api', route: 'charge', code: '200' }), 1);
  assert.equal(find(samples, METRICS.requests.name, { listener: 'api', route: 'charge', code: '403' }), 1);
  assert.equal(find(samples, METRICS.authz.name, { route: 'charge', decision: 'allow' }), 1);
  assert.equal(find(samples, METRICS.authz.name, { route: 'charge', decision: 'deny' }), 2);
  assert.equal(find(samples, METRICS.activeConnections.name, { listener: 'api' }), 1);
});

test('histogram buckets are cumulative, inclusive of their bound, with sum and count', async () => {
  const m = createWorkerMetrics();
  const b = `${METRICS.requestDuration.name}_bucket`;
  for (const s of [0.0005, 0.005, 0.007, 0.3, 42]) m.request('l', 'r', 200, s);
  m.request('l', 'r', 200, Number.NaN); // a broken timer must not poison the sum
  const samples = parse(await m.registry.metrics());
  const at = (le: string) => find(samples, b, { listener: 'l', route: 'r', le });
  assert.equal(at('0.001'), 2); // 0.0005 and NaN (as 0)
  assert.equal(at('0.0025'), 2);
  assert.equal(at('0.005'), 3); // exactly on the bound counts
  assert.equal(at('0.01'), 4);
  assert.equal(at('0.25'), 4);
  assert.equal(at('0.5'), 5);
  assert.equal(at('10'), 5);
  assert.equal(at('+Inf'), 6);
  assert.equal(samples.filter((s) => s.name === b).length, REQUEST_DURATION_BUCKETS.length + 1);
  assert.equal(find(samples, `${METRICS.requestDuration.name}_count`, { route: 'r' }), 6);
  const sum = find(samples, `${METRICS.requestDuration.name}_sum`, { route: 'r' })!;
  assert.ok(Math.abs(sum - 42.3125) < 1e-9, String(sum));
});

test('label values stay bounded: unknown handshake results and odd status codes fold', async () => {
  const m = createWorkerMetrics();
  for (let i = 0; i < 1000; i++) m.handshake('api', `weird-${i}`);
  m.request('api', 'r', 12345, 0.01);
  m.request('api', 'r', 2.5, 0.01);
  m.request('api', 'r', 599, 0.01);
  const samples = parse(await m.registry.metrics());
  const hs = samples.filter((s) => s.name === METRICS.handshakes.name);
  assert.equal(hs.length, HANDSHAKE_RESULTS.length);
  assert.equal(find(samples, METRICS.handshakes.name, { result: 'error' }), 1000);
  const codes = samples.filter((s) => s.name === METRICS.requests.name).map((s) => `${s.labels.code}=${s.value}`);
  assert.deepEqual(codes.sort(), ['0=2', '599=1']);
});

test('hooks keep working when createTelemetry copies them off the object', async () => {
  const m = createWorkerMetrics();
  const t = createTelemetry({ level: 'error', access: 'off' }, m);
  t.request('api', 'r', 204, 0.01);
  t.connection('api', 1);
  t.handshake('api', 'no_cert');
  t.authz('api', 'r', true);
  const samples = parse(await m.registry.metrics());
  assert.equal(find(samples, METRICS.requests.name, { code: '204' }), 1);
  assert.equal(find(samples, METRICS.handshakes.name, { result: 'no_cert' }), 1);
});

test('registry.resetMetrics() clears the worker series', async () => {
  const m = createWorkerMetrics();
  m.request('api', 'r', 200, 0.01);
  m.registry.resetMetrics();
  const samples = parse(await m.registry.metrics());
  assert.equal(samples.length, 0);
});

function cert(over: Partial<LoadedCert>): LoadedCert {
  return { role: 'server', file: '/pki/server.crt', subject: 'CN=api', issuer: 'CN=ca', notAfter: new Date('2030-01-01T00:00:00Z'), serial: '01', ...over };
}

test('primary metrics: certificate expiry replaces all series and keeps the soonest per label set', async () => {
  const p = createPrimaryMetrics(new Registry());
  p.setCertificates([cert({ file: '/old.crt' })]);
  p.setCertificates([
    cert({}),
    cert({ role: 'client_ca', file: '/pki/ca.crt', subject: 'CN=ca', notAfter: new Date('2031-01-01T00:00:00Z'), serial: 'A' }),
    // rotation bundle: a second CA with the same subject in the same file expiring sooner
    cert({ role: 'client_ca', file: '/pki/ca.crt', subject: 'CN=ca', notAfter: new Date('2029-06-01T00:00:00Z'), serial: 'B' }),
  ]);
  const samples = parse(await p.registry.metrics());
  const E = METRICS.certificateExpiry.name;
  const rows = samples.filter((s) => s.name === E);
  assert.equal(rows.length, 2);
  for (const r of rows) assert.deepEqual(Object.keys(r.labels).sort(), [...METRICS.certificateExpiry.labels].sort());
  assert.equal(find(samples, E, { role: 'server', file: '/pki/server.crt', subject: 'CN=api' }), Date.parse('2030-01-01T00:00:00Z') / 1000);
  assert.equal(find(samples, E, { role: 'client_ca', file: '/pki/ca.crt' }), Date.parse('2029-06-01T00:00:00Z') / 1000);
  assert.equal(find(samples, E, { file: '/old.crt' }), undefined);
});

test('primary metrics: reloads by result (both present from the start) and endpoint health', async () => {
  const p = createPrimaryMetrics();
  let samples = parse(await p.registry.metrics());
  assert.equal(find(samples, METRICS.reloads.name, { result: 'success' }), 0);
  assert.equal(find(samples, METRICS.reloads.name, { result: 'failure' }), 0);
  p.reload('success');
  p.reload('failure');
  p.reload('success');
  p.setEndpointHealth('app', 'http://127.0.0.1:8080', true);
  p.setEndpointHealth('app', 'http://127.0.0.1:8081', false);
  samples = parse(await p.registry.metrics());
  assert.equal(find(samples, METRICS.reloads.name, { result: 'success' }), 2);
  assert.equal(find(samples, METRICS.reloads.name, { result: 'failure' }), 1);
  assert.equal(find(samples, METRICS.endpointHealthy.name, { upstream: 'app', endpoint: 'http://127.0.0.1:8080' }), 1);
  assert.equal(find(samples, METRICS.endpointHealthy.name, { upstream: 'app', endpoint: 'http://127.0.0.1:8081' }), 0);
  p.resetEndpointHealth();
  samples = parse(await p.registry.metrics());
  assert.equal(samples.filter((s) => s.name === METRICS.endpointHealthy.name).length, 0);
});

test('collectClusterMetrics with no workers serves the primary registry', async () => {
  const p = createPrimaryMetrics();
  p.reload('failure');
  const text = await collectClusterMetrics(p.registry, { workers: [] });
  assert.equal(find(parse(text), METRICS.reloads.name, { result: 'failure' }), 1);
  assert.match(text, /# TYPE portcullis_reloads_total counter/);
});

test('hot path: request() is far cheaper than prom-client label children', (t) => {
  const N = 200_000;
  const routes = ['a', 'b', 'c', 'd'];
  const ours = createWorkerMetrics();
  const r = new Registry();
  const c = new Counter({ name: 'x_total', help: 'x', labelNames: ['listener', 'route', 'code'], registers: [r] });
  const h = new Histogram({ name: 'y', help: 'y', labelNames: ['listener', 'route'], registers: [r], buckets: [...REQUEST_DURATION_BUCKETS] });
  const cc = new Map<string, Counter.Internal>();
  const hc = new Map<string, Histogram.Internal<string>>();
  const theirs = (l: string, rt: string, st: number, s: number) => {
    const k = `${rt}:${st}`;
    let ci = cc.get(k);
    if (!ci) cc.set(k, (ci = c.labels(l, rt, String(st))));
    ci.inc();
    let hi = hc.get(rt);
    if (!hi) hc.set(rt, (hi = h.labels(l, rt)));
    hi.observe(s);
  };
  const time = (fn: (l: string, r: string, st: number, s: number) => void) => {
    for (let i = 0; i < 20_000; i++) fn('api', routes[i & 3]!, 200, 0.003); // warm up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn('api', routes[i & 3]!, i % 10 ? 200 : 404, (i % 100) / 1000);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const mine = time(ours.request);
  const base = time(theirs);
  t.diagnostic(`${N} request() calls: ${mine.toFixed(1)} ms (${((mine * 1e6) / N).toFixed(0)} ns/call); prom-client children: ${base.toFixed(1)} ms`);
  // relative, so a loaded CI machine does not make it flaky; measured 5-10x apart
  assert.ok(mine * 3 < base, `request() took ${mine.toFixed(1)} ms, prom-client children ${base.toFixed(1)} ms`);
});
