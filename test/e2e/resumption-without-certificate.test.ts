// Regression test: TLS session resumption must not change what a connection proves.
// A session made WITHOUT a client certificate, resumed by a client that now offers one,
// carries no identity (a resumed handshake does not run client authentication again);
// a session made WITH a certificate, resumed, carries that same identity. Checked for
// TLS 1.2 and 1.3 on what the upstream received, with requests written by hand.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli, type Received } from '../helpers/proxy.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let ca: Buffer;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  ca = readFileSync(pki.ca.cert);
  up = await startEchoUpstream();
  cli = await startCli(
    {
      // two workers: a session made on one must resume (or not) the same way on the other
      workers: 2,
      listeners: [
        tlsListener(pki, { name: 'opt', tls: { client_auth: 'optional' }, routes: [{ name: 'open', match: { path: '/open' }, upstream: 'app' }] }),
        tlsListener(pki, { name: 'req' }),
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

interface Exchange {
  status: number;
  /** the echo upstream's JSON: what it received */
  echo: Received | undefined;
  reused: boolean;
  /** a session to resume with, from the 'session' event */
  session: Buffer | undefined;
  error?: Error;
}

type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** One connection: handshake, `GET path` by hand, read the whole response, keep the session. */
function exchange(port: number, version: TlsVersion, opts: { client?: PkiEntry; session?: Buffer; path?: string } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let reused = false;
    const chunks: Buffer[] = [];
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca,
      minVersion: version,
      maxVersion: version,
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.client ? { cert: readFileSync(opts.client.chain), key: readFileSync(opts.client.key) } : {}),
    });
    sock.on('session', (s: Buffer) => (session = s));
    sock.on('secureConnect', () => {
      reused = sock.isSessionReused();
      sock.write(`GET ${opts.path ?? '/open'} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.setTimeout(10_000, () => sock.destroy(new Error('timed out')));
    let error: Error | undefined;
    sock.on('error', (e) => (error = e));
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let body = text.slice(text.indexOf('\r\n\r\n') + 4);
      if (/\r\ntransfer-encoding: chunked/i.test(head)) body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      let echo: Received | undefined;
      try {
        echo = status === 200 ? (JSON.parse(body) as Received) : undefined;
      } catch {
        echo = undefined;
      }
      resolve({ status, echo, reused, session, ...(error ? { error } : {}) });
    });
  });
}

const fingerprint = (e: PkiEntry) => createHash('sha256').update(new X509Certificate(readFileSync(e.cert)).raw).digest('hex');

/** The identity headers of one echo, name -> value (x-client-* only). */
function identityOf(echo: Received): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < echo.rawHeaders.length; i += 2) {
    const n = echo.rawHeaders[i]!.toLowerCase();
    if (n.startsWith('x-client-')) {
      assert.equal(out[n], undefined, `${n} sent twice`);
      out[n] = echo.rawHeaders[i + 1]!;
    }
  }
  return out;
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${version}: a session made without a certificate, resumed with one, carries no identity`, async () => {
    const port = cli.ports['opt']!;
    const first = await exchange(port, version);
    assert.equal(first.status, 200, first.error?.message);
    assert.deepEqual(identityOf(first.echo!), { 'x-client-verify': 'NONE' });
    assert.ok(first.session, 'the server offered a session to resume');

    const second = await exchange(port, version, { session: first.session, client: pki.client });
    assert.equal(second.status, 200, second.error?.message);
    const id = identityOf(second.echo!);
    if (second.reused) {
      // the resumed session never saw a certificate: nothing may be claimed for it
      assert.deepEqual(id, { 'x-client-verify': 'NONE' });
    } else {
      assert.equal(id['x-client-verify'], 'SUCCESS');
      assert.equal(id['x-client-fingerprint'], fingerprint(pki.client));
    }
    // the point of the test is the resumed case: make sure it actually happened
    assert.equal(second.reused, true, `${version}: the session was not resumed, so the regression was not exercised`);
  });

  test(`${version}: a session made with a valid certificate, resumed, carries the same identity`, async () => {
    const port = cli.ports['opt']!;
    const first = await exchange(port, version, { client: pki.client });
    assert.equal(first.status, 200, first.error?.message);
    const firstId = identityOf(first.echo!);
    assert.equal(firstId['x-client-verify'], 'SUCCESS');
    assert.equal(firstId['x-client-fingerprint'], fingerprint(pki.client));
    assert.ok(first.session);

    // resumed by a client that does not even offer the certificate again
    const second = await exchange(port, version, { session: first.session });
    assert.equal(second.status, 200, second.error?.message);
    assert.equal(second.reused, true, `${version}: the session was not resumed`);
    const id = identityOf(second.echo!);
    assert.equal(id['x-client-verify'], 'SUCCESS');
    assert.equal(id['x-client-fingerprint'], fingerprint(pki.client));
    assert.equal(id['x-client-subject'], firstId['x-client-subject']);
    assert.equal(id['x-client-serial'], firstId['x-client-serial']);
    assert.equal(id['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
  });

  test(`${version}: a session made with one certificate, resumed offering another, keeps the first identity`, async () => {
    const port = cli.ports['opt']!;
    const first = await exchange(port, version, { client: pki.client2 });
    assert.equal(identityOf(first.echo!)['x-client-cn'], 'reporting');
    const second = await exchange(port, version, { session: first.session, client: pki.client });
    assert.equal(second.status, 200);
    const id = identityOf(second.echo!);
    if (second.reused) assert.equal(id['x-client-fingerprint'], fingerprint(pki.client2));
    else assert.equal(id['x-client-fingerprint'], fingerprint(pki.client));
    assert.equal(second.reused, true, `${version}: the session was not resumed`);
  });

  for (const [key, reason] of [['expired', 'expired'], ['untrusted', 'unknown_ca']] as const) {
    test(`${version}: a session made with a certificate that failed (${reason}), resumed offering a valid one, still carries FAILED:${reason}`, async () => {
      const port = cli.ports['opt']!;
      const first = await exchange(port, version, { client: pki[key] });
      assert.equal(first.status, 200, first.error?.message);
      assert.deepEqual(identityOf(first.echo!), { 'x-client-verify': `FAILED:${reason}` });
      assert.ok(first.session);
      const second = await exchange(port, version, { session: first.session, client: pki.client });
      assert.equal(second.status, 200, second.error?.message);
      const id = identityOf(second.echo!);
      if (second.reused) assert.deepEqual(id, { 'x-client-verify': `FAILED:${reason}` }, 'resumption must not turn a failed verification into an identity');
      else assert.equal(id['x-client-fingerprint'], fingerprint(pki.client));
      assert.equal(second.reused, true, `${version}: the session was not resumed, so the regression was not exercised`);
    });
  }

  test(`${version}: a certificate-less session from the optional listener does not get into the require listener`, async () => {
    const first = await exchange(cli.ports['opt']!, version);
    assert.equal(first.status, 200);
    assert.ok(first.session);
    const before = up.received.length;
    const second = await exchange(cli.ports['req']!, version, { session: first.session, path: '/req-resumed' });
    assert.notEqual(second.status, 200, 'no certificate, no request');
    assert.equal(second.reused, false);
    assert.equal(up.received.length, before);
    assert.equal(up.received.some((r) => r.url === '/req-resumed'), false);
  });
}
