// Pins (sha256 of the leaf DER or of its SPKI) and each cert_policy rule through the real
// CLI: a certificate whose chain verifies is still refused outside the pins or the policy,
// with result pin_mismatch / policy and a log line that names the rule.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { issueCert, type IssueOptions } from '../../src/pki/issue.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, refusal, metric } from '../helpers/trust-e2e.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
const k: Record<'rsa2048' | 'rsa3072' | 'p384' | 'ed25519' | 'shortLived', PkiEntry> = {} as never;

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const issue = async (name: keyof typeof k, o: Partial<IssueOptions>) => {
    const i = await issueCert(pki.handles.root, { type: 'client', cn: name, ...o });
    const e = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), chain: join(dir, `${name}.crt`), serial: i.serial };
    writeFileSync(e.cert, i.certPem);
    writeFileSync(e.key, i.keyPem);
    k[name] = e;
  };
  await Promise.all([
    issue('rsa2048', { keyType: 'rsa-2048' }),
    issue('rsa3072', { keyType: 'rsa-3072' }),
    issue('p384', { keyType: 'ec-p384' }),
    issue('ed25519', { keyType: 'ed25519' }),
    issue('shortLived', { days: 10 }),
  ]);
  const leafDer = new X509Certificate(readFileSync(pki.client.cert)).raw;
  const spki2 = new X509Certificate(readFileSync(pki.client2.cert)).publicKey.export({ type: 'spki', format: 'der' });

  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        // upper case and colons: pins are normalized like fingerprints
        tlsListener(pki, { name: 'pin_der', tls: { pins: [sha256(leafDer).toUpperCase().replace('SHA256:', 'sha256:')] } }),
        tlsListener(pki, { name: 'pin_spki', tls: { pins: [sha256(spki2)] } }),
        tlsListener(pki, { name: 'rsa_bits', tls: { cert_policy: { min_rsa_bits: 3072 } } }),
        tlsListener(pki, { name: 'ec_bits', tls: { cert_policy: { min_ec_bits: 384 } } }),
        tlsListener(pki, { name: 'key_types', tls: { cert_policy: { key_types: ['ed25519', 'rsa'] } } }),
        tlsListener(pki, { name: 'validity', tls: { cert_policy: { max_validity: '30d' } } }),
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

async function passes(listener: string, client: PkiEntry): Promise<void> {
  const before = up.received.length;
  const r = await exchange({ port: cli.ports[listener]!, ca: pki.ca.cert, client, path: `/${listener}` });
  assert.equal(r.status, 200, `${listener}: expected 200, got ${r.status} ${r.error ?? ''}`);
  assert.equal(up.received[before]?.headers['x-client-serial'], client.serial);
}

async function refused(listener: string, client: PkiEntry, reason: 'pin_mismatch' | 'policy', rule: RegExp): Promise<void> {
  const before = up.received.length;
  const r = await exchange({ port: cli.ports[listener]!, ca: pki.ca.cert, client, path: `/${listener}` });
  // SPEC §2: checks after the handshake end an HTTP request with 403 and the reason
  assert.equal(r.status, 403, `${listener}: expected 403, got ${r.status}`);
  assert.match(String(r.body), new RegExp(`"error":"client_certificate_invalid","message":"${reason}: `));
  assert.equal(up.received.length, before);
  const line = await refusal(cli, listener, client.serial);
  assert.equal(line.client?.verify, `FAILED:${reason}`);
  assert.match(String(line.decision?.reason), new RegExp(`^${reason}: `));
  assert.match(String(line.decision?.reason), rule);
}

test('pin on the leaf DER: the pinned certificate passes, another from the same CA is refused', async () => {
  await passes('pin_der', pki.client);
  await refused('pin_der', pki.client2, 'pin_mismatch', /is not among the 1 tls\.pins/);
});

test('pin on the SPKI: the pinned key passes, another is refused', async () => {
  await passes('pin_spki', pki.client2);
  await refused('pin_spki', pki.client, 'pin_mismatch', /SPKI sha256:/);
});

test('cert_policy.min_rsa_bits', async () => {
  await passes('rsa_bits', k.rsa3072);
  await refused('rsa_bits', k.rsa2048, 'policy', /cert_policy\.min_rsa_bits: RSA key of 2048 bits, minimum 3072/);
});

test('cert_policy.min_ec_bits', async () => {
  await passes('ec_bits', k.p384);
  await refused('ec_bits', pki.client, 'policy', /cert_policy\.min_ec_bits: ec prime256v1 key of 256 bits, minimum 384/);
});

test('cert_policy.key_types', async () => {
  await passes('key_types', k.ed25519);
  await passes('key_types', k.rsa2048);
  await refused('key_types', pki.client, 'policy', /cert_policy\.key_types: ec prime256v1 key, allowed: ed25519, rsa/);
});

test('cert_policy.max_validity', async () => {
  await passes('validity', k.shortLived);
  await refused('validity', pki.client, 'policy', /cert_policy\.max_validity: valid for 90\.0d .*maximum 30d/);
});

test('refusals are counted as pin_mismatch and policy', async () => {
  assert.ok((await metric(cli, 'portcullis_tls_handshakes_total', { listener: 'pin_der', result: 'pin_mismatch' })) >= 1);
  assert.ok((await metric(cli, 'portcullis_tls_handshakes_total', { listener: 'validity', result: 'policy' })) >= 1);
});
