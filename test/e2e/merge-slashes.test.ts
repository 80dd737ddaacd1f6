// Regression test for finding 5, "`//admin` passes a rule on `/admin` and is forwarded as
// `//admin`": a prefix route on /admin did not match //admin, which fell to a catch-all
// and reached an upstream that (like nginx) serves it as /admin. With
// listeners[].merge_slashes (default true, as in nginx) repeated slashes are merged
// before routing and in the path sent upstream, query untouched, on HTTP/1.1 and HTTP/2;
// with false the path is matched and forwarded as sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { h2Request, jsonError, rawHttp1 } from '../helpers/raw-clients.js';

const routes = [
  // only CN=reporting (client2) may use /admin; the default client is payment-service
  { name: 'admin', match: { path: '/admin' }, allow: [{ cn: 'reporting' }], upstream: 'app' },
  { name: 'catch-all', upstream: 'app' },
];

const fx = useProxy(({ pki, up }) => ({
  listeners: [tlsListener(pki, { name: 'merged', routes }), tlsListener(pki, { name: 'asis', merge_slashes: false, routes })],
  upstreams: { app: { endpoints: [up.url] } },
}));

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;

test('HTTP/1.1 `//admin` is the /admin route: refused for a client the route does not allow, nothing forwarded', async () => {
  const n = fx.up.received.length;
  for (const path of ['//admin', '///admin/x', '//admin//x', '/x//..//admin']) {
    const r = await rawHttp1(fx.cli.ports.merged!, fx.pki, get(path));
    assert.equal(r.status, 403, `${path}: ${r.raw}`);
    assert.match(jsonError(r.body).message!, /route admin/, path);
  }
  assert.equal(fx.up.received.length, n, `forwarded: ${fx.up.received.slice(n).map((x) => x.url).join(' ')}`);
});

test('HTTP/1.1: an allowed client reaches the upstream with the merged path and the query as sent', async () => {
  const n = fx.up.received.length;
  const r = await rawHttp1(fx.cli.ports.merged!, fx.pki, get('//admin//x///y?next=//a//b&c=%2F%2F'), fx.pki.client2);
  assert.equal(r.status, 200, r.raw);
  assert.equal(fx.up.received[n]!.url, '/admin/x/y?next=//a//b&c=%2F%2F');
  // the access log is written asynchronously: wait for the line
  let log: Record<string, unknown> | undefined;
  for (let i = 0; i < 40 && !log; i++) {
    log = fx.cli.accessLines().filter((l) => l.listener === 'merged' && l.status === 200).pop();
    if (!log) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(log?.route, 'admin');
});

test('HTTP/2 `//admin`: the same route and the same merged path upstream', async () => {
  const n = fx.up.received.length;
  const denied = await h2Request(fx.cli.ports.merged!, fx.pki, { ':path': '//admin' });
  assert.equal(denied.status, 403, denied.error ?? denied.body);
  assert.equal(fx.up.received.length, n);
  const ok = await h2Request(fx.cli.ports.merged!, fx.pki, { ':path': '//admin//x?q=a//b' }, fx.pki.client2);
  assert.equal(ok.status, 200, ok.error ?? ok.body);
  assert.equal(fx.up.received[n]!.url, '/admin/x?q=a//b');
});

test('merge_slashes: false matches and forwards the path as sent', async () => {
  const n = fx.up.received.length;
  const r = await rawHttp1(fx.cli.ports.asis!, fx.pki, get('//admin//x?q=//y'));
  assert.equal(r.status, 200, r.raw);
  assert.equal(fx.up.received[n]!.url, '//admin//x?q=//y');
  const h2 = await h2Request(fx.cli.ports.asis!, fx.pki, { ':path': '/a//b' });
  assert.equal(h2.status, 200, h2.error ?? h2.body);
  assert.equal(fx.up.received[n + 1]!.url, '/a//b');
  // the single-slash spelling is still the admin route
  const denied = await rawHttp1(fx.cli.ports.asis!, fx.pki, get('/admin'));
  assert.equal(denied.status, 403, denied.raw);
});
