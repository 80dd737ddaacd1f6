// WebSocket through the real CLI with the `ws` package on both ends: the upgrade request
// is authorized and carries identity headers like any request, frames are relayed both
// ways, either side can close cleanly, and an idle tunnel is closed after the listener's
// idle_timeout. Also RFC 8441 (WebSocket over an HTTP/2 stream) with Node's http2 client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let wss: WebSocketServer;
/** upgrade requests the upstream accepted, and the server side of each socket */
const upgrades: { req: IncomingMessage; ws: WebSocket }[] = [];

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  wss.on('connection', (ws, req) => {
    upgrades.push({ req, ws });
    ws.on('message', (data, isBinary) => {
      const text = data.toString();
      if (text === 'close-from-server') ws.close(4001, 'server says bye');
      else ws.send(isBinary ? data : `echo:${text}`, { binary: isBinary });
    });
  });
  const port = (wss.address() as AddressInfo).port;
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          limits: { idle_timeout: '1500ms' },
          routes: [
            { name: 'private', match: { path: '/private' }, allow: [{ cn: 'reporting' }], upstream: 'ws' },
            { name: 'ws', upstream: 'ws' },
          ],
        }),
      ],
      upstreams: { ws: { endpoints: [`http://127.0.0.1:${port}`] } },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => wss?.close(r));
  cleanup(dir);
});

function open(path: string, headers: Record<string, string> = {}): WebSocket {
  return new WebSocket(`wss://localhost:${cli.port}${path}`, {
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(pki.client.cert),
    key: readFileSync(pki.client.key),
    headers,
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (d) => resolve(d.toString())));
}

test('echo through the proxy; the upstream upgrade request carries identity headers, spoofed ones scrubbed', async () => {
  const n = upgrades.length;
  const ws = open('/chat?room=1', { 'X-Client-SPIFFE-ID': 'spiffe://evil/admin', 'X-Client-CN': 'root' });
  await once(ws, 'open');
  try {
    ws.send('hello');
    assert.equal(await nextMessage(ws), 'echo:hello');
    const big = Buffer.alloc(256 * 1024, 7);
    ws.send(big, { binary: true });
    const back = await new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
    assert.ok(back.equals(big), 'a 256 KiB binary frame comes back intact');
    const { req } = upgrades[n]!;
    assert.equal(req.url, '/chat?room=1');
    assert.equal(req.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
    assert.equal(req.headers['x-client-cn'], 'payment-service');
    assert.equal(req.headers['x-client-verify'], 'SUCCESS');
    assert.equal(req.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(req.rawHeaders.filter((h) => h.toLowerCase() === 'x-client-cn').length, 1);
  } finally {
    ws.close();
  }
});

test('a denied upgrade gets 403 forbidden JSON before any upgrade, and the upstream sees nothing', async () => {
  const n = upgrades.length;
  const ws = open('/private');
  ws.on('error', () => undefined); // ws reports the refused upgrade as an error as well
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 403);
  let body = '';
  for await (const c of res) body += String(c);
  assert.equal(JSON.parse(body).error, 'forbidden');
  ws.terminate();
  assert.equal(upgrades.length, n);
});

test('a close from the client reaches the upstream with its code, and a close from the upstream reaches the client', async () => {
  const a = open('/a');
  await once(a, 'open');
  const serverSide = upgrades.at(-1)!.ws;
  const serverClosed = once(serverSide, 'close');
  a.close(1000, 'client bye');
  const [code, reason] = (await serverClosed) as [number, Buffer];
  assert.equal(code, 1000);
  assert.equal(reason.toString(), 'client bye');

  const b = open('/b');
  await once(b, 'open');
  const clientClosed = once(b, 'close');
  b.send('close-from-server');
  const [code2, reason2] = (await clientClosed) as [number, Buffer];
  assert.equal(code2, 4001);
  assert.equal(reason2.toString(), 'server says bye');
});

test('an idle tunnel is closed after idle_timeout on both sides (1001), an active one is not', async () => {
  const ws = open('/idle');
  await once(ws, 'open');
  const serverSide = upgrades.at(-1)!.ws;
  // traffic keeps it open past the timeout
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 500));
    ws.send(`tick${i}`);
    assert.equal(await nextMessage(ws), `echo:tick${i}`);
  }
  const started = Date.now();
  const [[code], [serverCode]] = (await Promise.all([once(ws, 'close'), once(serverSide, 'close')])) as [[number], [number]];
  const waited = Date.now() - started;
  assert.equal(code, 1001);
  assert.equal(serverCode, 1001);
  assert.ok(waited >= 1000 && waited < 5000, `closed after ${waited} ms`);
});

/** RFC 6455 client frame (masked): opcode 1 = text. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

test('RFC 8441: WebSocket over an HTTP/2 stream (extended CONNECT) with identity headers', async () => {
  const n = upgrades.length;
  const s = http2.connect(`https://localhost:${cli.port}`, { ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });
  s.on('error', () => undefined);
  try {
    await once(s, 'remoteSettings');
    assert.equal(s.remoteSettings.enableConnectProtocol, true, 'the proxy advertises SETTINGS_ENABLE_CONNECT_PROTOCOL');
    const stream = s.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/h2ws', ':scheme': 'https', ':authority': `localhost:${cli.port}`, 'sec-websocket-version': '13', 'x-client-cn': 'root' }, { endStream: false });
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    assert.equal(headers[':status'], 200);
    stream.write(clientFrame('over h2'));
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    // server frame: FIN + text, unmasked, short length
    assert.equal(chunk[0], 0x81);
    assert.equal(chunk.subarray(2, 2 + chunk[1]!).toString(), 'echo:over h2');
    const { req } = upgrades[n]!;
    assert.equal(req.url, '/h2ws');
    assert.equal(req.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
    assert.equal(req.headers['x-client-cn'], 'payment-service');
    stream.close();
  } finally {
    s.close();
  }
});
