// `portcullis doctor` against real Node https servers set up to fail in one way each, and
// against the portcullis proxy itself: the printed cause must be the matching one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { startCli, startEchoUpstream, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/ports.js';

const BIN = fileURLToPath(new URL('../../../bin/portcullis.js', import.meta.url));
let pki: TestPki;
let dir: string;
const servers: https.Server[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-doctor-'));
  pki = await makeTestPki(join(dir, 'pki'));
});
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  rmSync(dir, { recursive: true, force: true });
});

/** The doctor must run as a separate process while this process serves, so no spawnSync. */
function doctor(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'doctor', ...args]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

async function serve(opts: https.ServerOptions): Promise<string> {
  const s = https.createServer({ cert: readFileSync(pki.server.chain), key: readFileSync(pki.server.key), ...opts }, (req, res) => {
    const sock = req.socket as import('node:tls').TLSSocket;
    res.writeHead(sock.authorized ? 200 : 403, { 'content-type': 'text/plain' });
    res.end(sock.authorized ? 'welcome' : 'no');
  });
  s.on('tlsClientError', () => {});
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `https://localhost:${(s.address() as AddressInfo).port}/`;
}

const requireCert = () => ({ ca: readFileSync(pki.ca.cert), requestCert: true, rejectUnauthorized: true });
const client = (e: { cert: string; key: string }) => ['--cert', e.cert, '--key', e.key];

test('no client certificate for a server that requires one (TLS 1.3): certificate_required', async () => {
  const url = await serve(requireCert());
  const r = await doctor(url, '--ca', pki.ca.cert);
  assert.equal(r.code, 1);
  assert.match(r.out, /TLSv1\.3, cipher TLS_/);
  assert.match(r.out, /verifies, and is valid for localhost/);
  assert.match(r.out, /the server requires a client certificate\n/);
  assert.match(r.out, /acceptable client CA names: not shown/);
  assert.match(r.out, /Diagnosis: the server requires a client certificate\.\nFix: +pass --cert and --key/);
});

test('no client certificate, TLS 1.2 only: handshake_failure, explained as a missing certificate', async () => {
  const url = await serve({ ...requireCert(), maxVersion: 'TLSv1.2' });
  const r = await doctor(url, '--ca', pki.ca.cert, '--json');
  assert.equal(r.code, 1);
  const j = JSON.parse(r.out);
  assert.equal(j.tls.handshake, false);
  assert.equal(j.client.refused.code, 'handshake_failure');
  assert.match(j.client.refused.cause, /requires a client certificate/);
  assert.equal(j.client.requestState, 'required');
});

test('a good client certificate is sent and accepted, and the HTTP status is reported', async () => {
  const url = await serve(requireCert());
  const r = await doctor(url, '--ca', pki.ca.cert, ...client(pki.client));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /ours: CN=payment-service,OU=prod,O=Example .* was sent/);
  assert.match(r.out, /accepted: the server requires a certificate and answered/);
  assert.match(r.out, /GET \/ -> 200/);
  assert.match(r.out, /Diagnosis: no problem found/);
});

test('a client certificate from another CA: refused, and the foreign issuer is named', async () => {
  const url = await serve(requireCert());
  const r = await doctor(url, '--ca', pki.ca.cert, ...client(pki.untrusted));
  assert.equal(r.code, 1);
  assert.match(r.out, /Diagnosis: .*does not trust the CA that signed (it|your certificate).*Other Root CA/);
});

for (const [name, key, why] of [
  ['an expired client certificate', 'expired', /expired on \d{4}-/],
  ['a client certificate not yet valid', 'notYetValid', /not valid until \d{4}-/],
  ['a serverAuth-only certificate', 'serverEkuOnly', /serverAuth.*needs clientAuth/],
  ['a CA certificate as client certificate', 'caAsLeaf', /is a CA certificate/],
] as const) {
  test(`${name}: the diagnosis names what is wrong with it`, async () => {
    const url = await serve(requireCert());
    const r = await doctor(url, '--ca', pki.ca.cert, ...client(pki[key]));
    assert.equal(r.code, 1);
    assert.match(r.out.split('Diagnosis:')[1]!, why);
  });
}

test('a server that only asks for a certificate: requested, not required', async () => {
  const url = await serve({ ca: readFileSync(pki.ca.cert), requestCert: true, rejectUnauthorized: false });
  const r = await doctor(url, '--ca', pki.ca.cert, '--json', ...client(pki.client));
  const j = JSON.parse(r.out);
  assert.equal(j.client.requestState, 'requested');
  assert.ok(j.client.sigalgs.length > 0);
  assert.equal(j.http.status, 200);
  const plain = await serve({});
  const p = JSON.parse((await doctor(plain, '--ca', pki.ca.cert, '--json', ...client(pki.client))).out);
  assert.equal(p.client.requestState, 'not_requested');
  assert.deepEqual(p.client.sigalgs, []);
});

test('server chain problems: missing intermediate, wrong name, expired, untrusted', async () => {
  const via = await issueCert(pki.handles.intermediate, { type: 'server', cn: 'localhost' });
  const leafOnly = await serve({ cert: via.certPem, key: via.keyPem });
  const missing = await doctor(leafOnly, '--ca', pki.ca.cert);
  assert.equal(missing.code, 1);
  assert.match(missing.out, /\[unknown_ca\].*Test Intermediate CA.*not sent/);
  assert.match(missing.out, /must send it after its certificate/);
  const withChain = await serve({ cert: via.chainPem, key: via.keyPem });
  assert.match((await doctor(withChain, '--ca', pki.ca.cert)).out, /verifies, and is valid for localhost/);

  const named = await serve({});
  const wrongName = await doctor(named, '--ca', pki.ca.cert, '--servername', 'api.example.com');
  assert.match(wrongName.out, /\[name_mismatch\].*api\.example\.com/);

  const old = await issueCert(pki.handles.root, { type: 'server', cn: 'localhost', notBefore: new Date(Date.now() - 40 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
  const expired = await doctor(await serve({ cert: old.certPem, key: old.keyPem }), '--ca', pki.ca.cert);
  assert.match(expired.out, /\[expired\] the certificate "CN=localhost" expired on/);

  const foreign = await doctor(named, '--ca', pki.otherCa.cert);
  assert.match(foreign.out, /\[unknown_ca\]/);
});

test('bad input: unreachable host, bad URL, key that does not match', async () => {
  const closed = await serve({});
  const port = new URL(closed).port;
  const s = servers.pop()!;
  await new Promise((r) => s.close(r));
  const r = await doctor(`https://127.0.0.1:${port}`, '--timeout', '2000');
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot connect to 127\.0\.0\.1:\d+: the connection was refused.*\[PCL_ERR_PEER_UNREACHABLE\]/);
  assert.equal((await doctor('ftp://example.com')).code, 2);
  assert.equal((await doctor('https://localhost:1', '--cert', pki.client.cert)).code, 2, '--cert without --key');
  const mismatch = await doctor('https://localhost:1', '--cert', pki.client.cert, '--key', pki.client2.key);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.err, /is not the key of .*\[PCL_ERR_KEY_MISMATCH\]/);
  writeFileSync(join(dir, 'junk.pem'), 'junk');
  assert.match((await doctor('https://localhost:1', '--ca', join(dir, 'junk.pem'))).err, /\[PCL_ERR_CERT_PARSE\]/);
});

test('against the portcullis proxy: certificate required, and a foreign CA named', async (t) => {
  let up: EchoUpstream | undefined;
  let proxy: RunningCli | undefined;
  t.after(async () => {
    await proxy?.stop();
    await up?.close();
  });
  up = await startEchoUpstream();
  proxy = await startCli({ listeners: [tlsListener(pki, {})], upstreams: { app: { endpoints: [up.url] } } }, { dir: mkdtempSync(join(dir, 'proxy-')) });
  const url = `https://localhost:${proxy.port}/`;
  const none = await doctor(url, '--ca', pki.ca.cert);
  assert.match(none.out, /Diagnosis: the server requires a client certificate/);
  const foreign = JSON.parse((await doctor(url, '--ca', pki.ca.cert, '--json', ...client(pki.untrusted))).out);
  assert.ok(['unknown_ca', 'closed_without_alert'].includes(foreign.client.refused.code), foreign.client.refused.code);
  assert.match(foreign.client.refused.cause, /Other Root CA/);
  const ok = await doctor(url, '--ca', pki.ca.cert, ...client(pki.client));
  assert.equal(ok.code, 0, ok.out);
  assert.equal(up.received.length, 1);
});

/** openssl s_server (tests only) sends the precise TLS alert for each verification failure. */
async function sServer(t: { after: (fn: () => void) => void }, extra: string[] = []): Promise<string> {
  const port = await freePort();
  const p = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', pki.server.chain, '-key', pki.server.key, '-CAfile', pki.ca.cert, '-Verify', '3', '-verify_return_error', '-www', '-quiet', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  t.after(() => p.kill());
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const up = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (up) return `https://localhost:${port}/`;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`openssl s_server did not start: ${err}`);
}

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
test('TLS alerts from a server that sends them (openssl s_server) become cause and fix', { skip: !hasOpenssl && 'openssl is not installed' }, async (t) => {
  const url = await sServer(t);
  const refused = async (e?: { cert: string; key: string }) => JSON.parse((await doctor(url, '--ca', pki.ca.cert, '--json', ...(e ? client(e) : []))).out).client.refused;
  const unknown = await refused(pki.untrusted);
  assert.equal(unknown.code, 'unknown_ca');
  assert.match(unknown.cause, /the server does not trust the CA that signed your certificate: "CN=Other Root CA"/);
  const expired = await refused(pki.expired);
  assert.equal(expired.code, 'certificate_expired');
  assert.match(expired.cause, /expired/);
  assert.equal((await refused(pki.serverEkuOnly)).code, 'unsupported_certificate');
  assert.equal((await refused(pki.caAsLeaf)).code, 'unsupported_certificate');
  const none = await refused();
  assert.equal(none.code, 'certificate_required');
  assert.match(none.fix, /pass --cert and --key/);
  assert.equal(await refused(pki.client), null);

  const withCrl = await sServer(t, ['-CRL', pki.crl, '-crl_check_all']);
  const revoked = JSON.parse((await doctor(withCrl, '--ca', pki.ca.cert, '--json', ...client(pki.revoked))).out).client.refused;
  assert.equal(revoked.code, 'certificate_revoked');
  const human = await doctor(withCrl, '--ca', pki.ca.cert, ...client(pki.revoked));
  assert.match(human.out, /Diagnosis: the server says your certificate was revoked/);
});
