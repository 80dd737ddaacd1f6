// limits.max_connections and limits.handshake_timeout through the real CLI: connections
// still in their TLS handshake hold a slot, a connection over the cap is closed on accept
// (and logged) before any TLS, a slot frees when a connection closes, and a client that
// never finishes its handshake is closed after handshake_timeout (not header_timeout),
// which frees its slot for a good client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, curl, certArgs, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

const MAX = 4;
const HANDSHAKE_TIMEOUT_MS = 1000;

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { name: 'capped', limits: { max_connections: MAX, handshake_timeout: '30s' } }),
        tlsListener(pki, { name: 'slow', limits: { max_connections: MAX, handshake_timeout: `${HANDSHAKE_TIMEOUT_MS}ms`, header_timeout: '30s' } }),
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

/** portcullis_active_connections for a listener, from the admin /metrics. */
async function active(listener: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cli.adminPort}/metrics`)).text();
  const m = new RegExp(`^portcullis_active_connections\\{listener="${listener}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitActive(listener: string, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await active(listener)) === n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`${listener} never had ${n} active connections (has ${await active(listener)})`);
}

/** A TCP connection that never sends its ClientHello; resolves `closed` when the proxy closes it. */
function silent(port: number): { sock: net.Socket; closed: Promise<number> } {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  sock.resume();
  const closed = new Promise<number>((r) => sock.once('close', () => r(performance.now())));
  return { sock, closed };
}

const get = (listener: string, path: string) => curl(`https://localhost:${cli.ports[listener]}${path}`, certArgs(pki.ca.cert, pki.client), 10_000);

test(`connections in their handshake count toward max_connections (${MAX}); one more is closed on accept; a closed one frees its slot`, async (t) => {
  const held = Array.from({ length: MAX }, () => silent(cli.ports.capped!));
  try {
    await waitActive('capped', MAX);
    const before = up.received.length;
    const refused = await get('capped', '/over-the-cap');
    assert.notEqual(refused.status, 200, `a connection over the cap was served: ${refused.body}`);
    t.diagnostic(`curl over the cap: ${refused.stderr.trim()}`);
    // closed before any TLS byte: curl sees the connection end during its handshake
    assert.match(refused.stderr, /SSL_ERROR_SYSCALL|reset by peer|unexpected eof|Connection reset|Recv failure/i);
    assert.equal(up.received.length, before);
    await cli.waitLog(/"event":"connection_limit_reached","listener":"capped","max_connections":4/);

    held[0]!.sock.destroy();
    await waitActive('capped', MAX - 1);
    const ok = await get('capped', '/after-a-slot-freed');
    assert.equal(ok.status, 200, ok.stderr);
    assert.equal(up.received.at(-1)?.url, '/after-a-slot-freed');
  } finally {
    for (const h of held) h.sock.destroy();
  }
  await waitActive('capped', 0);
});

test(`handshake_timeout (${HANDSHAKE_TIMEOUT_MS} ms, header_timeout 30 s) closes clients that never finish their handshake and frees their slots`, async () => {
  const start = performance.now();
  const held = Array.from({ length: MAX }, () => silent(cli.ports.slow!));
  try {
    await waitActive('slow', MAX);
    const closedAt = await Promise.race([Promise.all(held.map((h) => h.closed)), new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    assert.ok(closedAt, 'the silent connections were not closed within 15 s');
    // never before the timeout
    for (const t of closedAt) assert.ok(t - start >= HANDSHAKE_TIMEOUT_MS - 50, `closed after ${Math.round(t - start)} ms`);
    await waitActive('slow', 0);
    const ok = await get('slow', '/after-handshake-timeouts');
    assert.equal(ok.status, 200, ok.stderr);
    assert.equal(up.received.at(-1)?.url, '/after-handshake-timeouts');
  } finally {
    for (const h of held) h.sock.destroy();
  }
});

test('a connection whose handshake finished is not cut at handshake_timeout: a request after it reuses the connection', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });
  const request = (path: string) =>
    new Promise<{ status?: number; reused: boolean }>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', servername: 'localhost', port: cli.ports.slow, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  try {
    assert.equal((await request('/first')).status, 200);
    await new Promise((r) => setTimeout(r, HANDSHAKE_TIMEOUT_MS + 500));
    const second = await request('/second');
    assert.deepEqual(second, { status: 200, reused: true });
  } finally {
    agent.destroy();
  }
});
