// SNI virtual hosts through the real CLI: the certificate served per SNI (exact, one-label
// wildcard, letter case, trailing dot, none), per-entry client_auth / client_ca / rules,
// and the Host-vs-SNI matrix that must answer 421 misdirected_request wherever the Host
// selects another certificate entry than the handshake did — the CVE-2025-23419 class
// (nginx) and CVE-2026-48491 (Traefik): an entry's client verification bypassed by
// sending a request for a stricter host over a connection negotiated for a laxer one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { issueCert } from '../../src/pki/issue.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const [api, svc] = await Promise.all([
    issueCert(pki.handles.root, { type: 'server', cn: 'api.example.com', dns: ['api.example.com'] }),
    issueCert(pki.handles.root, { type: 'server', cn: 'svc wildcard', dns: ['*.svc.example.com'] }),
  ]);
  const write = (name: string, c: { chainPem: string; keyPem: string }) => {
    writeFileSync(join(dir, `${name}.crt`), c.chainPem);
    writeFileSync(join(dir, `${name}.key`), c.keyPem, { mode: 0o600 });
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  up = await startEchoUpstream();
  cli = await startCli(
    {
      listeners: [
        {
          name: 'vhosts',
          address: '127.0.0.1:0',
          // the listener's own client_auth stays the default (require): the entries below
          // must be able to loosen it for their names as well as keep it
          tls: {
            cert: pki.server.chain,
            key: pki.server.key,
            client_ca: pki.ca.cert,
            certificates: [
              { server_names: ['api.example.com'], ...write('api', api), client_auth: 'require', client_ca: pki.ca.cert, allow: [{ cn: 'payment-service' }] },
              {
                server_names: ['*.svc.example.com'],
                ...write('svc', svc),
                client_auth: 'optional',
                // trusts the other root too: an entry's CA list is its own
                client_ca: [pki.ca.cert, pki.otherCa.cert],
                deny: [{ cn: 'reporting' }],
              },
            ],
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

const CERTS = { api: 'DNS:api.example.com', svc: 'DNS:*.svc.example.com', default: 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1' } as const;

function tlsOpts(servername: string, entry?: PkiEntry): tls.ConnectionOptions {
  return {
    host: '127.0.0.1',
    port: cli.port,
    // '' sends no SNI at all
    servername,
    ca: readFileSync(pki.ca.cert),
    // the chain must verify; which name it is for is what the tests look at
    checkServerIdentity: () => undefined,
    ...(entry ? { cert: readFileSync(entry.chain), key: readFileSync(entry.key) } : {}),
  };
}

/** The SAN list of the certificate the proxy presented for `servername`. */
function servedCert(servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(tlsOpts(servername, pki.client), () => {
      resolve(s.getPeerX509Certificate()!.subjectAltName ?? '');
      s.destroy();
    });
    s.on('error', reject);
  });
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One hand-written HTTP/1.1 request: SNI and Host are set independently, exactly as given. */
function request(servername: string, host: string | undefined, entry?: PkiEntry, target = '/'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(tlsOpts(servername, entry), () => {
      s.write(`GET ${target} HTTP/1.1\r\n${host === undefined ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`);
    });
    let raw = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (raw += d));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw);
      if (!m) return reject(new Error(`no HTTP response (got ${JSON.stringify(raw.slice(0, 200))})`));
      const headers: Record<string, string> = {};
      for (const line of m[2]!.split('\r\n')) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(m[1]), headers, body: m[3]! });
    });
  });
}

/** What the upstream saw for the request the call made, or undefined when nothing reached it. */
async function upstreamSaw(call: () => Promise<Reply>): Promise<{ reply: Reply; got: EchoUpstream['received'][number] | undefined }> {
  const before = up.received.length;
  const reply = await call();
  return { reply, got: up.received[before] };
}

test('the certificate is chosen by SNI: exact, one-label wildcard, letter case, trailing dot, none', async () => {
  const cases: [string, string][] = [
    ['api.example.com', CERTS.api],
    ['API.Example.COM', CERTS.api],
    ['api.example.com.', CERTS.api],
    ['a.svc.example.com', CERTS.svc],
    ['Zz-9.SVC.example.COM', CERTS.svc],
    ['a.b.svc.example.com', CERTS.default], // * covers exactly one label
    ['svc.example.com', CERTS.default],
    ['other.example.com', CERTS.default],
    ['localhost', CERTS.default],
    ['', CERTS.default],
  ];
  for (const [sni, want] of cases) assert.equal(await servedCert(sni), want, `SNI ${JSON.stringify(sni)}`);
});

const port = () => cli.port;
for (const [sni, host, why] of [
  ['a.svc.example.com', 'api.example.com', 'optional wildcard entry, Host of the require entry'],
  ['a.svc.example.com', 'API.EXAMPLE.COM', 'the same in other letter case'],
  ['a.svc.example.com', 'api.example.com.', 'the same with a trailing dot'],
  ['a.svc.example.com', () => `api.example.com:${port()}`, 'the same with a port'],
  ['api.example.com', 'other.example.com', 'Host of the default certificate'],
  ['api.example.com', 'a.svc.example.com', 'Host of the wildcard entry'],
  ['a.svc.example.com', 'a.b.svc.example.com', 'two labels under the wildcard select the default'],
  ['', 'api.example.com', 'no SNI (default certificate), Host of an entry'],
  ['', 'x.svc.example.com', 'no SNI, Host of the wildcard entry'],
  ['localhost', 'api.example.com', 'SNI of the default certificate, Host of an entry'],
  ['other.example.com', 'API.example.com', 'unknown SNI, Host of an entry'],
] as const) {
  test(`421 misdirected_request: SNI ${JSON.stringify(sni)}, Host ${typeof host === 'string' ? host : 'api.example.com:PORT'} (${why})`, async () => {
    const h = typeof host === 'string' ? host : host();
    const { reply, got } = await upstreamSaw(() => request(sni, h, pki.client));
    assert.equal(reply.status, 421, reply.body);
    const body = JSON.parse(reply.body) as { error: string; message: string; request_id: string };
    assert.equal(body.error, 'misdirected_request');
    assert.equal(reply.headers['content-type'], 'application/json');
    assert.equal(body.request_id, reply.headers['x-request-id']);
    assert.equal(got, undefined, 'nothing reached the upstream');
  });
}

test('421 also when an absolute-form target names another entry than the SNI', async () => {
  const { reply, got } = await upstreamSaw(() => request('a.svc.example.com', 'a.svc.example.com', pki.client, 'https://api.example.com/x'));
  assert.equal(reply.status, 421);
  assert.equal(got, undefined);
});

for (const [sni, host] of [
  ['api.example.com', 'api.example.com'],
  ['api.example.com', 'API.Example.COM'],
  ['API.EXAMPLE.COM', 'api.example.com'],
  ['api.example.com', 'api.example.com.'],
  ['api.example.com.', 'api.example.com'],
  ['api.example.com', 'PORT'],
  ['a.svc.example.com', 'b.svc.example.com'],
  ['a.svc.example.com', 'B.SVC.Example.Com'],
  ['', 'localhost'],
  ['', 'other.example.com'],
  ['localhost', 'other.example.com'],
] as const) {
  test(`no 421 when SNI ${JSON.stringify(sni)} and Host ${host} select the same entry`, async () => {
    const h = host === 'PORT' ? `api.example.com:${cli.port}` : host;
    const { reply, got } = await upstreamSaw(() => request(sni, h, pki.client));
    assert.equal(reply.status, 200, reply.body);
    assert.equal(got?.headers['x-client-verify'], 'SUCCESS');
  });
}

test('optional entry without a certificate: 200 and X-Client-Verify NONE upstream', async () => {
  const { reply, got } = await upstreamSaw(() => request('a.svc.example.com', 'a.svc.example.com'));
  assert.equal(reply.status, 200, reply.body);
  assert.equal(got?.headers['x-client-verify'], 'NONE');
  assert.equal(got?.headers['x-client-subject'], undefined);
});

test('require entry without a certificate: refused at the connection, nothing reaches the upstream', async () => {
  const before = up.received.length;
  await assert.rejects(request('api.example.com', 'api.example.com'));
  assert.equal(up.received.length, before);
  const line = await waitFor(() => cli.accessLines().find((l) => l.event === 'tls_handshake_failed' && (l.client as { verify?: string }).verify === 'NONE'));
  assert.match(String((line.decision as { reason: string }).reason), /^no_cert: /);
});

test('the listener default (require) still refuses a client without a certificate', async () => {
  const before = up.received.length;
  await assert.rejects(request('', 'localhost'));
  await assert.rejects(request('other.example.com', 'other.example.com'));
  assert.equal(up.received.length, before);
});

test('per-entry client_ca: the other root is trusted on the wildcard entry only', async () => {
  const onSvc = await upstreamSaw(() => request('a.svc.example.com', 'a.svc.example.com', pki.untrusted));
  assert.equal(onSvc.reply.status, 200, onSvc.reply.body);
  assert.equal(onSvc.got?.headers['x-client-verify'], 'SUCCESS');
  assert.equal(onSvc.got?.headers['x-client-issuer'], 'CN=Other Root CA');
  const before = up.received.length;
  await assert.rejects(request('api.example.com', 'api.example.com', pki.untrusted));
  await assert.rejects(request('', 'localhost', pki.untrusted));
  assert.equal(up.received.length, before);
});

test('per-entry rules: the api allow list and the wildcard deny list apply to their own names only', async () => {
  const cases: [string, PkiEntry, number][] = [
    ['api.example.com', pki.client, 200],
    ['api.example.com', pki.client2, 403], // not in api's allow list
    ['a.svc.example.com', pki.client2, 403], // in the wildcard's deny list
    ['a.svc.example.com', pki.client, 200],
    ['localhost', pki.client2, 200], // the default certificate has no rules
  ];
  for (const [sni, entry, status] of cases) {
    const { reply, got } = await upstreamSaw(() => request(sni, sni, entry));
    assert.equal(reply.status, status, `${sni} ${entry.cert}: ${reply.body}`);
    if (status === 403) {
      assert.equal((JSON.parse(reply.body) as { error: string }).error, 'forbidden');
      assert.equal(got, undefined);
    }
  }
});

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
