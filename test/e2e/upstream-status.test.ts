// Issue 13 item 8: GET /status lists each endpoint with its state, last probe, last error
// and requests in flight. The live part is per worker, so the primary asks every worker
// (telemetry/cluster-query.ts) and merges: with 2 workers, requests held by a slow
// upstream show as the sum over both; a dead endpoint shows its last error and ejection.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startCli, tempDir, cleanup, eventually } from '../helpers/proxy.js';
import { get } from '../helpers/http-get.js';
import { freePort } from '../helpers/upstream-process.js';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

interface EndpointStatus {
  endpoint: string;
  config: string;
  address: string;
  name: string | null;
  state: string;
  last_probe: { at: string; ok: boolean; error?: string } | null;
  in_flight: number;
  ejected: boolean;
  ejected_workers: number;
  ejected_until: string | null;
  last_error: { at: string; error: string } | null;
}
interface UpstreamStatus {
  name: string;
  workers: number;
  endpoints: EndpointStatus[];
  unresolved: { endpoint: string; error: string }[];
}

const statusOf = async (adminPort: number) => (JSON.parse((await get(adminPort, '/status')).body) as { upstreams: UpstreamStatus[] }).upstreams;

test('/status: in_flight summed over 2 workers, a dead endpoint\'s last error and ejection, the fields the dashboard reads', async (t) => {
  const held: http.ServerResponse[] = [];
  const slow = http.createServer((req, res) => {
    if (req.url === '/healthz') return res.end('ok');
    held.push(res);
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  t.after(() => {
    slow.closeAllConnections();
    slow.close();
  });
  const live = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => live.listen(0, '127.0.0.1', r));
  t.after(() => {
    live.closeAllConnections();
    live.close();
  });
  const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
  const liveUrl = `http://127.0.0.1:${(live.address() as AddressInfo).port}`;
  const deadUrl = `http://127.0.0.1:${await freePort()}`;
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli(
    {
      workers: 2,
      listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ match: { path: '/slow' }, upstream: 'slow' }, { upstream: 'mixed' }] }],
      upstreams: {
        slow: { endpoints: [slowUrl], health_check: { path: '/healthz', interval: '300ms', timeout: '200ms' } },
        mixed: { endpoints: [deadUrl, liveUrl], outlier: { consecutive_failures: 1 } },
      },
    },
    { dir },
  );
  t.after(() => cli.stop());

  // N requests on their own connections: the kernel spreads connections over both workers
  const N = 6;
  const pending = Array.from({ length: N }, (_, i) => get(cli.port, `/slow/${i}`));
  await eventually(() => held.length === N, `${N} requests held by the slow upstream`);
  const s1 = await statusOf(cli.adminPort);
  const slowUp = s1.find((u) => u.name === 'slow')!;
  assert.equal(slowUp.workers, 2, 'both workers answered');
  assert.equal(slowUp.endpoints.length, 1);
  const ep = slowUp.endpoints[0]!;
  assert.equal(ep.in_flight, N, 'in flight summed over the workers');
  assert.equal(ep.endpoint, slowUrl);
  assert.equal(ep.config, slowUrl);
  assert.equal(ep.address, slowUrl.slice('http://'.length));
  assert.equal(ep.name, null);
  for (const r of held) r.end('done');
  for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
  const s2 = await statusOf(cli.adminPort);
  const after2 = s2.find((u) => u.name === 'slow')!.endpoints[0]!;
  assert.equal(after2.in_flight, 0);
  assert.equal(after2.state, 'healthy');
  assert.ok(after2.last_probe?.ok, 'last probe shown');

  // the dead endpoint: connect failures fail over to the live one, and are remembered
  for (let i = 0; i < 10; i++) assert.equal((await get(cli.port, `/m${i}`)).status, 200);
  const mixed = (await statusOf(cli.adminPort)).find((u) => u.name === 'mixed')!;
  const dead = mixed.endpoints.find((e) => e.endpoint === deadUrl)!;
  const alive = mixed.endpoints.find((e) => e.endpoint === liveUrl)!;
  assert.equal(dead.state, 'unchecked');
  assert.match(dead.last_error?.error ?? '', /ECONNREFUSED/);
  assert.ok(Date.now() - Date.parse(dead.last_error!.at) < 10_000, 'last_error.at is recent');
  assert.equal(dead.ejected, true);
  assert.ok(dead.ejected_workers >= 1 && dead.ejected_workers <= 2);
  assert.ok(dead.ejected_until && Date.parse(dead.ejected_until) > Date.now(), 'ejected_until in the future');
  assert.deepEqual([alive.ejected, alive.last_error, alive.in_flight], [false, null, 0]);
  assert.deepEqual(mixed.unresolved, []);
});
