// Regression test for finding 4, "HTTP/2 :method case is not checked": `:method: delete`
// missed a `methods: [DELETE]` route, fell to a catch-all and was forwarded as `delete`.
// Methods are case-sensitive (RFC 9110 §9.1): a case variant of a known method now gets
// 400 bad_request naming the right spelling and is never forwarded, on HTTP/2 and
// HTTP/1.1 alike, and `portcullis check` refuses such a spelling in a route's methods.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener, runCli, type RunningCli } from '../helpers/proxy.js';
import { h2Request, jsonError, rawHttp1, startRawUpstream, type RawUpstream } from '../helpers/raw-clients.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: RawUpstream;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(join(dir, 'pki'));
  up = await startRawUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          routes: [
            // only CN=reporting may delete; the default client (payment-service) may not
            { name: 'deletes', match: { path: '/items', methods: ['DELETE'] }, allow: [{ cn: 'reporting' }], upstream: 'app' },
            { name: 'catch-all', upstream: 'app' },
          ],
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

test('h2 `:method: delete` gets 400 naming DELETE, does not fall to the catch-all, and reaches no upstream', async () => {
  const n = up.received.length;
  const r = await h2Request(cli.port, pki, { ':method': 'delete', ':path': '/items' });
  assert.equal(r.status, 400, r.error ?? r.body);
  const e = jsonError(r.body);
  assert.equal(e.error, 'bad_request');
  assert.match(e.message!, /case-sensitive/);
  assert.match(e.message!, /send DELETE$/);
  assert.equal(up.received.length, n, `forwarded: ${up.received.slice(n).map((x) => x.line).join(' | ')}`);
});

test('h2: every case variant of a known method is refused and none is forwarded', async () => {
  const n = up.received.length;
  for (const [sent, right] of [['Delete', 'DELETE'], ['get', 'GET'], ['pUT', 'PUT'], ['options', 'OPTIONS'], ['m-search', 'M-SEARCH'], ['propfind', 'PROPFIND']]) {
    const r = await h2Request(cli.port, pki, { ':method': sent!, ':path': '/items' });
    assert.equal(r.status, 400, `${sent}: ${r.error ?? r.body}`);
    assert.match(jsonError(r.body).message!, new RegExp(`send ${right}$`), sent);
  }
  assert.equal(up.received.length, n, `forwarded: ${up.received.slice(n).map((x) => x.line).join(' | ')}`);
});

test('h2 DELETE in upper case is routed by its route: refused for payment-service, forwarded as DELETE for reporting', async () => {
  const denied = await h2Request(cli.port, pki, { ':method': 'DELETE', ':path': '/items' });
  assert.equal(denied.status, 403);
  assert.match(jsonError(denied.body).message!, /route deletes/);
  const n = up.received.length;
  const ok = await h2Request(cli.port, pki, { ':method': 'DELETE', ':path': '/items' }, pki.client2);
  assert.equal(ok.status, 200, ok.error ?? ok.body);
  assert.equal(up.received[n]?.line, 'DELETE /items HTTP/1.1');
});

test('h2: an extension method that is a token is forwarded exactly as sent', async () => {
  const n = up.received.length;
  const r = await h2Request(cli.port, pki, { ':method': 'frob', ':path': '/x' });
  assert.equal(r.status, 200, r.error ?? r.body);
  assert.equal(up.received[n]?.line, 'frob /x HTTP/1.1');
});

test('HTTP/1.1 on raw bytes: a lowercase method is refused with 400 and not forwarded; DELETE reaches its route', async () => {
  const n = up.received.length;
  const r = await rawHttp1(cli.port, pki, 'delete /items HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.equal(r.status, 400, r.raw);
  assert.equal(up.received.length, n);
  const denied = await rawHttp1(cli.port, pki, 'DELETE /items HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.equal(denied.status, 403, denied.raw);
  assert.equal(jsonError(denied.body).error, 'forbidden');
  assert.equal(up.received.length, n);
});

test('portcullis check refuses a route method written in another case, naming the right one', () => {
  const cfg = join(dir, 'methods.json');
  const config = (methods: string[]) =>
    JSON.stringify({
      listeners: [tlsListener(pki, { routes: [{ match: { methods }, upstream: 'app' }] })],
      upstreams: { app: { endpoints: [up.url] } },
    });
  writeFileSync(cfg, config(['delete', 'Get']));
  const bad = runCli(['check', '-c', cfg]);
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  assert.match(bad.stderr + bad.stdout, /listeners\[0\]\.routes\[0\]\.match\.methods\[0\]: "delete" never matches: methods are case-sensitive; write DELETE/);
  assert.match(bad.stderr + bad.stdout, /methods\[1\]: "Get" never matches: methods are case-sensitive; write GET/);
  writeFileSync(cfg, config(['DELETE', 'PROPFIND', 'M-SEARCH']));
  const good = runCli(['check', '-c', cfg]);
  assert.equal(good.status, 0, good.stdout + good.stderr);
});
