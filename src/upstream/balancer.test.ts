// The shared balancer without sockets: which endpoint each policy picks, that unavailable
// and already-tried endpoints are skipped, consistent hashing's stability (~1/N of keys
// move when one endpoint leaves), outlier ejection with its cap and growth, the retry budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Balanced, type UpstreamObserver } from './balancer.js';
import { EndpointState } from './endpoint-state.js';
import type { UpstreamConfig } from '../config/schema.js';

type Cfg = Pick<UpstreamConfig, 'balance' | 'outlier' | 'retries' | 'retry_budget'>;
const base: Cfg = {
  balance: 'round_robin',
  retries: 2,
  retry_budget: { percent: 20, min_concurrent: 3 },
  outlier: { consecutive_failures: 3, base_ejection: 30_000, max_ejection: 300_000, max_ejected_percent: 50, count_5xx: true },
};
const eps = (n: number, tag = 'u'): Balanced[] => Array.from({ length: n }, (_, i) => ({ label: `http://10.0.0.${i + 1}:80`, state: new EndpointState(tag, `e${i}`) }));

test('round robin skips endpoints that failed their health check and those already tried', () => {
  const e = eps(3);
  const b = new Balancer('u', e, base);
  e[1]!.state.probeHealthy = false;
  assert.deepEqual([b.pick(), b.pick(), b.pick()].map((x) => x!.label), [e[0]!.label, e[2]!.label, e[0]!.label]);
  assert.equal(b.pick(undefined, [e[0]!, e[2]!]), undefined);
  assert.match(b.downReason(), /^1 of 3 endpoints are down \(http:\/\/10\.0\.0\.2:80: failed health check\)$/);
});

test('least_request (P2C) never picks the busier of two endpoints', () => {
  const e = eps(2);
  const b = new Balancer('u', e, { ...base, balance: 'least_request' });
  e[0]!.state.inflight = 5;
  for (let i = 0; i < 50; i++) assert.equal(b.pick(), e[1]);
});

test('hash keeps a key on one endpoint and moves only the keys of an endpoint that leaves (~1/N)', () => {
  const e = eps(4);
  const b = new Balancer('u', e, { ...base, balance: 'hash' });
  const keys = Array.from({ length: 2000 }, (_, i) => `spiffe://example.org/client/${i}`);
  const before = keys.map((k) => b.pick(k)!);
  assert.deepEqual(keys.map((k) => b.pick(k)!), before, 'stable while the set is stable');
  const counts = e.map((x) => before.filter((y) => y === x).length);
  for (const c of counts) assert.ok(c > 300 && c < 700, `spread: ${counts}`);
  e[2]!.state.probeHealthy = false;
  const after = keys.map((k) => b.pick(k)!);
  const moved = keys.filter((_, i) => after[i] !== before[i]).length;
  // exactly the keys that were on the endpoint that left, and no other
  assert.equal(moved, counts[2]);
  assert.ok(keys.every((_, i) => before[i] === e[2] || after[i] === before[i]));
});

test('outlier: N failures in a row eject; a success resets the run; at most max_ejected_percent (but one) at once; ejection grows', () => {
  const e = eps(4, 'o');
  const events: string[] = [];
  const obs: UpstreamObserver = { result: () => undefined, retry: () => undefined, ejected: (_u, ep, ms) => events.push(`${ep} ${ms}`), returned: () => undefined };
  const b = new Balancer('o', e, base, obs);
  b.failed(e[0]!, 'connect_failure', 'ECONNREFUSED');
  b.failed(e[0]!, 'connect_failure', 'ECONNREFUSED');
  b.succeeded(e[0]!);
  b.failed(e[0]!, 'reset', 'ECONNRESET');
  b.failed(e[0]!, 'reset', 'ECONNRESET');
  assert.equal(e[0]!.state.ejected(), false, 'the success reset the run');
  b.failed(e[0]!, '5xx', 'answered 503');
  assert.equal(e[0]!.state.ejected(), true);
  assert.deepEqual(events, ['http://10.0.0.1:80 30000']);
  for (let i = 0; i < 3; i++) b.failed(e[1]!, 'connect_failure', 'ECONNREFUSED');
  for (let i = 0; i < 3; i++) b.failed(e[2]!, 'connect_failure', 'ECONNREFUSED');
  assert.deepEqual([e[1], e[2]].map((x) => x!.state.ejected()), [true, false], '50% of 4 = 2 ejected at most');
  assert.match(b.downReason(), /ejected for 30 s more after failures in a row: ECONNREFUSED/);
  // back from ejection, failing again: ejected for twice as long
  e[0]!.state.ejectedUntil = Date.now() - 1;
  for (let i = 0; i < 3; i++) b.failed(e[0]!, 'connect_failure', 'ECONNREFUSED');
  assert.equal(events.at(-1), 'http://10.0.0.1:80 60000');
  for (const x of e) clearTimeout(x.state.returnTimer);
});

test('count_5xx: false leaves 5xx answers out of the failure run; consecutive_failures: 0 never ejects', () => {
  const e = eps(2, 'n');
  const b = new Balancer('n', e, { ...base, outlier: { ...base.outlier, count_5xx: false } });
  for (let i = 0; i < 10; i++) b.failed(e[0]!, '5xx', 'answered 500');
  assert.equal(e[0]!.state.ejected(), false);
  const off = new Balancer('n', e, { ...base, outlier: { ...base.outlier, consecutive_failures: 0 } });
  for (let i = 0; i < 10; i++) off.failed(e[1]!, 'connect_failure', 'ECONNREFUSED');
  assert.equal(e[1]!.state.ejected(), false);
});

test('retry budget: retries in flight are capped at percent of requests in flight, min_concurrent always allowed', () => {
  const e = eps(1, 'r');
  const b = new Balancer('r', e, base);
  assert.deepEqual([b.takeRetry(), b.takeRetry(), b.takeRetry(), b.takeRetry()], [true, true, true, false]);
  for (let i = 0; i < 30; i++) b.begin(e[0]!);
  assert.equal(b.takeRetry(), true, '20% of 30 in flight = 6');
  assert.equal(b.takeRetry(), true);
  assert.equal(b.takeRetry(), true);
  assert.equal(b.takeRetry(), false);
});

test('outlier never ejects the last available endpoint (a lone endpoint keeps its traffic, as in nginx)', () => {
  const one = eps(1, 'l');
  const b = new Balancer('l', one, base);
  for (let i = 0; i < 10; i++) b.failed(one[0]!, 'reset', 'ECONNRESET');
  assert.equal(one[0]!.state.ejected(), false);
  const two = eps(2, 'l2');
  const b2 = new Balancer('l2', two, { ...base, outlier: { ...base.outlier, max_ejected_percent: 100 } });
  two[1]!.state.probeHealthy = false;
  for (let i = 0; i < 10; i++) b2.failed(two[0]!, 'reset', 'ECONNRESET');
  assert.equal(two[0]!.state.ejected(), false, 'the other one is down: keep this one');
});
