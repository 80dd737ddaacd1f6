// Regression for the security review's finding "HTTP/2 stream fan-out": one HTTP/2
// connection with 2,000 body-less POST streams made the worker open 2,000 upstream
// connections, held until timeouts.request (EMFILE at 1,024 fds, 502 for everyone).
// Through the real CLI with real http2 clients and a raw-frame client: streams past
// limits.max_concurrent_streams (default 128) get RST_STREAM REFUSED_STREAM, also from a
// client that opens them before it has read the server's SETTINGS; the upstream never
// sees more than upstreams.<name>.limits.max_connections sockets; what cannot wait gets
// 503 upstream_overloaded; another client still gets 200 meanwhile; nothing is leaked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { connectRawH2, headers, requestBlock, CODE, FRAME } from '../helpers/h2-frames.js';

const STREAMS = 2_000;
const DEFAULT_MAX_STREAMS = 128;
const MAX_CONNECTIONS = 10;
const MAX_PENDING = 20;

/** An upstream that never answers: it counts its sockets and requests, and holds them. */
interface Holding {
  port: number;
  accepted: number;
  open: number;
  peak: number;
  requests: number;
  close(): Promise<void>;
}

async function holdingUpstream(): Promise<Holding> {
  const h = { accepted: 0, open: 0, peak: 0, requests: 0 } as Holding;
  const server = http.createServer(() => void h.requests++);
  server.on('connection', (s: net.Socket) => {
    h.accepted++;
    h.open++;
    h.peak = Math.max(h.peak, h.open);
    s.once('close', () => h.open--);
  });
  server.requestTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.port = (server.address() as AddressInfo).port;
  h.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return h;
}

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let app: EchoUpstream;
let held: Holding;
let wide: Holding;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  app = await startEchoUpstream();
  held = await holdingUpstream();
  wide = await holdingUpstream();
  cli = await startCli(
    {
      // max_concurrent_streams is left at its default on purpose: the default must protect
      listeners: [
        tlsListener(pki, {
          routes: [
            { match: { path: '/held' }, upstream: 'held' },
            { match: { path: '/wide' }, upstream: 'wide' },
            { upstream: 'app' },
          ],
        }),
      ],
      upstreams: {
        app: { endpoints: [app.url] },
        held: {
          endpoints: [`http://127.0.0.1:${held.port}`],
          timeouts: { connect: '1s', request: '60s' },
          limits: { max_connections: MAX_CONNECTIONS, max_pending: MAX_PENDING },
        },
        // default limits: only max_concurrent_streams bounds what one connection can do
        wide: { endpoints: [`http://127.0.0.1:${wide.port}`], timeouts: { request: '60s' } },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await app?.close();
  await held?.close();
  await wide?.close();
  cleanup(dir);
});

const tlsOpts = () => ({ ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface StreamOutcome {
  status?: number;
  body: string;
  rstCode?: number;
  closed: boolean;
}

/**
 * Opens `n` body-less POST streams to `path` on one new connection whose client assumes the
 * server allows `n` streams: it sends them all before it has read the server's SETTINGS
 * (the requests are queued before the session connects).
 */
function flood(n: number, path: string): { session: http2.ClientHttp2Session; outcomes: StreamOutcome[]; closed: () => boolean } {
  const session = http2.connect(`https://localhost:${cli.port}`, { ...tlsOpts(), peerMaxConcurrentStreams: n });
  let sessionClosed = false;
  session.on('error', () => undefined);
  session.once('close', () => (sessionClosed = true));
  const outcomes: StreamOutcome[] = [];
  for (let i = 0; i < n; i++) {
    const o: StreamOutcome = { body: '', closed: false };
    outcomes.push(o);
    // body-less POST: the stream stays open, as in the finding
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/octet-stream' }, { endStream: false });
    req.setEncoding('utf8');
    req.on('response', (h) => (o.status = Number(h[':status'])));
    req.on('data', (d: string) => (o.body += d));
    req.on('error', () => undefined);
    req.on('close', () => {
      o.closed = true;
      o.rstCode = req.rstCode;
    });
  }
  return { session, outcomes, closed: () => sessionClosed };
}

const refusedOf = (os: StreamOutcome[]) => os.filter((o) => o.closed && o.status === undefined && o.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM);
const overloadedOf = (os: StreamOutcome[]) => os.filter((o) => o.status === 503);

/** GET on a connection of its own: the client next to the flood. */
async function normalRequest(path: string): Promise<{ status: number; body: string }> {
  const other = http2.connect(`https://localhost:${cli.port}`, tlsOpts());
  other.on('error', () => undefined);
  try {
    return await new Promise((resolve, reject) => {
      const r = other.request({ ':path': path });
      let status = 0;
      let body = '';
      r.setEncoding('utf8');
      r.on('response', (h) => (status = Number(h[':status'])));
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status, body }));
      r.on('error', reject);
    });
  } finally {
    other.close();
  }
}

test('1,000 POST streams on one connection: 128 admitted (the rest REFUSED_STREAM), max_connections upstream sockets, 503 upstream_overloaded past max_pending, another client gets 200 meanwhile, nothing leaked', async () => {
  const n = 1_000;
  const f = flood(n, '/held');
  const expected503 = DEFAULT_MAX_STREAMS - MAX_CONNECTIONS; // 98 at once (queue full) + 20 after waiting 1 s
  await until(() => refusedOf(f.outcomes).length + overloadedOf(f.outcomes).length >= n - MAX_CONNECTIONS, 10_000, `${n - MAX_CONNECTIONS} refused or 503 streams (have ${refusedOf(f.outcomes).length} + ${overloadedOf(f.outcomes).length})`);

  assert.equal(refusedOf(f.outcomes).length, n - DEFAULT_MAX_STREAMS, 'every stream past max_concurrent_streams is refused with REFUSED_STREAM');
  assert.equal(overloadedOf(f.outcomes).length, expected503);
  assert.equal(f.closed(), false, 'refusals do not end the connection');
  await until(() => held.requests === MAX_CONNECTIONS, 2_000, 'the held requests to reach the upstream');
  assert.equal(held.accepted, MAX_CONNECTIONS, 'the upstream got exactly max_connections sockets');
  assert.ok(held.peak <= MAX_CONNECTIONS, `the upstream saw ${held.peak} sockets at once`);

  // every 503 is SPEC §5 JSON naming the upstream and the limit to raise
  const bodies = overloadedOf(f.outcomes).map((o) => JSON.parse(o.body) as { error: string; message: string });
  assert.ok(bodies.every((b) => b.error === 'upstream_overloaded'), JSON.stringify(bodies[0]));
  const byLimit = (l: string) => bodies.filter((b) => b.message.includes(`limits.${l}`)).length;
  assert.equal(byLimit('max_pending'), expected503 - MAX_PENDING, 'refused at once: the queue was full');
  assert.equal(byLimit('max_connections'), MAX_PENDING, 'the queued ones waited timeouts.connect in vain');
  assert.match(bodies[0]!.message, /^upstream held /);

  // meanwhile the worker serves everyone else
  const ok = await normalRequest('/normal');
  assert.equal(ok.status, 200);
  assert.equal(app.received.at(-1)?.url, '/normal');
  assert.equal(app.received.at(-1)?.headers['x-client-cn'], 'payment-service');

  // the flood goes away: its upstream sockets are closed, none is left behind
  f.session.destroy();
  await until(() => held.open === 0, 5_000, `the upstream sockets to close (open: ${held.open})`);
  assert.equal(cli.proc.exitCode, null, 'the worker process survived');
  assert.doesNotMatch(cli.stderr(), /worker_exited/);
});

test('2,000 POST streams on one connection (the finding): never more than max_connections upstream sockets, the worker survives and serves others, nothing leaked', async () => {
  const acceptedBefore = held.accepted;
  held.peak = held.open;
  const f = flood(STREAMS, '/held');
  // Past ~1,000 queued refusals nghttp2's outbound flood guard drops the connection (a
  // client that makes the server queue that many RST_STREAMs at once is flooding it), so
  // every stream ends one way or another: refused, 503, or cut with the connection.
  await until(() => f.outcomes.every((o) => o.closed) || (held.open === MAX_CONNECTIONS && refusedOf(f.outcomes).length === STREAMS - DEFAULT_MAX_STREAMS), 10_000, 'every stream to be answered, refused or cut');
  const refused = refusedOf(f.outcomes).length;
  const overloaded = overloadedOf(f.outcomes).length;
  assert.ok(refused >= 500, `${refused} streams were refused with REFUSED_STREAM`);
  assert.ok(overloaded <= DEFAULT_MAX_STREAMS - MAX_CONNECTIONS, `${overloaded} answers of 503`);
  assert.ok(f.outcomes.filter((o) => o.status !== undefined && o.status !== 503).length === 0, 'no stream got anything but 503');
  assert.ok(held.peak <= MAX_CONNECTIONS, `the upstream saw ${held.peak} sockets at once`);
  assert.ok(held.accepted - acceptedBefore <= MAX_CONNECTIONS, `the upstream accepted ${held.accepted - acceptedBefore} sockets`);

  const ok = await normalRequest('/after-fanout');
  assert.equal(ok.status, 200);
  assert.equal(app.received.at(-1)?.url, '/after-fanout');

  f.session.destroy();
  await until(() => held.open === 0, 5_000, `the upstream sockets to close (open: ${held.open})`);
  assert.equal(cli.proc.exitCode, null, 'the worker process survived');
  assert.doesNotMatch(cli.stderr(), /worker_exited/);
});

test('a client that ignores SETTINGS (200 streams before reading anything) gets REFUSED_STREAM for every stream past 128, and the upstream sees 128 requests', async () => {
  const before = wide.requests;
  const raw = await connectRawH2({ port: cli.port, ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  const block = requestBlock('GET', '/wide');
  const n = 200;
  const frames: Buffer[] = [];
  for (let i = 0; i < n; i++) frames.push(headers(1 + 2 * i, block, true));
  raw.write(Buffer.concat(frames));
  await until(() => raw.resets().size >= n - DEFAULT_MAX_STREAMS && wide.requests - before >= DEFAULT_MAX_STREAMS, 5_000, 'the refusals and the upstream requests');
  await sleep(200);
  const resets = raw.resets();
  assert.equal(resets.size, n - DEFAULT_MAX_STREAMS);
  assert.ok([...resets.values()].every((c) => c === CODE.REFUSED_STREAM), `codes: ${[...new Set(resets.values())].join(',')}`);
  // the refused ones are the newest streams: the first 128 were admitted
  assert.equal(Math.min(...resets.keys()), 1 + 2 * DEFAULT_MAX_STREAMS);
  assert.equal(wide.requests - before, DEFAULT_MAX_STREAMS);
  assert.equal(raw.goaway(), undefined, 'refusing streams does not end the connection');
  assert.ok(raw.frames.some((f) => f.type === FRAME.SETTINGS && f.payload.includes(Buffer.from([0x00, 0x03, 0x00, 0x00, 0x00, DEFAULT_MAX_STREAMS]))), 'SETTINGS_MAX_CONCURRENT_STREAMS = 128 was advertised');
  raw.sock.destroy();
  await until(() => wide.open === 0, 5_000, 'the upstream sockets to close');
});
