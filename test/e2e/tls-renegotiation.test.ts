// Finding 3 (security review): a TLS 1.2 client could renegotiate without limit on one
// connection (300 in 0.9 s, ~1.6 ms of worker CPU each), because Node's own limit only
// reports through tls.Server and listeners build their TLS sockets themselves. Listeners
// now refuse renegotiation outright, like nginx: `openssl s_client -tls1_2` sending R
// gets no second handshake on the HTTP/1.1 and the TCP listener, the request or bytes it
// sends afterwards never reach the upstream, the worker keeps serving, and a TLS 1.3 key
// update (not a renegotiation) still works.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, curl, certArgs, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { SClient } from '../helpers/s-client.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;
let tcpUp: net.Server;
/** everything the TCP upstream received, over all connections */
let tcpReceived = '';

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream();
  tcpUp = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      tcpReceived += d.toString('latin1');
      s.write(`echo:${d.toString('latin1')}`);
    });
  });
  await new Promise<void>((r) => tcpUp.listen(0, '127.0.0.1', r));
  const tlsCfg = { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert };
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki),
        { name: 'tcp', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'raw' },
      ],
      upstreams: { app: { endpoints: [up.url] }, raw: { endpoints: [`tcp://127.0.0.1:${(tcpUp.address() as AddressInfo).port}`] } },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await up?.close();
  await new Promise((r) => tcpUp?.close(r));
  cleanup(dir);
});

function sClient(port: number, version: '-tls1_2' | '-tls1_3'): SClient {
  return new SClient(['-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', pki.ca.cert, '-cert', pki.client.cert, '-key', pki.client.key, version]);
}

/** Lines s_client prints for each certificate it verifies during a handshake. */
const VERIFY_LINE = /verify return:\d/g;

async function stillServes(): Promise<void> {
  const n = up.received.length;
  const r = await curl(`https://localhost:${cli.ports.api}/after-renegotiation`, certArgs(pki.ca.cert, pki.client));
  assert.equal(r.status, 200, r.stderr + r.body);
  assert.equal(up.received.at(n)?.url, '/after-renegotiation');
}

test('HTTP/1.1 listener: s_client -tls1_2 R gets no second handshake; the request after it never reaches the upstream', async () => {
  const c = sClient(cli.ports.api!, '-tls1_2');
  try {
    await c.waitFor(/Verify return code: 0/);
    c.write('GET /before HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await c.waitFor(/"url":"\/before"/);
    const mark = c.out.length;
    c.write('R\n');
    await c.waitFor(/RENEGOTIATING/, 10_000, mark);
    // the next write would ride the renegotiated session if there were one
    c.write('GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal(await c.waitExit(10_000), true, `s_client still connected after R:\n${c.out}`);
    const after = c.out.slice(mark);
    assert.equal(after.match(VERIFY_LINE), null, `a second handshake verified the server again:\n${after}`);
    assert.match(after, /no renegotiation/);
    assert.deepEqual(up.received.map((r) => r.url).filter((u) => u === '/before' || u === '/after'), ['/before']);
  } finally {
    await c.close();
  }
  await cli.waitLog(/"event":"tls_renegotiation_refused","listener":"api"/);
  await stillServes();
});

test('TCP listener: s_client -tls1_2 R gets no second handshake; bytes sent after it never reach the upstream', async () => {
  const c = sClient(cli.ports.tcp!, '-tls1_2');
  try {
    await c.waitFor(/Verify return code: 0/);
    c.write('first\n');
    await c.waitFor(/echo:first/);
    const mark = c.out.length;
    c.write('R\n');
    await c.waitFor(/RENEGOTIATING/, 10_000, mark);
    c.write('second\n');
    assert.equal(await c.waitExit(10_000), true, `s_client still connected after R:\n${c.out}`);
    const after = c.out.slice(mark);
    assert.equal(after.match(VERIFY_LINE), null, `a second handshake verified the server again:\n${after}`);
    assert.match(after, /no renegotiation/);
    assert.match(tcpReceived, /first/);
    assert.doesNotMatch(tcpReceived, /second/);
  } finally {
    await c.close();
  }
  await cli.waitLog(/"event":"tls_renegotiation_refused","listener":"tcp"/);
  await stillServes();
});

test('TLS 1.3 key updates (k, K) are not renegotiation: the connection keeps working on both listeners', async () => {
  const c = sClient(cli.ports.api!, '-tls1_3');
  try {
    await c.waitFor(/Verify return code: 0/);
    c.write('GET /ku-1 HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await c.waitFor(/"url":"\/ku-1"/);
    c.write('k\n');
    await c.waitFor(/KEYUPDATE/);
    c.write('GET /ku-2 HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await c.waitFor(/"url":"\/ku-2"/);
    c.write('K\n');
    await c.waitFor(/KEYUPDATE[\s\S]*KEYUPDATE/);
    c.write('GET /ku-3 HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await c.waitFor(/"url":"\/ku-3"/);
  } finally {
    await c.close();
  }
  const t = sClient(cli.ports.tcp!, '-tls1_3');
  try {
    await t.waitFor(/Verify return code: 0/);
    t.write('one-13\n');
    await t.waitFor(/echo:one-13/);
    t.write('K\n');
    await t.waitFor(/KEYUPDATE/);
    t.write('two-13\n');
    await t.waitFor(/echo:two-13/);
  } finally {
    await t.close();
  }
});
