// upstreams.<name>.limits through the real CLI with real clients: `portcullis check`
// refuses limits that would refuse everything, max_requests answers 503
// upstream_overloaded (SPEC §5 JSON for HTTP, grpc-status 14 UNAVAILABLE for gRPC), a
// WebSocket relay holds a connection slot for as long as it is open, and a tcp listener's
// upstream connections wait for a slot or are refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket, WebSocketServer } from 'ws';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, runCli, tempDir, cleanup, tlsListener, nodeRequest, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
/** HTTP/1.1 upstream: /hold waits for release(), the rest answers at once */
let held: http.ServerResponse[] = [];
let httpUp: http.Server;
let h2cUp: http2.Http2Server;
let h2cHeld: http2.ServerHttp2Stream[] = [];
let wss: WebSocketServer;
let tcpUp: net.Server;
const tcpSockets: net.Socket[] = [];

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  httpUp = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/hold') held.push(res);
    else res.end(`ok ${req.url}`);
  });
  httpUp.listen(0, '127.0.0.1');
  await once(httpUp, 'listening');
  // a gRPC-ish h2c upstream that holds every call until the test answers it
  h2cUp = http2.createServer();
  h2cUp.on('stream', (s) => {
    s.on('error', () => undefined);
    h2cHeld.push(s);
  });
  h2cUp.listen(0, '127.0.0.1');
  await once(h2cUp, 'listening');
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(`echo:${d.toString()}`)));
  tcpUp = net.createServer((s) => {
    tcpSockets.push(s);
    s.on('error', () => undefined);
    s.on('data', (d) => s.write(d));
  });
  tcpUp.listen(0, '127.0.0.1');
  await once(tcpUp, 'listening');
  const port = (s: { address(): unknown }) => (s.address() as AddressInfo).port;
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          routes: [
            { match: { path: '/grpc.' }, upstream: 'grpc' },
            { match: { path: '/ws' }, upstream: 'ws' },
            { upstream: 'app' },
          ],
        }),
        tlsListener(pki, { name: 'tcp', protocol: 'tcp', upstream: 'tcp', routes: [] }),
      ],
      upstreams: {
        app: { endpoints: [`http://127.0.0.1:${port(httpUp)}`], limits: { max_requests: 1 } },
        grpc: { endpoints: [`h2c://127.0.0.1:${port(h2cUp)}`], limits: { max_requests: 1 } },
        ws: { endpoints: [`http://127.0.0.1:${port(wss)}`], timeouts: { connect: '300ms' }, limits: { max_connections: 1, max_pending: 1 } },
        tcp: { endpoints: [`tcp://127.0.0.1:${port(tcpUp)}`], timeouts: { connect: '300ms' }, limits: { max_connections: 1, max_pending: 1 } },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  for (const r of held) r.end();
  for (const s of h2cHeld) if (!s.destroyed) s.close();
  for (const s of tcpSockets) s.destroy();
  for (const c of wss?.clients ?? []) c.terminate();
  httpUp?.closeAllConnections();
  httpUp?.close();
  h2cUp?.close();
  wss?.close();
  tcpUp?.close();
  cleanup(dir);
});

const creds = () => ({ ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });
const get = (path: string, port = cli.port) => nodeRequest({ host: '127.0.0.1', servername: 'localhost', port, path, ...creds() });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('portcullis check refuses limits that would refuse everything, each with its path and the fix', () => {
  const cfg = {
    listeners: [tlsListener(pki, { limits: { max_concurrent_streams: 0 } })],
    upstreams: { app: { endpoints: ['http://127.0.0.1:8080'], limits: { max_connections: 0, max_pending: -5, max_requests: 1.5 } } },
  };
  const file = join(dir, 'bad-limits.json');
  writeFileSync(file, JSON.stringify(cfg));
  const r = runCli(['check', '-c', file]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const out = r.stderr;
  assert.match(out, /listeners\[0\]\.limits\.max_concurrent_streams: 0 would let HTTP\/2 clients open no stream at all; use 1 or more \(the default is 128\)/);
  assert.match(out, /upstreams\.app\.limits\.max_connections: 0 would let no request reach this upstream; use 1 or more \(the default is 1024\)/);
  assert.match(out, /upstreams\.app\.limits\.max_pending: -5 would refuse every request that finds all connections busy \(nothing may wait\); use 1 or more \(the default is 1024\)/);
  assert.match(out, /upstreams\.app\.limits\.max_requests: expected a whole number/);

  const ok = join(dir, 'good-limits.json');
  writeFileSync(ok, JSON.stringify({ ...cfg, listeners: [tlsListener(pki, { limits: { max_concurrent_streams: 64 } })], upstreams: { app: { endpoints: ['http://127.0.0.1:8080'], limits: { max_connections: 8 } } } }));
  const r2 = runCli(['check', '-c', ok]);
  assert.equal(r2.status, 0, r2.stdout + r2.stderr);
});

test('max_requests: a request past the limit gets 503 upstream_overloaded naming the upstream and the limit; the slot comes back when the first ends', async () => {
  const first = get('/hold');
  await until(() => held.length === 1, 5_000, 'the first request to reach the upstream');
  const second = await get('/second');
  assert.equal(second.status, 503);
  const body = JSON.parse(second.body!) as { error: string; message: string; request_id: string };
  assert.equal(body.error, 'upstream_overloaded');
  assert.equal(body.message, 'upstream app already has 1 requests in flight from this worker (limits.max_requests); retry later or raise upstreams.app.limits.max_requests');
  assert.ok(body.request_id);
  held.shift()!.end('released');
  assert.equal((await first).status, 200);
  const third = await get('/third');
  assert.equal(third.status, 200);
  assert.equal(third.body, 'ok /third');
  const line = cli.accessLines().find((l) => l.path === '/second');
  assert.equal(line?.status, 503);
  assert.equal(line?.error, 'max_requests');
});

test('gRPC past max_requests gets a trailers-only grpc-status 14 (UNAVAILABLE) with the message', async () => {
  const s = http2.connect(`https://localhost:${cli.port}`, creds());
  s.on('error', () => undefined);
  try {
    const call = (path: string) => {
      const r = s.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
      r.on('error', () => undefined);
      r.end(Buffer.from([0, 0, 0, 0, 0]));
      return r;
    };
    call('/grpc.Echo/Held');
    await until(() => h2cHeld.length === 1, 5_000, 'the first call to reach the upstream');
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const r = call('/grpc.Echo/Second');
      r.on('response', resolve);
      r.on('error', reject);
    });
    assert.equal(headers[':status'], 200);
    assert.equal(headers['content-type'], 'application/grpc');
    assert.equal(headers['grpc-status'], '14');
    assert.match(decodeURIComponent(String(headers['grpc-message'])), /^upstream grpc already has 1 requests in flight .*limits\.max_requests/);
  } finally {
    s.destroy();
  }
});

test('an open WebSocket holds a connection slot: another request waits for it, and gets it once the WebSocket closes', async () => {
  const ws = new WebSocket(`wss://localhost:${cli.port}/ws`, creds());
  await once(ws, 'open');
  ws.send('hi');
  const [msg] = await once(ws, 'message');
  assert.equal(String(msg), 'echo:hi');
  // the slot is the WebSocket's: a second upgrade waits (the queue holds one) and gives up
  // after timeouts.connect (300 ms) with 503 upstream_overloaded
  const t0 = Date.now();
  const second = new WebSocket(`wss://localhost:${cli.port}/ws`, creds());
  const [, res] = (await once(second, 'unexpected-response')) as [unknown, http.IncomingMessage];
  assert.equal(res.statusCode, 503);
  assert.ok(Date.now() - t0 >= 250, `refused after ${Date.now() - t0} ms`);
  let body = '';
  for await (const c of res) body += String(c);
  assert.match(JSON.parse(body).message, /^upstream ws had no free connection within 300 ms .*limits\.max_connections/);
  // a third one waits while the first is open, and gets the slot when it closes
  const third = new WebSocket(`wss://localhost:${cli.port}/ws`, creds());
  third.on('error', () => undefined);
  await sleep(100);
  assert.equal(third.readyState, WebSocket.CONNECTING);
  ws.close();
  await once(third, 'open');
  third.close();
});

test('tcp listener: past max_connections a client waits for the upstream slot; past max_pending it is closed', async () => {
  const open = () =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: cli.ports.tcp!, servername: 'localhost', ...creds() }, () => resolve(s));
      s.on('error', reject);
    });
  const echo = (s: tls.TLSSocket, text: string) =>
    new Promise<string>((resolve) => {
      s.once('data', (d) => resolve(String(d)));
      s.write(text);
    });
  const a = await open();
  assert.equal(await echo(a, 'a'), 'a');
  const b = await open(); // waits for a's slot
  const c = await open(); // the queue (max_pending 1) is full: closed
  const cClosed = once(c, 'close');
  const bAnswer = echo(b, 'b');
  await cClosed;
  a.destroy();
  assert.equal(await bAnswer, 'b', 'b got the slot when a closed');
  b.destroy();
  await until(() => cli.accessLines().some((l) => l.event === 'connection' && String(l.error).startsWith('upstream_overloaded')), 3_000, 'the refusal in the access log');
});
