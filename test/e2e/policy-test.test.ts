// `portcullis policy test` (SPEC §10, issue 15 item 6): which route a request takes, which
// rule decides, and why every earlier route and rule did not match. The same config runs
// in the real proxy, and every case is also sent with curl: the rule and status policy
// test reports must be the ones the proxy's access log shows and the client gets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type PkiEntry, type TestPki } from '../helpers/pki.js';
import { certArgs, cleanup, curl, runCli, startCli, startEchoUpstream, tempDir, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

let dir: string;
let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let cfgFile: string;

before(async () => {
  dir = tempDir('pcl-policy-');
  pki = await makeTestPki(join(dir, 'pki'));
  up = await startEchoUpstream();
  const config = {
    listeners: [
      {
        name: 'api',
        address: '127.0.0.1:0',
        tls: { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert },
        deny: [{ cn: 'reporting' }],
        routes: [
          { name: 'health', match: { path_exact: '/healthz' }, upstream: 'app' },
          {
            name: 'charge',
            match: { path: '/v1/charge', methods: ['POST'] },
            allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/*' }, { spiffe_id: 'spiffe://example.org/ns/prod/sa/*', ou: 'prod' }],
            upstream: 'app',
          },
          { name: 'admin', match: { path: '/admin' }, allow: [{ cn: 'root-operator' }], upstream: 'app' },
          { name: 'public', match: { path: '/public' }, upstream: 'app' },
        ],
      },
      {
        name: 'db',
        address: '127.0.0.1:0',
        protocol: 'tcp',
        tls: { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert },
        allow: [{ ou: 'prod' }],
        upstream: 'raw',
      },
    ],
    upstreams: { app: { endpoints: [up.url] }, raw: { endpoints: [`tcp://127.0.0.1:${up.port}`] } },
  };
  cfgFile = join(dir, 'policy.json');
  writeFileSync(cfgFile, JSON.stringify({ workers: 1, admin: { address: '127.0.0.1:0' }, ...config }));
  cli = await startCli(config, { dir });
});
after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

function policy(...args: string[]) {
  return runCli(['policy', 'test', '-c', cfgFile, ...args]);
}

function policyJson(...args: string[]) {
  const r = policy('--json', ...args);
  return { code: r.status, json: JSON.parse(r.stdout) as Record<string, any>, stderr: r.stderr };
}

/** The same request through the real proxy: status, and the decision its access log recorded. */
async function viaProxy(method: string, path: string, who?: PkiEntry) {
  const before = cli.accessLines().length;
  const r = await curl(`https://localhost:${cli.port}${path}`, ['-X', method, '--path-as-is', ...certArgs(pki.ca.cert, who)]);
  let line: Record<string, any> | undefined;
  for (let i = 0; i < 50 && !line; i++) {
    line = cli.accessLines().slice(before).find((l) => l.event === 'request' || l.event === 'tls_handshake_failed');
    if (!line) await new Promise((res) => setTimeout(res, 50));
  }
  return { status: r.status, line };
}

test('an allowed request: the route, the deny rule that did not match, the allow rule that did not, the one that did', async () => {
  const r = policy('--cert', pki.client.cert, '--method', 'POST', '--path', '/v1/charge/refund');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /client: certificate .*client\.crt\n {2}identity: CN=payment-service,OU=prod,O=Example, SPIFFE ID spiffe:\/\/example\.org\/ns\/prod\/sa\/payment/);
  assert.match(r.stdout, /verify: SUCCESS/);
  assert.match(r.stdout, /\[0\] health: no\n +- path \/v1\/charge\/refund is not exactly \/healthz/);
  assert.match(r.stdout, /\[1\] charge: MATCHES\n +\+ method POST is one of POST\n +\+ path \/v1\/charge\/refund starts with \/v1\/charge/);
  assert.match(r.stdout, /deny +listeners\[api\]\.deny\[0\]: no\n +- cn reporting does not match the subject CN payment-service/);
  assert.match(r.stdout, /allow routes\[charge\]\.allow\[0\]: no\n +- spiffe_id spiffe:\/\/example\.org\/ns\/prod\/\* does not match the SPIFFE ID spiffe:\/\/example\.org\/ns\/prod\/sa\/payment \("\*" is exactly one path segment; spiffe:\/\/example\.org\/ns\/prod\/\*\* matches every path below\)/);
  assert.match(r.stdout, /allow routes\[charge\]\.allow\[1\]: MATCHES\n +\+ spiffe_id .* matches .*\n +\+ ou prod matches the subject OU prod/);
  assert.match(r.stdout, /decision: ALLOWED by routes\[charge\]\.allow\[1\]; forwarded to upstream app\n$/);

  const proxy = await viaProxy('POST', '/v1/charge/refund', pki.client);
  assert.equal(proxy.status, 200);
  assert.equal(proxy.line?.decision?.rule, 'routes[charge].allow[1]');
  assert.equal(up.received.at(-1)?.url, '/v1/charge/refund');
});

test('policy test agrees with the running proxy on route, rule and status, case by case', async () => {
  const cases: { method: string; path: string; who?: PkiEntry; label: string }[] = [
    { label: 'denied by the listener deny list', method: 'GET', path: '/public/x', who: pki.client2 },
    { label: 'no allow rule matched', method: 'GET', path: '/admin/users', who: pki.client },
    { label: 'no route (method)', method: 'GET', path: '/v1/charge', who: pki.client },
    { label: 'path normalized before routing', method: 'POST', path: '/public/../v1//charge', who: pki.client },
    { label: 'encoded slash refused', method: 'GET', path: '/public/..%2Fadmin', who: pki.client },
    { label: 'no rules on the route', method: 'GET', path: '/public', who: pki.client },
    { label: 'untrusted CA: handshake refused', method: 'GET', path: '/public', who: pki.untrusted },
    { label: 'expired: handshake refused', method: 'GET', path: '/public', who: pki.expired },
  ];
  for (const c of cases) {
    const p = policyJson('--method', c.method, '--path', c.path, ...(c.who ? ['--cert', c.who.cert] : []));
    const proxy = await viaProxy(c.method, c.path, c.who);
    const d = p.json.decision;
    assert.ok(proxy.line, `${c.label}: the proxy logged nothing`);
    assert.equal(p.code, d.allowed ? 0 : 1, c.label);
    if (proxy.line?.event === 'tls_handshake_failed') {
      assert.equal(d.allowed, false, c.label);
      assert.match(d.reason, /^handshake refused: /, c.label);
      const reason = String(proxy.line.decision.reason).split(':')[0];
      assert.equal(d.reason, `handshake refused: ${reason}`, c.label);
      continue;
    }
    assert.equal(d.status, proxy.status, `${c.label}: ${JSON.stringify(p.json)}`);
    assert.equal(p.json.route, proxy.line?.route, c.label);
    assert.equal(d.rule, proxy.line?.decision?.rule, c.label);
  }
});

test('a request no route matches: every route is listed with the condition that failed', () => {
  const r = policy('--cert', pki.client.cert, '--method', 'DELETE', '--path', '/v1/charge');
  assert.equal(r.status, 1);
  assert.match(r.stdout, /\[1\] charge: no\n +- method DELETE is not one of POST/);
  assert.match(r.stdout, /\[3\] public: no\n +- path \/v1\/charge does not start with \/public/);
  assert.match(r.stdout, /no route matched/);
  assert.match(r.stdout, /decision: DENIED: 404 no_route/);
});

test('identity flags instead of a certificate, --expect for CI, and usage errors', () => {
  const ok = policy('--spiffe-id', 'spiffe://example.org/ns/prod/sa/billing', '--ou', 'prod', '--method', 'POST', '--path', '/v1/charge', '--expect', 'allow');
  assert.equal(ok.status, 0, ok.stdout);
  assert.match(ok.stdout, /taken as verified/);
  assert.match(ok.stdout, /as expected \(--expect allow\)/);
  const wrong = policy('--cn', 'nobody', '--path', '/admin', '--expect', 'allow');
  assert.equal(wrong.status, 1);
  assert.match(wrong.stdout, /allow routes\[admin\]\.allow\[0\]: no\n +- cn root-operator does not match the subject CN nobody/);
  assert.match(wrong.stdout, /NOT as expected/);
  assert.equal(policy('--cn', 'nobody', '--path', '/admin', '--expect', 'deny').status, 0);
  const noPath = policy('--cert', pki.client.cert);
  assert.equal(noPath.status, 2);
  assert.match(noPath.stderr, /--path is required for an http listener.*\[PCL_ERR_USAGE\]/);
  const badListener = policy('--listener', 'nope', '--path', '/');
  assert.equal(badListener.status, 2);
  assert.match(badListener.stderr, /no listener named "nope".*use one of: api, db/);
});

test('a TCP listener: the listener rules decide the connection', () => {
  const prod = policyJson('--listener', 'db', '--cert', pki.client.cert);
  assert.equal(prod.code, 0);
  assert.equal(prod.json.decision.rule, 'listeners[db].allow[0]');
  assert.equal(prod.json.decision.upstream, 'raw');
  const staging = policy('--listener', 'db', '--cert', pki.client2.cert);
  assert.equal(staging.status, 1);
  assert.match(staging.stdout, /allow listeners\[db\]\.allow\[0\]: no\n +- ou prod does not match the subject OU staging/);
  assert.match(staging.stdout, /decision: DENIED \(no allow rule matched\)/);
});
