// OCSP stapling of the server certificate: its AIA names a real responder (`openssl ocsp`),
// the proxy fetches the response in the background and staples it, with and without SNI,
// as `openssl s_client -status` and Node's requestOCSP see it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { verifyOcspResponse } from '../../src/pki/ocsp.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, waitFor } from '../helpers/trust-e2e.js';
import { writeIndex, writeCaFiles, startResponder, freePort, type RunningResponder } from '../helpers/ocsp-responder.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let responder: RunningResponder;
let serverCert: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const port = await freePort();
  const server = await issueCert(pki.handles.root, { type: 'server', cn: 'localhost', dns: ['localhost', 'sni.test'], ip: ['127.0.0.1'], ocspUrl: `http://127.0.0.1:${port}` });
  serverCert = join(dir, 'stapled.crt');
  const serverKey = join(dir, 'stapled.key');
  writeFileSync(serverCert, server.certPem);
  writeFileSync(serverKey, server.keyPem);
  const root = writeCaFiles(dir, 'root', pki.handles.root);
  const index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: server.serial }]);
  responder = await startResponder({ index, ca: root.cert, signerCert: root.cert, signerKey: root.key, nmin: 10 }, port);
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          name: 'api',
          tls: { cert: serverCert, key: serverKey, certificates: [{ server_names: ['sni.test'], cert: serverCert, key: serverKey }] },
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
  await responder?.stop();
  cleanup(dir);
});

function sClient(sni: string | undefined): string {
  const r = spawnSync(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${cli.port}`, '-status', '-CAfile', pki.ca.cert, '-cert', pki.client.cert, '-key', pki.client.key, ...(sni ? ['-servername', sni] : ['-noservername'])],
    { input: '', encoding: 'utf8', timeout: 10_000 },
  );
  return r.stdout + r.stderr;
}

test('openssl s_client -status sees a good stapled response, without SNI and with an SNI entry', async () => {
  // the first fetch runs in the background after start-up: handshakes never wait for it
  let out = '';
  await waitFor(() => /OCSP Response Status: successful/.test((out = sClient(undefined))), 10_000, 'a stapled response');
  assert.match(out, /Cert Status: good/);
  assert.match(out, /Response Type: Basic OCSP Response/);
  const sni = sClient('sni.test');
  assert.match(sni, /OCSP Response Status: successful/);
  assert.match(sni, /Cert Status: good/);
});

test('a Node client asking for status gets a staple that verifies against the issuer', async () => {
  const r = await exchange({ port: cli.port, ca: pki.ca.cert, client: pki.client, requestOCSP: true });
  assert.equal(r.status, 200);
  assert.ok(r.staple, 'no staple');
  const a = verifyOcspResponse(r.staple, { cert: new X509Certificate(readFileSync(serverCert)), issuer: new X509Certificate(readFileSync(pki.ca.cert)) });
  assert.equal(a.status, 'good');
  assert.ok(a.nextUpdate && a.nextUpdate.getTime() > Date.now());
});

test('a client that does not ask gets no staple and an ordinary handshake', async () => {
  const r = await exchange({ port: cli.port, ca: pki.ca.cert, client: pki.client });
  assert.equal(r.status, 200);
  assert.equal(r.staple, undefined);
});

test('a certificate with a responder arriving by reload is stapled (the OCSP hook follows the served certificates)', async () => {
  // starts with a certificate without AIA: nothing to staple, so no per-handshake OCSP hook
  const d = tempDir();
  const crt = join(d, 'server.crt');
  const key = join(d, 'server.key');
  writeFileSync(crt, readFileSync(pki.server.chain));
  writeFileSync(key, readFileSync(pki.server.key));
  const plain = await startCli({ listeners: [tlsListener(pki, { name: 'api', tls: { cert: crt, key } })], upstreams: { app: { endpoints: [up.url] } } }, { dir: d });
  try {
    const before = await exchange({ port: plain.port, ca: pki.ca.cert, client: pki.client, requestOCSP: true });
    assert.equal(before.status, 200);
    assert.equal(before.staple ?? undefined, undefined, 'no responder in the certificate, no staple');
    writeFileSync(crt, readFileSync(serverCert));
    writeFileSync(key, readFileSync(join(dir, 'stapled.key')));
    const res = await fetch(`http://127.0.0.1:${plain.adminPort}/reload`, { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
    let staple: Buffer | undefined;
    for (const deadline = Date.now() + 10_000; !staple && Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      staple = (await exchange({ port: plain.port, ca: pki.ca.cert, client: pki.client, requestOCSP: true })).staple ?? undefined;
    }
    assert.ok(staple, 'a staple after the reload');
    assert.equal(verifyOcspResponse(staple!, { cert: new X509Certificate(readFileSync(serverCert)), issuer: new X509Certificate(readFileSync(pki.ca.cert)) }).status, 'good');
  } finally {
    await plain.stop();
    cleanup(d);
  }
});
