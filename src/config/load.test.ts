// Unit tests for config loading: error messages and paths, every cross-field rule, path
// resolution, freezing, parse errors and the file checks of loadConfig.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, PortcullisError, PortcullisErrors } from '../errors.js';
import { formatConfigPath, loadConfig, parseConfigText, referencedFiles, validateConfig } from './load.js';

const CONFIG = '/etc/portcullis/portcullis.yaml';

const minimal = (): any => ({
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

function messages(raw: unknown): string[] {
  const r = validateConfig(raw, CONFIG);
  return r.ok ? [] : r.errors.map((e) => e.message);
}

/** Asserts the config fails with exactly one error, at `path`, whose message matches. */
function assertOnly(raw: unknown, path: string, pattern: RegExp): void {
  const all = messages(raw);
  assert.equal(all.length, 1, `expected one error, got:\n${all.join('\n')}`);
  assert.ok(all[0]!.startsWith(`${path}: `), all[0]);
  assert.match(all[0]!, pattern);
}

test('the minimal config is valid', () => {
  assert.deepEqual(messages(minimal()), []);
});

test('every error is one line "<path>: <problem>; <fix>" with code and path', () => {
  const raw = minimal();
  raw.listeners[0].limits = { idle_timeout: '5x' };
  const r = validateConfig(raw, CONFIG);
  assert.ok(!r.ok);
  assert.equal(r.errors[0]!.message, 'listeners[0].limits.idle_timeout: "5x" is not a duration; use e.g. 500ms, 5s, 2m, 1h, 90d');
  assert.equal(r.errors[0]!.code, ErrorCodes.CONFIG_INVALID);
  assert.equal(r.errors[0]!.path, 'listeners[0].limits.idle_timeout');
});

test('unknown keys are errors everywhere, with the closest key suggested', () => {
  const raw = minimal();
  raw.listeners[0].tls.clientca = 'x.crt';
  raw.listeners[0].routes[0].match = { paht: '/x' };
  raw.upstreams.app.health_check = { intervall: '5s' };
  raw.banana = 1;
  const all = messages(raw);
  assert.ok(all.includes('listeners[0].tls.clientca: unknown key; did you mean client_ca?'), all.join('\n'));
  assert.ok(all.includes('listeners[0].routes[0].match.paht: unknown key; did you mean path?'), all.join('\n'));
  assert.ok(all.includes('upstreams.app.health_check.intervall: unknown key; did you mean interval?'), all.join('\n'));
  assert.ok(all.some((m) => /^banana: unknown key; remove it or use one of: workers, admin, log, listeners, upstreams, shutdown$/.test(m)), all.join('\n'));
  assert.equal(all.length, 4, 'the suggested client_ca is not also reported as missing');
});

test('all errors are reported at once: schema and cross-field together', () => {
  const raw = minimal();
  raw.listeners[0].limits = { idle_timeout: '5x' };
  raw.listeners[0].routes[0].upstream = 'nope';
  raw.admin = { address: '0.0.0.0:9901' };
  raw.listeners[0].tls.clientca = 'x';
  const all = messages(raw);
  assert.equal(all.length, 4, all.join('\n'));
  assert.match(all.join('\n'), /idle_timeout/);
  assert.match(all.join('\n'), /routes\[0\]\.upstream: upstream "nope" is not defined; use one of: app/);
  assert.match(all.join('\n'), /admin\.address: /);
});

test('wrong types and missing required keys say what is expected', () => {
  const raw = minimal();
  delete raw.listeners[0].address;
  raw.listeners[0].tls.verify_depth = 'three';
  raw.listeners[0].protocol = 'udp';
  raw.upstreams.app.endpoints = [];
  const all = messages(raw);
  assert.ok(all.includes('listeners[0].address: required; use host:port, e.g. 0.0.0.0:8443'), all.join('\n'));
  assert.ok(all.includes('listeners[0].protocol: "udp" is not one of http, tcp; use one of them'), all.join('\n'));
  assert.ok(all.some((m) => m.startsWith('listeners[0].tls.verify_depth: expected a number, got "three"')), all.join('\n'));
  assert.ok(all.some((m) => m.startsWith('upstreams.app.endpoints: must not be empty; list at least one URL')), all.join('\n'));
  assert.deepEqual(messages({ upstreams: {} }), ['listeners: required; add at least one listener with name, address, tls and routes']);
});

test('listener names must be unique', () => {
  const raw = minimal();
  raw.listeners.push({ ...raw.listeners[0], address: '0.0.0.0:9443' });
  assertOnly(raw, 'listeners[1].name', /"api" is already the name of listeners\[0\]/);
});

test('route names are unique within a listener', () => {
  const raw = minimal();
  raw.listeners[0].routes = [{ upstream: 'app' }, { name: 'route-0', upstream: 'app' }];
  assertOnly(raw, 'listeners[0].routes[1].name', /"route-0" is already the name of listeners\[0\]\.routes\[0\]/);
});

test('two listeners on the same host:port conflict; port 0 never does', () => {
  const raw = minimal();
  raw.listeners.push({ ...raw.listeners[0], name: 'b' });
  assertOnly(raw, 'listeners[1].address', /0\.0\.0\.0:8443 is also used by listeners\[0\]\.address/);
  raw.listeners[1].address = '127.0.0.1:8443';
  assertOnly(raw, 'listeners[1].address', /overlaps listeners\[0\]\.address \(0\.0\.0\.0:8443\)/);
  raw.listeners[0].address = '127.0.0.1:0';
  raw.listeners[1].address = '127.0.0.1:0';
  assert.deepEqual(messages(raw), []);
  raw.listeners[1].address = '127.0.0.1:9901';
  assertOnly(raw, 'listeners[1].address', /also used by admin\.address/);
});

test('route and tcp listener upstreams must exist and speak the right protocol', () => {
  let raw = minimal();
  raw.listeners[0].routes.push({ upstream: 'payments' });
  assertOnly(raw, 'listeners[0].routes[1].upstream', /upstream "payments" is not defined; use one of: app/);

  raw = minimal();
  raw.listeners[0] = { name: 'db', address: '127.0.0.1:5432', protocol: 'tcp', upstream: 'pg' };
  assertOnly(raw, 'listeners[0].upstream', /upstream "pg" is not defined/);
  raw.upstreams.pg = { endpoints: ['tcp://10.0.0.5:5432'] };
  raw.listeners[0].upstream = 'app';
  assertOnly(raw, 'listeners[0].upstream', /has http endpoints but this is a tcp listener/);
  raw.listeners[0].upstream = 'pg';
  assert.deepEqual(messages(raw), []);

  raw = minimal();
  raw.upstreams.app.endpoints = ['tls://10.0.0.5:5432'];
  assertOnly(raw, 'listeners[0].routes[0].upstream', /has tcp\/tls endpoints but this is an http route/);
  raw.upstreams.app.endpoints = ['tls://10.0.0.5:5432', 'https://10.0.0.5'];
  assert.ok(messages(raw).some((m) => m.startsWith('upstreams.app.endpoints: mixes http and tcp schemes')));
});

test('protocol tcp requires upstream and forbids routes; http requires a route', () => {
  const raw = minimal();
  raw.listeners[0].protocol = 'tcp';
  const all = messages(raw);
  // errors follow the file's key order; keys the file lacks come after the ones it has
  assert.deepEqual(all.map((m) => m.split(':')[0]), ['listeners[0].routes', 'listeners[0].upstream']);
  assert.match(all[0]!, /not allowed when protocol is tcp/);
  assert.match(all[1]!, /required when protocol is tcp/);

  const http = minimal();
  http.listeners[0].routes = [];
  assertOnly(http, 'listeners[0].routes', /an http listener needs at least one route/);
  delete http.listeners[0].routes;
  assertOnly(http, 'listeners[0].routes', /needs at least one route/);
  http.listeners[0].routes = [{ upstream: 'app' }];
  http.listeners[0].upstream = 'app';
  assertOnly(http, 'listeners[0].upstream', /only for protocol: tcp/);
  delete http.listeners[0].upstream;
  http.listeners[0].proxy_protocol = 'v2';
  assertOnly(http, 'listeners[0].proxy_protocol', /only for protocol: tcp/);
});

test('a listener without tls is only allowed on loopback unless unsafe_plain', () => {
  const raw = minimal();
  delete raw.listeners[0].tls;
  assertOnly(raw, 'listeners[0].tls', /required on 0\.0\.0\.0:8443 because it is not a loopback address.*unsafe_plain: true/);
  raw.listeners[0].unsafe_plain = true;
  assert.deepEqual(messages(raw), []);
  delete raw.listeners[0].unsafe_plain;
  for (const address of ['127.0.0.1:8080', '127.9.9.9:8080', '[::1]:8080', 'localhost:8080']) {
    raw.listeners[0].address = address;
    assert.deepEqual(messages(raw), [], address);
  }
});

test('tls needs both cert and key', () => {
  const raw = minimal();
  delete raw.listeners[0].tls.cert;
  delete raw.listeners[0].tls.key;
  assert.deepEqual(messages(raw), [
    'listeners[0].tls.cert: required; give the PEM certificate file (leaf first, then intermediates)',
    'listeners[0].tls.key: required; give the PEM private key file of the certificate',
  ]);
});

test('client_auth require/optional needs a non-empty client_ca', () => {
  const raw = minimal();
  delete raw.listeners[0].tls.client_ca;
  assert.deepEqual(messages(raw), [
    "listeners[0].tls.client_ca: required when client_auth is require; give the CA file(s) that sign your clients' certificates",
  ]);
  raw.listeners[0].tls.client_auth = 'optional';
  raw.listeners[0].tls.client_ca = [];
  assertOnly(raw, 'listeners[0].tls.client_ca', /required when client_auth is optional/);
  raw.listeners[0].tls.client_auth = 'none';
  assert.deepEqual(messages(raw), []);
  // an SNI entry that asks for certificates needs CAs of its own or the listener's
  raw.listeners[0].tls.certificates = [{ server_names: ['a.example.com'], cert: 'a.crt', key: 'a.key', client_auth: 'require' }];
  assertOnly(raw, 'listeners[0].tls.certificates[0].client_ca', /required when client_auth is require/);
  raw.listeners[0].tls.certificates[0].client_ca = 'a-ca.crt';
  assert.deepEqual(messages(raw), []);
});

test('route client_auth require on a listener that never asks for a certificate', () => {
  const raw = minimal();
  raw.listeners[0].tls.client_auth = 'none';
  raw.listeners[0].routes[0].client_auth = 'require';
  assertOnly(raw, 'listeners[0].routes[0].client_auth', /listeners\[0\]\.tls\.client_auth is none, so the handshake never asks for a certificate/);
  raw.listeners[0].tls.client_auth = 'optional';
  assert.deepEqual(messages(raw), []);
  // a plain listener never asks either
  delete raw.listeners[0].tls;
  raw.listeners[0].address = '127.0.0.1:8080';
  assertOnly(raw, 'listeners[0].routes[0].client_auth', /without tls/);
});

test('a non-loopback admin address needs admin.tls and admin.allow', () => {
  const raw = minimal();
  raw.admin = { address: '10.0.0.1:9901' };
  assertOnly(raw, 'admin.address', /^admin\.address: 10\.0\.0\.1:9901 is not a loopback address and admin\.tls and admin\.allow are not set, .*; keep it on 127\.0\.0\.1 \(for Kubernetes probes set admin\.probe_address\), or add admin\.tls \(cert, key, client_ca\) and admin\.allow rules/);
  raw.admin.tls = { cert: 'admin.crt', key: 'admin.key', client_ca: 'ops-ca.crt' };
  assertOnly(raw, 'admin.address', /admin\.allow is not set/);
  raw.admin.allow = [{ spiffe_id: 'spiffe://example.org/ops/*' }];
  assert.deepEqual(messages(raw), []);
  delete raw.admin.tls;
  const all = messages(raw);
  assert.ok(all.some((m) => /^admin\.address: .*admin\.tls is not set/.test(m)), all.join('\n'));
  assert.ok(all.some((m) => /^admin\.allow: only used with admin\.tls/.test(m)), all.join('\n'));
});

test('admin.tls needs a client_ca; on loopback it may be used without allow rules', () => {
  const raw = minimal();
  raw.admin = { tls: { cert: 'admin.crt', key: 'admin.key', client_ca: [] } };
  assertOnly(raw, 'admin.tls.client_ca', /must not be empty; give the CA file\(s\) that sign the certificates of admin clients/);
  raw.admin.tls.client_ca = 'ops-ca.crt';
  assert.deepEqual(messages(raw), []);
  const r = validateConfig(raw, CONFIG);
  assert.ok(r.ok);
  assert.deepEqual(referencedFiles(r.config).filter((f) => f.where.startsWith('admin')), [
    { where: 'admin.tls.cert', file: '/etc/portcullis/admin.crt' },
    { where: 'admin.tls.key', file: '/etc/portcullis/admin.key' },
    { where: 'admin.tls.client_ca', file: '/etc/portcullis/ops-ca.crt' },
  ]);
});

test('admin.allow_remote is refused with a sentence naming what replaced it', () => {
  const raw = minimal();
  raw.admin = { address: '127.0.0.1:9901', allow_remote: true };
  assertOnly(raw, 'admin.allow_remote', /no longer accepted: .* set admin\.probe_address .* set admin\.tls \(cert, key, client_ca\) and admin\.allow/);
});

test('admin.probe_address: any address, but its own port', () => {
  const raw = minimal();
  raw.admin = { probe_address: '0.0.0.0:9902' };
  assert.deepEqual(messages(raw), []);
  raw.admin.probe_address = '0.0.0.0:9901';
  assertOnly(raw, 'admin.probe_address', /overlaps admin\.address \(127\.0\.0\.1:9901\); give the probe listener its own port/);
  raw.admin.probe_address = '0.0.0.0:8443';
  assertOnly(raw, 'listeners[0].address', /is also used by admin\.probe_address/);
  raw.admin.probe_address = 'nine';
  assertOnly(raw, 'admin.probe_address', /is not an address/);
});

test('tls.reject: http only where a refusal can be an HTTP answer and a certificate is required', () => {
  const raw = minimal();
  raw.listeners[0].tls.reject = 'http';
  assert.deepEqual(messages(raw), []);
  raw.listeners[0].tls.reject = 'bounce';
  assertOnly(raw, 'listeners[0].tls.reject', /is not one of close, http/);

  const tcp = minimal();
  tcp.upstreams.pg = { endpoints: ['tcp://127.0.0.1:5432'] };
  tcp.listeners[0] = { name: 'db', address: '0.0.0.0:5433', protocol: 'tcp', upstream: 'pg', tls: { ...tcp.listeners[0].tls, reject: 'http' } };
  assertOnly(tcp, 'listeners[0].tls.reject', /a tcp listener cannot send; use reject: close \(the default\) or protocol: http$/);
  tcp.listeners[0].tls.reject = 'close';
  assert.deepEqual(messages(tcp), []);

  const optional = minimal();
  optional.listeners[0].tls.client_auth = 'optional';
  optional.listeners[0].tls.reject = 'http';
  assertOnly(optional, 'listeners[0].tls.reject', /no effect here because no certificate of this listener has client_auth: require/);
  // an SNI entry that requires a certificate is enough
  optional.listeners[0].tls.certificates = [{ server_names: ['a.example.com'], cert: 'a.crt', key: 'a.key', client_auth: 'require' }];
  assert.deepEqual(messages(optional), []);
});

test('tls.reject on a certificate entry is refused with a sentence saying where it goes', () => {
  const raw = minimal();
  raw.listeners[0].tls.certificates = [{ server_names: ['a.example.com'], cert: 'a.crt', key: 'a.key', reject: 'http' }];
  assertOnly(raw, 'listeners[0].tls.certificates[0].reject', /set once per listener; move it to the listener's tls\.reject$/);
});

test('upstream tls cert and key come together', () => {
  const raw = minimal();
  raw.upstreams.app.tls = { cert: 'client.crt' };
  assertOnly(raw, 'upstreams.app.tls.key', /required when tls.cert is set/);
  raw.upstreams.app.tls = { key: 'client.key' };
  assertOnly(raw, 'upstreams.app.tls.cert', /required when tls.key is set/);
});

test('empty rules, bad pins, regexes, endpoints and path kinds are rejected with a reason', () => {
  const raw = minimal();
  raw.listeners[0].allow = [{}];
  raw.listeners[0].deny = [{ cn: [] }];
  raw.listeners[0].tls.pins = ['md5:abcd'];
  raw.listeners[0].routes[0].match = { path: '/a', path_exact: '/b' };
  raw.listeners[0].routes.push({ match: { path_regex: '(' }, upstream: 'app' });
  raw.upstreams.app.endpoints = ['ftp://x:21', 'tcp://db', 'http://x/api'];
  raw.listeners[0].tls.cert = '-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n';
  const all = messages(raw);
  const expect = [
    /^listeners\[0\]\.tls\.cert: looks like PEM content, not a file path; save it to a file/,
    /^listeners\[0\]\.tls\.pins\[0\]: "md5:abcd" is not a pin; use sha256:/,
    /^listeners\[0\]\.routes\[0\]\.match: path and path_exact are both set/,
    /^listeners\[0\]\.routes\[1\]\.match\.path_regex: "\(" is not a valid regular expression/,
    /^listeners\[0\]\.allow\[0\]: an empty rule matches every client; remove the allow list instead/,
    /^listeners\[0\]\.deny\[0\]\.cn: an empty list matches no certificate/,
    /^upstreams\.app\.endpoints: mixes http and tcp schemes/,
    /^upstreams\.app\.endpoints\[0\]: "ftp:\/\/x:21" has scheme ftp/,
    /^upstreams\.app\.endpoints\[1\]: "tcp:\/\/db" has no port/,
    /^upstreams\.app\.endpoints\[2\]: .* remove the path/,
  ];
  assert.equal(all.length, expect.length, all.join('\n'));
  expect.forEach((re, i) => assert.match(all[i]!, re));
  assert.ok(all.every((m) => !m.includes('\n')), 'one line per error');
});

test('relative paths resolve against the config folder; log.access keeps its keywords', () => {
  const raw = minimal();
  raw.listeners[0].tls.crl = ['/abs/a.crl', 'b.crl'];
  raw.upstreams.app.tls = { ca: '../up/ca.crt', cert: 'c.crt', key: 'c.key' };
  raw.log = { access: 'logs/access.log' };
  const r = validateConfig(raw, CONFIG);
  assert.ok(r.ok);
  const c = r.config;
  assert.equal(c.configPath, CONFIG);
  assert.equal(c.configDir, '/etc/portcullis');
  assert.equal(c.listeners[0]!.tls!.cert, '/etc/portcullis/pki/server.crt');
  assert.deepEqual(c.listeners[0]!.tls!.client_ca, ['/etc/portcullis/pki/ca.crt']);
  assert.deepEqual(c.listeners[0]!.tls!.crl, ['/abs/a.crl', '/etc/portcullis/b.crl']);
  assert.deepEqual(c.upstreams.app!.tls!.ca, ['/etc/up/ca.crt']);
  assert.equal(c.log.access, '/etc/portcullis/logs/access.log');
  assert.deepEqual(referencedFiles(c).map((f) => f.where), [
    'listeners[0].tls.cert',
    'listeners[0].tls.key',
    'listeners[0].tls.client_ca',
    'listeners[0].tls.crl[0]',
    'listeners[0].tls.crl[1]',
    'upstreams.app.tls.ca',
    'upstreams.app.tls.cert',
    'upstreams.app.tls.key',
  ]);
  for (const access of ['stdout', 'stderr', 'off']) {
    const r2 = validateConfig({ ...minimal(), log: { access } }, CONFIG);
    assert.ok(r2.ok && r2.config.log.access === access);
  }
});

test('the result is deep-frozen', () => {
  const r = validateConfig(minimal(), CONFIG);
  assert.ok(r.ok);
  const c = r.config;
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.listeners) && Object.isFrozen(c.listeners[0]!.tls!.client_ca));
  assert.ok(Object.isFrozen(c.listeners[0]!.limits) && Object.isFrozen(c.upstreams.app!.timeouts));
  assert.throws(() => {
    (c.listeners[0]!.tls!.client_ca as string[]).push('x');
  }, TypeError);
  assert.throws(() => {
    (c.admin as { port: number }).port = 1;
  }, TypeError);
});

test('formatConfigPath', () => {
  assert.equal(formatConfigPath(['listeners', 0, 'tls', 'client_ca']), 'listeners[0].tls.client_ca');
  assert.equal(formatConfigPath(['upstreams', 'a.b', 'endpoints', 1]), 'upstreams["a.b"].endpoints[1]');
  assert.equal(formatConfigPath([]), 'config');
});

test('YAML and JSON syntax errors name the file, line and column', () => {
  const yaml = () => parseConfigText('listeners:\n  - name: a\n   address: x\n', '/x/p.yaml');
  assert.throws(yaml, (e: unknown) => {
    const first = e instanceof PortcullisErrors ? e.errors[0]! : (e as PortcullisError);
    assert.equal(first.code, ErrorCodes.CONFIG_PARSE);
    assert.match(first.message, /^\/x\/p\.yaml: line 3, column \d+: YAML syntax error: .*; fix the YAML there$/);
    return true;
  });
  assert.throws(() => parseConfigText('{\n  "listeners": [}\n', '/x/p.json'), /\/x\/p\.json: line 2, column \d+: invalid JSON/);
  assert.throws(() => parseConfigText('', '/x/p.yaml'), /the config file is empty/);
  assert.throws(() => parseConfigText('- a\n', '/x/p.yaml'), /must be a map of keys/);
  assert.deepEqual(parseConfigText('{"workers": 2}', '/x/p.yaml'), { workers: 2 }, 'YAML reads JSON too');
});

test('loadConfig: missing file, file checks, JSON by extension', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-load-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(loadConfig(join(dir, 'portcullis.yaml')), (e: PortcullisError) => {
    assert.equal(e.code, ErrorCodes.CONFIG_NOT_FOUND);
    assert.equal(e.message, `config file not found: ${join(dir, 'portcullis.yaml')}; pass -c FILE or create it`);
    return true;
  });

  mkdirSync(join(dir, 'pki'));
  writeFileSync(join(dir, 'pki', 'server.crt'), 'not parsed here\n');
  writeFileSync(join(dir, 'pki', 'server.key'), ''); // empty
  mkdirSync(join(dir, 'pki', 'ca.crt')); // a folder, not a file
  const file = join(dir, 'portcullis.json');
  writeFileSync(file, JSON.stringify(minimal()));

  const c = await loadConfig(file); // no file checks unless asked
  assert.equal(c.listeners[0]!.tls!.key, join(dir, 'pki', 'server.key'));
  await assert.rejects(loadConfig(file, { checkFiles: true }), (e: PortcullisErrors) => {
    assert.ok(e instanceof PortcullisErrors);
    assert.deepEqual(e.errors.map((x) => x.code), [ErrorCodes.FILE_EMPTY, ErrorCodes.FILE_UNREADABLE]);
    assert.match(e.errors[0]!.message, /^listeners\[0\]\.tls\.key: file is empty: .*server\.key; /);
    assert.match(e.errors[1]!.message, /^listeners\[0\]\.tls\.client_ca: not a file: /);
    return true;
  });

  rmSync(join(dir, 'pki', 'ca.crt'), { recursive: true });
  writeFileSync(join(dir, 'pki', 'ca.crt'), 'ca\n');
  writeFileSync(join(dir, 'pki', 'server.key'), 'key\n');
  const raw = minimal();
  raw.listeners[0].tls.crl = 'missing.crl';
  writeFileSync(file, JSON.stringify(raw));
  await assert.rejects(loadConfig(file, { checkFiles: true }), (e: PortcullisErrors) => {
    assert.equal(e.errors.length, 1);
    assert.equal(e.errors[0]!.code, ErrorCodes.FILE_NOT_FOUND);
    assert.match(e.errors[0]!.message, new RegExp(`^listeners\\[0\\]\\.tls\\.crl: file not found: ${join(dir, 'missing.crl')}; `));
    return true;
  });

  if (process.getuid?.() !== 0) {
    // root reads anything, so unreadable files can only be tested as another user
    writeFileSync(join(dir, 'missing.crl'), 'crl\n');
    chmodSync(join(dir, 'missing.crl'), 0o000);
    await assert.rejects(loadConfig(file, { checkFiles: true }), (e: PortcullisErrors) => e.errors[0]!.code === ErrorCodes.FILE_UNREADABLE);
    chmodSync(join(dir, 'missing.crl'), 0o600);
  } else {
    writeFileSync(join(dir, 'missing.crl'), 'crl\n');
  }
  const ok = await loadConfig(file, { checkFiles: true });
  assert.ok(Object.isFrozen(ok));
});

test('shutdown.delay: default 0, a duration, and nothing else under shutdown', () => {
  const r = validateConfig(minimal(), CONFIG);
  assert.ok(r.ok);
  assert.equal(r.config.shutdown.delay, 0);
  const r2 = validateConfig({ ...minimal(), shutdown: { delay: '15s' } }, CONFIG);
  assert.ok(r2.ok && r2.config.shutdown.delay === 15_000);
  assertOnly({ ...minimal(), shutdown: { delay: 'soon' } }, 'shutdown.delay', /is not a duration/);
  assertOnly({ ...minimal(), shutdown: { dealy: '5s' } }, 'shutdown.dealy', /did you mean delay\?/);
});

test('tls.session_tickets.key_files: resolved, referenced (watched, checked), one or more, each once', () => {
  const raw = minimal();
  raw.listeners[0].tls.session_tickets = { key_files: ['tickets/current.key', '/keys/previous.key'] };
  const r = validateConfig(raw, CONFIG);
  assert.ok(r.ok, messages(raw).join('\n'));
  assert.deepEqual(r.config.listeners[0]!.tls!.session_tickets!.key_files, ['/etc/portcullis/tickets/current.key', '/keys/previous.key']);
  const refs = referencedFiles(r.config).filter((f) => f.where.includes('session_tickets'));
  assert.deepEqual(refs, [
    { where: 'listeners[0].tls.session_tickets.key_files[0]', file: '/etc/portcullis/tickets/current.key' },
    { where: 'listeners[0].tls.session_tickets.key_files[1]', file: '/keys/previous.key' },
  ]);
  // one file may be written as a string
  raw.listeners[0].tls.session_tickets = { key_files: 'only.key' };
  const one = validateConfig(raw, CONFIG);
  assert.ok(one.ok && one.config.listeners[0]!.tls!.session_tickets!.key_files.length === 1);

  const bad = (v: unknown) => {
    const x = minimal();
    x.listeners[0].tls.session_tickets = v;
    return x;
  };
  assertOnly(bad({ key_files: [] }), 'listeners[0].tls.session_tickets.key_files', /must not be empty; give the key file that seals new tickets first/);
  assertOnly(bad({ key_files: ['a.key', 'b.key', 'a.key'] }), 'listeners[0].tls.session_tickets.key_files', /"a.key" is listed twice/);
  assertOnly(bad({ key_files: Array.from({ length: 9 }, (_, i) => `${i}.key`) }), 'listeners[0].tls.session_tickets.key_files', /give at most 8/);
  assertOnly(bad({}), 'listeners[0].tls.session_tickets.key_files', /^[^:]+: required/);
  assertOnly(bad({ key_file: 'a.key' }), 'listeners[0].tls.session_tickets.key_file', /did you mean key_files\?/);
});
