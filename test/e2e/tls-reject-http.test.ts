// listeners[].tls.reject (SPEC §10, issue 15 item 3). With `http`, a client whose
// certificate a `require` listener refuses completes the handshake and every request gets
// 401 client_certificate_required / 403 client_certificate_invalid JSON naming the reason
// and the fix, over HTTP/1.1 and HTTP/2 (real curl); nothing reaches the upstream, the
// access log records the refusal, and the connection closes after the answer. With
// `close` (the default) nothing changes: no HTTP answer at all. A session made on a
// refused connection never lets a later connection in (resumption carries no identity
// across a trust decision).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, curl, certArgs, eventually, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { jsonError } from '../helpers/raw-clients.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { name: 'rej', tls: { reject: 'http', crl: pki.crl } }),
        tlsListener(pki, { name: 'close', tls: { crl: pki.crl } }),
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

let seq = 0;
/** A path no other request uses, so the upstream's record shows whether this one arrived. */
const marker = (what: string) => `/${what}-${++seq}`;
const reached = (path: string) => up.received.some((r) => r.url === path);
const url = (listener: string, path: string) => `https://localhost:${cli.ports[listener]}${path}`;

const REFUSED: { who: keyof TestPki; status: number; error: string; reason: RegExp }[] = [
  { who: 'expired', status: 403, error: 'client_certificate_invalid', reason: /^expired: the client certificate has expired \(notAfter .*\); issue a new certificate$/ },
  { who: 'untrusted', status: 403, error: 'client_certificate_invalid', reason: /^unknown_ca: the client certificate is not signed by a CA this listener trusts .*; use a certificate from a trusted CA/ },
  { who: 'revoked', status: 403, error: 'client_certificate_invalid', reason: /^revoked: the client certificate has been revoked.*; issue a new certificate$/ },
];

for (const proto of ['--http1.1', '--http2'] as const) {
  test(`reject: http over ${proto}: no certificate gets 401 client_certificate_required naming the fix, nothing forwarded`, async () => {
    const path = marker('nocert');
    const r = await curl(url('rej', path), [proto, ...certArgs(pki.ca.cert)]);
    assert.equal(r.status, 401, `${r.stderr}${r.body}`);
    const body = jsonError(r.body);
    assert.equal(body.error, 'client_certificate_required');
    assert.equal(body.message, 'no client certificate was sent; present a certificate issued by a CA this listener trusts');
    assert.ok(body.request_id);
    assert.equal(reached(path), false, 'the upstream must receive nothing');
    await eventually(() => cli.accessLines().some((l) => l.path === path), 'the access log line of the refusal');
    const line = cli.accessLines().find((l) => l.path === path)!;
    assert.equal(line.status, 401);
    assert.equal(line.error, 'client_certificate_required');
    assert.equal(line.route, undefined, 'a refused request is never routed');
    assert.equal((line.decision as { allowed: boolean }).allowed, false);
  });

  for (const c of REFUSED) {
    test(`reject: http over ${proto}: ${String(c.who)} certificate gets ${c.status} ${c.error} naming the reason and the fix, nothing forwarded`, async () => {
      const path = marker(String(c.who));
      const r = await curl(url('rej', path), [proto, ...certArgs(pki.ca.cert, pki[c.who] as PkiEntry)]);
      assert.equal(r.status, c.status, `${r.stderr}${r.body}`);
      const body = jsonError(r.body);
      assert.equal(body.error, c.error);
      assert.match(body.message ?? '', c.reason);
      assert.equal(reached(path), false, 'the upstream must receive nothing');
      await eventually(() => cli.accessLines().some((l) => l.path === path), 'the access log line of the refusal');
      const line = cli.accessLines().find((l) => l.path === path)!;
      assert.equal(line.status, c.status);
      assert.match(String((line.decision as { reason: string }).reason), c.reason);
      assert.match(String((line.client as { verify: string }).verify), /^FAILED:/);
    });
  }

  test(`reject: http over ${proto}: a valid certificate is served and the upstream gets the request`, async () => {
    const path = marker('valid');
    const r = await curl(url('rej', path), [proto, ...certArgs(pki.ca.cert, pki.client)]);
    assert.equal(r.status, 200, `${r.stderr}${r.body}`);
    const got = up.received.find((x) => x.url === path);
    assert.ok(got, 'the upstream received the request');
    assert.equal(got.headers['x-client-verify'], 'SUCCESS');
  });

  test(`reject: close over ${proto} is unchanged: a refused certificate gets no HTTP answer at all`, async () => {
    for (const who of [undefined, pki.expired, pki.untrusted, pki.revoked]) {
      const path = marker('close');
      const r = await curl(url('close', path), [proto, ...certArgs(pki.ca.cert, who)]);
      assert.equal(r.status, 0, `no HTTP status for ${who?.cert ?? 'no certificate'}: ${r.body}`);
      assert.notEqual(r.code, 0, 'curl reports a failure');
      assert.equal(reached(path), false);
    }
  });
}

test('reject: close: what curl sees (alert for a missing certificate, a closed connection for a refused one)', async () => {
  const none = await curl(url('close', marker('alert')), ['--http1.1', ...certArgs(pki.ca.cert)]);
  assert.match(none.stderr, /certificate required|alert/i, none.stderr);
  const expired = await curl(url('close', marker('closed')), ['--http1.1', ...certArgs(pki.ca.cert, pki.expired)]);
  // TLS 1.3: the client's side of the handshake is over before the server checked the
  // certificate, so it sees the connection end instead of an alert
  assert.match(expired.stderr, /closed|reset|empty reply|unexpected eof|error/i, expired.stderr);
});

/** Two pipelined HTTP/1.1 requests on one connection; the whole byte stream the proxy sent back. */
function pipelined(port: number, who: PkiEntry | undefined, paths: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: readFileSync(pki.ca.cert),
      ALPNProtocols: ['http/1.1'],
      ...(who ? { cert: readFileSync(who.chain), key: readFileSync(who.key) } : {}),
    });
    sock.on('secureConnect', () => sock.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join('')));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.setTimeout(10_000, () => sock.destroy(new Error('the proxy kept the refused connection open')));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

test('reject: http, HTTP/1.1: one answer with Connection: close, then the connection ends; a pipelined request is never answered or forwarded', async () => {
  const paths = [marker('pipe'), marker('pipe')];
  const text = await pipelined(cli.ports['rej']!, pki.expired, paths);
  assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, text);
  assert.match(text, /^HTTP\/1\.1 403 /);
  assert.match(text, /\r\nconnection: close\r\n/i);
  assert.equal(paths.some(reached), false);
});

test('reject: http, HTTP/2: the answer is followed by GOAWAY', async () => {
  const session = http2.connect(`https://localhost:${cli.ports['rej']}`, { ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.expired.cert), key: readFileSync(pki.expired.key) });
  session.on('error', () => undefined);
  const goaway = new Promise<void>((r) => session.once('goaway', () => r()));
  const path = marker('h2goaway');
  const status = await new Promise<number>((resolve, reject) => {
    const req = session.request({ ':path': path });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.end();
  });
  assert.equal(status, 403);
  await goaway;
  session.destroy();
  assert.equal(reached(path), false);
});

interface Exchange {
  status: number;
  body: string;
  reused: boolean;
  session: Buffer | undefined;
}

/** One connection with `GET path`, optionally resuming `session`; the status and the session it got. */
function exchange(version: 'TLSv1.2' | 'TLSv1.3', path: string, opts: { who?: PkiEntry; session?: Buffer }): Promise<Exchange> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let reused = false;
    const chunks: Buffer[] = [];
    const sock = tls.connect({
      host: '127.0.0.1',
      port: cli.ports['rej']!,
      servername: 'localhost',
      ca: readFileSync(pki.ca.cert),
      minVersion: version,
      maxVersion: version,
      ALPNProtocols: ['http/1.1'],
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.who ? { cert: readFileSync(opts.who.chain), key: readFileSync(opts.who.key) } : {}),
    });
    sock.on('session', (s: Buffer) => (session = s));
    sock.on('secureConnect', () => {
      reused = sock.isSessionReused();
      sock.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4), reused, session });
    });
  });
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  for (const [who, status, reason] of [['expired', 403, 'expired'], ['revoked', 403, 'revoked'], [undefined, 401, 'client_certificate_required']] as const) {
    test(`${version}: a session from a refused connection (${who ?? 'no certificate'}), resumed offering a valid certificate, is refused the same way`, async () => {
      const first = await exchange(version, marker('resume-first'), who ? { who: pki[who] } : {});
      assert.equal(first.status, status, first.body);
      assert.ok(first.session, 'the server offered a session to resume');
      const path = marker('resume-second');
      const second = await exchange(version, path, { session: first.session, who: pki.client });
      assert.equal(second.reused, true, `${version}: the session was not resumed, so the regression was not exercised`);
      assert.equal(second.status, status, `a resumed session keeps the refusal: ${second.body}`);
      assert.ok(second.body.includes(reason), second.body);
      assert.equal(reached(path), false, 'nothing forwarded for the resumed session');
    });
  }
}
