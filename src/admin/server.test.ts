// The admin listener over real HTTP on port 0 with a fake provider: every endpoint, the
// error shapes, methods, and the guards against browser-driven requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import pino from 'pino';
import { prometheusContentType } from 'prom-client';
import { startAdmin, type AdminProvider, type ReloadResponse } from './server.js';

const log = pino({ level: 'silent' });

async function admin(t: { after(fn: () => Promise<void>): void }, provider: AdminProvider) {
  const srv = await startAdmin({ host: '127.0.0.1', port: 0, provider, log });
  t.after(() => srv.close());
  return { srv, url: (p: string) => `http://127.0.0.1:${srv.port}${p}` };
}

function fakeProvider(over: Partial<AdminProvider> = {}) {
  const state = { ready: false, reloads: 0 };
  const provider: AdminProvider = {
    ready: () => state.ready,
    metrics: async () => '# HELP portcullis_reloads_total x\n# TYPE portcullis_reloads_total counter\nportcullis_reloads_total{result="success"} 3\n',
    status: () => ({ version: '9.9.9', generation: 4 }),
    reload: async () => {
      state.reloads++;
      return { ok: true, generation: 4 + state.reloads };
    },
    ...over,
  };
  return { provider, state };
}

test('GET /readyz says shutting_down (503) once a shutdown signal came, while /healthz stays 200', async (t) => {
  let shuttingDown = false;
  const { provider, state } = fakeProvider({ shuttingDown: () => shuttingDown });
  state.ready = true;
  provider.ready = () => state.ready && !shuttingDown;
  const { url } = await admin(t, provider);
  assert.equal((await fetch(url('/readyz'))).status, 200);
  shuttingDown = true;
  const res = await fetch(url('/readyz'));
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { status: 'shutting_down' });
  assert.equal((await fetch(url('/healthz'))).status, 200);
});

/** A raw request, for headers fetch will not let us set (Host, Origin on GET). */
function raw(port: number, opts: http.RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, ...opts }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('GET /healthz answers ok while the process is up', async (t) => {
  const { url } = await admin(t, fakeProvider().provider);
  const res = await fetch(url('/healthz'));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await res.json(), { status: 'ok' });
});

test('GET /readyz is 503 until the provider is ready, then 200', async (t) => {
  const { provider, state } = fakeProvider();
  const { url } = await admin(t, provider);
  let res = await fetch(url('/readyz'));
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { status: 'not_ready' });
  state.ready = true;
  res = await fetch(url('/readyz'));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ready' });
});

test('GET /metrics serves the provider text with the Prometheus content type', async (t) => {
  const { url } = await admin(t, fakeProvider().provider);
  const res = await fetch(url('/metrics?name[]=x'));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), prometheusContentType);
  assert.match(await res.text(), /^portcullis_reloads_total\{result="success"\} 3$/m);
});

test('GET /metrics answers 500 JSON when collection fails', async (t) => {
  const { url } = await admin(t, fakeProvider({ metrics: async () => Promise.reject(new Error('boom')) }).provider);
  const res = await fetch(url('/metrics'));
  assert.equal(res.status, 500);
  const body = (await res.json()) as { error: string; message: string };
  assert.equal(body.error, 'internal_error');
  assert.match(body.message, /boom/);
});

test('GET /status serves the provider document (sync or async)', async (t) => {
  const { url } = await admin(t, fakeProvider().provider);
  const res = await fetch(url('/status'));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { version: '9.9.9', generation: 4 });

  const { url: url2 } = await admin(t, fakeProvider({ status: async () => ({ async: true }) }).provider);
  assert.deepEqual(await (await fetch(url2('/status'))).json(), { async: true });
});

test('POST /reload returns the new generation, and 500 with the reason on failure', async (t) => {
  const { provider, state } = fakeProvider();
  const { url } = await admin(t, provider);
  const ok = await fetch(url('/reload'), { method: 'POST' });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { ok: true, generation: 5 });
  assert.equal(state.reloads, 1);

  const failing = fakeProvider({ reload: async () => ({ ok: false, error: 'listeners[0].tls.cert: file not found' }) });
  const { url: url2 } = await admin(t, failing.provider);
  const bad = await fetch(url2('/reload'), { method: 'POST' });
  assert.equal(bad.status, 500);
  assert.deepEqual(await bad.json(), { ok: false, error: 'listeners[0].tls.cert: file not found' });

  const throwing = fakeProvider({ reload: async () => Promise.reject(new Error('disk on fire')) });
  const { url: url3 } = await admin(t, throwing.provider);
  const thrown = await fetch(url3('/reload'), { method: 'POST' });
  assert.equal(thrown.status, 500);
  assert.deepEqual(await thrown.json(), { ok: false, error: 'disk on fire' });
});

test('POST /reload runs one reload at a time', async (t) => {
  let running = 0;
  let maxRunning = 0;
  let n = 0;
  const provider = fakeProvider({
    reload: async (): Promise<ReloadResponse> => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 30));
      running--;
      return { ok: true, generation: ++n };
    },
  }).provider;
  const { url } = await admin(t, provider);
  const bodies = await Promise.all([1, 2, 3].map(async () => (await fetch(url('/reload'), { method: 'POST' })).json()));
  assert.equal(maxRunning, 1);
  assert.deepEqual(bodies.map((b) => (b as { generation: number }).generation).sort(), [1, 2, 3]);
});

test('POST /reload is 501 when the provider cannot reload', async (t) => {
  const { provider } = fakeProvider();
  delete provider.reload;
  const { url } = await admin(t, provider);
  const res = await fetch(url('/reload'), { method: 'POST' });
  assert.equal(res.status, 501);
  assert.equal(((await res.json()) as { ok: boolean }).ok, false);
});

test('unknown paths are 404 JSON, wrong methods 405 with Allow', async (t) => {
  const { url } = await admin(t, fakeProvider().provider);
  const nf = await fetch(url('/nope'));
  assert.equal(nf.status, 404);
  const body = (await nf.json()) as { error: string; message: string };
  assert.equal(body.error, 'not_found');
  assert.match(body.message, /\/nope/);
  // inherited object keys are not routes
  assert.equal((await fetch(url('/constructor'))).status, 404);

  const get = await fetch(url('/reload'));
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  assert.equal(((await get.json()) as { error: string }).error, 'method_not_allowed');
  const post = await fetch(url('/metrics'), { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  await post.body?.cancel();

  const head = await fetch(url('/healthz'), { method: 'HEAD' });
  assert.equal(head.status, 200);
});

test('a loopback admin refuses foreign Host names (DNS rebinding) and browser POSTs', async (t) => {
  const { provider, state } = fakeProvider();
  const { srv } = await admin(t, provider);
  assert.equal((await raw(srv.port, { path: '/status', headers: { host: 'evil.example.com' } })).status, 403);
  assert.equal((await raw(srv.port, { path: '/status', headers: { host: `localhost:${srv.port}` } })).status, 200);
  assert.equal((await raw(srv.port, { path: '/status', headers: { host: `[::1]:${srv.port}` } })).status, 200);
  const csrf = await raw(srv.port, { method: 'POST', path: '/reload', headers: { origin: 'https://evil.example.com' } });
  assert.equal(csrf.status, 403);
  assert.equal(JSON.parse(csrf.body).error, 'forbidden');
  assert.equal(state.reloads, 0);
});

test('close() stops the listener; a port in use fails with a message naming admin.address', async () => {
  const { provider } = fakeProvider();
  const srv = await startAdmin({ host: '127.0.0.1', port: 0, provider, log });
  await assert.rejects(startAdmin({ host: '127.0.0.1', port: srv.port, provider, log }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PCL_ERR_LISTEN_FAILED');
    assert.match(err.message, /admin: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
    return true;
  });
  // keep-alive connection open: close() must still finish
  await fetch(`http://127.0.0.1:${srv.port}/healthz`);
  await srv.close();
  await assert.rejects(fetch(`http://127.0.0.1:${srv.port}/healthz`));
});
