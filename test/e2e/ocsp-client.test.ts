// OCSP checking of client certificates against a real responder (`openssl ocsp -port`,
// signing as a delegated responder): good, revoked, unknown, responder down and responder
// slow, each in soft and hard mode; the answer cache; and a slow lookup that does not hold
// up anyone else's handshake.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { createCA, issueCert, type CaHandle } from '../../src/pki/issue.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, refusal, logEvents, waitFor } from '../helpers/trust-e2e.js';
import {
  writeIndex, writeCaFiles, startResponder, startSilentServer, startCountingRelay, issueResponderCert, freePort,
  type RunningResponder,
} from '../helpers/ocsp-responder.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let ocspCa: string;
let responder: RunningResponder;
let silent: Awaited<ReturnType<typeof startSilentServer>>;
let relay: Awaited<ReturnType<typeof startCountingRelay>>;
const c: Record<'good' | 'revoked' | 'unknown' | 'noAia', PkiEntry> = {} as never;

async function put(ca: CaHandle, name: string, ocspUrl?: string): Promise<PkiEntry> {
  const i = await issueCert(ca, { type: 'client', cn: `ocsp-${name}`, ...(ocspUrl ? { ocspUrl } : {}) });
  const e = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), chain: join(dir, `${name}.crt`), serial: i.serial };
  writeFileSync(e.cert, i.certPem);
  writeFileSync(e.key, i.keyPem);
  return e;
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const ca = await createCA({ name: 'OCSP Client CA' });
  const caFiles = writeCaFiles(dir, 'ocsp-ca', ca);
  ocspCa = caFiles.cert;
  // the AIA URL goes into the certificates, so the responder's port is chosen first
  const port = await freePort();
  const aia = `http://127.0.0.1:${port}`;
  [c.good, c.revoked, c.unknown, c.noAia] = await Promise.all([put(ca, 'good', aia), put(ca, 'revoked', aia), put(ca, 'unknown', aia), put(ca, 'no-aia')]);
  const index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: c.good.serial }, { serial: c.noAia.serial }, { serial: c.revoked.serial, revokedAt: new Date(Date.now() - 60_000), reason: 'keyCompromise' }]);
  const delegated = issueResponderCert(dir, 'ocsp-responder', caFiles);
  responder = await startResponder({ index, ca: caFiles.cert, signerCert: delegated.cert, signerKey: delegated.key, nmin: 10 }, port);
  silent = await startSilentServer();
  relay = await startCountingRelay(aia);
  const down = `http://127.0.0.1:${await freePort()}`;

  const ocsp = (name: string, o: Record<string, unknown>) => tlsListener(pki, { name, tls: { client_ca: ocspCa, ocsp: o } });
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        ocsp('hard', { mode: 'hard' }),
        ocsp('soft', { mode: 'soft' }),
        ocsp('hard_down', { mode: 'hard', responder: down }),
        ocsp('soft_down', { mode: 'soft', responder: down }),
        ocsp('hard_slow', { mode: 'hard', responder: silent.url, timeout: '1500ms' }),
        ocsp('soft_slow', { mode: 'soft', responder: silent.url, timeout: '1500ms' }),
        ocsp('cached', { mode: 'hard', responder: relay.url, cache: '5m' }),
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
  await silent?.stop();
  await relay?.stop();
  cleanup(dir);
});

const get = (listener: string, client: PkiEntry) => exchange({ port: cli.ports[listener]!, ca: pki.ca.cert, client, path: `/${listener}` });

async function passes(listener: string, client: PkiEntry) {
  const before = up.received.length;
  const r = await get(listener, client);
  assert.equal(r.status, 200, `${listener}: expected 200, got ${r.status} ${r.error ?? ''}`);
  assert.equal(up.received[before]?.headers['x-client-serial'], client.serial);
  return r;
}

async function refused(listener: string, client: PkiEntry, reason: string, detail: RegExp) {
  const before = up.received.length;
  const r = await get(listener, client);
  // SPEC §2: OCSP runs after the handshake, so an HTTP request ends with 403 and the reason
  assert.equal(r.status, 403, `${listener}: expected 403, got ${r.status}`);
  assert.match(String(r.body), new RegExp(`"error":"client_certificate_invalid","message":"${reason}: `));
  assert.equal(up.received.length, before);
  const line = await refusal(cli, listener, client.serial);
  assert.equal(line.client?.verify, `FAILED:${reason}`);
  assert.match(String(line.decision?.reason), detail);
  return r;
}

function softWarned(serial: string, detail: RegExp): Promise<void> {
  return waitFor(() => logEvents(cli, 'ocsp_soft_fail').some((l) => l.serial === serial && detail.test(String(l.detail))), 5000, `ocsp_soft_fail for ${serial}`);
}

test('good passes in hard and soft mode', async () => {
  await passes('hard', c.good);
  await passes('soft', c.good);
});

test('revoked is refused in hard and in soft mode, with the responder\'s reason', async () => {
  await refused('hard', c.revoked, 'revoked', /^revoked: .*reports it revoked since .*keyCompromise/);
  await refused('soft', c.revoked, 'revoked', /keyCompromise/);
});

test('unknown: hard refuses (revocation_unknown), soft passes with a warning', async () => {
  await refused('hard', c.unknown, 'revocation_unknown', /does not know the certificate/);
  await passes('soft', c.unknown);
  await softWarned(c.unknown.serial, /does not know/);
});

test('responder down: hard refuses, soft passes with a warning', async () => {
  await refused('hard_down', c.good, 'revocation_unknown', /unreachable: .*ECONNREFUSED/);
  await passes('soft_down', c.good);
  await softWarned(c.good.serial, /ECONNREFUSED/);
});

test('responder slow: hard refuses after ocsp.timeout, soft passes after it; other handshakes are not held up', async () => {
  const slowHard = get('hard_slow', c.good);
  const slowSoft = get('soft_slow', c.good);
  // meanwhile: a lookup on a responsive listener completes while the slow ones still wait
  await new Promise((r) => setTimeout(r, 200));
  let slowDone = false;
  void Promise.all([slowHard, slowSoft]).then(() => (slowDone = true));
  const quick = await get('soft', c.good);
  assert.equal(quick.status, 200);
  assert.equal(slowDone, false, 'the slow responder held up another connection');
  const [h, s] = await Promise.all([slowHard, slowSoft]);
  assert.equal(h.status, 403, 'SPEC §2: an OCSP refusal ends the HTTP request with 403');
  assert.ok(h.ms >= 1400, `hard refused after ${h.ms} ms, before the timeout`);
  assert.equal(s.status, 200);
  assert.ok(s.ms >= 1400);
  const line = await refusal(cli, 'hard_slow', c.good.serial);
  assert.match(String(line.decision?.reason), /no answer within 1500 ms/);
});

test('a certificate without an AIA responder is refused in hard mode', async () => {
  await refused('hard', c.noAia, 'revocation_unknown', /names no OCSP responder/);
});

test('answers are cached: repeated handshakes of one certificate cost one lookup', async () => {
  for (let i = 0; i < 3; i++) await passes('cached', c.good);
  assert.equal(relay.count(), 1);
});
