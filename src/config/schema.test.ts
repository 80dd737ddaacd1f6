// Unit tests for the config schema: defaults, normalization of every value kind, and the
// pure helpers (addresses, loopback, key suggestions, pins, serials, trust inheritance).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigSchema,
  isLoopbackHost,
  normalizeFingerprint,
  normalizePin,
  normalizeSerial,
  splitAddress,
  suggestKey,
  trustFor,
  type Config,
} from './schema.js';

const HEX = 'ab'.repeat(32);

function parse(raw: unknown): Config {
  return ConfigSchema.parse(raw);
}

const minimal = () => ({
  listeners: [
    {
      name: 'api',
      address: '0.0.0.0:8443',
      tls: { cert: 'pki/server.crt', key: 'pki/server.key', client_ca: 'pki/ca.crt' },
      routes: [{ upstream: 'app' }],
    },
  ],
  upstreams: { app: { endpoints: ['http://127.0.0.1:8080'] } },
});

test('the minimal config gets every documented default', () => {
  const c = parse(minimal());
  assert.equal(c.workers, 'auto');
  assert.deepEqual(c.admin, { address: '127.0.0.1:9901', allow: [], host: '127.0.0.1', port: 9901 });
  assert.deepEqual(c.log, { level: 'info', access: 'stdout' });
  const l = c.listeners[0]!;
  assert.equal(l.protocol, 'http');
  assert.equal(l.unsafe_plain, false);
  assert.deepEqual(l.identity, { headers: ['standard'], forward_cert: false });
  assert.deepEqual(l.allow, []);
  assert.deepEqual(l.deny, []);
  assert.equal(l.proxy_protocol, 'off');
  assert.equal(l.merge_slashes, true);
  assert.equal(l.upstream, undefined);
  assert.deepEqual(l.limits, { max_header_bytes: 16384, max_body_bytes: 0, header_timeout: 10_000, idle_timeout: 60_000, max_connections: 1024, handshake_timeout: 10_000, send_timeout: 60_000, max_headers: 100, max_concurrent_streams: 128 });
  assert.deepEqual(l.tls, {
    cert: 'pki/server.crt',
    key: 'pki/server.key',
    certificates: [],
    min_version: 'TLSv1.2',
    client_auth: 'require',
    client_ca: ['pki/ca.crt'],
    verify_depth: 3,
    crl: [],
    crl_mode: 'chain',
    ocsp: { mode: 'off', cache: 300_000, timeout: 2_000 },
    pins: [],
    cert_policy: { min_rsa_bits: 2048, min_ec_bits: 256, key_types: ['rsa', 'ec', 'ed25519'], max_validity: 0, strict_rfc5280: false },
    reject: 'close',
  });
  assert.deepEqual(l.routes, [{ name: 'route-0', upstream: 'app', allow: [], deny: [] }]);
  assert.deepEqual(c.upstreams.app, {
    endpoints: ['http://127.0.0.1:8080'],
    balance: 'round_robin',
    retries: 2,
    retry_budget: { percent: 20, min_concurrent: 3 },
    outlier: { consecutive_failures: 5, base_ejection: 30_000, max_ejection: 300_000, max_ejected_percent: 50, count_5xx: true },
    timeouts: { connect: 2_000, request: 30_000, idle: 60_000 },
    dns_refresh: 5_000,
    limits: { max_connections: 1024, max_pending: 1024, max_requests: 1024 },
  });
});

test('defaults are fresh objects per parse, not shared', () => {
  const a = parse(minimal());
  const b = parse(minimal());
  assert.notEqual(a.listeners[0]!.allow, b.listeners[0]!.allow);
  assert.notEqual(a.listeners[0]!.tls!.cert_policy, b.listeners[0]!.tls!.cert_policy);
  assert.notEqual(a.listeners[0]!.tls!.cert_policy.key_types, b.listeners[0]!.tls!.cert_policy.key_types);
});

test('listeners without a name are named by index; routes likewise', () => {
  const raw = minimal();
  const l = raw.listeners[0]! as Record<string, unknown>;
  delete l.name;
  l.routes = [{ upstream: 'app' }, { name: 'charge', upstream: 'app' }, { upstream: 'app' }];
  const c = parse(raw);
  assert.equal(c.listeners[0]!.name, 'listener-0');
  assert.deepEqual(c.listeners[0]!.routes.map((r) => r.name), ['route-0', 'charge', 'route-2']);
});

test('durations everywhere become milliseconds', () => {
  const raw = minimal() as any;
  raw.listeners[0].limits = { header_timeout: '500ms', idle_timeout: '2m' };
  raw.listeners[0].tls.ocsp = { mode: 'soft', cache: '1h', timeout: 3000, responder: 'http://ocsp.example.com' };
  raw.listeners[0].tls.cert_policy = { max_validity: '90d' };
  raw.listeners[0].routes[0].timeout = '30s';
  raw.upstreams.app.timeouts = { connect: '1s', request: '1m', idle: '1h30m' };
  raw.upstreams.app.health_check = { interval: '10s' };
  const c = parse(raw);
  const l = c.listeners[0]!;
  assert.equal(l.limits.header_timeout, 500);
  assert.equal(l.limits.idle_timeout, 120_000);
  assert.deepEqual(l.tls!.ocsp, { mode: 'soft', cache: 3_600_000, timeout: 3_000, responder: 'http://ocsp.example.com' });
  assert.equal(l.tls!.cert_policy.max_validity, 90 * 86_400_000);
  assert.equal(l.routes[0]!.timeout, 30_000);
  assert.deepEqual(c.upstreams.app!.timeouts, { connect: 1_000, request: 60_000, idle: 5_400_000 });
  assert.deepEqual(c.upstreams.app!.health_check, { path: '/healthz', interval: 10_000, timeout: 1_000, healthy: 2, unhealthy: 3 });
});

test('string-or-list values are always lists', () => {
  const raw = minimal() as any;
  raw.listeners[0].tls.crl = 'a.crl';
  raw.listeners[0].tls.client_ca = ['old.crt', 'new.crt'];
  raw.listeners[0].identity = { headers: 'xfcc' };
  raw.listeners[0].allow = [{ cn: 'svc', o: ['A', 'B'] }];
  raw.upstreams.app.endpoints = 'http://10.0.0.1:80';
  raw.upstreams.app.tls = { ca: 'up-ca.crt' };
  const c = parse(raw);
  const l = c.listeners[0]!;
  assert.deepEqual(l.tls!.crl, ['a.crl']);
  assert.deepEqual(l.tls!.client_ca, ['old.crt', 'new.crt']);
  assert.deepEqual(l.identity.headers, ['xfcc']);
  assert.deepEqual(l.allow, [{ cn: ['svc'], o: ['A', 'B'] }]);
  assert.deepEqual(c.upstreams.app!.endpoints, ['http://10.0.0.1:80']);
  assert.deepEqual(c.upstreams.app!.tls, { ca: ['up-ca.crt'], verify_names: [] });
});

test('addresses are parsed into host and port, IPv6 without brackets', () => {
  const raw = minimal() as any;
  raw.listeners[0].address = '[::1]:0';
  raw.admin = { address: 'localhost:9000' };
  const c = parse(raw);
  assert.equal(c.listeners[0]!.host, '::1');
  assert.equal(c.listeners[0]!.port, 0);
  assert.equal(c.admin.host, 'localhost');
  assert.equal(c.admin.port, 9000);
});

test('splitAddress accepts host:port forms and explains the rest', () => {
  assert.deepEqual(splitAddress('0.0.0.0:8443'), { host: '0.0.0.0', port: 8443 });
  assert.deepEqual(splitAddress('[::]:443'), { host: '::', port: 443 });
  assert.deepEqual(splitAddress('proxy.internal:1'), { host: 'proxy.internal', port: 1 });
  for (const bad of ['8443', '0.0.0.0', 'host:', '10.0.0.300:80', '[zz]:80', 'a b:80', 'h:99999']) {
    assert.ok('problem' in splitAddress(bad), bad);
  }
  assert.match((splitAddress(':8443') as { problem: string }).problem, /0\.0\.0\.0:8443/);
  assert.match((splitAddress('::1:8443') as { problem: string }).problem, /brackets/);
});

test('isLoopbackHost knows 127/8, ::1 and localhost only', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', 'localhost.example.com']) assert.ok(!isLoopbackHost(h), h);
});

test('pins are normalized to sha256:<lowercase hex>; other forms are rejected', () => {
  const colons = `sha256:${HEX.toUpperCase().match(/../g)!.join(':')}`;
  assert.equal(normalizePin(colons), `sha256:${HEX}`);
  assert.equal(normalizePin(`SHA256:${HEX}`), `sha256:${HEX}`);
  assert.equal(normalizePin(HEX), undefined, 'the prefix is required on pins');
  assert.equal(normalizePin('sha256:abcd'), undefined);
  assert.equal(normalizePin('sha256/q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k='), undefined);
  const raw = minimal() as any;
  raw.listeners[0].tls.pins = colons;
  assert.deepEqual(parse(raw).listeners[0]!.tls!.pins, [`sha256:${HEX}`]);
});

test('rule serials and fingerprints are canonical; dns is lowercased', () => {
  assert.equal(normalizeSerial('00:0a:1B'), 'A1B');
  assert.equal(normalizeSerial('0x00FF'), 'FF');
  assert.equal(normalizeSerial('0000'), '0');
  assert.equal(normalizeSerial('xyz'), undefined);
  assert.equal(normalizeFingerprint(HEX.toUpperCase()), `sha256:${HEX}`);
  assert.equal(normalizeFingerprint(`sha256:${HEX}`), `sha256:${HEX}`);
  assert.equal(normalizeFingerprint('abc'), undefined);
  const raw = minimal() as any;
  raw.listeners[0].deny = [{ serial: ['01:02', '0A'], fingerprint: HEX.toUpperCase(), dns: 'API.Example.com', spiffe_id: 'spiffe://ex.org/*' }];
  assert.deepEqual(parse(raw).listeners[0]!.deny, [
    { serial: ['102', 'A'], fingerprint: [`sha256:${HEX}`], dns: ['api.example.com'], spiffe_id: ['spiffe://ex.org/*'] },
  ]);
});

test('route match: hosts lowercased, methods kept exactly as written, lists always', () => {
  const raw = minimal() as any;
  raw.listeners[0].routes = [
    { match: { host: 'API.example.com', methods: 'POST', path: '/v1' }, upstream: 'app', client_auth: 'require' },
    { match: { host: ['*.Example.com'], methods: ['GET', 'HEAD', 'M-SEARCH', 'frob'], path_regex: '^/v[0-9]+/' }, upstream: 'app' },
    { match: { path_exact: '/healthz' }, upstream: 'app' },
  ];
  const [a, b, c] = parse(raw).listeners[0]!.routes;
  assert.deepEqual(a!.match, { host: ['api.example.com'], methods: ['POST'], path: '/v1' });
  assert.equal(a!.client_auth, 'require');
  assert.deepEqual(b!.match, { host: ['*.example.com'], methods: ['GET', 'HEAD', 'M-SEARCH', 'frob'], path_regex: '^/v[0-9]+/' });
  assert.deepEqual(c!.match, { path_exact: '/healthz' });
  assert.equal(c!.client_auth, undefined);
});

test('route methods: a case variant of a known method, or a non-token, is an error naming the fix', () => {
  const raw = minimal() as any;
  raw.listeners[0].routes = [{ match: { methods: ['delete', 'Get', 'GET /x', ''] }, upstream: 'app' }];
  const r = ConfigSchema.safeParse(raw);
  assert.ok(!r.success);
  const messages = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  assert.deepEqual(messages, [
    'listeners.0.routes.0.match.methods.0: "delete" never matches: methods are case-sensitive; write DELETE',
    'listeners.0.routes.0.match.methods.1: "Get" never matches: methods are case-sensitive; write GET',
    'listeners.0.routes.0.match.methods.2: "GET /x" is not an HTTP method (a token such as GET or PROPFIND); fix the spelling',
    'listeners.0.routes.0.match.methods.3: "" is not an HTTP method (a token such as GET or PROPFIND); fix the spelling',
  ]);
});

test('merge_slashes and limits.max_headers: defaults, explicit values, wrong types', () => {
  const raw = minimal() as any;
  raw.listeners[0].merge_slashes = false;
  raw.listeners[0].limits = { max_headers: 20 };
  const l = parse(raw).listeners[0]!;
  assert.equal(l.merge_slashes, false);
  assert.equal(l.limits.max_headers, 20);
  for (const [key, value] of [['merge_slashes', 'yes'], ['limits', { max_headers: 0 }], ['limits', { max_headers: 1.5 }]] as const) {
    const bad = minimal() as any;
    bad.listeners[0][key] = value;
    assert.ok(!ConfigSchema.safeParse(bad).success, `${key}: ${JSON.stringify(value)}`);
  }
});

test('SNI entries keep unset trust keys undefined, and fill given ones with defaults', () => {
  const raw = minimal() as any;
  raw.listeners[0].tls.certificates = [
    { server_names: 'API.example.com', cert: 'a.crt', key: 'a.key' },
    { server_names: ['b.example.com'], cert: 'b.crt', key: 'b.key', client_auth: 'optional', client_ca: 'b-ca.crt', ocsp: { mode: 'hard' }, allow: [{ cn: 'x' }] },
  ];
  const tls = parse(raw).listeners[0]!.tls!;
  const [a, b] = tls.certificates;
  assert.deepEqual(a, { server_names: ['api.example.com'], cert: 'a.crt', key: 'a.key' });
  assert.equal(b!.client_auth, 'optional');
  assert.deepEqual(b!.client_ca, ['b-ca.crt']);
  assert.deepEqual(b!.ocsp, { mode: 'hard', cache: 300_000, timeout: 2_000 });
  assert.deepEqual(b!.allow, [{ cn: ['x'] }]);
  assert.equal(b!.deny, undefined);

  const inherited = trustFor(tls, a);
  assert.equal(inherited.client_auth, 'require');
  assert.deepEqual(inherited.client_ca, ['pki/ca.crt']);
  assert.equal(inherited.ocsp, tls.ocsp);
  const own = trustFor(tls, b);
  assert.equal(own.client_auth, 'optional');
  assert.deepEqual(own.client_ca, ['b-ca.crt']);
  assert.equal(own.ocsp.mode, 'hard');
  assert.equal(own.verify_depth, 3);
  assert.deepEqual(trustFor(tls), { ...inherited });
});

test('extra keys: unsafe_plain, admin.tls/allow/probe_address, workers, off written as false', () => {
  const raw = minimal() as any;
  raw.workers = 4;
  raw.admin = { address: '0.0.0.0:9901', tls: { cert: 'a.crt', key: 'a.key', client_ca: 'ops-ca.crt' }, allow: [{ cn: 'ops' }], probe_address: '0.0.0.0:9902' };
  raw.listeners[0].unsafe_plain = true;
  raw.listeners[0].tls.ocsp = { mode: false };
  const c = parse(raw);
  assert.equal(c.workers, 4);
  assert.deepEqual(c.admin.tls, { cert: 'a.crt', key: 'a.key', client_ca: ['ops-ca.crt'], crl: [] });
  assert.deepEqual(c.admin.allow, [{ cn: ['ops'] }]);
  assert.deepEqual(c.admin.probe, { host: '0.0.0.0', port: 9902 });
  assert.equal(c.listeners[0]!.unsafe_plain, true);
  assert.equal(c.listeners[0]!.tls!.ocsp.mode, 'off');
});

test('suggestKey finds likely typos and nothing for unrelated words', () => {
  const known = ['client_ca', 'client_auth', 'cert', 'key', 'crl'];
  assert.equal(suggestKey('clientca', known), 'client_ca');
  assert.equal(suggestKey('clientCA', known), 'client_ca');
  assert.equal(suggestKey('client-auth', known), 'client_auth');
  assert.equal(suggestKey('client_aut', known), 'client_auth');
  assert.equal(suggestKey('certs', known), 'cert');
  assert.equal(suggestKey('banana', known), undefined);
  assert.equal(suggestKey('listener', ['workers', 'admin', 'log', 'listeners', 'upstreams']), 'listeners');
});

test('connection limits: max_connections 0 means no limit, handshake_timeout must be above 0, send_timeout 0 turns it off', () => {
  const withLimits = (limits: Record<string, unknown>) => {
    const raw = minimal() as { listeners: Record<string, unknown>[] };
    raw.listeners[0]!.limits = limits;
    return parse(raw).listeners[0]!.limits;
  };
  const l = withLimits({ max_connections: 0, handshake_timeout: '3s', send_timeout: 0 });
  assert.equal(l.max_connections, 0);
  assert.equal(l.handshake_timeout, 3000);
  assert.equal(l.send_timeout, 0);
  assert.equal(withLimits({ send_timeout: '2m' }).send_timeout, 120_000);
  assert.throws(() => withLimits({ handshake_timeout: '0s' }), /must be longer than 0/);
  assert.throws(() => withLimits({ max_connections: -1 }));
});
