// Regression test (CVE-2022-21654, CVE-2025-23419 class): a TLS session must not carry an
// identity past a revocation. (1) The CRL file changes and the proxy reloads: sessions are
// bound to a digest of the trust settings, so the old session no longer resumes and the
// full handshake is refused as revoked. (2) Within one configuration, the OCSP answer
// changes: the session does resume, and the revocation check, run again, refuses it.
// Both for TLS 1.2 and 1.3, with hand-written requests, on what the upstream received.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { createCrl } from '../../src/pki/crl.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, logEvents, reloadedAfter, waitFor, type Exchange } from '../helpers/trust-e2e.js';
import { writeIndex, writeCaFiles, startResponder, type RunningResponder } from '../helpers/ocsp-responder.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let crlFile: string;
let index: string;
let responder: RunningResponder;
let crlClient: PkiEntry;
let ocspClient: PkiEntry;

async function client(name: string): Promise<PkiEntry> {
  const i = await issueCert(pki.handles.root, { type: 'client', cn: name });
  const e = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), chain: join(dir, `${name}.crt`), serial: i.serial };
  writeFileSync(e.cert, i.certPem);
  writeFileSync(e.key, i.keyPem);
  return e;
}

/** Replaces the CRL file the way a publisher should: write aside, then rename. */
async function writeCrl(revoked: string[]): Promise<void> {
  const pem = await createCrl(pki.handles.root, revoked.map((serial) => ({ serial, date: new Date(Date.now() - 1000), reason: 'keyCompromise' as const })), { crlNumber: revoked.length + 1 });
  // staged outside the watched folder, so no reload can read a half-written state
  const staged = join(dir, 'staging', 'crl.pem');
  writeFileSync(staged, pem);
  renameSync(staged, crlFile);
}

before(async () => {
  dir = tempDir();
  mkdirSync(join(dir, 'staging'));
  pki = await makeTestPki(`${dir}/pki`);
  [crlClient, ocspClient] = await Promise.all([client('crl-resume'), client('ocsp-resume')]);
  crlFile = join(dir, 'root.crl.pem');
  await writeCrl([]);
  const root = writeCaFiles(dir, 'root', pki.handles.root);
  index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: ocspClient.serial }]);
  responder = await startResponder({ index, ca: root.cert, signerCert: root.cert, signerKey: root.key, nmin: 10 });
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { name: 'crl', tls: { crl: crlFile } }),
        // cache 0s: every handshake, resumed or not, asks the responder
        tlsListener(pki, { name: 'ocsp', tls: { ocsp: { mode: 'hard', responder: responder.url, cache: '0s' } } }),
      ],
      upstreams: { app: { endpoints: [up.url] } },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await up?.close();
  await responder?.stop();
  cleanup(dir);
});

const ex = (listener: string, c: PkiEntry, version: (typeof VERSIONS)[number], session?: Buffer, path = '/'): Promise<Exchange> =>
  exchange({ port: cli.ports[listener]!, ca: pki.ca.cert, client: c, version, ...(session ? { session } : {}), path });

/** A full handshake, then one resumption to prove sessions do resume here; returns the session. */
async function establish(listener: string, c: PkiEntry, version: (typeof VERSIONS)[number]): Promise<Buffer> {
  const first = await ex(listener, c, version);
  assert.equal(first.status, 200, `${version}: ${first.error ?? ''}`);
  assert.ok(first.session, `${version}: no session`);
  const again = await ex(listener, c, version, first.session);
  assert.equal(again.status, 200);
  assert.equal(again.reused, true, `${version}: the session did not resume, so this test could not fail`);
  return again.session ?? first.session;
}

test('after the CRL changes and the proxy reloads, an old session neither resumes nor carries the identity', async () => {
  const sessions = new Map<string, Buffer>();
  for (const v of VERSIONS) sessions.set(v, await establish('crl', crlClient, v));

  const started = logEvents(cli, 'reload_started').length;
  await writeCrl([crlClient.serial]);
  cli.proc.kill('SIGHUP');
  await reloadedAfter(cli, started);

  for (const v of VERSIONS) {
    const before = up.received.length;
    const r = await ex('crl', crlClient, v, sessions.get(v), `/after-${v}`);
    assert.equal(r.status, 0, `${v}: the old session got ${r.status}`);
    assert.equal(r.reused, false, `${v}: a session from before the CRL change resumed`);
    assert.equal(up.received.length, before, `${v}: the upstream saw the request`);
  }
  // the access log is written asynchronously: wait for the lines rather than race them
  await waitFor(() => cli.accessLines().filter((l) => l.event === 'tls_handshake_failed' && l.listener === 'crl').length >= 2, 5000, 'two refusals');
  const refusals = cli.accessLines().filter((l) => l.event === 'tls_handshake_failed' && l.listener === 'crl');
  assert.ok(refusals.length >= 2);
  for (const l of refusals) assert.equal((l.client as { verify: string }).verify, 'FAILED:revoked');
});

test('within one configuration, a resumed session is checked again: OCSP now says revoked, so it is refused', async () => {
  const sessions = new Map<string, Buffer>();
  for (const v of VERSIONS) sessions.set(v, await establish('ocsp', ocspClient, v));

  writeIndex(index, [{ serial: ocspClient.serial, revokedAt: new Date(Date.now() - 1000), reason: 'keyCompromise' }]);
  await responder.restart();

  for (const v of VERSIONS) {
    const before = up.received.length;
    const r = await ex('ocsp', ocspClient, v, sessions.get(v), `/after-${v}`);
    assert.equal(r.reused, true, `${v}: expected the TLS session itself to resume`);
    assert.equal(r.status, 403, `${v}: the resumed session got ${r.status}; an OCSP refusal ends HTTP requests with 403 (SPEC §2)`);
    assert.equal(up.received.length, before);
  }
  await waitFor(() => cli.accessLines().filter((l) => l.event === 'tls_handshake_failed' && l.listener === 'ocsp').length >= 2, 5000, 'two refusals');
  const line = cli.accessLines().find((l) => l.event === 'tls_handshake_failed' && l.listener === 'ocsp')!;
  assert.equal((line.client as { verify: string }).verify, 'FAILED:revoked');
  assert.equal((line.client as { serial: string }).serial, ocspClient.serial);
});
