// The HTTP/1.1 front end (src/proxy/http/http1.ts), through the real CLI with hand-written
// HTTP/1.1 on a real mTLS socket, so the exact bytes and their order are under the test's
// control: keep-alive framing, pipelining, chunked bodies, Expect, HTTP/1.0 on a
// kept-alive connection, heads split over many writes, header and idle timeouts, parse errors,
// chunked and body-less upstream responses, refusals that keep the connection, and what
// the upstream actually received.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { connectRaw, rawGet, type RawConn } from '../helpers/raw-http1.js';
import { freePort } from '../helpers/ocsp-responder.js';

// registered before useProxy's hook, so the port is known when the config is written
let deadPort = 0;
/** what the upstream saw of /app/abort */
const aborted: string[] = [];
before(async () => {
  deadPort = await freePort();
});

const fx = useProxy(
  ({ pki, up }) => ({
    listeners: [
      tlsListener(pki, {
        limits: { header_timeout: '700ms', idle_timeout: '3s', max_header_bytes: 2048 },
        routes: [
          { name: 'app', match: { path: '/app' }, upstream: 'app' },
          { name: 'dead', match: { path: '/dead' }, upstream: 'dead' },
        ],
      }),
    ],
    upstreams: { app: { endpoints: [up.url] }, dead: { endpoints: [`http://127.0.0.1:${deadPort}`] } },
  }),
  {
    upstream: (req, res) => {
      const u = req.url ?? '';
      if (u === '/app/chunked') {
        res.write('hello ');
        setTimeout(() => res.end('world'), 20);
        return true;
      }
      if (u.startsWith('/app/sha')) {
        // the body's sha256, read slowly for /app/sha-slow so the proxy meets backpressure
        const h = createHash('sha256');
        let n = 0;
        req.on('data', (c: Buffer) => {
          h.update(c);
          n += c.length;
          if (u === '/app/sha-slow') {
            req.pause();
            setTimeout(() => req.resume(), 2);
          }
        });
        req.on('end', () => res.end(JSON.stringify({ sha: h.digest('hex'), bytes: n })));
        return true;
      }
      if (u === '/app/early') {
        // answers before reading the body
        res.end('early');
        return true;
      }
      if (u === '/app/abort') {
        aborted.push('started');
        req.on('data', () => undefined);
        req.on('end', () => aborted.push('ended'));
        req.on('close', () => aborted.push('closed'));
        return true;
      }
      if (u === '/app/204') {
        res.writeHead(204, { 'x-kind': 'none' });
        res.end();
        return true;
      }
      return false; // the echo: JSON describing what the upstream received
    },
  },
);

/** A raw mTLS connection with a minimal HTTP/1.1 response reader. */
const connect = (): Promise<RawConn> => connectRaw(fx.cli.port, fx.pki);

const get = rawGet;

test('keep-alive: three requests on one connection, each framed and forwarded with the identity headers', async () => {
  const c = await connect();
  const before = fx.up.received.length;
  for (const p of ['/app/1', '/app/2?q=1', '/app/3']) {
    c.sock.write(get(p, 'X-Client-Subject: CN=forged\r\nx_client_cn: forged\r\n'));
    const r = await c.read();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'keep-alive');
    assert.equal(r.headers['keep-alive'], 'timeout=3');
    assert.ok(r.headers.date, 'a Date header');
    const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, p);
    assert.equal(seen.headers['x-client-verify'], 'SUCCESS');
    assert.match(seen.headers['x-client-subject']!, /CN=/);
    assert.notEqual(seen.headers['x-client-subject'], 'CN=forged');
    assert.equal(seen.headers['x-client-cn'] === 'forged', false);
    assert.equal(seen.headers['x_client_cn'], undefined);
  }
  assert.equal(fx.up.received.length, before + 3);
  assert.equal(c.sock.destroyed, false);
  c.sock.destroy();
});

test('pipelined requests in one write are answered in order; Connection: close ends the connection after its response', async () => {
  const c = await connect();
  c.sock.write(get('/app/p1') + get('/app/p2') + get('/app/p3', 'Connection: close\r\n'));
  const urls: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await c.read();
    assert.equal(r.status, 200);
    urls.push((JSON.parse(r.body) as { url: string }).url);
    if (i === 2) assert.equal(r.headers.connection, 'close');
  }
  assert.deepEqual(urls, ['/app/p1', '/app/p2', '/app/p3']);
  await c.closed;
});

test('a chunked POST after other requests arrives with its bytes intact, its head split over writes; the connection keeps working', async () => {
  const c = await connect();
  c.sock.write(get('/app/before'));
  assert.equal((await c.read()).status, 200);
  // the head over two writes (both replayed), then the first chunk with the end of the
  // head, the rest later
  c.sock.write('POST /app/post HTTP/1.1\r\nHost: local');
  await new Promise((r) => setTimeout(r, 50));
  c.sock.write('host\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  await new Promise((r) => setTimeout(r, 50));
  c.sock.write('6\r\n world\r\n0\r\n\r\n');
  const r = await c.read();
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.body) as { method: string; bodyBytes: number; headers: Record<string, string> };
  assert.equal(seen.method, 'POST');
  assert.equal(seen.bodyBytes, 11);
  assert.equal(seen.headers['x-client-verify'], 'SUCCESS');
  c.sock.write(get('/app/after'));
  const after = await c.read();
  assert.equal((JSON.parse(after.body) as { url: string }).url, '/app/after');
  c.sock.destroy();
});

test('Content-Length bodies stream: 16 MB through an upstream that reads slowly arrives whole, split heads and bodies too, and the connection carries the next request', async () => {
  const c = await connect();
  // more than the kernel's socket buffers hold, so the proxy must stop reading the client
  const big = randomBytes(16 * 1024 * 1024);
  c.sock.write(`POST /app/sha-slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${big.length}\r\n\r\n`);
  c.sock.write(big);
  const r = await c.read();
  assert.deepEqual(JSON.parse(r.body), { sha: createHash('sha256').update(big).digest('hex'), bytes: big.length });
  assert.equal(r.headers.connection, 'keep-alive');
  // head split, body split, and the next request right behind the body in the same write
  const small = Buffer.from('0123456789');
  c.sock.write('PUT /app/sha HTTP/1.1\r\nHost: loc');
  await new Promise((r) => setTimeout(r, 30));
  c.sock.write(`alhost\r\nContent-Length: ${small.length}\r\n\r\n01234`);
  await new Promise((r) => setTimeout(r, 30));
  c.sock.write('56789' + get('/app/next'));
  assert.deepEqual(JSON.parse((await c.read()).body), { sha: createHash('sha256').update(small).digest('hex'), bytes: 10 });
  assert.equal((JSON.parse((await c.read()).body) as { url: string }).url, '/app/next');
  c.sock.destroy();
});

test('a refused POST whose body has not all arrived closes the connection after the answer; one whose body is complete keeps it', async () => {
  const c = await connect();
  c.sock.write('POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nabcd');
  const whole = await c.read();
  assert.equal(whole.status, 404);
  assert.equal(whole.headers.connection, 'keep-alive');
  c.sock.write('POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nabcd');
  const part = await c.read();
  assert.equal(part.status, 404);
  // the answer is followed by our half-close; the unread body is discarded for at most 2 s
  const t0 = Date.now();
  await c.closed;
  assert.ok(Date.now() - t0 < 2800, `closed ${Date.now() - t0} ms after the answer`);
  c.sock.write(get('/app/after-close'));
  assert.ok(!fx.up.received.some((x) => x.url === '/app/after-close'));
});

test('an upstream that answers before the whole body has arrived: the answer is relayed, then the connection closes', async () => {
  const c = await connect();
  c.sock.write('POST /app/early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nabcd');
  const r = await c.read();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'early');
  const t0 = Date.now();
  await c.closed;
  assert.ok(Date.now() - t0 < 1500, `closed ${Date.now() - t0} ms after the answer, not by idle_timeout (3s)`);
});

test('the client closing mid-body aborts the upstream request, which never sees the body end', async () => {
  const c = await connect();
  c.sock.write('POST /app/abort HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
  for (let i = 0; i < 100 && !aborted.includes('started'); i++) await new Promise((r) => setTimeout(r, 20));
  c.sock.destroy();
  for (let i = 0; i < 100 && !aborted.includes('closed'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(aborted, ['started', 'closed']);
});

test('pipelined GET, POST with a body and GET in one write are answered in order', async () => {
  const c = await connect();
  c.sock.write(get('/app/g') + 'POST /app/q HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc' + get('/app/z'));
  const a = JSON.parse((await c.read()).body) as { url: string };
  const b = JSON.parse((await c.read()).body) as { url: string; bodyBytes: number };
  const z = JSON.parse((await c.read()).body) as { url: string };
  assert.deepEqual([a.url, b.url, b.bodyBytes, z.url], ['/app/g', '/app/q', 3, '/app/z']);
  c.sock.destroy();
});

test('Expect: 100-continue on a kept-alive connection gets 100 Continue once the request is admitted', async () => {
  const c = await connect();
  c.sock.write(get('/app/x'));
  await c.read();
  c.sock.write('PUT /app/put HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
  const cont = await c.read();
  assert.equal(cont.status, 100);
  c.sock.write('data');
  const r = await c.read();
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, 4);
  c.sock.destroy();
});

test('HTTP/1.0 requests are served and close the connection', async () => {
  const c = await connect();
  c.sock.write('GET /app/old HTTP/1.0\r\nHost: localhost\r\n\r\n');
  const r = await c.read();
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as { url: string }).url, '/app/old');
  await c.closed;
});

test('a request head split into single bytes is answered', async () => {
  const c = await connect();
  const req = get('/app/split', 'X-Some: thing\r\n');
  for (const ch of req) {
    c.sock.write(ch);
    await new Promise((r) => setImmediate(r));
  }
  const r = await c.read();
  const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
  assert.equal(seen.url, '/app/split');
  assert.equal(seen.headers['x-some'], 'thing');
  c.sock.destroy();
});

test('a chunked upstream response is re-framed chunked; HEAD and 204 carry no body and keep the connection', async () => {
  const c = await connect();
  c.sock.write(get('/app/chunked'));
  const r = await c.read();
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  assert.equal(r.body, 'hello world');
  c.sock.write('HEAD /app/h HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const h = await c.read(1, true);
  assert.equal(h.status, 200);
  assert.ok(h.headers['content-length'], 'HEAD keeps the length the upstream gave');
  c.sock.write(get('/app/204'));
  const n = await c.read();
  assert.equal(n.status, 204);
  assert.equal(n.headers['x-kind'], 'none');
  assert.equal(n.headers['transfer-encoding'], undefined);
  c.sock.write(get('/app/last'));
  assert.equal((JSON.parse((await c.read()).body) as { url: string }).url, '/app/last');
  assert.equal(c.raw().split('HTTP/1.1 ').length - 1, 4, 'exactly four responses, no stray body bytes');
  c.sock.destroy();
});

test('a refusal answers JSON and keeps the connection; an upstream failure answers 502 and closes it', async () => {
  const c = await connect();
  c.sock.write(get('/nowhere'));
  const r = await c.read();
  assert.equal(r.status, 404);
  assert.equal((JSON.parse(r.body) as { error: string }).error, 'no_route');
  assert.equal(r.headers.connection, 'keep-alive');
  c.sock.write(get('/app/still'));
  assert.equal((await c.read()).status, 200);
  c.sock.write(get('/dead/x'));
  const d = await c.read();
  assert.equal(d.status, 502);
  assert.equal(d.headers.connection, 'close');
  await c.closed;
});

test('parse errors: a bad header name gets 400, headers over max_header_bytes get 431; both close and nothing reaches the upstream', async () => {
  const before = fx.up.received.length;
  const c = await connect();
  c.sock.write(get('/app/ok'));
  await c.read();
  c.sock.write('GET /app/bad HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n');
  const r = await c.read();
  assert.equal(r.status, 400);
  assert.equal((JSON.parse(r.body) as { error: string }).error, 'bad_request');
  await c.closed;
  const c2 = await connect();
  c2.sock.write(get('/app/big', `X-Big: ${'a'.repeat(4000)}\r\n`));
  const big = await c2.read();
  assert.equal(big.status, 431);
  await c2.closed;
  // request smuggling: Content-Length and Transfer-Encoding together
  const c3 = await connect();
  c3.sock.write('POST /app/smuggle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  assert.equal((await c3.read()).status, 400);
  await c3.closed;
  assert.deepEqual(
    fx.up.received.slice(before).map((x) => x.url),
    ['/app/ok'],
  );
});

test('header_timeout runs from the first byte of a head, even on a kept-alive connection; idle_timeout closes an idle one', async () => {
  const c = await connect();
  c.sock.write(get('/app/first'));
  await c.read();
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  c.sock.write('GET /app/slow HTTP/1.1\r\nHost: local');
  await c.closed;
  const took = Date.now() - t0;
  // header_timeout is 700ms, idle_timeout 3s: the partial head must be cut at the former
  assert.ok(took >= 600 && took < 1800, `closed ${took} ms after the partial head (header_timeout 700ms)`);
  const c2 = await connect();
  c2.sock.write(get('/app/idle'));
  await c2.read();
  const t1 = Date.now();
  await c2.closed;
  const idle = Date.now() - t1;
  assert.ok(idle >= 2800 && idle < 6000, `closed after ${idle} ms idle (idle_timeout 3s)`);
});

test('a connection that keeps sending requests is not closed by idle_timeout', async () => {
  const c = await connect();
  for (let i = 0; i < 9; i++) {
    c.sock.write(get(`/app/busy${i}`));
    assert.equal((await c.read()).status, 200);
    await new Promise((r) => setTimeout(r, 400));
  }
  assert.equal(c.sock.destroyed, false, 'still open after 3.6 s of requests 400 ms apart (idle_timeout 3s)');
  c.sock.destroy();
});
