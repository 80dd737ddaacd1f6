// The dashboard document: configured routes are listed even before any traffic, activity
// for routes the config no longer has is kept and flagged, certificates come soonest
// expiry first, and times become RFC 3339.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDashboard, describeMatch } from './ui-data.js';
import type { DashboardInput } from './ui-data.js';

const listener = (over: Record<string, unknown>) => ({ name: 'api', protocol: 'http', allow: [], deny: [], routes: [], tls: { client_auth: 'require' }, ...over });

test('routes: configured ones with zero counts, worker activity joined, unknown ones flagged', () => {
  const config = {
    listeners: [
      listener({ routes: [{ name: 'pay', match: { path: '/pay', methods: ['POST'] }, upstream: 'app', allow: [{ cn: 'a' }], deny: [] }, { name: 'idle', upstream: 'app', allow: [], deny: [] }] }),
      listener({ name: 'raw', protocol: 'tcp', upstream: 'db', routes: [] }),
    ],
  } as unknown as DashboardInput['config'];
  const doc = buildDashboard({
    version: '1.0.0',
    startedAt: new Date(0),
    generation: 3,
    workers: { configured: 2, live: 2, answered: 2 },
    certificates: [],
    config,
    upstreams: [],
    reloads: [{ at: new Date(5000), ok: false, generation: 3, trigger: 'file', error: 'bad' }],
    activity: {
      clients: [{ key: 'fp', subject: 'CN=a', spiffe_id: null, issuer: null, verify: 'SUCCESS', listener: 'api', remote_addr: '::1', first_seen: 1000, last_seen: 2000, requests: 2, denials: 1, last_route: 'pay', last_rule: 'r', last_allowed: true, last_status: 200, last_denial: { at: 1500, code: 'forbidden', reason: 'x', message: 'm', route: 'pay' } }],
      refusals: [],
      routes: [
        { listener: 'api', route: 'pay', requests: 5, denials: 1, rules: [{ rule: 'routes[pay].allow[0]', allow: 4, deny: 0 }, { rule: 'no allow rule matched', allow: 0, deny: 1 }] },
        { listener: 'api', route: 'gone', requests: 1, denials: 0, rules: [] },
      ],
      dropped: { refusal_groups: 0, rule_keys: 0 },
    },
    now: new Date(10_000),
  });
  const row = (l: string, r: string) => doc.routes.find((x) => x.listener === l && x.route === r)!;
  assert.equal(row('api', 'pay').requests, 5);
  assert.equal(row('api', 'pay').match, 'path /pay · POST');
  assert.equal(row('api', 'pay').rules[0]!.rule, 'routes[pay].allow[0]', 'most hits first');
  assert.equal(row('api', 'idle').requests, 0);
  assert.equal(row('raw', '-').upstream, 'db');
  assert.equal(row('api', 'gone').configured, false);
  assert.equal(doc.clients[0]!.last_seen, '1970-01-01T00:00:02.000Z');
  assert.equal(doc.clients[0]!.last_denial!.at, '1970-01-01T00:00:01.500Z');
  assert.deepEqual(doc.reloads, [{ at: '1970-01-01T00:00:05.000Z', ok: false, generation: 3, trigger: 'file', error: 'bad' }]);
  assert.equal(doc.uptime_seconds, 10);
  assert.equal(describeMatch(undefined), 'everything');
  assert.equal(describeMatch({ host: ['a.example.com'], path_regex: '^/v[0-9]+/' } as never), 'host a.example.com · path ~ ^/v[0-9]+/');
});
