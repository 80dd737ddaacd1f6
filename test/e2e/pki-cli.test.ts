// `portcullis ca / cert / crl` as a user runs them, checked with independent tools:
// openssl verify (sslclient/sslserver purposes), openssl x509 -text, openssl crl -text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/portcullis.js', import.meta.url));

function cli(cwd: string, ...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}
function openssl(cwd: string, ...args: string[]): { code: number; text: string } {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  return { code: r.status ?? -1, text: `${r.stdout}${r.stderr}` };
}
function tmp(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'pcl-cli-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('ca init: root CA with proper extensions, 0600 key, state; refuses to overwrite', async (t) => {
  const d = tmp(t);
  const r = cli(d, 'ca', 'init', '--dir', 'pki', '--name', 'Acme Root');
  assert.equal(r.code, 0, r.err);
  assert.equal(statSync(join(d, 'pki/ca.key')).mode & 0o777, 0o600);
  const state = JSON.parse(readFileSync(join(d, 'pki/state.json'), 'utf8'));
  assert.equal(state.keyType, 'ec-p256');
  const text = openssl(d, 'x509', '-in', 'pki/ca.crt', '-noout', '-text').text;
  assert.match(text, /Subject: CN ?= ?Acme Root/);
  assert.match(text, /ASN1 OID: prime256v1/);
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);

  const before = readFileSync(join(d, 'pki/ca.crt'), 'utf8');
  const again = cli(d, 'ca', 'init', '--dir', 'pki');
  assert.equal(again.code, 1);
  assert.match(again.err, /already holds a CA.*--force.*\[PCL_ERR_CA_EXISTS\]/);
  assert.equal(readFileSync(join(d, 'pki/ca.crt'), 'utf8'), before);
  assert.equal(cli(d, 'ca', 'init', '--dir', 'pki', '--force').code, 0);
  assert.notEqual(readFileSync(join(d, 'pki/ca.crt'), 'utf8'), before);
});

test('ca init: key types, intermediate, usage errors', async (t) => {
  const d = tmp(t);
  for (const [kt, re] of [['ec-p384', /secp384r1/], ['rsa-2048', /Public-Key: \(2048 bit\)/], ['ed25519', /ED25519/]] as const) {
    assert.equal(cli(d, 'ca', 'init', '--dir', kt, '--key-type', kt).code, 0);
    assert.match(openssl(d, 'x509', '-in', `${kt}/ca.crt`, '-noout', '-text').text, re);
  }
  const bad = cli(d, 'ca', 'init', '--dir', 'x', '--key-type', 'dsa');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown key type "dsa".*\[PCL_ERR_KEY_TYPE_UNKNOWN\]/);
  assert.equal(existsSync(join(d, 'x')), false, 'nothing written on a usage error');
  assert.equal(cli(d, 'ca', 'init').code, 2);
  assert.equal(cli(d, 'ca', 'init', '--dir', 'y', '--days', 'ten').code, 2);

  assert.equal(cli(d, 'ca', 'init', '--dir', 'int', '--intermediate').code, 0);
  for (const f of ['ca.key', 'intermediate.key']) assert.equal(statSync(join(d, 'int', f)).mode & 0o777, 0o600);
  assert.match(openssl(d, 'x509', '-in', 'int/ca.crt', '-noout', '-text').text, /CA:TRUE, pathlen:1/);
  assert.match(openssl(d, 'x509', '-in', 'int/intermediate.crt', '-noout', '-text').text, /CA:TRUE, pathlen:0/);
  assert.equal(openssl(d, 'verify', '-CAfile', 'int/ca.crt', 'int/intermediate.crt').code, 0);
});

test('cert issue: client and server certificates pass openssl verify with the right purpose and SANs', async (t) => {
  const d = tmp(t);
  assert.equal(cli(d, 'ca', 'init', '--dir', 'pki', '--intermediate').code, 0);
  const c = cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'payment-service', '--ou', 'prod', '--o', 'Example',
    '--spiffe-id', 'spiffe://example.org/ns/prod/sa/payment', '--dns', 'payment.svc.example.com', '--email', 'pay@example.com', '--ip', '10.0.0.1', '--out', 'client');
  assert.equal(c.code, 0, c.err);
  assert.equal(statSync(join(d, 'client.key')).mode & 0o777, 0o600);
  const s = cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'server', '--cn', 'localhost', '--ip', '127.0.0.1', '--days', '30', '--out', 'server');
  assert.equal(s.code, 0, s.err);

  const verify = (purpose: string, f: string) => openssl(d, 'verify', '-CAfile', 'pki/ca.crt', '-untrusted', `${f}.chain.crt`, '-purpose', purpose, `${f}.crt`);
  assert.equal(verify('sslclient', 'client').code, 0, verify('sslclient', 'client').text);
  assert.equal(verify('sslserver', 'server').code, 0, verify('sslserver', 'server').text);
  assert.notEqual(verify('sslserver', 'client').code, 0, 'a client certificate is no server certificate');
  assert.notEqual(verify('sslclient', 'server').code, 0, 'a server certificate is no client certificate');
  assert.notEqual(openssl(d, 'verify', '-CAfile', 'pki/ca.crt', '-purpose', 'sslclient', 'client.crt').code, 0, 'the intermediate is needed');

  const text = openssl(d, 'x509', '-in', 'client.crt', '-noout', '-text').text;
  assert.match(text, /Subject: O ?= ?Example, OU ?= ?prod, CN ?= ?payment-service/);
  assert.match(text, /Extended Key Usage:\s+TLS Web Client Authentication\n/);
  assert.match(text, /DNS:payment.svc.example.com, IP Address:10.0.0.1, URI:spiffe:\/\/example.org\/ns\/prod\/sa\/payment, email:pay@example.com/);
  assert.match(text, /CA:FALSE/);
  const stext = openssl(d, 'x509', '-in', 'server.crt', '-noout', '-text').text;
  assert.match(stext, /Extended Key Usage:\s+TLS Web Server Authentication\n/);
  assert.match(stext, /DNS:localhost, IP Address:127.0.0.1/);
  // the serials are recorded in the CA state
  const state = JSON.parse(readFileSync(join(d, 'pki/state.json'), 'utf8'));
  assert.equal(state.issued.length, 3); // intermediate + 2 leaves
  assert.equal(new Set(state.issued.map((x: { serial: string }) => x.serial)).size, 3);

  // refuses to overwrite, and bad input is a usage error that writes nothing
  assert.equal(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'x', '--out', 'client').code, 1);
  for (const args of [['--type', 'robot', '--cn', 'x'], ['--type', 'client'], ['--type', 'client', '--cn', 'x', '--ip', '999.1.1.1'], ['--type', 'client', '--cn', 'x', '--spiffe-id', 'http://nope'], ['--type', 'client', '--cn', 'x', '--key-type', 'rsa-1024']]) {
    const r = cli(d, 'cert', 'issue', '--ca', 'pki', ...args, '--out', 'never');
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
  }
  assert.equal(readdirSync(d).filter((f) => f.startsWith('never')).length, 0);
  const notCa = cli(d, 'cert', 'issue', '--ca', d, '--type', 'client', '--cn', 'x', '--out', 'never');
  assert.equal(notCa.code, 1);
  assert.match(notCa.err, /not a portcullis CA folder.*\[PCL_ERR_CA_DIR_INVALID\]/);
});

test('cert issue --csr signs a CSR made by openssl, and refuses one with a bad signature', async (t) => {
  const d = tmp(t);
  assert.equal(cli(d, 'ca', 'init', '--dir', 'pki').code, 0);
  assert.equal(openssl(d, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'own.key', '-subj', '/O=Elsewhere/CN=own-service', '-out', 'own.csr').code, 0);
  const r = cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--csr', 'own.csr', '--uri', 'spiffe://example.org/own', '--out', 'own');
  assert.equal(r.code, 0, r.err);
  assert.equal(existsSync(join(d, 'own.key')), true, 'the requester keeps its own key');
  assert.equal(openssl(d, 'verify', '-CAfile', 'pki/ca.crt', '-purpose', 'sslclient', 'own.crt').code, 0);
  assert.match(openssl(d, 'x509', '-in', 'own.crt', '-noout', '-subject').text, /O ?= ?Elsewhere, CN ?= ?own-service/);
  // the certificate matches the requester's key
  const mod = (args: string[]) => openssl(d, ...args).text;
  assert.equal(mod(['x509', '-in', 'own.crt', '-noout', '-pubkey']), mod(['pkey', '-in', 'own.key', '-pubout']));

  const pem = readFileSync(join(d, 'own.csr'), 'utf8');
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 8]! ^= 0x55;
  writeFileSync(join(d, 'bad.csr'), `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`);
  const bad = cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--csr', 'bad.csr', '--out', 'bad');
  assert.equal(bad.code, 1);
  assert.match(bad.err, /bad\.csr has a bad signature.*\[PCL_ERR_CSR_INVALID\]/);
  assert.equal(existsSync(join(d, 'bad.crt')), false);
  assert.equal(JSON.parse(readFileSync(join(d, 'pki/state.json'), 'utf8')).issued.length, 1);
});

test('cert inspect: every certificate of a chain, SPIFFE ID, expiry warning, --json', async (t) => {
  const d = tmp(t);
  cli(d, 'ca', 'init', '--dir', 'pki', '--intermediate');
  cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'svc', '--spiffe-id', 'spiffe://example.org/svc', '--days', '10', '--out', 'svc');
  const r = cli(d, 'cert', 'inspect', 'svc.chain.crt');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /2 certificates/);
  assert.match(r.out, /SPIFFE ID:\s+spiffe:\/\/example.org\/svc/);
  assert.match(r.out, /Ext. usage:\s+clientAuth/);
  assert.match(r.out, /Key:\s+EC P-256 \(256 bits\)/);
  assert.match(r.out, /WARNING: expires in under 30 days/);
  assert.match(r.out, /Certificate 2 of 2 \(intermediate CA\)/);
  const j = JSON.parse(cli(d, 'cert', 'inspect', '--json', 'svc.chain.crt').out);
  assert.equal(j.certificates.length, 2);
  assert.equal(j.certificates[0].spiffeId, 'spiffe://example.org/svc');
  assert.equal(j.certificates[0].expiresSoon, true);
  assert.match(j.certificates[0].fingerprintSha256, /^[0-9a-f]{64}$/);
  // DER works too
  openssl(d, 'x509', '-in', 'svc.crt', '-outform', 'DER', '-out', 'svc.der');
  assert.match(cli(d, 'cert', 'inspect', 'svc.der').out, /Subject:\s+CN=svc/);

  const missing = cli(d, 'cert', 'inspect', 'nope.crt');
  assert.equal(missing.code, 1);
  assert.match(missing.err, /nope\.crt does not exist \[PCL_ERR_FILE_NOT_FOUND\]/);
  writeFileSync(join(d, 'junk.crt'), 'hello');
  assert.match(cli(d, 'cert', 'inspect', 'junk.crt').err, /\[PCL_ERR_CERT_PARSE\]/);
  if (process.getuid?.() !== 0) {
    writeFileSync(join(d, 'locked.crt'), 'x');
    chmodSync(join(d, 'locked.crt'), 0);
    assert.match(cli(d, 'cert', 'inspect', 'locked.crt').err, /\[PCL_ERR_FILE_UNREADABLE\]/);
  }
});

test('cert revoke and crl: state, CRL that openssl reads, verify verdicts', async (t) => {
  const d = tmp(t);
  cli(d, 'ca', 'init', '--dir', 'pki', '--intermediate');
  cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'a', '--out', 'a');
  cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'b', '--out', 'b');
  const crl0 = cli(d, 'crl', '--ca', 'pki', '--days', '7');
  assert.equal(crl0.code, 0, crl0.err);
  const verifyOk = (f: string) => cli(d, 'cert', 'verify', '--ca', 'pki/ca.crt', '--crl', 'pki/crl.pem', '--chain', `${f}.chain.crt`, `${f}.crt`);
  assert.equal(verifyOk('a').code, 0, verifyOk('a').out);

  const serialB = openssl(d, 'x509', '-in', 'b.crt', '-noout', '-serial').text.trim().split('=')[1]!;
  const rv = cli(d, 'cert', 'revoke', '--ca', 'pki', 'a.crt', '--reason', 'keyCompromise');
  assert.equal(rv.code, 0, rv.err);
  assert.equal(cli(d, 'cert', 'revoke', '--ca', 'pki', serialB.match(/../g)!.join(':'), '--reason', 'superseded').code, 0);
  const text = openssl(d, 'crl', '-in', 'pki/crl.pem', '-noout', '-text').text;
  assert.match(text, /Issuer: CN ?= ?Portcullis CA Intermediate/);
  assert.match(text, /Next Update: /);
  assert.match(text, /Key Compromise/);
  assert.match(text, /Superseded/);
  assert.match(text, new RegExp(serialB));
  assert.match(text, /CRL Number:\s+\d+/);

  // openssl, with CRL checks on the whole chain, agrees
  const osslVerify = (f: string) => openssl(d, 'verify', '-crl_check_all', '-CRLfile', 'pki/crl.pem', '-CAfile', 'pki/ca.crt', '-untrusted', `${f}.chain.crt`, '-purpose', 'sslclient', `${f}.crt`);
  assert.match(osslVerify('a').text, /certificate revoked/);

  const v = verifyOk('a');
  assert.equal(v.code, 1);
  assert.match(v.out, /refused/);
  assert.match(v.out, /\[revoked\].*revoked on \d{4}-\d\d-\d\dT.*keyCompromise/);
  const j = JSON.parse(cli(d, 'cert', 'verify', '--json', '--ca', 'pki/ca.crt', '--crl', 'pki/crl.pem', 'b.chain.crt').out);
  assert.equal(j.accepted, false);
  assert.deepEqual(j.reasons.map((r: { code: string }) => r.code), ['revoked']);

  // unknown serial, and a certificate from another CA
  const unknown = cli(d, 'cert', 'revoke', '--ca', 'pki', 'ABCDEF');
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /serial ABCDEF was never issued.*\[PCL_ERR_SERIAL_UNKNOWN\]/);
  cli(d, 'ca', 'init', '--dir', 'other');
  cli(d, 'cert', 'issue', '--ca', 'other', '--type', 'client', '--cn', 'o', '--out', 'o');
  assert.match(cli(d, 'cert', 'revoke', '--ca', 'pki', 'o.crt').err, /was not issued by the CA.*\[PCL_ERR_SERIAL_UNKNOWN\]/);
  const state = JSON.parse(readFileSync(join(d, 'pki/state.json'), 'utf8'));
  assert.equal(state.revoked.length, 2);
  // revoking twice changes nothing
  assert.match(cli(d, 'cert', 'revoke', '--ca', 'pki', 'a.crt').out, /already revoked/);
  assert.equal(JSON.parse(readFileSync(join(d, 'pki/state.json'), 'utf8')).revoked.length, 2);
});

test('cert verify: exit codes and named reasons; --ca accepts a CA folder', async (t) => {
  const d = tmp(t);
  cli(d, 'ca', 'init', '--dir', 'pki', '--intermediate');
  cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'c', '--out', 'c');
  cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'server', '--cn', 's', '--out', 's');
  cli(d, 'ca', 'init', '--dir', 'other', '--name', 'Other CA');
  // leaf alone against the folder: the intermediate is known, so it is named as missing
  const missing = cli(d, 'cert', 'verify', '--ca', 'pki', 'c.crt');
  assert.equal(missing.code, 1);
  assert.match(missing.out, /\[missing_intermediate\].*Portcullis CA Intermediate/);
  assert.match(missing.out, /fix: configure the client with the chain file/);
  assert.equal(cli(d, 'cert', 'verify', '--ca', 'pki', 'c.chain.crt').code, 0);
  assert.equal(cli(d, 'cert', 'verify', '--ca', 'pki/ca.crt', '--chain', 'pki/intermediate.crt', 'c.crt').code, 0);
  // two CA files (rotation): either may be the one
  assert.equal(cli(d, 'cert', 'verify', '--ca', 'other/ca.crt', '--ca', 'pki/ca.crt', 'c.chain.crt').code, 0);
  const wrong = cli(d, 'cert', 'verify', '--ca', 'other/ca.crt', 'c.chain.crt');
  assert.equal(wrong.code, 1);
  assert.match(wrong.out, /\[unknown_ca\]/);
  const eku = cli(d, 'cert', 'verify', '--ca', 'pki', 's.chain.crt');
  assert.equal(eku.code, 1);
  assert.match(eku.out, /\[bad_eku\].*serverAuth/);
  assert.equal(cli(d, 'cert', 'verify', '--server', '--ca', 'pki', 's.chain.crt').code, 0);
  const caLeaf = cli(d, 'cert', 'verify', '--ca', 'pki/ca.crt', 'pki/intermediate.crt');
  assert.match(caLeaf.out, /\[ca_as_leaf\]/);
  assert.equal(cli(d, 'cert', 'verify', '--ca', 'pki', '--verify-depth', '0', 'c.chain.crt').code, 1);
  assert.equal(cli(d, 'cert', 'verify', 'c.crt').code, 2, '--ca is required');
  assert.equal(cli(d, 'cert', 'verify', '--ca', 'missing.crt', 'c.crt').code, 1);
});
