// H1Pool against real local sockets (raw net servers for exact bytes, http.Server where the
// request side matters): keep-alive reuse and its limits, the keep-alive race retry, response
// framing (HEAD, 1xx, close-delimited, chunked trailers), request bodies, timeouts, backpressure, abort.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { H1Pool, type H1Call, type H1PoolOptions, type H1Request } from './h1-pool.js';

/** Raw header pairs as a map, like the proxy's own; local because upstream/ never imports proxy/. */
function headerMapOf(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const prev = out[k];
    if (prev === undefined) out[k] = raw[i + 1]!;
    else if (typeof prev === 'string') out[k] = [prev, raw[i + 1]!];
    else prev.push(raw[i + 1]!);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// helpers

type UpErr = Error & { code?: string };
type Record_ = Record<string, string | string[]>;

interface Result {
  status: number;
  statusMessage: string;
  /** as the handler got them: [name, value, ...] in the upstream's case */
  rawHeaders: string[];
  /** lowercased names, repeated ones as arrays */
  headers: Record_;
  body: Buffer;
  rawTrailers: string[] | undefined;
  trailers: Record_ | undefined;
}

/** handler callbacks that arrived out of order (after the end, twice, data before start); checked by the last test */
const misuse: string[] = [];

interface Sent {
  call: H1Call;
  done: Promise<Result>;
}

/** Starts one request; `done` resolves with what the handler got, or rejects with its onResponseError. */
function send(pool: H1Pool, over: Partial<H1Request> = {}, onData?: (chunk: Buffer, call: H1Call) => boolean): Sent {
  const req: H1Request = { method: 'GET', path: '/', headers: [], body: null, headersTimeout: 5_000, bodyTimeout: 5_000, ...over };
  let started: { status: number; statusMessage: string; rawHeaders: string[]; headers: Record_ } | undefined;
  const chunks: Buffer[] = [];
  let settled = false;
  let call: H1Call | undefined;
  let resolve!: (r: Result) => void;
  let reject!: (e: UpErr) => void;
  const done = new Promise<Result>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const label = `${req.method} ${req.path}`;
  call = pool.request(req, {
    onResponseStart(status, headers, statusMessage) {
      if (settled || started) misuse.push(`${label}: onResponseStart after ${settled ? 'the end' : 'onResponseStart'}`);
      started = { status, statusMessage, rawHeaders: [...headers], headers: headerMapOf(headers) };
    },
    onResponseData(chunk) {
      if (settled || !started) misuse.push(`${label}: onResponseData ${settled ? 'after the end' : 'before onResponseStart'}`);
      chunks.push(Buffer.from(chunk));
      return onData && call ? onData(chunk, call) : true;
    },
    onResponseEnd(trailers) {
      if (settled || !started) misuse.push(`${label}: onResponseEnd ${settled ? 'after the end' : 'before onResponseStart'}`);
      settled = true;
      resolve({ ...started!, body: Buffer.concat(chunks), rawTrailers: trailers && [...trailers], trailers: trailers && headerMapOf(trailers) });
    },
    onResponseError(err) {
      if (settled) misuse.push(`${label}: onResponseError after the end (${err.code ?? err.message})`);
      settled = true;
      reject(err);
    },
  });
  return { call, done };
}

const fetchOnce = (pool: H1Pool, over: Partial<H1Request> = {}): Promise<Result> => send(pool, over).done;

/** Resolves with the error the request failed with; fails if it succeeded. */
async function failure(p: Promise<Result>): Promise<UpErr> {
  try {
    const r = await p;
    assert.fail(`expected the request to fail, it got ${r.status} ${JSON.stringify(r.body.toString('latin1').slice(0, 80))}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err as UpErr;
  }
}

function newPool(t: TestContext, port: number, over: Partial<H1PoolOptions> = {}, scheme = 'http'): H1Pool {
  const pool = new H1Pool(new URL(`${scheme}://127.0.0.1:${port}`), { connectTimeout: 2_000, idleTimeout: 60_000, tls: undefined, ...over });
  t.after(() => pool.close());
  return pool;
}

async function until(what: string, cond: () => boolean, ms = 2_500): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await sleep(10);
  }
}

interface RawUpstream {
  port: number;
  /** server-side sockets, in accept order */
  sockets: net.Socket[];
  /** how many of them have closed */
  closed: () => number;
  /** resolves when server-side socket i has closed */
  closedAt: (i: number) => Promise<void>;
}

/** A net.Server calling onSocket(sock, index) for each connection; everything is torn down after the test. */
async function rawUpstream(t: TestContext, onSocket: (sock: net.Socket, index: number) => void): Promise<RawUpstream> {
  const sockets: net.Socket[] = [];
  const closes: Promise<void>[] = [];
  let closed = 0;
  const server = net.createServer((sock) => {
    const i = sockets.length;
    sockets.push(sock);
    closes.push(new Promise((r) => sock.once('close', () => (closed++, r()))));
    sock.on('error', () => {});
    onSocket(sock, i);
    // read (and drop, when onSocket does not listen) so that the client's close is seen
    sock.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, sockets, closed: () => closed, closedAt: (i) => closes[i]! };
}

/** Calls onHead(head, n) for each request head on sock (n counts from 0); skips content-length bodies. */
function onRequestHeads(sock: net.Socket, onHead: (head: string, n: number) => void): void {
  let buf = Buffer.alloc(0);
  let skip = 0;
  let n = 0;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (skip > 0) {
        const k = Math.min(skip, buf.length);
        buf = buf.subarray(k);
        skip -= k;
        if (skip > 0) return;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      buf = buf.subarray(end + 4);
      const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
      skip = cl ? Number(cl[1]) : 0;
      onHead(head, n++);
      if (sock.destroyed) return;
    }
  });
}

interface HttpUpstream {
  port: number;
  connections: () => number;
}

async function httpUpstream(t: TestContext, handler: http.RequestListener): Promise<HttpUpstream> {
  let connections = 0;
  const server = http.createServer(handler);
  server.keepAliveTimeout = 30_000;
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

async function readAll(req: http.IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function* bodyOf(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) {
    await sleep(1);
    yield p;
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const OPTS = { timeout: 10_000 };

// ---------------------------------------------------------------------------------------
// keep-alive

test('keep-alive: 10 sequential GETs share one upstream socket and carry the default Host', OPTS, async (t) => {
  const hosts: string[] = [];
  const up = await httpUpstream(t, (req, res) => {
    hosts.push(req.headers.host ?? '');
    res.end(`reply ${req.url}`);
  });
  const pool = newPool(t, up.port);
  for (let i = 0; i < 10; i++) {
    const r = await fetchOnce(pool, { path: `/n/${i}` });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `reply /n/${i}`);
    assert.equal(r.trailers, undefined);
  }
  assert.equal(up.connections(), 1);
  assert.equal(pool.size, 1);
  assert.deepEqual(new Set(hosts), new Set([`127.0.0.1:${up.port}`]));
});

test('an upstream Keep-Alive: timeout=1 hint closes the idle socket after about 1 s despite idleTimeout 60 s', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, () => sock.write('HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=1, max=100\r\ncontent-length: 2\r\n\r\nok')),
  );
  const pool = newPool(t, up.port, { idleTimeout: 60_000 });
  const r = await fetchOnce(pool);
  assert.equal(r.body.toString(), 'ok');
  const t0 = Date.now();
  assert.equal(pool.size, 1);
  await until('pool.size == 0', () => pool.size === 0, 2_500);
  const took = Date.now() - t0;
  assert.ok(took >= 500, `closed after ${took} ms: too early for a 1 s hint`);
  await up.closedAt(0); // the pool closed it: the raw upstream never closes on its own
  assert.equal(up.sockets.length, 1);
});

test('keep-alive race: a bodiless GET on a socket the upstream drops is retried on a fresh one; a POST or PUT with a body is not', OPTS, async (t) => {
  const seen: string[] = [];
  const up = await rawUpstream(t, (sock, i) =>
    onRequestHeads(sock, (head, n) => {
      seen.push(`${i}:${head.split('\r\n')[0]}`);
      if (n === 0) sock.write(`HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 6\r\n\r\nconn ${i}`);
      else sock.destroy(); // closed "while idle": the second request gets no answer
    }),
  );
  const pool = newPool(t, up.port);
  assert.equal((await fetchOnce(pool, { path: '/a' })).body.toString(), 'conn 0');
  const second = await fetchOnce(pool, { path: '/b' });
  assert.equal(second.status, 200);
  assert.equal(second.body.toString(), 'conn 1');
  assert.equal(up.sockets.length, 2);
  assert.deepEqual(seen, ['0:GET /a HTTP/1.1', '0:GET /b HTTP/1.1', '1:GET /b HTTP/1.1']);

  // socket 1 has served one request now, so the POST lands on it and is dropped
  const payload = Buffer.from('{"x":1}');
  const err = await failure(fetchOnce(pool, { method: 'POST', path: '/c', headers: ['content-length', String(payload.length)], body: bodyOf(payload) }));
  assert.ok(err instanceof Error);
  assert.equal(up.sockets.length, 2, 'the POST was retried on a new connection');
  assert.deepEqual(seen.slice(3), ['1:POST /c HTTP/1.1']);
  await until('pool.size == 0', () => pool.size === 0);

  // PUT is idempotent, but its body (an iterable, consumed once) has gone: not retried either
  assert.equal((await fetchOnce(pool, { path: '/d' })).body.toString(), 'conn 2');
  const put = await failure(fetchOnce(pool, { method: 'PUT', path: '/e', body: bodyOf(payload) }));
  assert.ok(put instanceof Error);
  assert.equal(up.sockets.length, 3, 'the PUT was retried on a new connection');
  assert.deepEqual(seen.slice(4), ['2:GET /d HTTP/1.1', '2:PUT /e HTTP/1.1']);
});

test('a content-length body split over many writes (head alone, then pieces) arrives whole, and 204/304 with a content-length have no body', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (head) => {
      if (head.startsWith('GET /split')) {
        sock.write('HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n');
        setTimeout(() => sock.write('hel'), 20);
        setTimeout(() => sock.write('lo wo'), 40);
        setTimeout(() => sock.write('rld'), 60);
      } else if (head.startsWith('GET /304')) sock.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n');
      else if (head.startsWith('GET /204')) sock.write('HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n');
      else sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    }),
  );
  const pool = newPool(t, up.port);
  const r = await fetchOnce(pool, { path: '/split' });
  assert.equal(r.body.toString(), 'hello world');
  const n = await fetchOnce(pool, { path: '/304' });
  assert.equal(n.status, 304);
  assert.equal(n.body.length, 0);
  const z = await fetchOnce(pool, { path: '/204' });
  assert.equal(z.status, 204);
  assert.equal(z.body.length, 0);
  assert.equal((await fetchOnce(pool, { path: '/next' })).body.toString(), 'ok');
  assert.equal(up.sockets.length, 1);
});

test('HEAD: content-length 100 and no body bytes; the socket is reused afterwards', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (head) => {
      if (head.startsWith('HEAD ')) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\ncontent-type: text/plain\r\n\r\n');
      else sock.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter');
    }),
  );
  const pool = newPool(t, up.port);
  const h = await fetchOnce(pool, { method: 'HEAD' });
  assert.equal(h.status, 200);
  assert.equal(h.headers['content-length'], '100');
  assert.equal(h.body.length, 0);
  const g = await fetchOnce(pool);
  assert.equal(g.body.toString(), 'after');
  assert.equal(up.sockets.length, 1);
  assert.equal(pool.size, 1);
});

test('1xx: 103 Early Hints and 100 Continue are skipped; the handler sees the final 200 only', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, async (_head, n) => {
      const info = 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n';
      const final = `HTTP/1.1 200 OK\r\nx-final: yes\r\ncontent-length: 7\r\n\r\nfinal ${n}`;
      if (n === 0) sock.write(info + final); // all in one write
      else {
        // one message per write
        sock.write('HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n');
        await sleep(20);
        sock.write('HTTP/1.1 100 Continue\r\n\r\n');
        await sleep(20);
        sock.write(final);
      }
    }),
  );
  const pool = newPool(t, up.port);
  for (const n of [0, 1, 2]) {
    const r = await fetchOnce(pool);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-final'], 'yes');
    assert.equal(r.headers['link'], undefined);
    assert.equal(r.body.toString(), `final ${n}`);
  }
  assert.equal(up.sockets.length, 1);
});

// ---------------------------------------------------------------------------------------
// when a socket must not be reused

test('close-delimited bodies (Connection: close, and HTTP/1.0) end at EOF and the socket is not kept', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock, i) =>
    onRequestHeads(sock, async () => {
      sock.write(i === 0 ? 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart1 ' : 'HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\npart1 ');
      await sleep(30);
      sock.write('part2');
      await sleep(10);
      sock.end();
    }),
  );
  const pool = newPool(t, up.port);
  const a = await fetchOnce(pool);
  assert.equal(a.body.toString(), 'part1 part2');
  await until('pool.size == 0', () => pool.size === 0);
  const b = await fetchOnce(pool);
  assert.equal(b.body.toString(), 'part1 part2');
  await until('pool.size == 0', () => pool.size === 0);
  assert.equal(up.sockets.length, 2);
});

for (const [framing, first] of [
  ['content-length', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'],
  ['chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'],
] as const) {
  test(`unsolicited bytes: a second response in the same write as the first (${framing} body) closes the socket`, OPTS, async (t) => {
    const up = await rawUpstream(t, (sock, i) =>
      onRequestHeads(sock, () => {
        if (i === 0) sock.write(`${first}HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra`);
        else sock.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nclean');
      }),
    );
    const pool = newPool(t, up.port);
    const a = await fetchOnce(pool);
    assert.equal(a.body.toString(), 'ok');
    await up.closedAt(0);
    assert.equal(pool.size, 0);
    const b = await fetchOnce(pool);
    assert.equal(b.body.toString(), 'clean');
    assert.equal(up.sockets.length, 2);
  });
}

test('unsolicited bytes on an idle socket close it', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, () => {
      sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      setTimeout(() => sock.write('HTTP/1.1 204 No Content\r\n\r\n'), 30);
    }),
  );
  const pool = newPool(t, up.port);
  assert.equal((await fetchOnce(pool)).body.toString(), 'ok');
  await up.closedAt(0);
  assert.equal(pool.size, 0);
  assert.equal((await fetchOnce(pool)).body.toString(), 'ok');
  assert.equal(up.sockets.length, 2);
});

test('a response with Connection: close and a content-length is not reused', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    // the upstream keeps its side open: only the pool closes
    onRequestHeads(sock, () => sock.write('HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 4\r\n\r\ndone')),
  );
  const pool = newPool(t, up.port);
  assert.equal((await fetchOnce(pool)).body.toString(), 'done');
  await up.closedAt(0);
  assert.equal((await fetchOnce(pool)).body.toString(), 'done');
  assert.equal(up.sockets.length, 2);
});

test('a response that completes before the request body has all gone is not reused', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock, i) => {
    let answered = false;
    sock.on('data', () => {
      if (answered) return; // the rest of the body: ignored
      answered = true;
      sock.write(`HTTP/1.1 413 Payload Too Large\r\nConnection: keep-alive\r\ncontent-length: 5\r\n\r\nconn${i}`);
    });
  });
  const pool = newPool(t, up.port);
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let rest = false;
  async function* body(): AsyncGenerator<Buffer> {
    yield Buffer.from('first part');
    await gate;
    rest = true;
    yield Buffer.from('second part');
  }
  const r = await fetchOnce(pool, { method: 'POST', body: body() });
  assert.equal(r.status, 413);
  assert.equal(r.body.toString(), 'conn0');
  await up.closedAt(0);
  assert.equal(pool.size, 0);
  open();
  await until('the rest of the body was read', () => rest);
  assert.equal((await fetchOnce(pool)).body.toString(), 'conn1');
  assert.equal(up.sockets.length, 2);
});

// ---------------------------------------------------------------------------------------
// the request side

test('request bodies: chunked without content-length, as-is with it, content-length: 0 for a bodiless POST', OPTS, async (t) => {
  const got: { method: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  const up = await httpUpstream(t, async (req, res) => {
    const body = await readAll(req);
    got.push({ method: req.method!, headers: req.headers, body });
    res.end(sha(body));
  });
  const pool = newPool(t, up.port);
  const big = randomBytes(300_000);
  const parts = [Buffer.from('hello '), Buffer.alloc(0), big, Buffer.from(' world')];
  const whole = Buffer.concat(parts);

  const chunked = await fetchOnce(pool, { method: 'POST', path: '/chunked', body: bodyOf(...parts) });
  assert.equal(chunked.body.toString(), sha(whole));
  assert.equal(got[0]!.headers['transfer-encoding'], 'chunked');
  assert.equal(got[0]!.headers['content-length'], undefined);
  assert.ok(got[0]!.body.equals(whole));

  const sized = await fetchOnce(pool, { method: 'PUT', path: '/sized', headers: ['Content-Length', String(whole.length)], body: bodyOf(...parts) });
  assert.equal(sized.body.toString(), sha(whole));
  assert.equal(got[1]!.headers['transfer-encoding'], undefined);
  assert.equal(got[1]!.headers['content-length'], String(whole.length));
  assert.ok(got[1]!.body.equals(whole));

  await fetchOnce(pool, { method: 'POST', path: '/empty' });
  assert.equal(got[2]!.headers['content-length'], '0');
  assert.equal(got[2]!.headers['transfer-encoding'], undefined);
  assert.equal(got[2]!.body.length, 0);

  await fetchOnce(pool, { method: 'GET', path: '/get' });
  assert.equal(got[3]!.headers['content-length'], undefined);
  assert.equal(got[3]!.headers['transfer-encoding'], undefined);

  // framing is the pool's: a caller's own transfer-encoding is not sent (nor doubled)
  const te = await fetchOnce(pool, { method: 'POST', path: '/te', headers: ['Transfer-Encoding', 'chunked'], body: bodyOf(Buffer.from('abc')) });
  assert.equal(te.body.toString(), sha(Buffer.from('abc')));
  assert.equal(got[4]!.headers['transfer-encoding'], 'chunked');
  assert.equal(got[4]!.body.toString(), 'abc');

  assert.equal(up.connections(), 1);
});

test('header injection: CR/LF in a header value, a header name or the path fails with PCL_BAD_REQUEST_HEAD and sends nothing', OPTS, async (t) => {
  const heads: string[] = [];
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (head) => {
      heads.push(head);
      sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    }),
  );
  const pool = newPool(t, up.port);
  const bad: Partial<H1Request>[] = [
    { headers: ['x-evil', 'a\r\nx-injected: 1'] },
    { headers: ['x-evil', 'a\nx-injected: 1'] },
    { headers: ['x-evil\r\nx-injected', '1'] },
    { headers: ['x-nul', 'a\0b'] },
    { path: '/a HTTP/1.1\r\nx-injected: 1\r\n\r\nGET /b' },
  ];
  for (const over of bad) {
    const err = await failure(fetchOnce(pool, over));
    assert.equal(err.code, 'PCL_BAD_REQUEST_HEAD', JSON.stringify(over));
  }
  assert.equal(pool.size, 0);
  // a good request afterwards is the first thing the upstream ever sees
  assert.equal((await fetchOnce(pool, { headers: ['x-good', 'yes'] })).body.toString(), 'ok');
  assert.equal(up.sockets.length, 1);
  assert.equal(heads.length, 1);
  assert.ok(!/injected/i.test(heads[0]!), heads[0]);
  assert.match(heads[0]!, /\r\nx-good: yes(\r\n|$)/);
});

test('trusted header lines (the pre-rendered identity block) replace headers[from..], go out verbatim, and do not excuse the headers before them', OPTS, async (t) => {
  const heads: string[] = [];
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (head) => {
      heads.push(head);
      sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    }),
  );
  const pool = newPool(t, up.port);
  const ids = ['x-client-verify', 'SUCCESS', 'x-client-cn', 'svc'];
  const trusted = { from: 2, head: 'x-client-verify: SUCCESS\r\nx-client-cn: svc\r\n' };
  await fetchOnce(pool, { headers: ['x-mine', 'a', ...ids], trusted });
  assert.equal(heads.length, 1);
  const lines = heads[0]!.split('\r\n');
  assert.deepEqual(lines.filter((l) => l.startsWith('x-')), ['x-mine: a', 'x-client-verify: SUCCESS', 'x-client-cn: svc'], 'each identity line once, after the caller\'s own');
  const err = await failure(fetchOnce(pool, { headers: ['x-evil', 'a\r\nx-injected: 1', ...ids], trusted }));
  assert.equal(err.code, 'PCL_BAD_REQUEST_HEAD');
  assert.equal(heads.length, 1);
});

// ---------------------------------------------------------------------------------------
// response details

test('chunked response trailers reach onResponseEnd, [name, value, ...] as received', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, () =>
      sock.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Count\r\n\r\n' +
          '6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: abc123\r\nX-Count: 2\r\n\r\n',
      ),
    ),
  );
  const pool = newPool(t, up.port);
  const r = await fetchOnce(pool);
  assert.equal(r.body.toString(), 'hello world');
  assert.deepEqual(r.rawTrailers, ['X-Checksum', 'abc123', 'X-Count', '2']);
  assert.deepEqual(r.trailers, { 'x-checksum': 'abc123', 'x-count': '2' });
  // and the socket is in step for the next one
  const again = await fetchOnce(pool);
  assert.equal(again.body.toString(), 'hello world');
  assert.equal(up.sockets.length, 1);
});

test('a chunked body written a few bytes at a time, and a large one read under backpressure, arrive whole; the socket is reused', OPTS, async (t) => {
  const big = randomBytes(3 * 1024 * 1024);
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (head) => {
      if (head.startsWith('GET /dribble')) {
        const wire = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n', 'latin1');
        let off = 0;
        const step = (): void => {
          if (off >= wire.length || sock.destroyed) return;
          sock.write(wire.subarray(off, off + 3));
          off += 3;
          setTimeout(step, 1);
        };
        step();
        return;
      }
      sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      for (let o = 0; o < big.length; o += 100_000) {
        const part = big.subarray(o, o + 100_000);
        sock.write(`${part.length.toString(16)}\r\n`);
        sock.write(part);
        sock.write('\r\n');
      }
      sock.write('0\r\n\r\n');
    }),
  );
  const pool = newPool(t, up.port);
  const a = await fetchOnce(pool, { path: '/dribble' });
  assert.equal(a.body.toString(), 'hello world');
  assert.deepEqual(a.rawTrailers, ['X-T', '1']);
  let call: H1Call | undefined;
  let pauses = 0;
  const { done } = send(pool, { path: '/big' }, (_chunk, c) => {
    call = c;
    pauses++;
    setTimeout(() => c.resume(), 1);
    return false;
  });
  const b = await done;
  assert.ok(call);
  assert.ok(pauses > 1);
  assert.equal(sha(b.body), sha(big));
  assert.equal(up.sockets.length, 1, 'both responses on one socket');
});

test('a malformed chunked body fails the request with its HPE_ code and closes the socket; the next request gets a fresh one', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock, i) =>
    onRequestHeads(sock, () => {
      if (i === 0) sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n');
      else sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    }),
  );
  const pool = newPool(t, up.port);
  const err = await failure(fetchOnce(pool));
  assert.equal(err.code, 'HPE_STRICT');
  assert.match(err.message, /chunked body is malformed/);
  await up.closedAt(0);
  assert.equal((await fetchOnce(pool)).body.toString(), 'abc');
  assert.equal(up.sockets.length, 2);
});

test('repeated response headers (two set-cookie) both arrive, in order and original case', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, () => sock.write('HTTP/1.1 201 Created Here\r\nSet-Cookie: a=1\r\nX-One: 1\r\nset-cookie: b=2; Path=/\r\ncontent-length: 0\r\n\r\n')),
  );
  const pool = newPool(t, up.port);
  const r = await fetchOnce(pool);
  assert.equal(r.status, 201);
  assert.equal(r.statusMessage, 'Created Here');
  assert.deepEqual(r.rawHeaders, ['Set-Cookie', 'a=1', 'X-One', '1', 'set-cookie', 'b=2; Path=/', 'content-length', '0']);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2; Path=/']);
  assert.equal(r.headers['x-one'], '1');
  assert.equal(r.body.length, 0);
});

// ---------------------------------------------------------------------------------------
// failures

/** The request fails with `code` after its 200 ms limit (not at once, not much later); the socket is closed and not pooled. */
async function failsAfter200ms(pool: H1Pool, up: { closedAt(i: number): Promise<unknown> }, over: Partial<H1Request>, code: string): Promise<void> {
  const t0 = Date.now();
  const err = await failure(fetchOnce(pool, over));
  const took = Date.now() - t0;
  assert.equal(err.code, code);
  assert.ok(took >= 150 && took < 2_000, `${took} ms`);
  await up.closedAt(0);
  assert.equal(pool.size, 0);
}

test('headersTimeout: an upstream that never answers fails with PCL_UPSTREAM_TIMEOUT', OPTS, async (t) => {
  const up = await rawUpstream(t, () => {});
  const pool = newPool(t, up.port);
  await failsAfter200ms(pool, up, { headersTimeout: 200 }, 'PCL_UPSTREAM_TIMEOUT');
});

test('connectTimeout: an https endpoint that never answers the TLS handshake fails with PCL_UPSTREAM_CONNECT_TIMEOUT', OPTS, async (t) => {
  const up = await rawUpstream(t, () => {});
  const pool = newPool(t, up.port, { connectTimeout: 200, tls: { rejectUnauthorized: false } }, 'https');
  await failsAfter200ms(pool, up, { headersTimeout: 0 }, 'PCL_UPSTREAM_CONNECT_TIMEOUT');
});

test('bodyTimeout: a response body that stalls fails with PCL_UPSTREAM_TIMEOUT', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) => onRequestHeads(sock, () => sock.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome')));
  const pool = newPool(t, up.port);
  await failsAfter200ms(pool, up, { bodyTimeout: 200 }, 'PCL_UPSTREAM_TIMEOUT');
});

test('a request body that throws fails the request with that error and closes the socket', OPTS, async (t) => {
  const up = await rawUpstream(t, () => {});
  const pool = newPool(t, up.port);
  const boom = new Error('client body failed');
  async function* body(): AsyncGenerator<Buffer> {
    yield Buffer.from('part');
    await sleep(20);
    throw boom;
  }
  const err = await failure(fetchOnce(pool, { method: 'POST', body: body() }));
  assert.equal(err, boom);
  await up.closedAt(0);
  assert.equal(pool.size, 0);
});

test('a refused connection fails with ECONNREFUSED', OPTS, async (t) => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  const pool = newPool(t, port);
  const err = await failure(fetchOnce(pool));
  assert.equal(err.code, 'ECONNREFUSED');
  assert.equal(pool.size, 0);
});

// ---------------------------------------------------------------------------------------
// flow control and abort

test('backpressure: a 2 MB body read with onResponseData false / resume() arrives whole, and the socket serves the next request', OPTS, async (t) => {
  const big = randomBytes(2 * 1024 * 1024);
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (_head, n) => {
      if (n === 0) {
        sock.write(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n`);
        for (let off = 0; off < big.length; off += 256 * 1024) sock.write(big.subarray(off, off + 256 * 1024));
      } else sock.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext');
    }),
  );
  const pool = newPool(t, up.port);
  let pauses = 0;
  const { done } = send(pool, {}, (_chunk, call) => {
    pauses++;
    setTimeout(() => call.resume(), 1);
    return false;
  });
  const r = await done;
  assert.equal(r.body.length, big.length);
  assert.equal(sha(r.body), sha(big));
  assert.ok(pauses > 1, `${pauses} chunks`);
  // a headersTimeout turns a socket left paused into a failure rather than a hang
  const next = await fetchOnce(pool, { headersTimeout: 1_500 });
  assert.equal(next.body.toString(), 'next');
  assert.equal(up.sockets.length, 1);
});

test('backpressure: a small response whose only chunk returned false, never resumed, leaves the socket usable', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) => onRequestHeads(sock, (_h, n) => sock.write(`HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nbody ${n}`)));
  const pool = newPool(t, up.port);
  const r = await send(pool, {}, () => false).done;
  assert.equal(r.body.toString(), 'body 0');
  const next = await fetchOnce(pool, { headersTimeout: 1_500 });
  assert.equal(next.body.toString(), 'body 1');
  assert.equal(up.sockets.length, 1);
});

test('abort() mid-response: onResponseError gets the abort error, the upstream socket is closed, the pool is empty', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, () => sock.write(`HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n${'x'.repeat(100)}`)),
  );
  const pool = newPool(t, up.port);
  let gotData!: () => void;
  const data = new Promise<void>((r) => (gotData = r));
  const { call, done } = send(pool, {}, () => {
    gotData();
    return true;
  });
  await data;
  assert.equal(pool.size, 1);
  const why = new Error('client went away');
  call.abort(why);
  const err = await failure(done);
  assert.equal(err, why);
  await up.closedAt(0);
  assert.equal(pool.size, 0);
  call.abort(new Error('twice')); // a second abort is a no-op (misuse would record a second onResponseError)
});

// ---------------------------------------------------------------------------------------

test('a headersTimeout left armed by an earlier request on the socket does not fire for a later request with headersTimeout 0', OPTS, async (t) => {
  const up = await rawUpstream(t, (sock) =>
    onRequestHeads(sock, (_h, n) => {
      if (n === 0) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      else setTimeout(() => sock.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow'), 500);
    }),
  );
  const pool = newPool(t, up.port);
  assert.equal((await fetchOnce(pool, { headersTimeout: 200 })).body.toString(), 'ok');
  // same socket; no limit on this one (a route with timeout: 0, e.g. a long poll)
  const r = await fetchOnce(pool, { headersTimeout: 0 });
  assert.equal(r.body.toString(), 'slow');
});

test('no handler got a callback out of order or after its request ended', () => {
  assert.deepEqual(misuse, []);
});
