// Regression test (CVE-2025-68121 class: a session resumed across a change of trusted CAs
// kept its old identity): client_ca is a bundle file; a CA is removed from it and the proxy
// reloads. A session made with a certificate from the removed CA must not resume, and the
// full handshake is refused; no session at all resumes across the change (they are bound
// to a digest of the trust settings), while clients of the remaining CA still get in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, logEvents, reloadedAfter, refusal, type Exchange } from '../helpers/trust-e2e.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let bundle: string;

function writeBundle(files: string[]): void {
  // staged outside the watched folder, so no reload can read a half-written state
  const staged = join(dir, 'staging', 'bundle.pem');
  writeFileSync(staged, files.map((f) => readFileSync(f, 'utf8')).join(''));
  renameSync(staged, bundle);
}

before(async () => {
  dir = tempDir();
  mkdirSync(join(dir, 'staging'));
  pki = await makeTestPki(`${dir}/pki`);
  bundle = join(dir, 'client-cas.pem');
  writeBundle([pki.ca.cert, pki.otherCa.cert]);
  up = await startEchoUpstream();
  cli = await startCli({ listeners: [tlsListener(pki, { tls: { client_ca: bundle } })], upstreams: { app: { endpoints: [up.url] } } }, { dir });
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

const ex = (c: PkiEntry, version: (typeof VERSIONS)[number], session?: Buffer, path = '/'): Promise<Exchange> =>
  exchange({ port: cli.port, ca: pki.ca.cert, client: c, version, ...(session ? { session } : {}), path });

async function establish(c: PkiEntry, version: (typeof VERSIONS)[number]): Promise<Buffer> {
  const first = await ex(c, version);
  assert.equal(first.status, 200, `${version}: ${first.error ?? ''}`);
  const again = await ex(c, version, first.session);
  assert.equal(again.status, 200);
  assert.equal(again.reused, true, `${version}: the session did not resume, so this test could not fail`);
  return again.session ?? first.session!;
}

test('after a CA is removed from client_ca and the proxy reloads, its client\'s session is refused', async () => {
  const removed = new Map<string, Buffer>();
  const kept = new Map<string, Buffer>();
  for (const v of VERSIONS) {
    removed.set(v, await establish(pki.untrusted, v));
    kept.set(v, await establish(pki.client, v));
  }
  const started = logEvents(cli, 'reload_started').length;
  writeBundle([pki.ca.cert]);
  cli.proc.kill('SIGHUP');
  await reloadedAfter(cli, started);

  for (const v of VERSIONS) {
    const before = up.received.length;
    const r = await ex(pki.untrusted, v, removed.get(v), `/removed-${v}`);
    assert.equal(r.status, 0, `${v}: the session of a removed CA's client got ${r.status}`);
    assert.equal(r.reused, false, `${v}: a session from before the CA change resumed`);
    assert.equal(up.received.length, before);

    const k = await ex(pki.client, v, kept.get(v), `/kept-${v}`);
    assert.equal(k.status, 200, `${v}: the remaining CA's client was refused`);
    assert.equal(k.reused, false, `${v}: a session resumed across a change of trust`);
    assert.equal(up.received.at(-1)?.headers['x-client-serial'], pki.client.serial);
  }
  const line = await refusal(cli, 'api', pki.untrusted.serial);
  assert.equal(line.client?.verify, 'FAILED:unknown_ca');
});
