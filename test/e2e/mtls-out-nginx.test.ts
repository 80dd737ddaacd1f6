// Plain in, mTLS out (SPEC §1, issue 13 item 9), end to end against a real nginx that
// requires client certificates (`ssl_verify_client on`): a plain HTTP client calls a
// portcullis listener without `tls`, portcullis connects to nginx over TLS presenting its
// client certificate and accepts nginx only if it proves a name in `verify_names`. nginx
// echoes what it saw (verify result, client serial, path, headers) and logs every request
// that reached its location, so each test asserts on what the upstream really received.
// Skipped, with a message, where nginx is not installed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, curl, eventually, type RunningCli } from '../helpers/proxy.js';
import { NGINX, startMtlsNginx, parseSeen, type MtlsNginx } from '../helpers/nginx-mtls.js';
import { issueCert, type CaHandle, type IssueOptions } from '../../src/pki/issue.js';

const skip = NGINX ? false : 'nginx is not installed (apt-get install -y nginx); skipping the plain-in/mTLS-out round trips';

const PAYMENTS_ID = 'spiffe://example.org/ns/prod/sa/payments';
const PAYMENTS_DNS = 'payments.internal';
const VERIFY_NAMES = [PAYMENTS_ID, PAYMENTS_DNS];

let dir: string;
let pki: TestPki;
let nginx: MtlsNginx;
let cli: RunningCli;
/** the client certificate files the `rotate` upstream presents (rewritten by the rotation test) */
let rotCert: string;
let rotKey: string;

async function issueTo(name: string, ca: CaHandle, o: IssueOptions): Promise<{ cert: string; key: string; serial: string }> {
  const c = await issueCert(ca, o);
  const cert = join(dir, 'nginx-pki', `${name}.crt`);
  const key = join(dir, 'nginx-pki', `${name}.key`);
  writeFileSync(cert, c.chainPem);
  writeFileSync(key, c.keyPem, { mode: 0o600 });
  return { cert, key, serial: c.serial };
}

function mtlsUpstream(site: string, scheme: 'https' | 'tls', client: { cert: string; key: string }, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    endpoints: [`${scheme}://127.0.0.1:${nginx.ports[site]}`],
    retries: 0,
    tls: { ca: pki.ca.cert, cert: client.cert, key: client.key, verify_names: VERIFY_NAMES, ...extra },
  };
}

before(async () => {
  if (skip) return;
  dir = tempDir('pcl-mtls-out-');
  pki = await makeTestPki(join(dir, 'pki'));
  mkdirSync(join(dir, 'nginx-pki'));
  const { root, other } = pki.handles;
  // no CN that reads as a host name: issue.ts would add it as a DNS SAN, and these
  // certificates must carry exactly the SANs named here
  const [spiffeOnly, dnsOnly, wrongNames, otherCa] = await Promise.all([
    issueTo('spiffe-only', root, { type: 'server', cn: 'payments service', uri: [PAYMENTS_ID] }),
    issueTo('dns-only', root, { type: 'server', cn: 'payments service', dns: [PAYMENTS_DNS] }),
    issueTo('wrong-names', root, { type: 'server', cn: 'imposter service', uri: ['spiffe://example.org/ns/prod/sa/imposter'], dns: ['imposter.internal'] }),
    issueTo('other-ca', other, { type: 'server', cn: 'payments service', uri: [PAYMENTS_ID], dns: [PAYMENTS_DNS] }),
  ]);
  nginx = await startMtlsNginx(join(dir, 'nginx'), [
    { name: 'spiffe', ...spiffeOnly, clientCa: pki.ca.cert },
    { name: 'dns', ...dnsOnly, clientCa: pki.ca.cert },
    { name: 'wrong', ...wrongNames, clientCa: pki.ca.cert },
    { name: 'otherca', ...otherCa, clientCa: pki.ca.cert },
    { name: 'rotate', ...spiffeOnly, clientCa: pki.ca.cert },
  ]);
  rotCert = join(dir, 'rot.crt');
  rotKey = join(dir, 'rot.key');
  writeFileSync(rotCert, readFileSync(pki.client.cert));
  writeFileSync(rotKey, readFileSync(pki.client.key), { mode: 0o600 });
  const plain = (name: string, upstream = name) => ({ name, address: '127.0.0.1:0', routes: [{ upstream }] });
  cli = await startCli(
    {
      listeners: [plain('spiffe'), plain('dns'), plain('wrong'), plain('otherca'), plain('refused'), plain('rotate'), { name: 'tcp', address: '127.0.0.1:0', protocol: 'tcp', upstream: 'tcp' }],
      upstreams: {
        spiffe: mtlsUpstream('spiffe', 'https', pki.client),
        dns: mtlsUpstream('dns', 'https', pki.client),
        wrong: mtlsUpstream('wrong', 'https', pki.client),
        otherca: mtlsUpstream('otherca', 'https', pki.client),
        refused: mtlsUpstream('spiffe', 'https', pki.untrusted),
        rotate: mtlsUpstream('rotate', 'https', { cert: rotCert, key: rotKey }),
        tcp: mtlsUpstream('spiffe', 'tls', pki.client),
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await nginx?.stop();
  if (dir) cleanup(dir);
});

const url = (listener: string, path = '/') => `http://127.0.0.1:${cli.ports[listener]}${path}`;

test('the nginx certificates carry exactly the SANs each test relies on', { skip }, () => {
  // a test of verify_names is only as good as the certificates it runs against
  const sans = (f: string) => new X509Certificate(readFileSync(join(dir, 'nginx-pki', f))).subjectAltName;
  assert.equal(sans('spiffe-only.crt'), `URI:${PAYMENTS_ID}`);
  assert.equal(sans('dns-only.crt'), `DNS:${PAYMENTS_DNS}`);
});

test('plain HTTP/1.1 in, mTLS out: nginx verified portcullis\'s client certificate and received the request as sent', { skip }, async () => {
  const r = await curl(url('spiffe', '/v1/charge?amount=5'), ['-H', 'X-Test: legacy-client', '-H', 'Host: payments.example']);
  assert.equal(r.status, 200, r.body + r.stderr);
  const seen = parseSeen(r.body);
  assert.equal(seen.site, 'spiffe');
  assert.equal(seen.verify, 'SUCCESS');
  assert.equal(seen.serial, pki.client.serial);
  assert.equal(seen.subject, 'CN=payment-service,OU=prod,O=Example');
  assert.equal(seen.uri, '/v1/charge?amount=5');
  assert.equal(seen.host, 'payments.example');
  assert.equal(seen.x_test, 'legacy-client');
  assert.match(seen.protocol!, /^TLSv1\.[23]$/);
  const logged = nginx.accessLines('spiffe').find((l) => l.uri === '/v1/charge?amount=5');
  assert.ok(logged, 'nginx logged the request');
  assert.equal(logged.serial, pki.client.serial);
  assert.equal(logged.verify, 'SUCCESS');
});
