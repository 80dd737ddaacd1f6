// Active health checks and the issue 13 outage drill with upstream processes killed by
// SIGKILL: every request fails over while one endpoint is up, the restarted endpoint takes
// traffic again within interval x healthy + one interval, with all down every request is
// 503 no_healthy_upstream within 100 ms naming the cause, probes do not grow with workers.
// The load phase runs 50 clients for PCL_LOAD_SECONDS (default 4 s; the 20 s with
// PCL_LOAD_SECONDS=20).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startCli, tempDir, cleanup } from '../helpers/proxy.js';
import { startUpstreamProcess, type UpstreamProcess } from '../helpers/upstream-process.js';
import { get, metrics, sample } from '../helpers/http-get.js';

const dirs: string[] = [];
const procs: UpstreamProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  dirs.forEach(cleanup);
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LOAD_SECONDS = Number(process.env.PCL_LOAD_SECONDS ?? 4);

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await cond()) return Date.now() - t0;
    await sleep(25);
  }
  throw new Error(`${what} did not happen within ${ms} ms`);
}

const INTERVAL = 300;
const HEALTHY = 2;
const hc = { path: '/healthz', interval: `${INTERVAL}ms`, timeout: '200ms', healthy: HEALTHY, unhealthy: 1 };

test('HTTP/1.1: 50 clients, one of three endpoints SIGKILLed and restarted, then all of them', async (t) => {
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstreamProcess(n)));
  procs.push(...ups);
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ workers: 2, listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ upstream: 'app' }] }], upstreams: { app: { endpoints: ups.map((u) => u.url), health_check: hc, retry_budget: { percent: 100 } } } }, { dir });
  t.after(() => cli.stop());
  // percent 100: a SIGKILL resets every request in flight on that endpoint at once (about a
  // third of 50), and the default budget (20% of requests in flight, at least 3) lets only
  // some of them be resent at the same moment; on a slow machine, where retries stay in
  // flight longer, the rest fail. This drill is about failover and health checks; the
  // budget has its own tests (src/upstream/balancer.test.ts)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
  t.after(() => agent.destroy());
  let failed = 0;
  let ok = 0;
  let running = true;
  // what each failure was, so a red run says why (status and error code, or the client error)
  const reasons = new Map<string, number>();
  const why = (r: string) => reasons.set(r, (reasons.get(r) ?? 0) + 1);
  const clients = Array.from({ length: 50 }, async () => {
    while (running) {
      try {
        const r = await get(cli.port, '/load', { agent });
        if (r.status === 200) ok++;
        else {
          failed++;
          why(`${r.status} ${r.body.slice(0, 200)}`);
        }
      } catch (err) {
        failed++;
        why(`client: ${(err as Error).message}`);
      }
    }
  });
  const stopClients = async () => {
    running = false;
    await Promise.all(clients);
  };
  // a failed assertion must not leave 50 clients spinning
  t.after(stopClients);
  await sleep((LOAD_SECONDS * 1000) / 3);
  await ups[1]!.kill();
  await sleep((LOAD_SECONDS * 1000) / 3);
  const servedBefore = ups[1]!.lines.filter((l) => l.startsWith('req')).length;
  ups[1]!.lines.length = 0;
  const restartedAt = Date.now();
  await ups[1]!.restart();
  const back = await waitFor('the restarted endpoint taking traffic', () => ups[1]!.lines.some((l) => l.startsWith('req')), 5_000);
  await sleep((LOAD_SECONDS * 1000) / 3);
  await stopClients();
  assert.equal(failed, 0, `${failed} of ${ok + failed} idempotent requests failed while two endpoints were up: ${JSON.stringify([...reasons])}`);
  assert.ok(servedBefore > 0 && ok > 500, `ok=${ok}`);
  // a restart is seen after `healthy` passing probes: interval x healthy + one interval (+ jitter and process start)
  assert.ok(back <= INTERVAL * HEALTHY + INTERVAL + 400, `the restarted endpoint took ${back} ms (restart at ${restartedAt})`);

  // all down: 503 no_healthy_upstream at once, naming what is down and why
  await Promise.all(ups.map((u) => u.kill()));
  // every worker must have the verdicts (they arrive over IPC one worker at a time): the
  // keep-alive agent's connection and fresh ones, several in a row
  await waitFor('all endpoints marked down in every worker', async () => {
    for (let i = 0; i < 6; i++) if ((await get(cli.port, '/x', i % 2 ? { agent } : {})).status !== 503) return false;
    return true;
  }, 3_000);
  for (let i = 0; i < 20; i++) {
    const r = await get(cli.port, '/down', { agent });
    assert.equal(r.status, 503);
    assert.ok(r.ms < 100, `${r.ms} ms`);
    const body = JSON.parse(r.body) as { error: string; message: string };
    assert.equal(body.error, 'no_healthy_upstream');
    assert.match(body.message, /^upstream app has no healthy endpoint: 3 of 3 endpoints are down \(http:\/\/127\.0\.0\.1:\d+: failed health check: E[A-Z]+; .*\); start or fix an endpoint$/);
  }
  const m = await metrics(cli.adminPort);
  for (const u of ups) assert.equal(sample(m, 'portcullis_upstream_endpoint_healthy', { upstream: 'app', endpoint: u.url }), 0);
  assert.ok(sample(m, 'portcullis_upstream_health_checks_total', { upstream: 'app', result: 'failure' }) >= 3);
  await cli.waitLog(/"event":"upstream_endpoint_unhealthy"/);

  // recovery follows a restart
  await ups[0]!.restart();
  await waitFor('recovery after a restart', async () => (await get(cli.port, '/x')).status === 200, INTERVAL * HEALTHY + INTERVAL + 1_000);
  const status = JSON.parse((await get(cli.adminPort, '/status')).body) as { upstreams: { name: string; endpoints: { endpoint: string; state: string; last_probe: unknown }[] }[] };
  const app = status.upstreams.find((u) => u.name === 'app')!;
  assert.deepEqual(app.endpoints.map((e) => e.state).sort(), ['healthy', 'unhealthy', 'unhealthy']);
});

test('probe traffic does not grow with workers: one prober per endpoint in the primary', async (t) => {
  const up = await startUpstreamProcess('p');
  procs.push(up);
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ workers: 3, listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ upstream: 'app' }] }], upstreams: { app: { endpoints: [up.url], health_check: { ...hc, interval: '200ms', timeout: '100ms' } } } }, { dir });
  t.after(() => cli.stop());
  up.lines.length = 0;
  await sleep(2_000);
  const probes = up.lines.filter((l) => l === 'probe').length;
  // 2 s / 200 ms = 10 (jitter adds up to 10%); three workers probing would give ~30
  assert.ok(probes >= 7 && probes <= 11, `${probes} probes in 2 s`);
});

test('h2c upstream: one endpoint killed fails over, all killed gives 503 no_healthy_upstream, restart recovers', async (t) => {
  const ups = await Promise.all(['h1', 'h2'].map((n) => startUpstreamProcess(n, { kind: 'h2c' })));
  procs.push(...ups);
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ upstream: 'grpc' }] }], upstreams: { grpc: { endpoints: ups.map((u) => u.url), health_check: hc } } }, { dir });
  t.after(() => cli.stop());
  // an HTTP/1.1 client; the proxy speaks HTTP/2 to the h2c endpoints
  const call = () => get(cli.port, '/svc');
  await ups[0]!.kill();
  // before the probe notices, the connect failure fails over; after, the endpoint is skipped
  for (let i = 0; i < 10; i++) assert.equal((await call()).status, 200);
  await ups[1]!.kill();
  await waitFor('all endpoints marked down', async () => (await call()).status === 503, 2_000);
  const r = await call();
  assert.equal(JSON.parse(r.body).error, 'no_healthy_upstream');
  await ups[1]!.restart();
  await waitFor('recovery', async () => (await call()).status === 200, INTERVAL * HEALTHY + INTERVAL + 1_000);
});

test('tcp listener: a tcp health check marks a killed endpoint down, connections go to the other', async (t) => {
  const ups = await Promise.all(['t1', 't2'].map((n) => startUpstreamProcess(n, { kind: 'tcp' })));
  procs.push(...ups);
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli(
    { listeners: [{ name: 'db', address: '127.0.0.1:0', protocol: 'tcp', upstream: 'db' }], upstreams: { db: { endpoints: ups.map((u) => u.url), health_check: { interval: `${INTERVAL}ms`, timeout: '200ms', healthy: HEALTHY, unhealthy: 1 } } } },
    { dir },
  );
  t.after(() => cli.stop());
  const { connect } = await import('node:net');
  const banner = () =>
    new Promise<string>((resolve) => {
      const s = connect(cli.port, '127.0.0.1');
      let b = '';
      s.on('data', (d) => {
        b += d.toString();
        if (b.includes('\n')) s.destroy();
      });
      s.on('close', () => resolve(b));
      s.on('error', () => resolve(b));
    });
  await ups[0]!.kill();
  await sleep(INTERVAL * 2);
  ups[1]!.lines.length = 0;
  const got = [];
  for (let i = 0; i < 6; i++) got.push(await banner());
  assert.deepEqual(got, Array(6).fill('t2\n'));
  // connections counted at the upstream: probes are connects too, so at least our 6
  assert.ok(ups[1]!.lines.filter((l) => l === 'conn').length >= 6);
});
