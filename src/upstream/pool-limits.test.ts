// The upstream pools under upstreams.<name>.limits, against real local servers: H1Pool
// sockets and h2c sessions take the limiter's slots, a waiting request is served on the
// socket that turns idle, an idle socket of another endpoint closes to hand its slot over,
// a request whose client leaves while waiting leaves the queue, and a full queue answers
// PCL_UPSTREAM_OVERLOADED at once.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { H1Pool, type H1Call, type H1Request } from './h1-pool.js';
import { H2SessionPool } from './h2-session-pool.js';
import { UpstreamLimiter } from './limiter.js';

type UpErr = Error & { code?: string };

interface Upstream {
  url: URL;
  /** sockets accepted so far */
  accepted: number;
  /** sockets open now */
  open: number;
  /** most sockets open at once */
  peak: number;
  /** requests waiting for release() */
  held: http.ServerResponse[];
  release(): void;
}

/** An HTTP/1.1 upstream that counts its sockets; /hold waits for release(), anything else answers at once. */
async function upstream(t: TestContext): Promise<Upstream> {
  const u = { accepted: 0, open: 0, peak: 0, held: [] as http.ServerResponse[] } as Upstream;
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/hold') u.held.push(res);
    else res.end('ok');
  });
  server.on('connection', (s: net.Socket) => {
    u.accepted++;
    u.open++;
    u.peak = Math.max(u.peak, u.open);
    s.once('close', () => u.open--);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  u.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  u.release = () => {
    for (const r of u.held.splice(0)) r.end('released');
  };
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return u;
}

function limiter(c: number, p: number, waitMs = 2_000): UpstreamLimiter {
  return new UpstreamLimiter('app', { max_connections: c, max_pending: p, max_requests: 1_000 }, waitMs);
}

function pool(u: Upstream, l: UpstreamLimiter): H1Pool {
  return new H1Pool(u.url, { connectTimeout: 2_000, idleTimeout: 10_000, tls: undefined, limiter: l });
}

/** One request; resolves with the body or rejects with the error. */
function send(p: H1Pool, path = '/'): { call: H1Call; done: Promise<string> } {
  const req: H1Request = { method: 'GET', path, headers: ['host', 'x'], body: null, headersTimeout: 5_000, bodyTimeout: 5_000 };
  let call!: H1Call;
  const done = new Promise<string>((resolve, reject) => {
    let body = '';
    call = p.request(req, {
      onResponseStart: () => undefined,
      onResponseData: (c) => ((body += c.toString()), true),
      onResponseEnd: () => resolve(body),
      onResponseError: (e) => reject(e),
    });
  });
  return { call, done };
}

async function failure(p: Promise<unknown>): Promise<UpErr> {
  try {
    await p;
  } catch (e) {
    return e as UpErr;
  }
  assert.fail('expected the request to fail');
}

test('H1Pool: past max_connections a request waits and is served on the socket that turns idle', async (t) => {
  const u = await upstream(t);
  const l = limiter(1, 5);
  const p = pool(u, l);
  const a = send(p, '/hold');
  const b = send(p, '/');
  await sleep(100);
  assert.equal(l.pending, 1, 'b waits: the only slot is busy');
  assert.equal(u.accepted, 1);
  u.release();
  assert.equal(await a.done, 'released');
  assert.equal(await b.done, 'ok');
  assert.equal(u.accepted, 1, 'b reused the socket a left idle');
  assert.equal(l.connections, 1);
  assert.equal(l.pending, 0);
  await p.close();
});

test('H1Pool: with the queue full the request fails at once with PCL_UPSTREAM_OVERLOADED (max_pending)', async (t) => {
  const u = await upstream(t);
  const l = limiter(1, 1);
  const p = pool(u, l);
  const a = send(p, '/hold');
  const b = send(p, '/');
  const c = await failure(send(p, '/').done);
  assert.equal(c.code, 'PCL_UPSTREAM_OVERLOADED');
  assert.match(c.message, /limits\.max_pending/);
  await sleep(50);
  u.release();
  await a.done;
  await b.done;
  assert.equal(u.peak, 1);
  await p.close();
});

test('H1Pool: a request whose client leaves while it waits leaves the queue, and nothing reaches the upstream', async (t) => {
  const u = await upstream(t);
  const l = limiter(1, 5);
  const p = pool(u, l);
  const a = send(p, '/hold');
  const b = send(p, '/never');
  await sleep(50);
  assert.equal(l.pending, 1);
  b.call.abort(new Error('client closed the connection'));
  assert.match((await failure(b.done)).message, /client closed/);
  assert.equal(l.pending, 0);
  u.release();
  await a.done;
  await sleep(50);
  assert.equal(u.accepted, 1);
  assert.equal(p.size, 1, 'the socket went back to idle: nobody waits for it');
  await p.close();
});

test('H1Pool: a waiter gets no slot within the wait time and fails as overloaded (max_connections)', async (t) => {
  const u = await upstream(t);
  const l = limiter(1, 5, 150);
  const p = pool(u, l);
  const a = send(p, '/hold');
  const e = await failure(send(p, '/').done);
  assert.equal(e.code, 'PCL_UPSTREAM_OVERLOADED');
  assert.match(e.message, /no free connection within 150 ms/);
  u.release();
  await a.done;
  await p.close();
});

test('H1Pool: two endpoints share the limit; an idle socket of one closes so the other can connect', async (t) => {
  const u1 = await upstream(t);
  const u2 = await upstream(t);
  const l = limiter(1, 5);
  const p1 = pool(u1, l);
  const p2 = pool(u2, l);
  assert.equal(await send(p1).done, 'ok');
  assert.equal(p1.size, 1, 'idle on endpoint 1');
  // endpoint 2 needs the only slot: endpoint 1's idle socket gives it up
  assert.equal(await send(p2).done, 'ok');
  assert.equal(p1.size, 0);
  assert.equal(l.connections, 1);
  // now endpoint 2 is busy and endpoint 1 waits; when endpoint 2's socket turns idle it
  // closes to hand the slot over (the head of the queue wants endpoint 1)
  const busy = send(p2, '/hold');
  await sleep(50);
  const waiting = send(p1, '/');
  await sleep(50);
  assert.equal(l.pending, 1);
  u2.release();
  await busy.done;
  assert.equal(await waiting.done, 'ok');
  assert.equal(u1.peak + u2.peak, 2, 'never more than one socket open at once on each');
  assert.ok(l.connections <= 1);
  await p1.close();
  await p2.close();
});

test('H2SessionPool: waiters for a session all ride the one session opened for the first of them', async (t) => {
  const server = http2.createServer();
  let sessions = 0;
  server.on('session', () => sessions++);
  server.on('stream', (s) => {
    s.respond({ ':status': 200 });
    s.end('h2');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const h1 = await upstream(t);
  const l = limiter(1, 10);
  const hp = pool(h1, l);
  const busy = send(hp, '/hold'); // takes the only slot
  await sleep(50);
  const h2 = new H2SessionPool(new URL(`h2c://127.0.0.1:${(server.address() as AddressInfo).port}`), { connectTimeout: 2_000, idleTimeout: 10_000, tls: undefined, limiter: l });
  const answers = Array.from({ length: 3 }, () =>
    new Promise<string>((resolve, reject) => {
      h2.request({ ':path': '/' }, true, (err, stream) => {
        if (err || !stream) return reject(err);
        let body = '';
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => (body += c));
        stream.on('end', () => resolve(body));
        stream.on('error', reject);
      });
    }),
  );
  await sleep(50);
  assert.equal(l.pending, 3);
  h1.release();
  await busy.done;
  assert.deepEqual(await Promise.all(answers), ['h2', 'h2', 'h2']);
  assert.equal(sessions, 1);
  assert.equal(l.connections, 1, 'the HTTP/1.1 socket closed to hand over its slot');
  await hp.close();
  await h2.close();
  await sleep(50);
  assert.equal(l.connections, 0, 'a closed session gives its slot back');
});
