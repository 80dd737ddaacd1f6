// CRL revocation through the real CLI: the 2x2 matrix (complete vs incomplete CRL chain x
// revoked vs good client) in crl_mode chain and leaf, a revoked intermediate, a 403 on an
// optional listener, an expired CRL (still applies, warned), and the refusal log + metric.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { createCrl } from '../../src/pki/crl.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, refusal, logEvents, metric, waitFor } from '../helpers/trust-e2e.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
/** issued by the intermediate and listed in its CRL */
let revokedViaInt: PkiEntry;

const DAY = 86_400_000;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const { root, intermediate } = pki.handles;
  const issued = await issueCert(intermediate, { type: 'client', cn: 'revoked-via-intermediate' });
  revokedViaInt = { cert: join(dir, 'rvi.crt'), key: join(dir, 'rvi.key'), chain: join(dir, 'rvi.chain.crt'), serial: issued.serial };
  writeFileSync(revokedViaInt.cert, issued.certPem);
  writeFileSync(revokedViaInt.key, issued.keyPem);
  writeFileSync(revokedViaInt.chain, issued.chainPem);

  const now = Date.now();
  const revokedEntry = { serial: pki.revoked.serial, date: new Date(now - 3_600_000), reason: 'keyCompromise' as const };
  const crls = {
    root: await createCrl(root, [revokedEntry]),
    int: await createCrl(intermediate, [{ serial: issued.serial, date: new Date(now - 60_000), reason: 'superseded' }]),
    rootRevokingInt: await createCrl(root, [revokedEntry, { serial: pki.intermediate.serial, date: new Date(now - 60_000), reason: 'cACompromise' }], { crlNumber: 2 }),
    expired: await createCrl(root, [revokedEntry], { thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) }),
  };
  const file = (name: keyof typeof crls) => {
    const f = join(dir, `${name}.crl.pem`);
    writeFileSync(f, crls[name]);
    return f;
  };
  const f = { root: file('root'), int: file('int'), rootRevokingInt: file('rootRevokingInt'), expired: file('expired') };

  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { name: 'complete', tls: { crl: [f.root, f.int] } }),
        tlsListener(pki, { name: 'incomplete', tls: { crl: [f.int] } }),
        tlsListener(pki, { name: 'incomplete_leaf', tls: { crl: [f.int], crl_mode: 'leaf' } }),
        tlsListener(pki, { name: 'revoked_int', tls: { crl: [f.rootRevokingInt, f.int] } }),
        tlsListener(pki, { name: 'expired', tls: { crl: [f.expired] } }),
        tlsListener(pki, {
          name: 'optional',
          tls: { client_auth: 'optional', crl: [f.root, f.int] },
          routes: [
            { name: 'protected', match: { path: '/protected' }, client_auth: 'require', upstream: 'app' },
            { name: 'open', upstream: 'app' },
          ],
        }),
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

async function get(listener: string, client: PkiEntry, path = '/') {
  return exchange({ port: cli.ports[listener]!, ca: pki.ca.cert, client, path });
}

async function accepted(listener: string, client: PkiEntry): Promise<void> {
  const before = up.received.length;
  const r = await get(listener, client, `/ok-${listener}`);
  assert.equal(r.status, 200, `${listener}: expected 200, got ${r.status} ${r.error ?? ''}`);
  assert.equal(up.received[before]?.headers['x-client-serial'], client.serial);
}

async function refused(listener: string, client: PkiEntry, reason: string, detail?: RegExp): Promise<void> {
  const before = up.received.length;
  const r = await get(listener, client, `/refused-${listener}`);
  assert.equal(r.status, 0, `${listener}: expected a refusal, got ${r.status}`);
  const line = await refusal(cli, listener, client.serial);
  assert.equal(line.client?.verify, `FAILED:${reason}`);
  assert.ok(line.client?.issuer, 'the refusal names the issuer');
  assert.match(String(line.decision?.reason), new RegExp(`^${reason}: `));
  if (detail) assert.match(String(line.decision?.reason), detail);
  assert.equal(up.received.length, before, 'nothing reached the upstream');
}

test('complete CRL chain: good clients pass, revoked ones (root- or intermediate-issued) are refused', async () => {
  await accepted('complete', pki.client);
  await accepted('complete', pki.viaIntermediate);
  await refused('complete', pki.revoked, 'revoked', /keyCompromise/);
  await refused('complete', revokedViaInt, 'revoked', /superseded/);
});

test('incomplete CRL chain, crl_mode chain (default): a CA without a CRL refuses its chain; revoked stays revoked', async () => {
  await refused('incomplete', pki.viaIntermediate, 'revocation_unknown', /no CRL from CN=Test Root CA covers intermediate CN=Test Intermediate CA/);
  await refused('incomplete', revokedViaInt, 'revoked');
});

test('incomplete CRL chain, crl_mode leaf: only the leaf needs a CRL', async () => {
  await accepted('incomplete_leaf', pki.viaIntermediate);
  await refused('incomplete_leaf', revokedViaInt, 'revoked');
  // the root has no CRL here, so its own leaves have no CRL covering them
  await refused('incomplete_leaf', pki.client, 'revocation_unknown');
});

test('a revoked intermediate refuses every certificate under it', async () => {
  await refused('revoked_int', pki.viaIntermediate, 'revoked', /intermediate CN=Test Intermediate CA .*cACompromise/);
  await accepted('revoked_int', pki.client);
});

test('an expired CRL still applies, and is logged as a warning with a count', async () => {
  await accepted('expired', pki.client);
  await refused('expired', pki.revoked, 'revoked');
  await waitFor(() => logEvents(cli, 'crl_expired').length > 0, 5000, 'crl_expired warning');
  const w = logEvents(cli, 'crl_expired')[0]!;
  assert.equal(w.level, 'warn');
  assert.match(String(w.crl), /expired\.crl\.pem$/);
  assert.equal(typeof w.handshakes, 'number');
});

test('optional listener: a revoked certificate gets 403 client_certificate_invalid (revoked) on a protected route', async () => {
  const r = await get('optional', pki.revoked, '/protected');
  assert.equal(r.status, 403);
  const body = JSON.parse(r.body) as { error: string; message: string };
  assert.equal(body.error, 'client_certificate_invalid');
  assert.match(body.message, /revoked/);
  const open = await get('optional', pki.revoked, '/open');
  assert.equal(open.status, 200);
  assert.equal(up.received.at(-1)?.headers['x-client-verify'], 'FAILED:revoked');
  assert.equal((await get('optional', pki.client, '/protected')).status, 200);
});

test('refusals are counted by result', async () => {
  assert.ok((await metric(cli, 'portcullis_tls_handshakes_total', { listener: 'complete', result: 'revoked' })) >= 2);
  assert.ok((await metric(cli, 'portcullis_tls_handshakes_total', { listener: 'complete', result: 'ok' })) >= 2);
});
