// Regression test: a TLS session made under one SNI certificate entry resumed under
// another entry of the same listener, carrying an identity that the other entry's own
// client_ca never verified. Node 20 (OpenSSL 3.0) decrypts tickets and checks the
// session-id context with the context a TLSSocket starts with; the entry chosen by
// SNICallback comes too late to matter. So when every connection started on the default
// entry's context, all entries shared one ticket key and one session-id context.
// Here the default entry trusts only the test root and the SNI entry trusts only the other
// root: a client of the other root, verified by the SNI entry, resumes without SNI (the
// default entry) and must be refused, for TLS 1.2 and 1.3. The way back (a default-entry
// session offered to the SNI entry) must not resume either.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, type Exchange } from '../helpers/trust-e2e.js';
import { issueCert } from '../../src/pki/issue.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const OTHER = 'other.example.com';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const other = await issueCert(pki.handles.root, { type: 'server', cn: OTHER, dns: [OTHER] });
  writeFileSync(join(dir, 'other.crt'), other.chainPem);
  writeFileSync(join(dir, 'other.key'), other.keyPem, { mode: 0o600 });
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        {
          name: 'api',
          address: '127.0.0.1:0',
          tls: {
            cert: pki.server.chain,
            key: pki.server.key,
            client_ca: pki.ca.cert,
            certificates: [{ server_names: [OTHER], cert: join(dir, 'other.crt'), key: join(dir, 'other.key'), client_ca: pki.otherCa.cert }],
          },
          routes: [{ upstream: 'app' }],
        },
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

const ex = (c: PkiEntry, version: (typeof VERSIONS)[number], servername: string | false, session?: Buffer, path = '/'): Promise<Exchange> =>
  exchange({ port: cli.port, ca: pki.ca.cert, client: c, version, servername, host: servername || 'localhost', ...(session ? { session } : {}), path });

async function establish(c: PkiEntry, version: (typeof VERSIONS)[number], servername: string | false): Promise<Buffer> {
  const first = await ex(c, version, servername);
  assert.equal(first.status, 200, `${version} ${String(servername)}: ${first.error ?? first.body}`);
  const again = await ex(c, version, servername, first.session);
  assert.equal(again.status, 200, again.body);
  assert.equal(again.reused, true, `${version} ${String(servername)}: the session did not resume on its own entry, so this test could not fail`);
  return again.session ?? first.session!;
}

for (const v of VERSIONS) {
  test(`${v}: a session verified by the SNI entry's CA does not resume on the default entry, which does not trust that CA`, async () => {
    const session = await establish(pki.untrusted, v, OTHER);
    const before = up.received.length;
    const r = await ex(pki.untrusted, v, false, session, `/cross-${v}`);
    assert.equal(r.reused, false, `${v}: the session resumed on another certificate entry`);
    assert.equal(r.status, 0, `${v}: the other root's client got ${r.status} from the default entry`);
    assert.equal(up.received.length, before, 'the upstream received a request from a client its entry does not trust');
  });

  test(`${v}: a default-entry session does not resume on the SNI entry`, async () => {
    const session = await establish(pki.client, v, false);
    const r = await ex(pki.client, v, OTHER, session, `/back-${v}`);
    assert.equal(r.reused, false, `${v}: the session resumed on another certificate entry`);
    // the SNI entry does not trust the test root: the full handshake refuses the client
    assert.equal(r.status, 0);
  });
}
