// What the proxy does between the client and the upstream, through the real CLI: upstream
// failures become SPEC §5 JSON errors (502, 504, 404, 400), balancing and keep-alive toward
// the upstream, hop-by-hop headers dropped in both directions, bodies relayed intact (and
// never claimed complete when the upstream broke off), paths normalized before routing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, curl, certArgs, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
/** the main upstream; some paths are answered by `special` below instead of the echo */
let app: EchoUpstream;
let slow: EchoUpstream;
let rr1: EchoUpstream;
let rr2: EchoUpstream;
let deadPort: number;
/** remote ports of the proxy->upstream connections that carried /app/keepalive requests */
const keepAlivePorts: number[] = [];
/** requests the slow upstream is holding; answered at cleanup */
const held: http.ServerResponse[] = [];

// A body that is easy to tell apart from a truncated or reordered one.
const BIG = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i.toString().padStart(6, '0')}\n`).join(''));
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');

function special(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const path = (req.url ?? '').split('?')[0];
  switch (path) {
    case '/app/keepalive':
      keepAlivePorts.push(req.socket.remotePort!);
      return false; // the echo answers
    case '/app/resp-hop':
      req.resume();
      res.writeHead(200, [
        'Content-Type', 'text/plain',
        'Connection', 'x-resp-hop',
        'X-Resp-Hop', '1',
        'Keep-Alive', 'timeout=5, max=77',
        'Proxy-Connection', 'keep-alive',
        'X-Normal-Resp', 'kept',
        'Content-Length', '2',
      ]);
      res.end('ok');
      return true;
    case '/app/chunked':
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' }); // no length: Node sends it chunked
      for (let i = 0; i < BIG.length; i += 7_919) res.write(BIG.subarray(i, i + 7_919));
      res.end();
      return true;
    case '/app/content-length':
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BIG.length });
      for (let i = 0; i < BIG.length; i += 7_919) res.write(BIG.subarray(i, i + 7_919));
      res.end();
      return true;
    case '/app/cut-content-length':
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BIG.length });
      res.write(BIG.subarray(0, 10_000), () => setTimeout(() => res.socket?.destroy(), 50));
      return true;
    case '/app/cut-chunked':
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(BIG.subarray(0, 10_000), () => setTimeout(() => res.socket?.destroy(), 50));
      return true;
    case '/app/cut-before-headers':
      req.resume();
      req.socket.destroy();
      return true;
    default:
      return false;
  }
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  app = await startEchoUpstream(special);
  slow = await startEchoUpstream((req, res) => {
    req.resume();
    held.push(res);
    return true; // never answers
  });
  rr1 = await startEchoUpstream();
  rr2 = await startEchoUpstream();
  // a port nothing listens on: bind one, then free it
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  deadPort = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));

  cli = await startCli(
    {
      // one worker: balancing and upstream keep-alive are per worker process
      workers: 1,
      listeners: [
        tlsListener(pki, {
          routes: [
            { name: 'down', match: { path: '/down' }, upstream: 'down' },
            { name: 'slow', match: { path: '/slow' }, upstream: 'slow', timeout: '500ms' },
            { name: 'rr', match: { path: '/rr' }, upstream: 'rr' },
            { name: 'app', match: { path: '/app' }, upstream: 'app' },
          ],
        }),
      ],
      upstreams: {
        down: { endpoints: [`http://127.0.0.1:${deadPort}`], timeouts: { connect: '2s', request: '30s', idle: '60s' } },
        slow: { endpoints: [slow.url], timeouts: { connect: '2s', request: '30s', idle: '60s' } },
        rr: { endpoints: [rr1.url, rr2.url], balance: 'round_robin' },
        app: { endpoints: [app.url], timeouts: { connect: '2s', request: '30s', idle: '60s' } },
      },
    },
    { dir },
  );
});

after(async () => {
  for (const res of held) res.destroy();
  await cli?.stop();
  await Promise.all([app, slow, rr1, rr2].map((u) => u?.close()));
  cleanup(dir);
});

const url = (path: string) => `https://localhost:${cli.port}${path}`;
const auth = () => certArgs(pki.ca.cert, pki.client);

interface Res {
  status?: number;
  headers?: http.IncomingHttpHeaders;
  rawHeaders?: string[];
  body: Buffer;
  /** the response arrived whole (its length or final chunk was seen) */
  complete: boolean;
  error?: NodeJS.ErrnoException;
}

/** One request over a fresh TLS connection with the good client certificate; never throws. */
function request(path: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders | string[] } = {}): Promise<Res> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: cli.port,
        path,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
        ca: readFileSync(pki.ca.cert),
        cert: readFileSync(pki.client.cert),
        key: readFileSync(pki.client.key),
      },
      (res) => {
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => undefined); // 'aborted' in Node 20; seen through res.complete
        res.on('close', () =>
          resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), complete: res.complete }),
        );
      },
    );
    req.on('error', (error) => resolve({ body: Buffer.concat(chunks), complete: false, error }));
    req.end();
  });
}

/** Sends `raw` (a whole HTTP/1.1 request) over TLS with the good client certificate; returns everything read until close. */
function rawRequest(raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      servername: 'localhost',
      port: cli.port,
      ca: readFileSync(pki.ca.cert),
      cert: readFileSync(pki.client.cert),
      key: readFileSync(pki.client.key),
      ALPNProtocols: ['http/1.1'],
    });
    let out = '';
    const timer = setTimeout(() => s.destroy(new Error(`no close within 5s; got so far:\n${out}`)), 5_000);
    s.on('secureConnect', () => s.write(raw));
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.on('close', () => (clearTimeout(timer), resolve(out)));
  });
}

/** Asserts the SPEC §5 error shape and returns the parsed body. */
function assertJsonError(body: string, code: string, headers?: Record<string, unknown>): { error: string; message: string; request_id: string } {
  let j: { error: string; message: string; request_id: string };
  try {
    j = JSON.parse(body) as typeof j;
  } catch {
    assert.fail(`expected a JSON error body, got: ${body}`);
  }
  assert.deepEqual(Object.keys(j).sort(), ['error', 'message', 'request_id']);
  assert.equal(j.error, code);
  assert.equal(typeof j.message, 'string');
  assert.ok(j.message.length > 10, `message should be a sentence: ${j.message}`);
  assert.equal(typeof j.request_id, 'string');
  assert.ok(j.request_id.length > 0);
  if (headers) {
    assert.match(String(headers['content-type']), /^application\/json/);
    assert.equal(headers['x-request-id'], j.request_id, 'the X-Request-Id response header and the body agree');
  }
  return j;
}

test('an upstream that nothing listens on answers 502 upstream_unavailable as JSON', async () => {
  const r = await curl(url('/down/x'), auth());
  assert.equal(r.status, 502, `${r.stderr}${r.body}`);
  assertJsonError(r.body, 'upstream_unavailable');
  const n = await request('/down/y');
  assert.equal(n.status, 502);
  const j = assertJsonError(n.body.toString(), 'upstream_unavailable', n.headers);
  assert.ok(!j.message.includes(String(pki.client.serial)), 'the message is about the upstream, not the client');
});

test('an upstream that never answers gets 504 upstream_timeout after the route timeout (500ms)', async () => {
  const before = held.length;
  const started = Date.now();
  const r = await curl(url('/slow/report'), auth(), 10_000);
  const took = Date.now() - started;
  assert.equal(r.status, 504, `${r.stderr}${r.body}`);
  assertJsonError(r.body, 'upstream_timeout');
  assert.equal(held.length, before + 1, 'the request did reach the slow upstream');
  assert.ok(took >= 450, `answered after ${took} ms, before the 500ms route timeout`);
  assert.ok(took < 3_000, `answered after ${took} ms; the route timeout is 500ms (upstream request timeout 30s)`);
});

test('round robin spreads 4 requests 2 and 2 over two endpoints', async () => {
  const b1 = rr1.received.length;
  const b2 = rr2.received.length;
  for (let i = 0; i < 4; i++) {
    const r = await curl(url(`/rr/${i}`), auth());
    assert.equal(r.status, 200, r.stderr);
  }
  assert.equal(rr1.received.length - b1, 2, 'first endpoint');
  assert.equal(rr2.received.length - b2, 2, 'second endpoint');
});

test('connections to the upstream are kept alive: 10 sequential requests use at most 2 upstream connections', async () => {
  keepAlivePorts.length = 0;
  for (let i = 0; i < 10; i++) {
    const r = await request(`/app/keepalive?i=${i}`);
    assert.equal(r.status, 200, r.error?.message);
  }
  assert.equal(keepAlivePorts.length, 10);
  const distinct = new Set(keepAlivePorts).size;
  assert.ok(distinct <= 2, `upstream saw ${distinct} connections for 10 sequential requests: ${keepAlivePorts.join(',')}`);
});

test('hop-by-hop request headers (and headers named in Connection) never reach the upstream; end-to-end ones do', async () => {
  const before = app.received.length;
  // HTTP/1.1: over HTTP/2 curl itself drops connection-specific headers
  const r = await curl(url('/app/hop'), [
    ...auth(),
    '--http1.1',
    '-H', 'Connection: keep-alive, X-Custom-Hop',
    '-H', 'X-Custom-Hop: 1',
    '-H', 'Keep-Alive: timeout=5',
    '-H', 'Proxy-Connection: x',
    '-H', 'TE: gzip',
    '-H', 'Upgrade: foo',
    '-H', 'Trailer: X-Later',
    '-H', 'X-Custom: 1',
    '-H', 'Cookie: session=abc; theme=dark',
    '-H', 'Accept: application/json',
  ]);
  assert.equal(r.status, 200, r.stderr);
  const got = app.received[before]!;
  assert.equal(got.url, '/app/hop');
  const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const h of ['x-custom-hop', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'trailer']) {
    assert.ok(!names.includes(h), `${h} reached the upstream: ${JSON.stringify(got.rawHeaders)}`);
  }
  // the proxy may speak its own Connection header to the upstream, but never the client's tokens
  const connection = String(got.headers.connection ?? '');
  assert.ok(!/x-custom-hop/i.test(connection), `client's Connection tokens reached the upstream: ${connection}`);
  assert.equal(got.headers['x-custom'], '1');
  assert.equal(got.headers.cookie, 'session=abc; theme=dark');
  assert.equal(got.headers.accept, 'application/json');
});

test('a header named in Connection is dropped whatever its letter case', async () => {
  const before = app.received.length;
  const r = await request('/app/hop-case', { headers: ['Host', 'localhost', 'Connection', 'X-MIXED-Case-Hop', 'x-mixed-case-hop', 'secret', 'X-Stays', 'yes'] });
  assert.equal(r.status, 200, r.error?.message);
  const got = app.received[before]!;
  assert.equal(got.headers['x-mixed-case-hop'], undefined);
  assert.equal(got.headers['x-stays'], 'yes');
});

test('hop-by-hop response headers from the upstream do not reach the client', async () => {
  const r = await request('/app/resp-hop');
  assert.equal(r.status, 200, r.error?.message);
  assert.equal(r.body.toString(), 'ok');
  const h = r.headers!;
  assert.equal(h['x-resp-hop'], undefined, 'a header the upstream named in Connection was relayed');
  assert.ok(!/x-resp-hop/i.test(String(h.connection ?? '')), `upstream Connection relayed: ${h.connection}`);
  assert.ok(!/max=77/.test(String(h['keep-alive'] ?? '')), `upstream Keep-Alive relayed: ${h['keep-alive']}`);
  assert.equal(h['proxy-connection'], undefined);
  assert.equal(h['x-normal-resp'], 'kept', 'end-to-end response headers are relayed');
});

test('over HTTP/2 too, upstream hop-by-hop response headers are dropped and chunked bodies relayed', async () => {
  // HTTP/2 forbids connection-specific headers outright, so relaying them would break the stream
  const h = await curl(url('/app/resp-hop'), [...auth(), '--http2', '-i']);
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.status, 200, h.body);
  const [head, body] = h.body.split('\r\n\r\n');
  assert.match(head!, /^HTTP\/2 200/);
  assert.doesNotMatch(head!, /^(connection|keep-alive|proxy-connection|x-resp-hop|transfer-encoding):/im);
  assert.match(head!, /^x-normal-resp: kept$/im);
  assert.equal(body, 'ok');
  const c = await curl(url('/app/chunked'), [...auth(), '--http2']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.status, 200);
  assert.equal(c.body, BIG.toString());
});

test('a chunked response body is relayed intact', async () => {
  const r = await request('/app/chunked');
  assert.equal(r.status, 200, r.error?.message);
  assert.ok(r.complete);
  assert.equal(r.body.length, BIG.length);
  assert.equal(createHash('sha256').update(r.body).digest('hex'), BIG_SHA);
  assert.equal(r.headers!['content-length'], undefined);
  assert.equal(r.headers!['transfer-encoding'], 'chunked');
});

test('a content-length response body is relayed intact with its length', async () => {
  const r = await request('/app/content-length');
  assert.equal(r.status, 200, r.error?.message);
  assert.ok(r.complete);
  assert.equal(r.headers!['content-length'], String(BIG.length));
  assert.equal(createHash('sha256').update(r.body).digest('hex'), BIG_SHA);
  const c = await curl(url('/app/content-length'), auth());
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.body, BIG.toString());
});

for (const kind of ['content-length', 'chunked'] as const) {
  test(`an upstream that closes mid-response (${kind}) gives the client an error, never a complete-looking 200`, async () => {
    const n = await request(`/app/cut-${kind}`);
    assert.ok(n.error || !n.complete, `node client saw a complete response of ${n.body.length} bytes (status ${n.status})`);
    assert.ok(n.body.length < BIG.length);
    const c = await curl(url(`/app/cut-${kind}`), [...auth(), '--http2']);
    assert.notEqual(c.code, 0, `curl accepted a truncated body as complete (status ${c.status}, ${c.body.length} bytes)`);
  });
}

test('an upstream that closes before sending headers gives 502 upstream_unavailable', async () => {
  const r = await request('/app/cut-before-headers');
  assert.equal(r.status, 502, r.error?.message);
  assertJsonError(r.body.toString(), 'upstream_unavailable', r.headers);
});

test('query strings are forwarded verbatim (no decoding, no dot-segment removal), over HTTP/1.1 and HTTP/2', async () => {
  const q = '?a=1&b=%2F&c=%2e%2e&d=x/../y&e=&e=2&f=%41%zz&g=a+b';
  for (const proto of ['--http1.1', '--http2']) {
    const before = app.received.length;
    const r = await curl(url(`/app/q${q}`), [...auth(), proto, '--path-as-is']);
    assert.equal(r.status, 200, r.stderr);
    assert.equal(app.received[before]!.url, `/app/q${q}`, proto);
  }
});

for (const proto of ['--http1.1', '--http2'] as const) {
  test(`dot-segments are removed before routing, and the upstream sees the normalized path (curl ${proto})`, async () => {
    const before = app.received.length;
    const a = await curl(url('/app/a/../b'), [...auth(), proto, '--path-as-is']);
    assert.equal(a.status, 200, a.stderr);
    assert.equal(app.received[before]!.url, '/app/b');
    // a path that only reaches the app route once normalized
    const b = await curl(url('/down/../app/./c?x=/../1'), [...auth(), proto, '--path-as-is']);
    assert.equal(b.status, 200, `${b.stderr}${b.body}`);
    assert.equal(app.received[before + 1]!.url, '/app/c?x=/../1');
  });
}

test('a path with an encoded slash after encoded dots is refused with 400 bad_request', async () => {
  const before = app.received.length;
  const r = await curl(url('/app/%2e%2e%2fadmin'), [...auth(), '--http2', '--path-as-is']);
  assert.equal(r.status, 400, `${r.stderr}${r.body}`);
  assertJsonError(r.body, 'bad_request');
  const n = await request('/%2e%2e%2fadmin');
  assert.equal(n.status, 400);
  assertJsonError(n.body.toString(), 'bad_request', n.headers);
  assert.equal(app.received.length, before);
});

for (const [what, target] of [
  ['a request target without a leading slash', 'app/x'],
  ['a malformed percent-escape', '/app/%zz'],
  ['a backslash', '/app/..\\admin'],
] as const) {
  test(`${what} is refused with 400 bad_request JSON`, async () => {
    const before = app.received.length;
    const out = await rawRequest(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const [head, ...rest] = out.split('\r\n\r\n');
    assert.match(head ?? '', /^HTTP\/1\.1 400 /, out);
    assert.match(head ?? '', /\r\ncontent-type: application\/json/i);
    assertJsonError(rest.join('\r\n\r\n'), 'bad_request');
    assert.equal(app.received.length, before);
  });
}

test('a path no route matches answers 404 no_route', async () => {
  const r = await request('/nowhere/at/all');
  assert.equal(r.status, 404, r.error?.message);
  const j = assertJsonError(r.body.toString(), 'no_route', r.headers);
  assert.match(j.message, /\/nowhere\/at\/all/);
  await waitFor(() => cli.accessLines().some((l) => l.request_id === j.request_id));
  const line = cli.accessLines().find((l) => l.request_id === j.request_id)!;
  assert.equal(line.status, 404);
});

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
