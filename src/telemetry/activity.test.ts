// The dashboard's activity recorder and the merge across workers: the documented bounds
// (LRU of identities, capped refusal groups and rule keys), what counts as a denial, how
// refusals are grouped, and how several workers' snapshots add up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActivityRecorder, mergeActivity, MAX_CLIENTS, type ClientFacts } from './activity.js';

const client = (n: number | string): ClientFacts => Object.freeze({ verify: 'SUCCESS', subject: `CN=c${n}`, fingerprint: `fp${n}`, spiffe_id: `spiffe://t/c${n}` });
const allow = Object.freeze({ allowed: true, rule: 'routes[r].allow[0]', reason: 'allowed by routes[r].allow[0]' });
const deny = Object.freeze({ allowed: false, reason: 'no allow rule matched' });

test('activity-clients-bounded: the recorder keeps the most recently seen identities, least recent dropped first', () => {
  let t = 0;
  const rec = createActivityRecorder({ maxClients: 3, now: () => (t += 1000) });
  for (const n of [1, 2, 3]) rec.clientActivity('api', 'r', client(n), '127.0.0.1', 200, allow, undefined, undefined);
  rec.clientActivity('api', 'r', client(1), '127.0.0.1', 200, allow, undefined, undefined); // 1 is the newest now
  rec.clientActivity('api', 'r', client(4), '127.0.0.1', 200, allow, undefined, undefined); // evicts 2, the least recent
  const s = rec.snapshot();
  assert.deepEqual(s.clients.map((c) => c.subject), ['CN=c4', 'CN=c1', 'CN=c3']);
  assert.equal(s.clients.find((c) => c.subject === 'CN=c1')!.requests, 2);
  assert.equal(MAX_CLIENTS, 200, 'the documented bound (docs/dashboard.md)');
});

test('activity: only identity refusals count as denials, grouped by the deciding rule, with the sentence sent', () => {
  let t = 1000;
  const rec = createActivityRecorder({ now: () => t++ });
  rec.clientActivity('api', 'r', client(1), '10.0.0.1', 403, deny, 'forbidden', 'route r does not allow this client (no allow rule matched); ask for access or use an allowed identity');
  rec.clientActivity('api', 'r', client(2), '10.0.0.2', 403, deny, 'forbidden', 'route r does not allow this client (no allow rule matched); ask for access or use an allowed identity');
  rec.clientActivity('api', '-', client(1), '10.0.0.1', 404, undefined, 'no_route', 'no route on listener api matches GET /x');
  rec.clientActivity('api', 'r', client(1), '10.0.0.1', 502, allow, 'ECONNREFUSED', undefined);
  const s = rec.snapshot();
  assert.equal(s.refusals.length, 1, JSON.stringify(s.refusals));
  const g = s.refusals[0]!;
  assert.equal(g.count, 2);
  assert.equal(g.reason, 'no allow rule matched');
  assert.equal(g.code, 'forbidden');
  assert.equal(g.last_client, 'CN=c2');
  assert.equal(g.last_remote_addr, '10.0.0.2');
  assert.match(g.message, /ask for access/);
  const c1 = s.clients.find((c) => c.subject === 'CN=c1')!;
  assert.equal(c1.requests, 3);
  assert.equal(c1.denials, 1);
  assert.equal(c1.last_status, 502);
  assert.equal(c1.last_denial?.reason, 'no allow rule matched');
  const r = s.routes.find((x) => x.route === 'r')!;
  assert.deepEqual(r.rules.sort((a, b) => a.rule.localeCompare(b.rule)), [
    { rule: 'no allow rule matched', allow: 0, deny: 2 },
    { rule: 'routes[r].allow[0]', allow: 1, deny: 0 },
  ]);
  assert.equal(r.denials, 2);
});

test('activity: a refused handshake records the failed certificate as a client and groups by reason', () => {
  const rec = createActivityRecorder();
  const failed = { verify: 'FAILED:unknown_ca', subject: 'CN=x', fingerprint: 'fpx' };
  rec.handshakeRefused('api', 'unknown_ca', 'the client certificate is not signed by a CA this listener trusts; ...', failed, '10.0.0.9');
  rec.handshakeRefused('api', 'no_cert', 'no client certificate was sent; ...', { verify: 'NONE' }, '10.0.0.8');
  rec.handshakeRefused('api', 'unknown_ca', 'the client certificate is not signed by a CA this listener trusts; ...', failed, '10.0.0.9');
  const s = rec.snapshot();
  assert.deepEqual(s.refusals.map((g) => [g.stage, g.reason, g.count]).sort(), [['handshake', 'no_cert', 1], ['handshake', 'unknown_ca', 2]]);
  const x = s.clients.find((c) => c.key === 'fpx')!;
  assert.equal(x.denials, 2);
  assert.equal(x.requests, 0);
  assert.equal(x.verify, 'FAILED:unknown_ca');
  assert.equal(s.clients.find((c) => c.key === '')!.verify, 'NONE', 'clients without a certificate share one entry');
});

test('activity-groups-bounded: refusal groups and rule keys stop at their caps and count what they dropped', () => {
  const rec = createActivityRecorder({ maxRefusalGroups: 2, maxRuleKeys: 2 });
  for (let i = 0; i < 5; i++) {
    rec.clientActivity('api', `r${i}`, client(1), '::1', 403, { allowed: false, rule: `rule${i}`, reason: 'denied' }, 'forbidden', 'm');
  }
  const s = rec.snapshot();
  assert.equal(s.refusals.length, 2);
  assert.equal(s.dropped.refusal_groups, 3);
  assert.equal(s.routes.reduce((n, r) => n + r.rules.length, 0), 2);
  assert.equal(s.dropped.rule_keys, 3);
  assert.equal(s.routes.length, 5, 'per-route totals are still counted');
});

test('mergeActivity: counts add up across workers; last fields come from the worker that saw the client last', () => {
  let t = 0;
  const a = createActivityRecorder({ now: () => (t += 10) });
  const b = createActivityRecorder({ now: () => (t += 10) });
  a.clientActivity('api', 'r', client(1), '10.0.0.1', 200, allow, undefined, undefined);
  b.clientActivity('api', 'r', client(1), '10.0.0.2', 403, deny, 'forbidden', 'no');
  a.clientActivity('api', 'r', client(2), '10.0.0.3', 403, deny, 'forbidden', 'no');
  a.clientActivity('api', 'r', client(1), '10.0.0.1', 200, allow, undefined, undefined);
  const m = mergeActivity([a.snapshot(), b.snapshot()]);
  const c1 = m.clients.find((c) => c.subject === 'CN=c1')!;
  assert.equal(c1.requests, 3);
  assert.equal(c1.denials, 1);
  assert.equal(c1.remote_addr, '10.0.0.1', 'the later request was on worker a');
  assert.equal(c1.last_denial?.code, 'forbidden', 'the denial seen on worker b is kept');
  assert.deepEqual(m.clients.map((c) => c.subject), ['CN=c1', 'CN=c2']);
  assert.equal(m.refusals.length, 1);
  assert.equal(m.refusals[0]!.count, 2);
  const r = m.routes.find((x) => x.route === 'r')!;
  assert.equal(r.requests, 4);
  assert.deepEqual(r.rules.find((x) => x.rule === 'no allow rule matched'), { rule: 'no allow rule matched', allow: 0, deny: 2 });
  assert.equal(mergeActivity([a.snapshot(), b.snapshot()], 1).clients.length, 1, 'the merged view is cut to the bound too');
});
