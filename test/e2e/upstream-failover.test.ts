// Issue 13 (upstream resilience), through the real CLI with real upstream servers:
// one endpoint of two down gave `200 502 200 200 502 502`; now connect failures fail over
// for every method, idempotent requests are retried after a reset, a failing endpoint is
// ejected, and metrics count it. Health checks live in health-checks.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startEchoUpstream, startCli, tempDir, cleanup, runCli, type EchoUpstream } from '../helpers/proxy.js';
import { freePort } from '../helpers/upstream-process.js';
import { get, metrics, sample } from '../helpers/http-get.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

const plain = (upstream = 'app') => ({ name: 'plain', address: '127.0.0.1:0', routes: [{ upstream }] });

test('one endpoint of two refuses connections: every GET and POST succeeds on the other, the dead one is ejected and counted', async (t) => {
  const live = await startEchoUpstream();
  t.after(() => live.close());
  const dead = `http://127.0.0.1:${await freePort()}`;
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ listeners: [plain()], upstreams: { app: { endpoints: [live.url, dead] } } }, { dir });
  t.after(() => cli.stop());
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await get(cli.port, `/g${i}`)).status);
  // a body is never read before the connection exists, so a POST fails over whole
  for (let i = 0; i < 6; i++) {
    const r = await get(cli.port, `/p${i}`, { method: 'POST', body: 'x'.repeat(1000) });
    statuses.push(r.status);
    assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, 1000);
  }
  assert.deepEqual(statuses, Array(12).fill(200));
  assert.equal(live.received.length, 12);
  const m = await metrics(cli.adminPort);
  assert.ok(sample(m, 'portcullis_upstream_requests_total', { endpoint: dead, result: 'connect_failure' }) >= 1, m);
  assert.equal(sample(m, 'portcullis_upstream_requests_total', { endpoint: live.url, result: 'ok' }), 12);
  assert.ok(sample(m, 'portcullis_upstream_retries_total', { upstream: 'app' }) >= 1);
  // five failures in a row (the default) eject it: once logged, and counted
  assert.equal(sample(m, 'portcullis_upstream_ejections_total', { upstream: 'app', endpoint: dead }), 1);
  await cli.waitLog(/"event":"upstream_endpoint_ejected"/);
  assert.equal(sample(m, 'portcullis_upstream_endpoint_healthy', { upstream: 'app', endpoint: live.url }), 1, 'the gauge has samples without health checks');
});

test('a reset before any response byte: an idempotent GET is retried on another endpoint, a POST with a body is not', async (t) => {
  const resetter = await startEchoUpstream((req) => {
    req.socket.destroy();
    return true;
  });
  const good = await startEchoUpstream();
  t.after(() => Promise.all([resetter.close(), good.close()]));
  const dir = tempDir();
  dirs.push(dir);
  // outlier off: this is about retries, not ejection
  const cli = await startCli({ listeners: [plain()], upstreams: { app: { endpoints: [resetter.url, good.url], outlier: { consecutive_failures: 0 } } } }, { dir });
  t.after(() => cli.stop());
  const gets = await Promise.all([0, 1, 2, 3].map((i) => get(cli.port, `/get${i}`)));
  assert.deepEqual(gets.map((r) => r.status), [200, 200, 200, 200]);
  assert.equal(good.received.filter((r) => r.method === 'GET').length, 4);
  const posts: number[] = [];
  for (let i = 0; i < 4; i++) posts.push((await get(cli.port, `/post${i}`, { method: 'POST', body: 'payload' })).status);
  assert.deepEqual(posts.sort(), [200, 200, 502, 502], 'a POST that may have reached the upstream is not sent twice');
  assert.equal(good.received.filter((r) => r.method === 'POST').length, 2);
});

test('balance: hash on a header keeps each key on one endpoint and spreads the keys', async (t) => {
  const ups: EchoUpstream[] = await Promise.all([0, 1, 2].map(() => startEchoUpstream()));
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ listeners: [plain()], upstreams: { app: { endpoints: ups.map((u) => u.url), balance: 'hash', hash_on: 'header:x-user' } } }, { dir });
  t.after(() => cli.stop());
  for (let k = 0; k < 30; k++) for (let i = 0; i < 3; i++) await get(cli.port, `/k${k}`, { headers: { 'x-user': `user-${k}` } });
  for (let k = 0; k < 30; k++) {
    const holders = ups.filter((u) => u.received.some((r) => r.url === `/k${k}`));
    assert.equal(holders.length, 1, `key ${k} went to ${holders.length} endpoints`);
    assert.equal(holders[0]!.received.filter((r) => r.url === `/k${k}`).length, 3);
  }
  for (const u of ups) assert.ok(u.received.length >= 9, `spread: ${ups.map((x) => x.received.length)}`);
});

test('least_request sends fewer requests to a slow endpoint than round robin does', async (t) => {
  const slow = await startEchoUpstream((req, res) => {
    req.resume();
    setTimeout(() => res.end('slow'), 120);
    return true;
  });
  const fast = await startEchoUpstream();
  t.after(() => Promise.all([slow.close(), fast.close()]));
  const dir = tempDir();
  dirs.push(dir);
  const share = async (balance: string) => {
    const cli = await startCli({ listeners: [plain()], upstreams: { app: { endpoints: [slow.url, fast.url], balance } } }, { dir });
    let slowCount = 0;
    const onReq = () => slowCount++;
    slow.server.on('request', onReq);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    // 10 clients, 20 requests each
    await Promise.all(Array.from({ length: 10 }, async () => {
      for (let i = 0; i < 20; i++) assert.equal((await get(cli.port, '/x', { agent })).status, 200);
    }));
    agent.destroy();
    slow.server.off('request', onReq);
    await cli.stop();
    return slowCount / 200;
  };
  const rr = await share('round_robin');
  const lr = await share('least_request');
  assert.ok(rr > 0.4, `round robin gave the slow endpoint ${rr}`);
  assert.ok(lr < rr / 2, `least_request gave the slow endpoint ${lr}, round robin ${rr}`);
});

test('tcp listener: a connection to a dead endpoint fails over to a live one', async (t) => {
  const banner = net.createServer((s) => s.end('live\n'));
  await new Promise<void>((r) => banner.listen(0, '127.0.0.1', r));
  t.after(() => banner.close());
  const livePort = (banner.address() as net.AddressInfo).port;
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli(
    { listeners: [{ name: 'db', address: '127.0.0.1:0', protocol: 'tcp', upstream: 'db' }], upstreams: { db: { endpoints: [`tcp://127.0.0.1:${await freePort()}`, `tcp://127.0.0.1:${livePort}`] } } },
    { dir },
  );
  t.after(() => cli.stop());
  for (let i = 0; i < 6; i++) {
    const got = await new Promise<string>((resolve, reject) => {
      const s = net.connect(cli.port, '127.0.0.1');
      let b = '';
      s.on('data', (d) => (b += d.toString()));
      s.on('close', () => resolve(b));
      s.on('error', reject);
    });
    assert.equal(got, 'live\n');
  }
});

test('portcullis check rejects upstream settings that cannot work, naming the fix', () => {
  const dir = tempDir();
  dirs.push(dir);
  const file = join(dir, 'bad.json');
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [plain('web'), { name: 'db', address: '127.0.0.1:7001', protocol: 'tcp', upstream: 'db' }],
      upstreams: {
        web: { endpoints: ['http://127.0.0.1:8080'], hash_on: 'identity', health_check: { interval: '1s', timeout: '2s' } },
        db: { endpoints: ['tcp://127.0.0.1:5432'], health_check: { path: '/healthz' } },
        other: { endpoints: ['http://127.0.0.1:8081'], balance: 'hash', hash_on: 'cookie', dns_refresh: '10s', outlier: { base_ejection: '10m' } },
        named: { endpoints: ['http://app.internal:8080'], dns_refresh: '10s' },
      },
    }),
  );
  const r = runCli(['check', '-c', file]);
  assert.notEqual(r.status, 0);
  const out = r.stdout + r.stderr;
  assert.match(out, /upstreams\.web\.hash_on.*only used with balance: hash.*set balance: hash or remove hash_on/);
  assert.match(out, /upstreams\.web\.health_check\.timeout.*not shorter than interval.*make timeout shorter than interval/);
  assert.match(out, /upstreams\.db\.health_check\.path.*checked with a connect.*remove health_check\.path/);
  assert.match(out, /upstreams\.other\.hash_on.*"cookie" is not a hash key; use identity or header:<name>/);
  // contradicting outlier times; dns_refresh where nothing is looked up
  assert.match(out, /upstreams\.other\.outlier\.max_ejection.*300000 ms is shorter than base_ejection \(600000 ms\).*make max_ejection at least base_ejection/);
  assert.match(out, /upstreams\.other\.dns_refresh.*every endpoint is an IP address, so nothing is looked up; remove dns_refresh or give an endpoint by host name/);
  assert.doesNotMatch(out, /upstreams\.named/);
});
