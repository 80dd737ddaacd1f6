// Cross-process metrics with real node:cluster workers: the primary's scrape sums every
// worker's series and adds its own; a worker that never answers, or dies, is left out
// of that scrape instead of failing it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectClusterMetrics, createPrimaryMetrics } from './metrics.js';
import { METRICS } from './metric-names.js';

// The worker: records a fixed set of events, then says it is ready. MUTE=1 makes one that
// never registers its registry, like a worker still starting up.
const WORKER_SOURCE = `
import { createWorkerMetrics, registerWorkerRegistry } from ${JSON.stringify(new URL('./metrics.js', import.meta.url).href)};
const m = createWorkerMetrics();
if (process.env.MUTE !== '1') registerWorkerRegistry(m.registry);
for (let i = 0; i < 3; i++) m.request('api', 'charge', 200, 0.02);
m.request('api', 'charge', 503, 2);
m.handshake('api', 'ok');
m.handshake('api', 'expired');
m.authz('api', 'charge', true);
m.connection('api', 1);
m.connection('api', 1);
process.on('message', (msg) => { if (msg && msg.test === 'exit') process.exit(0); });
process.send({ test: 'ready' });
`;

function value(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function forkReady(env: Record<string, string> = {}): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const w = cluster.fork(env);
    w.on('message', (m: { test?: string }) => {
      if (m?.test === 'ready') resolve(w);
    });
    w.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
  });
}

function killAll(): Promise<void> {
  const ws = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
  return Promise.all(
    ws.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once('exit', () => resolve());
          w.process.kill('SIGKILL');
        }),
    ),
  ).then(() => undefined);
}

test('primary scrape merges worker registries (summed) with its own', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-metrics-'));
  const file = join(dir, 'worker.mjs');
  writeFileSync(file, WORKER_SOURCE);
  cluster.setupPrimary({ exec: file, silent: true });
  t.after(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  const [w1, w2] = await Promise.all([forkReady(), forkReady()]);
  const primary = createPrimaryMetrics();
  primary.reload('success');

  const text = await collectClusterMetrics(primary.registry, { timeoutMs: 5000 });
  assert.equal(value(text, METRICS.requests.name, 'listener="api",route="charge",code="200"'), 6, text);
  assert.equal(value(text, METRICS.requests.name, 'code="503"'), 2);
  assert.equal(value(text, METRICS.handshakes.name, 'result="expired"'), 2);
  assert.equal(value(text, METRICS.handshakes.name, 'result="unknown_ca"'), 0);
  assert.equal(value(text, METRICS.authz.name, 'decision="allow"'), 2);
  assert.equal(value(text, METRICS.activeConnections.name, 'listener="api"'), 4);
  assert.equal(value(text, `${METRICS.requestDuration.name}_count`, 'route="charge"'), 8);
  assert.equal(value(text, `${METRICS.requestDuration.name}_bucket`, 'le="0.025"'), 6);
  assert.equal(value(text, `${METRICS.requestDuration.name}_bucket`, 'le="+Inf"'), 8);
  assert.equal(value(text, METRICS.reloads.name, 'result="success"'), 1);
  assert.equal(text.match(/# TYPE portcullis_requests_total /g)?.length, 1);

  // a worker that never answers costs the scrape its timeout, not the whole result
  await forkReady({ MUTE: '1' });
  const started = Date.now();
  const partial = await collectClusterMetrics(primary.registry, { timeoutMs: 300 });
  assert.ok(Date.now() - started < 3000);
  assert.equal(value(partial, METRICS.requests.name, 'code="200"'), 6);

  // a worker that dies is left out at once
  const gone = new Promise((r) => w2.once('exit', r));
  w2.process.kill('SIGKILL');
  await gone;
  const after = await collectClusterMetrics(primary.registry, { timeoutMs: 300 });
  assert.equal(value(after, METRICS.requests.name, 'code="200"'), 3);
  assert.equal(value(after, METRICS.activeConnections.name, 'listener="api"'), 2);
  assert.ok(w1.isConnected());
});
