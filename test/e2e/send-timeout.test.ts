// limits.send_timeout through the real CLI: a client that asks for an endless stream and
// then stops reading is closed once nothing has moved toward it for send_timeout (1 s
// here), on HTTP/1.1, HTTP/2, WebSocket and a TCP listener alike. A client that does not
// read cannot see its connection close, so the test watches the upstream that was feeding
// it: its connection is closed (released, not left blocked on backpressure) no sooner than
// send_timeout after the client stopped reading; when the client reads again it finds its
// connection ended; the worker keeps serving. A slow but steady reader is left alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, curl, certArgs, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

const SEND_TIMEOUT_MS = 1000;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;
let wss: WebSocketServer;
let tcpUp: net.Server;

/** Streams an upstream is feeding, by name: bytes written so far and whether its connection was closed. */
const feeds = new Map<string, { bytes: number; closed: boolean; closedAt: number }>();

/** Writes CHUNKs while `sink` takes them (backpressure), until it closes. */
function feed(name: string, write: (c: Buffer, next: () => void) => boolean, onClose: (cb: () => void) => void): void {
  const f = { bytes: 0, closed: false, closedAt: 0 };
  feeds.set(name, f);
  onClose(() => {
    f.closed = true;
    f.closedAt = performance.now();
  });
  const pump = () => {
    while (!f.closed) {
      f.bytes += CHUNK.length;
      if (!write(CHUNK, pump)) return;
    }
  };
  pump();
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream((req, res) => {
    if (!req.url?.startsWith('/stream/')) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    feed(req.url, (c, next) => res.write(c) || (res.once('drain', next), false), (cb) => res.once('close', cb));
    return true;
  });
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  wss.on('connection', (ws, req) => {
    // ws has no 'drain': each send calls back once written to the socket
    feed(req.url ?? '', (c, next) => (ws.send(c, { binary: true }, () => ws.bufferedAmount === 0 && next()), ws.bufferedAmount < 1024 * 1024), (cb) => ws.once('close', cb));
  });
  tcpUp = net.createServer((s) => {
    s.on('error', () => undefined);
    feed(`tcp:${s.remotePort}`, (c, next) => s.write(c) || (s.once('drain', next), false), (cb) => s.once('close', cb));
  });
  await new Promise<void>((r) => tcpUp.listen(0, '127.0.0.1', r));
  const limits = { send_timeout: `${SEND_TIMEOUT_MS}ms`, idle_timeout: '30s' };
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { limits, routes: [{ match: { path: '/ws' }, upstream: 'ws' }, { upstream: 'app' }] }),
        { name: 'tcp', address: '127.0.0.1:0', protocol: 'tcp', tls: { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert }, upstream: 'raw', limits },
      ],
      upstreams: {
        app: { endpoints: [up.url] },
        ws: { endpoints: [`http://127.0.0.1:${(wss.address() as AddressInfo).port}`] },
        raw: { endpoints: [`tcp://127.0.0.1:${(tcpUp.address() as AddressInfo).port}`] },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await up?.close();
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => wss?.close(r));
  await new Promise((r) => tcpUp?.close(r));
  cleanup(dir);
});

function connect(port: number, alpn: string[]): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key), ALPNProtocols: alpn });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads until `ready` says the stream is flowing (response head, 101, first bytes), then stops reading; returns when. */
async function stall(sock: tls.TLSSocket, ready: (seen: string) => boolean): Promise<number> {
  sock.on('error', () => undefined);
  let seen = '';
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      if (seen.length < 4096) seen += d.toString('latin1');
      if (!ready(seen)) return;
      sock.off('data', onData);
      sock.pause();
      resolve();
    };
    sock.on('data', onData);
  });
  return performance.now();
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/**
 * After the client stopped reading at `stalledAt`: the upstream feeding `name` is released
 * no sooner than send_timeout later, the client finds its connection ended once it reads
 * again, the proxy logged it, and it still serves.
 */
async function assertHandled(name: string, sock: tls.TLSSocket, stalledAt: number, listener: string): Promise<void> {
  const f = feeds.get(name);
  assert.ok(f, `the upstream never started ${name}`);
  assert.ok(await waitFor(() => f.closed, 20_000), `${name}: the upstream connection was not released within 20 s (${f.bytes} bytes written)`);
  const after = f.closedAt - stalledAt;
  assert.ok(after >= SEND_TIMEOUT_MS - 50, `${name}: released ${Math.round(after)} ms after the client stopped reading, before send_timeout`);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.resume();
  assert.ok(await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]), `${name}: the client's connection is still open`);
  await cli.waitLog(new RegExp(`"event":"send_timeout","listener":"${listener}"`));
  const r = await curl(`https://localhost:${cli.ports.api}/still-serving`, certArgs(pki.ca.cert, pki.client));
  assert.equal(r.status, 200, r.stderr);
}

test('HTTP/1.1: a client that stops reading a large response is closed after send_timeout; the upstream is released', async () => {
  const sock = await connect(cli.ports.api!, ['http/1.1']);
  sock.write('GET /stream/h1 HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const stalledAt = await stall(sock, (s) => s.startsWith('HTTP/1.1 200'));
  await assertHandled('/stream/h1', sock, stalledAt, 'api');
});

/** An HTTP/2 frame. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

test('HTTP/2: a client that opened its flow-control windows wide and stops reading is closed after send_timeout; the upstream is released', async () => {
  const sock = await connect(cli.ports.api!, ['h2']);
  assert.equal(sock.alpnProtocol, 'h2');
  // SETTINGS_INITIAL_WINDOW_SIZE and the connection window at their maximum: only TCP
  // backpressure can stop the proxy, as with any client that stops reading its socket
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x4, 0);
  settings.writeUInt32BE(0x7fffffff, 2);
  const windowUpdate = Buffer.alloc(4);
  windowUpdate.writeUInt32BE(0x7fffffff - 65_535, 0);
  const path = '/stream/h2';
  // HPACK: :method GET, :scheme https (static 2, 7), :path and :authority as literals
  const headerBlock = Buffer.concat([Buffer.from([0x82, 0x87, 0x04, path.length]), Buffer.from(path), Buffer.from([0x01, 9]), Buffer.from('localhost')]);
  sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, settings), frame(0x8, 0, 0, windowUpdate), frame(0x1, 0x5, 1, headerBlock)]));
  const stalledAt = await stall(sock, (s) => s.length > 1024);
  await assertHandled(path, sock, stalledAt, 'api');
});

test('HTTP/2: a client that keeps reading its socket but grants a stream no flow-control window has that stream reset after send_timeout; the upstream is released', async () => {
  const sock = await connect(cli.ports.api!, ['h2']);
  sock.on('error', () => undefined);
  const path = '/stream/h2-window';
  const headerBlock = Buffer.concat([Buffer.from([0x82, 0x87, 0x04, path.length]), Buffer.from(path), Buffer.from([0x01, 9]), Buffer.from('localhost')]);
  // default 64 KiB windows and never a WINDOW_UPDATE; every byte that arrives is read
  sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0x5, 1, headerBlock)]));
  let buf = Buffer.alloc(0);
  let dataBytes = 0;
  let rst: number | undefined;
  let settingsAcked = false;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      const len = buf.readUIntBE(0, 3);
      const type = buf[3]!;
      const id = buf.readUInt32BE(5) & 0x7fffffff;
      if (type === 0x0 && id === 1) dataBytes += len;
      if (type === 0x3 && id === 1) rst = buf.readUInt32BE(9);
      if (type === 0x4 && (buf[4]! & 1) === 0 && !settingsAcked) {
        settingsAcked = true;
        sock.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
      }
      buf = buf.subarray(9 + len);
    }
  });
  assert.ok(await waitFor(() => dataBytes >= 65_535, 10_000), `the proxy sent ${dataBytes} bytes of the first window`);
  const stalledAt = performance.now();
  const f = feeds.get(path);
  assert.ok(f, 'the upstream never started the stream');
  assert.ok(await waitFor(() => f.closed, 20_000), `the upstream was not released within 20 s (${f.bytes} bytes written)`);
  assert.ok(f.closedAt - stalledAt >= SEND_TIMEOUT_MS - 50, `released ${Math.round(f.closedAt - stalledAt)} ms after the window ran out`);
  assert.ok(await waitFor(() => rst !== undefined, 5000), 'no RST_STREAM for the stalled stream');
  assert.equal(rst, 0x8, 'RST_STREAM error code CANCEL');
  assert.equal(dataBytes, 65_535, 'more than the granted window was sent');
  // only the stream is reset: the connection stays open
  assert.equal(sock.destroyed, false);
  sock.destroy();
  await cli.waitLog(/"event":"send_timeout","listener":"api","remote_addr":"[^"]*","stream":1/);
});

test('WebSocket: a client that stops reading an endless stream of frames is closed after send_timeout; the upstream is released', async () => {
  const sock = await connect(cli.ports.api!, ['http/1.1']);
  sock.write('GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  const stalledAt = await stall(sock, (s) => s.startsWith('HTTP/1.1 101') && s.length > 1024);
  await assertHandled('/ws', sock, stalledAt, 'api');
});

test('TCP listener: a client that stops reading what the upstream sends is closed after send_timeout; the upstream is released', async () => {
  const before = new Set(feeds.keys());
  const sock = await connect(cli.ports.tcp!, []);
  const stalledAt = await stall(sock, (s) => s.length > 1024);
  const name = [...feeds.keys()].find((k) => k.startsWith('tcp:') && !before.has(k));
  assert.ok(name, 'the TCP upstream never got a connection');
  await assertHandled(name, sock, stalledAt, 'tcp');
});

test('a client that reads slowly but keeps reading is not closed, however long the response takes', async () => {
  const sock = await connect(cli.ports.api!, ['http/1.1']);
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.on('error', () => undefined);
  sock.write('GET /stream/slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await once(sock, 'data');
  sock.pause();
  // About 3 send_timeouts at ~5 MB/s: every 100 ms the client takes 512 KiB, then stops.
  // The pace is set in bytes, not in reading time: the kernel tells the proxy its socket
  // has room again only once about a third of the send buffer (up to 4 MiB on Linux) has
  // drained, so a reader that took a few KB per send_timeout would rightly count as stuck,
  // and a time-sliced reader takes next to nothing when the machine is busy.
  const start = performance.now();
  let read = 0;
  sock.on('data', (d: Buffer) => (read += d.length));
  while (performance.now() - start < 3 * SEND_TIMEOUT_MS && !closed) {
    await new Promise((r) => setTimeout(r, 100));
    const target = read + 512 * 1024;
    sock.resume();
    await waitFor(() => read >= target || closed, 5000);
    sock.pause();
  }
  assert.equal(closed, false, `the proxy closed a client that was still reading (${read} bytes read)`);
  assert.ok(read > 0);
  sock.destroy();
  assert.ok(await waitFor(() => feeds.get('/stream/slow')?.closed === true, 5000), 'the upstream was not released after the client left');
});
