// Regression test: a TLS session made under one SNI certificate entry resumed under
// another entry of the same listener, carrying an identity that the other entry's own
// client_ca never verified. Node 20 (OpenSSL 3.0) decrypts tickets and checks the
// session-id context with the context a TLSSocket starts with; the entry chosen by
// SNICallback comes too late to matter. So when every connection started on the default
// entry's context, all entries shared one ticket key and one session-id context.
// Here the default entry trusts only the test root and the SNI entry trusts only the other
// root: a client of the other root, verified by the SNI entry, resumes without SNI (the
// default entry) and must be refused, for TLS 1.2 and 1.3. The way back (a default-entry
// session offered to the SNI entry) must not resume either. The fix reads the ClientHello
// first, so the same must hold for ClientHellos that are harder to read, which the first
// version of the reader gave up on (and the bypass came back): one of 40 KB (a long ALPN
// list) and one behind an empty handshake record, which OpenSSL skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, type Exchange } from '../helpers/trust-e2e.js';
import { issueCert } from '../../src/pki/issue.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const OTHER = 'other.example.com';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const other = await issueCert(pki.handles.root, { type: 'server', cn: OTHER, dns: [OTHER] });
  writeFileSync(join(dir, 'other.crt'), other.chainPem);
  writeFileSync(join(dir, 'other.key'), other.keyPem, { mode: 0o600 });
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        {
          name: 'api',
          address: '127.0.0.1:0',
          tls: {
            cert: pki.server.chain,
            key: pki.server.key,
            client_ca: pki.ca.cert,
            certificates: [{ server_names: [OTHER], cert: join(dir, 'other.crt'), key: join(dir, 'other.key'), client_ca: pki.otherCa.cert }],
          },
          routes: [{ upstream: 'app' }],
        },
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

const ex = (c: PkiEntry, version: (typeof VERSIONS)[number], servername: string | false, session?: Buffer, path = '/'): Promise<Exchange> =>
  exchange({ port: cli.port, ca: pki.ca.cert, client: c, version, servername, host: servername || 'localhost', ...(session ? { session } : {}), path });

async function establish(c: PkiEntry, version: (typeof VERSIONS)[number], servername: string | false): Promise<Buffer> {
  const first = await ex(c, version, servername);
  assert.equal(first.status, 200, `${version} ${String(servername)}: ${first.error ?? first.body}`);
  const again = await ex(c, version, servername, first.session);
  assert.equal(again.status, 200, again.body);
  assert.equal(again.reused, true, `${version} ${String(servername)}: the session did not resume on its own entry, so this test could not fail`);
  return again.session ?? first.session!;
}

for (const v of VERSIONS) {
  test(`${v}: a session verified by the SNI entry's CA does not resume on the default entry, which does not trust that CA`, async () => {
    const session = await establish(pki.untrusted, v, OTHER);
    const before = up.received.length;
    const r = await ex(pki.untrusted, v, false, session, `/cross-${v}`);
    assert.equal(r.reused, false, `${v}: the session resumed on another certificate entry`);
    assert.equal(r.status, 0, `${v}: the other root's client got ${r.status} from the default entry`);
    assert.equal(up.received.length, before, 'the upstream received a request from a client its entry does not trust');
  });

  test(`${v}: a default-entry session does not resume on the SNI entry`, async () => {
    const session = await establish(pki.client, v, false);
    const r = await ex(pki.client, v, OTHER, session, `/back-${v}`);
    assert.equal(r.reused, false, `${v}: the session resumed on another certificate entry`);
    // the SNI entry does not trust the test root: the full handshake refuses the client
    assert.equal(r.status, 0);
  });
}

/**
 * One request over a TLS connection made through `shape`: a long ALPN list (a ClientHello
 * of ~40 KB), or a relay that puts an empty handshake record in front of the client's
 * first bytes. Record framing is not part of the handshake transcript, so the handshake
 * still completes.
 */
async function odd(shape: 'big-hello' | 'empty-record-first', version: (typeof VERSIONS)[number], servername: string | false, session: Buffer | undefined, path: string): Promise<{ status: number; reused: boolean; session?: Buffer }> {
  let port = cli.port;
  let relay: net.Server | undefined;
  if (shape === 'empty-record-first') {
    relay = net.createServer((c) => {
      const up = net.connect(cli.port, '127.0.0.1');
      let first = true;
      c.on('data', (d: Buffer) => {
        if (first) up.write(Buffer.from([22, 3, 1, 0, 0]));
        first = false;
        up.write(d);
      });
      up.pipe(c);
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
      c.on('error', () => undefined);
      up.on('error', () => undefined);
    });
    await new Promise<void>((r) => relay!.listen(0, '127.0.0.1', r));
    port = (relay.address() as AddressInfo).port;
  }
  try {
    return await new Promise((resolve) => {
      let status = 0;
      let reused = false;
      let next: Buffer | undefined;
      const chunks: Buffer[] = [];
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        ...(servername ? { servername } : {}),
        ca: readFileSync(pki.ca.cert),
        cert: readFileSync(pki.client.cert),
        key: readFileSync(pki.client.key),
        minVersion: version,
        maxVersion: version,
        ...(session ? { session } : {}),
        ...(shape === 'big-hello' ? { ALPNProtocols: [...Array.from({ length: 160 }, (_, i) => `x${i}-${'p'.repeat(240)}`), 'http/1.1'] } : {}),
      });
      sock.on('session', (x: Buffer) => (next = x));
      sock.on('secureConnect', () => {
        reused = sock.isSessionReused();
        sock.write(`GET ${path} HTTP/1.1\r\nHost: ${servername || 'localhost'}\r\nConnection: close\r\n\r\n`);
      });
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('error', () => undefined);
      sock.on('close', () => {
        const m = /^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'));
        status = m ? Number(m[1]) : 0;
        resolve({ status, reused, ...(next ? { session: next } : {}) });
      });
    });
  } finally {
    await new Promise((r) => (relay ? relay.close(r) : r(undefined)));
  }
}

for (const shape of ['big-hello', 'empty-record-first'] as const) {
  for (const v of VERSIONS) {
    test(`${v}, ${shape}: a default-entry session offered to the SNI entry does not get through`, async () => {
      // the shape itself works: a full handshake and a resumption on the default entry
      const first = await odd(shape, v, false, undefined, `/${shape}-${v}-1`);
      assert.equal(first.status, 200, `${shape} ${v}: the client could not connect at all`);
      assert.ok(first.session);
      const again = await odd(shape, v, false, first.session, `/${shape}-${v}-2`);
      assert.equal(again.status, 200);
      if (shape === 'big-hello') assert.equal(again.reused, true, 'the session did not resume on its own entry, so this test could not fail');
      const before = up.received.length;
      const cross = await odd(shape, v, OTHER, first.session, `/${shape}-${v}-cross`);
      // the SNI entry does not trust the test root: resumed or not, nothing may pass
      assert.equal(cross.status, 0, `${shape} ${v}: the default entry's client got ${cross.status} from the SNI entry (resumed: ${cross.reused})`);
      assert.equal(up.received.length, before);
    });
  }
}
