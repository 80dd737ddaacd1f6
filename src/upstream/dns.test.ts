// Upstream DNS without a DNS server: DnsResolver with an injected lookup whose answers a
// test changes, and the pools that follow the address book. Every address of a name is an
// endpoint; a changed answer adds and drains endpoints; a failed lookup keeps the last
// good set and is reported once; a name that never resolved names its DNS error in the
// no_healthy_upstream reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigSchema } from '../config/schema.js';
import { DnsResolver, applyAddresses, endpointTargets, hostAddresses, type DnsChange, type LookupFn } from './dns.js';
import { UpstreamPool } from './pool.js';
import { TcpUpstream } from './tcp-upstream.js';
import { endpointState } from './endpoint-state.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A lookup whose answer per name the test sets; an Error answer rejects with its code. */
function fakeLookup(): { lookup: LookupFn; answers: Map<string, string[] | string>; calls: string[] } {
  const answers = new Map<string, string[] | string>();
  const calls: string[] = [];
  const lookup: LookupFn = async (host) => {
    calls.push(host);
    const a = answers.get(host);
    if (a === undefined || typeof a === 'string') throw Object.assign(new Error(`getaddrinfo ${a ?? 'ENOTFOUND'} ${host}`), { code: a ?? 'ENOTFOUND' });
    return a;
  };
  return { lookup, answers, calls };
}

function upstreamCfg(up: Record<string, unknown>) {
  return ConfigSchema.parse({ listeners: [{ address: '127.0.0.1:0', routes: [{ upstream: 'app' }] }], upstreams: { app: up } }).upstreams.app!;
}

test('every address of a name is an endpoint, sorted and without duplicates; IP literals stay as written', async () => {
  const f = fakeLookup();
  f.answers.set('svc-a.test', ['10.0.0.2', '10.0.0.1', '10.0.0.2', '::1']);
  const changes: DnsChange[] = [];
  const r = new DnsResolver((c) => changes.push(c), f.lookup);
  await r.update({ upstreams: { app: { endpoints: ['http://svc-a.test:8080', 'http://10.9.9.9:80'], dns_refresh: 60_000 } } });
  r.stop();
  assert.deepEqual(f.calls, ['svc-a.test'], 'IP literals are not looked up');
  assert.deepEqual(hostAddresses('svc-a.test')?.addresses, ['10.0.0.1', '10.0.0.2', '::1']);
  assert.equal(changes.length, 1);
  assert.deepEqual(changes[0]!.added, ['10.0.0.1', '10.0.0.2', '::1']);
  const t = endpointTargets('https://svc-a.test:8443').targets;
  assert.deepEqual(t.map((x) => x.label), ['https://10.0.0.1:8443 (svc-a.test)', 'https://10.0.0.2:8443 (svc-a.test)', 'https://[::1]:8443 (svc-a.test)']);
  assert.deepEqual(t.map((x) => x.url.host), ['10.0.0.1:8443', '10.0.0.2:8443', '[::1]:8443']);
  // Host / :authority and SNI keep the name
  assert.ok(t.every((x) => x.authority === 'svc-a.test:8443' && x.name === 'svc-a.test'));
  assert.deepEqual(endpointTargets('http://10.9.9.9:80').targets.map((x) => x.label), ['http://10.9.9.9:80']);
});

test('re-resolved every dns_refresh: a changed answer is reported once with what was added and removed', async () => {
  const f = fakeLookup();
  f.answers.set('svc-b.test', ['10.0.1.1', '10.0.1.2']);
  const changes: DnsChange[] = [];
  const r = new DnsResolver((c) => changes.push(c), f.lookup);
  await r.update({ upstreams: { app: { endpoints: ['http://svc-b.test:80'], dns_refresh: 30 } } });
  await sleep(100);
  assert.ok(f.calls.length >= 3, `${f.calls.length} lookups in 100 ms with dns_refresh 30 ms`);
  assert.equal(changes.length, 1, 'the same answer again is no change');
  f.answers.set('svc-b.test', ['10.0.1.2', '10.0.1.3']);
  await sleep(80);
  r.stop();
  assert.equal(changes.length, 2);
  assert.deepEqual([changes[1]!.kind, changes[1]!.added, changes[1]!.removed], ['changed', ['10.0.1.3'], ['10.0.1.1']]);
});

test('a failed lookup keeps the last good set and is reported once per change; recovery is reported', async () => {
  const f = fakeLookup();
  f.answers.set('svc-c.test', ['10.0.2.1']);
  const changes: DnsChange[] = [];
  const r = new DnsResolver((c) => changes.push(c), f.lookup);
  await r.update({ upstreams: { app: { endpoints: ['http://svc-c.test:80'], dns_refresh: 20 } } });
  f.answers.set('svc-c.test', 'EAI_AGAIN');
  await sleep(120);
  assert.deepEqual(changes.map((c) => c.kind), ['changed', 'failed'], 'one failure report for many failed lookups');
  assert.deepEqual(hostAddresses('svc-c.test')?.addresses, ['10.0.2.1'], 'last good set kept');
  assert.equal(hostAddresses('svc-c.test')?.error, 'EAI_AGAIN');
  assert.equal(endpointTargets('http://svc-c.test:80').targets.length, 1);
  // an empty answer counts as a failure too: DNS never empties an upstream
  f.answers.set('svc-c.test', []);
  await sleep(60);
  assert.deepEqual(changes.map((c) => c.kind), ['changed', 'failed', 'failed']);
  assert.equal(changes[2]!.now.error, 'no addresses');
  f.answers.set('svc-c.test', ['10.0.2.1']);
  await sleep(60);
  r.stop();
  assert.deepEqual(changes.map((c) => c.kind), ['changed', 'failed', 'failed', 'changed']);
  assert.equal(hostAddresses('svc-c.test')?.error, undefined);
});

test('a name that never resolved: no endpoint, and no_healthy_upstream names the DNS error', async () => {
  const f = fakeLookup();
  const r = new DnsResolver(() => undefined, f.lookup);
  await r.update({ upstreams: { app: { endpoints: ['http://nowhere.test:80'], dns_refresh: 60_000 } } });
  r.stop();
  const pool = new UpstreamPool('never', upstreamCfg({ endpoints: ['http://nowhere.test:80', 'http://127.0.0.1:9'] }), 'upstreams.never');
  assert.deepEqual(pool.endpoints.map((e) => e.label), ['http://127.0.0.1:9']);
  pool.endpoints[0]!.state.probeHealthy = false;
  assert.equal(pool.balancer.pick(), undefined);
  assert.match(pool.balancer.downReason(), /^2 of 2 endpoints are down \(http:\/\/nowhere\.test:80: DNS lookup of nowhere\.test failed: ENOTFOUND; http:\/\/127\.0\.0\.1:9: failed health check\)$/);
  await pool.close();
  endpointState('never', 'http://127.0.0.1:9').probeHealthy = true;
});

test('a pool follows the address book: new addresses join, removed ones drain (kept until their requests finish), kept ones keep their state', async () => {
  applyAddresses([{ host: 'svc-d.test', addresses: ['10.0.3.1', '10.0.3.2'], at: Date.now() }]);
  const pool = new UpstreamPool('d', upstreamCfg({ endpoints: ['https://svc-d.test:8443'], balance: 'hash' }), 'upstreams.d');
  const [one, two] = pool.endpoints;
  assert.deepEqual(pool.endpoints.map((e) => e.label), ['https://10.0.3.1:8443 (svc-d.test)', 'https://10.0.3.2:8443 (svc-d.test)']);
  assert.equal(one!.tls?.servername, 'svc-d.test', 'SNI and the certificate check use the name');
  assert.equal(one!.h1!.defaultHost, 'svc-d.test:8443', 'Host when the request has none');
  // a request in flight on the endpoint that will leave
  pool.balancer.begin(two!);
  one!.state.consecutiveFailures = 2;
  const keys = Array.from({ length: 200 }, (_, i) => `client-${i}`);
  const onOne = keys.filter((k) => pool.balancer.pick(k) === one);
  applyAddresses([{ host: 'svc-d.test', addresses: ['10.0.3.1', '10.0.3.3'], at: Date.now() }]);
  assert.deepEqual(pool.endpoints.map((e) => e.label), ['https://10.0.3.1:8443 (svc-d.test)', 'https://10.0.3.3:8443 (svc-d.test)']);
  assert.equal(pool.endpoints[0], one, 'the kept endpoint is the same object, connections and state included');
  assert.equal(one!.state.consecutiveFailures, 2);
  // consistent hashing: a key of the kept endpoint stays there or moves to the new one, never elsewhere
  const three = pool.endpoints[1];
  assert.ok(onOne.every((k) => [one, three].includes(pool.balancer.pick(k)!)), 'hash keys of a kept endpoint move only to the new one');
  assert.ok(onOne.filter((k) => pool.balancer.pick(k) === one).length > onOne.length / 3, 'most stay');
  for (let i = 0; i < 20; i++) assert.notEqual(pool.balancer.pick(), two, 'no new request goes to a removed address');
  // drained: its pool stays open while the request runs, closes after it ended
  assert.equal((two!.h1 as unknown as { closed: boolean }).closed, false);
  pool.balancer.end(two!);
  await sleep(1_100);
  assert.equal((two!.h1 as unknown as { closed: boolean }).closed, true);
  // a new address starts healthy and not ejected
  assert.equal(pool.endpoints[1]!.state.available(), true);
  await pool.close();
  // a closed pool no longer follows the book
  applyAddresses([{ host: 'svc-d.test', addresses: ['10.0.3.9'], at: Date.now() }]);
  assert.equal(pool.endpoints.length, 2);
});

test('tcp upstreams follow the address book too, keeping the name for SNI', () => {
  applyAddresses([{ host: 'svc-e.test', addresses: ['10.0.4.1'], at: Date.now() }]);
  const up = new TcpUpstream('e', upstreamCfg({ endpoints: ['tls://svc-e.test:5432'] }), 'upstreams.e');
  assert.deepEqual(up.endpoints.map((e) => [e.label, e.host, e.servername]), [['tls://10.0.4.1:5432 (svc-e.test)', '10.0.4.1', 'svc-e.test']]);
  applyAddresses([{ host: 'svc-e.test', addresses: ['10.0.4.1', '10.0.4.2'], at: Date.now() }]);
  assert.equal(up.endpoints.length, 2);
  up.close();
});
