// Authorization rules (SPEC §3) and route matching through the real proxy: which client
// reaches which route, the 403 / 404 bodies (SPEC §5), that a refused request never
// reaches the upstream, and that the access log names the rule that decided (SPEC §9).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, nodeRequest, type EchoUpstream, type RunningCli, type NodeResult } from '../helpers/proxy.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let clientFingerprint: string;

const route = (name: string, match: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name, match, upstream: 'app', ...extra });

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  clientFingerprint = createHash('sha256').update(new X509Certificate(readFileSync(pki.client.cert)).raw).digest('hex');
  // the serial written the way people copy it from openssl: lowercase, colon-separated
  const serialWithColons = pki.client.serial.toLowerCase().padStart(pki.client.serial.length + (pki.client.serial.length % 2), '0').match(/../g)!.join(':');
  up = await startEchoUpstream();
  cli = await startCli(
    {
      workers: 1,
      listeners: [
        tlsListener(pki, {
          name: 'api',
          // noEku carries payment's SANs; the listener bans it by CN, whatever routes allow
          deny: [{ cn: 'no-eku' }],
          routes: [
            route('spiffe-one', { path: '/spiffe-one' }, { allow: [{ spiffe_id: 'spiffe://example.org/ns/*/sa/payment' }] }),
            route('spiffe-rest', { path: '/spiffe-rest' }, { allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/**' }] }),
            route('dns', { path: '/dns' }, { allow: [{ dns: '*.svc.example.com' }] }),
            route('cn', { path: '/cn' }, { allow: [{ cn: 'payment-service' }] }),
            route('ou', { path: '/ou' }, { allow: [{ ou: ['qa', 'prod'] }] }),
            route('o-and-ou', { path: '/o-and-ou' }, { allow: [{ o: 'Example', ou: 'staging' }] }),
            route('fingerprint', { path: '/fingerprint' }, { allow: [{ fingerprint: `sha256:${clientFingerprint}` }] }),
            route('serial', { path: '/serial' }, { allow: [{ serial: serialWithColons }] }),
            route('second-rule', { path: '/second-rule' }, { allow: [{ cn: 'reporting' }, { cn: 'payment-service' }] }),
            route('route-deny', { path: '/route-deny' }, { deny: [{ ou: 'staging' }] }),
            route('deny-override', { path: '/deny-override' }, { allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/sa/payment' }] }),
            route('post-only', { path: '/submit', methods: ['POST'] }),
            route('exact', { path_exact: '/exact' }),
            route('regex', { path_regex: '/items/[0-9]+' }),
            route('host-exact', { host: 'api.example.com', path: '/host' }),
            route('host-wild', { host: '*.svc.example.com', path: '/host' }),
          ],
        }),
        tlsListener(pki, {
          name: 'guarded',
          allow: [{ ou: 'prod' }],
          routes: [route('inherit', { path: '/inherit' }), route('own', { path: '/own' }, { allow: [{ ou: 'staging' }] })],
        }),
      ],
      upstreams: { app: { endpoints: [up.url] } },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

interface Outcome {
  res: NodeResult;
  /** the exact path the upstream was asked for, when it was reached */
  reached: boolean;
  path: string;
}

/** One request; the query tag makes it findable in the upstream's record and the access log. */
async function call(entry: PkiEntry, path: string, opts: { method?: string; host?: string; listener?: string } = {}): Promise<Outcome> {
  const tag = Math.random().toString(16).slice(2);
  const full = `${path}?t=${tag}`;
  const headers: Record<string, string> = { 'x-request-id': `authz-${tag}` };
  if (opts.host) headers.host = opts.host;
  const res = await nodeRequest({
    host: '127.0.0.1',
    servername: 'localhost',
    port: cli.ports[opts.listener ?? 'api'],
    path: full,
    method: opts.method ?? 'GET',
    headers,
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(entry.cert),
    key: readFileSync(entry.key),
  });
  assert.equal(res.error, undefined, `${path}: ${res.error?.message}`);
  return { res, reached: up.received.some((r) => r.url === full), path: full };
}

async function expectAllowed(entry: PkiEntry, path: string, opts: Parameters<typeof call>[2] = {}): Promise<Outcome> {
  const o = await call(entry, path, opts);
  assert.equal(o.res.status, 200, `${path} should be allowed: ${o.res.body}`);
  assert.ok(o.reached, `${path}: the upstream should have received the request`);
  return o;
}

function errorBody(o: Outcome, status: number, error: string): { error: string; message: string; request_id: string } {
  assert.equal(o.res.status, status, `${o.path}: ${o.res.body}`);
  assert.match(String(o.res.headers?.['content-type']), /^application\/json/);
  const body = JSON.parse(o.res.body!) as { error: string; message: string; request_id: string };
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message', 'request_id']);
  assert.equal(body.error, error);
  assert.ok(body.message.length > 0);
  assert.ok(body.request_id.length > 0);
  assert.equal(o.res.headers?.['x-request-id'], body.request_id, 'the response header carries the same request id');
  assert.equal(o.reached, false, `${o.path}: a refused request must never reach the upstream`);
  return body;
}

async function expectForbidden(entry: PkiEntry, path: string, routeName: string, opts: Parameters<typeof call>[2] = {}): Promise<void> {
  const o = await call(entry, path, opts);
  const body = errorBody(o, 403, 'forbidden');
  assert.match(body.message, new RegExp(`\\b${routeName}\\b`), `the message names the route: ${body.message}`);
}

async function expectNoRoute(entry: PkiEntry, path: string, opts: Parameters<typeof call>[2] = {}): Promise<void> {
  errorBody(await call(entry, path, opts), 404, 'no_route');
}

/** The access log line of a request, found by its query tag. */
async function accessLine(o: Outcome): Promise<Record<string, unknown>> {
  const id = `authz-${o.path.slice(o.path.indexOf('?t=') + 3)}`;
  const find = () => cli.accessLines().find((l) => l.event === 'request' && l.request_id === id);
  const end = Date.now() + 5000;
  while (!find()) {
    if (Date.now() > end) throw new Error(`no access log line for ${o.path}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return find()!;
}

test('spiffe_id with "*" (one segment): payment in any namespace passes, reporting is forbidden', async () => {
  const o = await expectAllowed(pki.client, '/spiffe-one');
  const line = await accessLine(o);
  const decision = line.decision as { allowed: boolean; rule?: string };
  assert.equal(decision.allowed, true);
  assert.match(String(decision.rule), /spiffe-one/, 'the access log names the rule that allowed');
  assert.match(String(decision.rule), /allow/);
  await expectForbidden(pki.client2, '/spiffe-one', 'spiffe-one');
});

test('spiffe_id with "**" (the rest): everything under ns/prod passes, ns/staging is forbidden', async () => {
  await expectAllowed(pki.client, '/spiffe-rest/deeper');
  await expectForbidden(pki.client2, '/spiffe-rest', 'spiffe-rest');
});

test('dns "*.svc.example.com" matches payment.svc.example.com, not reporting.example.net', async () => {
  await expectAllowed(pki.client, '/dns');
  await expectForbidden(pki.client2, '/dns', 'dns');
});

test('cn, ou (list: any value matches), o+ou (all conditions must hold)', async () => {
  await expectAllowed(pki.client, '/cn');
  await expectForbidden(pki.client2, '/cn', 'cn');
  await expectAllowed(pki.client, '/ou');
  await expectForbidden(pki.client2, '/ou', 'ou');
  await expectAllowed(pki.client2, '/o-and-ou');
  await expectForbidden(pki.client, '/o-and-ou', 'o-and-ou');
});

test('fingerprint sha256:<hex of the client DER> and serial (written with colons, lower case)', async () => {
  await expectAllowed(pki.client, '/fingerprint');
  await expectForbidden(pki.client2, '/fingerprint', 'fingerprint');
  await expectForbidden(pki.noEku, '/fingerprint', 'fingerprint'); // same SANs and subject attributes, other certificate
  await expectAllowed(pki.client, '/serial');
  await expectForbidden(pki.client2, '/serial', 'serial');
});

test('the access log names which allow rule matched (the second of two)', async () => {
  const o = await expectAllowed(pki.client, '/second-rule');
  const decision = (await accessLine(o)).decision as { allowed: boolean; rule?: string };
  assert.equal(decision.allowed, true);
  assert.match(String(decision.rule), /second-rule/);
  assert.match(String(decision.rule), /allow\[1\]/, `rule ${decision.rule} should point at the second allow rule`);
  const o2 = await expectAllowed(pki.client2, '/second-rule');
  assert.match(String(((await accessLine(o2)).decision as { rule?: string }).rule), /allow\[0\]/);
});

test('a route deny refuses a matching client and lets others through', async () => {
  await expectAllowed(pki.client, '/route-deny');
  await expectForbidden(pki.client2, '/route-deny', 'route-deny');
});

test('a listener-level deny overrides a route allow', async () => {
  // noEku has payment's SPIFFE ID, which the route allows; the listener denies its CN
  const sanity = await call(pki.noEku, '/deny-override');
  const body = errorBody(sanity, 403, 'forbidden');
  assert.match(body.message, /deny-override/);
  const line = await accessLine(sanity);
  const decision = line.decision as { allowed: boolean; rule?: string; reason?: string };
  assert.equal(decision.allowed, false);
  assert.match(String(decision.rule ?? decision.reason), /deny/);
  assert.equal(line.status, 403);
  await expectAllowed(pki.client, '/deny-override');
  // the listener deny also applies to routes with no rules of their own
  await expectForbidden(pki.noEku, '/exact', 'exact');
});

test('route methods: POST is routed, GET matches no route (404 no_route)', async () => {
  const o = await expectAllowed(pki.client, '/submit', { method: 'POST' });
  assert.equal(up.received.find((r) => r.url === o.path)!.method, 'POST');
  await expectNoRoute(pki.client, '/submit', { method: 'GET' });
  await expectNoRoute(pki.client, '/submit', { method: 'PUT' });
});

test('path_exact matches only the exact path', async () => {
  await expectAllowed(pki.client, '/exact');
  await expectNoRoute(pki.client, '/exact/more');
  await expectNoRoute(pki.client, '/exactly');
});

test('path_regex matches the whole path', async () => {
  await expectAllowed(pki.client, '/items/42');
  await expectNoRoute(pki.client, '/items/abc');
  await expectNoRoute(pki.client, '/items/42/x');
  await expectNoRoute(pki.client, '/prefix/items/42');
});

test('host matching by Host header: exact name, "*.svc.example.com", anything else is no_route', async () => {
  const o = await expectAllowed(pki.client, '/host', { host: 'api.example.com' });
  assert.equal(up.received.find((r) => r.url === o.path)!.headers['x-forwarded-host'], 'api.example.com');
  await expectAllowed(pki.client, '/host', { host: 'API.Example.com:8443' });
  const w = await expectAllowed(pki.client, '/host', { host: 'orders.svc.example.com' });
  assert.equal(((await accessLine(w)).route as string), 'host-wild');
  await expectNoRoute(pki.client, '/host', { host: 'other.example.com' });
  await expectNoRoute(pki.client, '/host', { host: 'a.b.svc.example.com' });
  await expectNoRoute(pki.client, '/host', { host: 'localhost' });
});

test('the listener allow is the default for routes without their own; a route allow replaces it', async () => {
  await expectAllowed(pki.client, '/inherit', { listener: 'guarded' });
  await expectForbidden(pki.client2, '/inherit', 'inherit', { listener: 'guarded' });
  await expectAllowed(pki.client2, '/own', { listener: 'guarded' });
  await expectForbidden(pki.client, '/own', 'own', { listener: 'guarded' });
});

test('the 403 carries the request id and never echoes credentials the client sent', async () => {
  const tag = Math.random().toString(16).slice(2);
  const res = await nodeRequest({
    host: '127.0.0.1',
    servername: 'localhost',
    port: cli.port,
    path: `/cn?t=${tag}&token=query-secret-${tag}`,
    headers: { authorization: `Bearer header-secret-${tag}`, cookie: `session=cookie-secret-${tag}`, 'x-request-id': `authz-${tag}` },
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(pki.client2.cert),
    key: readFileSync(pki.client2.key),
  });
  assert.equal(res.status, 403);
  const body = JSON.parse(res.body!) as { error: string; request_id: string };
  assert.equal(body.error, 'forbidden');
  assert.equal(body.request_id, `authz-${tag}`, 'a valid client request id is kept in the error');
  assert.doesNotMatch(res.body!, /secret/);
  assert.equal(up.received.some((r) => r.url.includes(tag)), false);
});
