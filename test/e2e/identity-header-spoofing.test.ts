// Regression test for identity header spoofing (SPEC §4): a client must never be able to
// supply, duplicate or remove an identity header, in any spelling. Requests are written by
// hand over a TLS socket, because HTTP clients normalize exactly the spellings that matter
// here (`_` names, duplicates, Connection-listed names). Every assertion is on what the
// upstream actually received.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli, type Received } from '../helpers/proxy.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let ca: Buffer;
/** request trailers the upstream received, by path (requests to /trailers...) */
const trailersSeen = new Map<string, { rawHeaders: string[]; rawTrailers: string[]; body: string }>();

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  ca = readFileSync(pki.ca.cert);
  up = await startEchoUpstream((req, res) => {
    if (!req.url?.startsWith('/trailers')) return false;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      trailersSeen.set(req.url!, { rawHeaders: req.rawHeaders, rawTrailers: req.rawTrailers, body });
      res.end('ok');
    });
    return true;
  });
  cli = await startCli(
    {
      workers: 1,
      listeners: [
        // default identity settings: standard headers only, no forwarded certificate.
        // max_headers: one request below sends every spoofed header in every spelling (~220 fields)
        tlsListener(pki, { name: 'std', limits: { max_headers: 400 } }),
        // every format, so each spoofed header also has a real proxy value to be confused with
        tlsListener(pki, { name: 'all', identity: { headers: ['standard', 'xfcc', 'rfc9440'], forward_cert: true }, limits: { max_headers: 400 } }),
        tlsListener(pki, { name: 'opt', tls: { client_auth: 'optional' } }),
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

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TLS

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends `requests` (complete HTTP/1.1 messages) on one TLS connection and returns every response. */
function rawExchange(port: number, requests: string[], client?: PkiEntry): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca,
      ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
    });
    const chunks: Buffer[] = [];
    sock.on('secureConnect', () => sock.write(requests.join('')));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      try {
        resolve(parseResponses(Buffer.concat(chunks).toString('latin1'), requests.length));
      } catch (err) {
        reject(err);
      }
    });
    sock.setTimeout(10_000, () => sock.destroy(new Error('raw exchange timed out')));
  });
}

function parseResponses(text: string, expected: number): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = text;
  while (rest.length > 0 && out.length < expected) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete response: ${JSON.stringify(rest.slice(0, 200))}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1]);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const c = l.indexOf(':');
      headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
    }
    rest = rest.slice(end + 4);
    let body = '';
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (size === 0) {
          rest = rest.slice(rest.indexOf('\r\n') + 2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else {
      const n = Number(headers['content-length'] ?? 0);
      body = rest.slice(0, n);
      rest = rest.slice(n);
    }
    out.push({ status, headers, body });
  }
  return out;
}

/** A GET with the given extra header lines; `connection` defaults to close. */
function request(path: string, headerLines: string[], connection = 'close'): string {
  return [`GET ${path} HTTP/1.1`, 'Host: localhost', ...headerLines, `Connection: ${connection}`, '', ''].join('\r\n');
}

// ---------------------------------------------------------------------------------------
// The header namespace and how to inspect what the upstream received

const SPOOFED_HEADERS = [
  'X-Client-Verify',
  'X-Client-Subject',
  'X-Client-Issuer',
  'X-Client-CN',
  'X-Client-Serial',
  'X-Client-Fingerprint',
  'X-Client-SPIFFE-ID',
  'X-Client-SAN',
  'X-Client-Not-Before',
  'X-Client-Not-After',
  'X-Client-Cert',
  'X-Client-Role',
  'X-Forwarded-Client-Cert',
  'Client-Cert',
  'Client-Cert-Chain',
  'X-Forwarded-For',
  'X-Forwarded-Proto',
  'X-Forwarded-Host',
];

const NAMESPACE = new Set([
  'x-forwarded-client-cert',
  'client-cert',
  'client-cert-chain',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);
const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');
const inNamespace = (name: string) => {
  const c = canonical(name);
  return c.startsWith('x-client-') || NAMESPACE.has(c);
};

/** [lowercased name, value] of every namespace header, in arrival order. */
function namespaceHeaders(r: Received): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) {
    if (inNamespace(r.rawHeaders[i]!)) out.push([r.rawHeaders[i]!.toLowerCase(), r.rawHeaders[i + 1]!]);
  }
  return out;
}

const sorted = (l: [string, string][]) => [...l].sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));

/** Problems with one upstream request compared with the clean baseline; empty when fine. */
function problemsWith(r: Received | undefined, baseline: [string, string][], marker: string): string[] {
  if (!r) return ['the request did not reach the upstream'];
  const problems: string[] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) {
    const [name, value] = [r.rawHeaders[i]!, r.rawHeaders[i + 1]!];
    if (value.toLowerCase().includes(marker) || value.toLowerCase().includes('spoof')) problems.push(`spoofed value reached the upstream: ${name}: ${value}`);
    if (inNamespace(name) && name.includes('_')) problems.push(`underscore spelling reached the upstream: ${name}`);
  }
  const got = namespaceHeaders(r);
  const names = got.map(([n]) => n);
  for (const n of new Set(names)) {
    const count = names.filter((m) => m === n).length;
    if (count !== 1) problems.push(`${n} appears ${count} times`);
  }
  const want = JSON.stringify(sorted(baseline));
  const have = JSON.stringify(sorted(got));
  if (want !== have) problems.push(`namespace headers differ from the proxy's own:\n  want ${want}\n  got  ${have}`);
  return problems;
}

/** What the upstream received for one request carrying `headerLines`. */
async function send(listener: string, headerLines: string[], client: PkiEntry | null = pki.client, connection = 'close'): Promise<{ res: RawResponse; got: Received | undefined }> {
  const tag = `/spoof-${Math.random().toString(16).slice(2)}`;
  const [res] = await rawExchange(cli.ports[listener]!, [request(tag, headerLines, connection)], client ?? undefined);
  return { res: res!, got: up.received.find((r) => r.url === tag) };
}

/** Namespace headers of a clean request (no spoofing) on `listener`. */
async function baselineFor(listener: string, client: PkiEntry | null = pki.client): Promise<[string, string][]> {
  const { res, got } = await send(listener, [], client);
  assert.equal(res.status, 200, res.body);
  return namespaceHeaders(got!);
}

const mixed = (name: string) => [...name].map((ch, i) => (i % 2 ? ch.toLowerCase() : ch.toUpperCase())).join('');

const VARIANTS: { name: string; lines: (h: string, v: string) => string[]; connection?: (h: string) => string }[] = [
  { name: 'lower case', lines: (h, v) => [`${h.toLowerCase()}: ${v}`] },
  { name: 'UPPER CASE', lines: (h, v) => [`${h.toUpperCase()}: ${v}`] },
  { name: 'MiXeD case', lines: (h, v) => [`${mixed(h)}: ${v}`] },
  { name: 'underscores (canonical case)', lines: (h, v) => [`${h.replace(/-/g, '_')}: ${v}`] },
  { name: 'underscores (lower case)', lines: (h, v) => [`${h.toLowerCase().replace(/-/g, '_')}: ${v}`] },
  { name: 'mixed - and _', lines: (h, v) => [`${h.replace('-', '_')}: ${v}`] },
  { name: 'sent twice', lines: (h, v) => [`${h}: ${v}-1`, `${h}: ${v}-2`] },
  { name: 'sent twice, two spellings', lines: (h, v) => [`${h}: ${v}-1`, `${h.toLowerCase().replace(/-/g, '_')}: ${v}-2`] },
  { name: 'listed in Connection', lines: (h, v) => [`${h}: ${v}`], connection: (h) => `close, ${h}` },
  { name: 'listed in Connection only (not sent)', lines: () => [], connection: (h) => `close, ${h}` },
  { name: 'listed in Connection with underscores', lines: (h, v) => [`${h}: ${v}`], connection: (h) => `close, ${h.toLowerCase().replace(/-/g, '_')}` },
];

// ---------------------------------------------------------------------------------------

test('baseline: a clean request carries the real identity, each identity header once', async () => {
  const leaf = new X509Certificate(readFileSync(pki.client.cert));
  const { res, got } = await send('std', []);
  assert.equal(res.status, 200, res.body);
  const h = got!.headers;
  assert.equal(h['x-client-verify'], 'SUCCESS');
  assert.equal(h['x-client-subject'], 'CN=payment-service,OU=prod,O=Example');
  assert.equal(h['x-client-issuer'], 'CN=Test Root CA');
  assert.equal(h['x-client-cn'], 'payment-service');
  assert.equal(h['x-client-serial'], pki.client.serial);
  assert.equal(h['x-client-fingerprint'], createHash('sha256').update(leaf.raw).digest('hex'));
  assert.equal(h['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
  assert.equal(h['x-client-san'], 'DNS:payment.svc.example.com,URI:spiffe://example.org/ns/prod/sa/payment,email:pay@example.com');
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-forwarded-host'], 'localhost');
  assert.equal(h['x-client-cert'], undefined);
  assert.equal(h['x-forwarded-client-cert'], undefined);
  assert.equal(h['client-cert'], undefined);
  const names = namespaceHeaders(got!).map(([n]) => n);
  assert.deepEqual(names.length, new Set(names).size, `duplicate identity headers: ${names.join(', ')}`);

  const all = await send('all', []);
  assert.equal(all.res.status, 200);
  const a = all.got!.headers;
  assert.equal(a['x-client-verify'], 'SUCCESS');
  assert.equal(a['x-client-fingerprint'], h['x-client-fingerprint']);
  assert.ok(a['x-client-cert'], 'forward_cert puts X-Client-Cert on the "all" listener');
  assert.match(String(a['x-forwarded-client-cert']), /^Hash=[0-9a-f]{64};/);
  assert.equal(a['client-cert'], `:${leaf.raw.toString('base64')}:`);
});

const spoofValue = (h: string, i: number) => {
  const marker = `spoofed-${i}`;
  if (h === 'X-Forwarded-For') return `6.6.6.${i}, ${marker}`;
  if (h === 'X-Client-Verify') return `SUCCESS ${marker}`;
  return `CN=admin,${marker}`;
};

for (const listener of ['std', 'all']) {
  for (const v of VARIANTS) {
    test(`[${listener}] spoofed identity headers, ${v.name}: the upstream sees only the proxy's values`, async () => {
      const baseline = await baselineFor(listener);
      // every header of the namespace on one request, each with its own marker so a failure names it
      const lines = SPOOFED_HEADERS.flatMap((h, i) => v.lines(h, spoofValue(h, i)));
      const connection = v.connection ? `close, ${SPOOFED_HEADERS.map((h) => v.connection!(h).replace(/^close, /, '')).join(', ')}` : 'close';
      const { res, got } = await send(listener, lines, pki.client, connection);
      assert.equal(res.status, 200, res.body);
      assert.deepEqual(problemsWith(got, baseline, 'spoofed-'), []);
    });
  }
}

test('one spoofed header at a time, listed in Connection: the proxy\'s own header of that name survives', async () => {
  // `Connection: close, X-Client-Subject` names a hop-by-hop header; it must remove the
  // client's copy only, never the header the proxy sets
  const baseline = await baselineFor('all');
  const failures: string[] = [];
  for (const [i, h] of SPOOFED_HEADERS.entries()) {
    const { res, got } = await send('all', [`${h}: ${spoofValue(h, i)}`], pki.client, `close, ${h}`);
    if (res.status !== 200) failures.push(`${h}: status ${res.status}`);
    else for (const p of problemsWith(got, baseline, 'spoofed-')) failures.push(`${h}: ${p}`);
  }
  assert.deepEqual(failures, []);
});

test('Host listed in Connection: the proxy keeps routing on it and still sets its own X-Forwarded-Host', async () => {
  // Host is end-to-end (RFC 9110 §7.2) and required in HTTP/1.1 (RFC 9112 §3.2): a client
  // listing it as a connection option must not make the proxy drop it, and so drop the
  // X-Forwarded-Host that SPEC §4 says is always set. Refusing the request (400) is fine too.
  const { res, got } = await send('std', [], pki.client, 'close, Host');
  if (res.status === 400) {
    assert.equal(got, undefined);
    return;
  }
  assert.equal(res.status, 200, res.body);
  assert.ok(got);
  const xfh = got.rawHeaders.filter((_, i) => i % 2 === 1 && canonical(got.rawHeaders[i - 1]!) === 'x-forwarded-host');
  assert.deepEqual(xfh, ['localhost'], `X-Forwarded-Host values: ${JSON.stringify(xfh)}`);
  assert.equal(got.headers.host, 'localhost', 'the upstream sees the Host the client sent');
});

test('every spoofed header at once, in every spelling, on one request', async () => {
  for (const listener of ['std', 'all']) {
    const baseline = await baselineFor(listener);
    const lines: string[] = [];
    for (const h of SPOOFED_HEADERS) for (const v of VARIANTS) lines.push(...v.lines(h, 'spoofed-all'));
    const { res, got } = await send(listener, lines, pki.client, `close, ${SPOOFED_HEADERS.join(', ')}`);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(problemsWith(got, baseline, 'spoofed-all'), [], listener);
  }
});

test('keep-alive: every request on one connection gets exactly one set of identity headers', async () => {
  const baseline = await baselineFor('all');
  const paths = [1, 2, 3].map((i) => `/keepalive-${i}-${Math.random().toString(16).slice(2)}`);
  const reqs = paths.map((p, i) => request(p, ['X-Client-Verify: spoofed-ka', 'x_client_cn: spoofed-ka', 'X-Forwarded-For: spoofed-ka'], i === paths.length - 1 ? 'close' : 'keep-alive'));
  const res = await rawExchange(cli.ports['all']!, reqs, pki.client);
  assert.deepEqual(res.map((r) => r.status), [200, 200, 200]);
  for (const p of paths) assert.deepEqual(problemsWith(up.received.find((r) => r.url === p), baseline, 'spoofed-ka'), [], p);
});

test('Node https client with setHeader in odd cases: only the proxy values arrive', async () => {
  const baseline = await baselineFor('std');
  const path = `/node-${Math.random().toString(16).slice(2)}`;
  const status = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', servername: 'localhost', port: cli.ports['std'], path, ca, cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key), agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.setHeader('Host', 'localhost');
    req.setHeader('x-client-verify', 'SUCCESS spoofed-node');
    req.setHeader('X-CLIENT-SUBJECT', 'CN=admin spoofed-node');
    req.setHeader('X-cLiEnT-cN', 'admin spoofed-node');
    req.setHeader('X_Client_Fingerprint', 'spoofed-node');
    req.setHeader('x-forwarded-for', ['10.0.0.1 spoofed-node', '10.0.0.2 spoofed-node']);
    req.setHeader('Client-Cert', ':c3Bvb2ZlZC1ub2Rl:');
    req.setHeader('X-Client-Role', 'admin spoofed-node');
    req.end();
  });
  assert.equal(status, 200);
  const got = up.received.find((r) => r.url === path);
  const problems = problemsWith(got, baseline, 'spoofed-node');
  // ":c3Bvb2ZlZC1ub2Rl:" is base64 of "spoofed-node"
  if (got?.rawHeaders.some((v) => v.includes('c3Bvb2ZlZC1ub2Rl'))) problems.push('spoofed Client-Cert reached the upstream');
  assert.deepEqual(problems, []);
});

test('optional listener without a certificate: spoofed identity becomes exactly one X-Client-Verify: NONE', async () => {
  const failures: string[] = [];
  await Promise.all(
    VARIANTS.map(async (v) => {
      const lines = [...v.lines('X-Client-Verify', 'SUCCESS'), ...v.lines('X-Client-Subject', 'CN=admin'), ...v.lines('X-Client-CN', 'admin'), ...v.lines('X-Client-SPIFFE-ID', 'spiffe://example.org/ns/prod/sa/admin'), ...v.lines('X-Forwarded-Client-Cert', 'Hash=00;Subject="CN=admin"'), ...v.lines('Client-Cert', ':AAAA:')];
      const { res, got } = await send('opt', lines, null, v.connection?.('X-Client-Verify') ?? 'close');
      if (res.status !== 200 || !got) {
        failures.push(`${v.name}: status ${res.status} ${res.body}`);
        return;
      }
      const ns = namespaceHeaders(got).filter(([n]) => !n.startsWith('x-forwarded-'));
      if (JSON.stringify(ns) !== JSON.stringify([['x-client-verify', 'NONE']])) failures.push(`${v.name}: upstream got ${JSON.stringify(ns)}`);
      if (got.rawHeaders.some((x) => /admin/.test(x))) failures.push(`${v.name}: a spoofed value reached the upstream`);
    }),
  );
  assert.deepEqual(failures, []);
});

test('identity headers sent as request trailers never reach the upstream', async () => {
  const path = `/trailers-${Math.random().toString(16).slice(2)}`;
  const req = [
    `POST ${path} HTTP/1.1`,
    'Host: localhost',
    'Transfer-Encoding: chunked',
    'Trailer: X-Client-Verify, X-Client-CN, X-Forwarded-For',
    'TE: trailers',
    'Connection: close',
    '',
    '5',
    'hello',
    '0',
    'X-Client-Verify: SUCCESS spoofed-trailer',
    'X-Client-CN: admin spoofed-trailer',
    'x_client_subject: CN=admin spoofed-trailer',
    'X-Forwarded-For: 6.6.6.6 spoofed-trailer',
    '',
    '',
  ].join('\r\n');
  const [res] = await rawExchange(cli.ports['std']!, [req], pki.client);
  assert.equal(res!.status, 200, res!.body);
  const seen = trailersSeen.get(path);
  assert.ok(seen, 'the request reached the upstream');
  assert.equal(seen.body, 'hello');
  assert.deepEqual(seen.rawTrailers.filter((v) => /spoof/.test(v)), [], `trailers: ${JSON.stringify(seen.rawTrailers)}`);
  assert.deepEqual(seen.rawHeaders.filter((v) => /spoof/.test(v)), []);
  const verify = seen.rawHeaders.filter((_, i) => i % 2 === 1 && canonical(seen.rawHeaders[i - 1]!) === 'x-client-verify');
  assert.deepEqual(verify, ['SUCCESS']);
});

test('X-Request-Id: a valid client value is kept, exactly once', async () => {
  const { res, got } = await send('std', ['X-Request-Id: trace-abc.123:XYZ_9']);
  assert.equal(res.status, 200);
  const ids = got!.rawHeaders.filter((_, i) => i % 2 === 0 && canonical(got!.rawHeaders[i]!) === 'x-request-id');
  assert.equal(ids.length, 1);
  assert.equal(got!.headers['x-request-id'], 'trace-abc.123:XYZ_9');
});

for (const [name, value] of [
  ['with spaces', 'bad id with spaces'],
  ['200 characters long', 'a'.repeat(200)],
  ['with a control character', 'abc\u0001def'],
  ['with quotes and semicolons', '"abc";x=1'],
] as const) {
  test(`X-Request-Id ${name} is replaced by a generated one`, async () => {
    const { res, got } = await send('std', [`X-Request-Id: ${value}`]);
    // a control character may make the request unparseable (400); it must then not reach the upstream
    if (res.status === 400) {
      assert.equal(got, undefined);
      return;
    }
    assert.equal(res.status, 200, res.body);
    const ids: string[] = [];
    for (let i = 0; i < got!.rawHeaders.length; i += 2) if (canonical(got!.rawHeaders[i]!) === 'x-request-id') ids.push(got!.rawHeaders[i + 1]!);
    assert.equal(ids.length, 1, `x-request-id values: ${JSON.stringify(ids)}`);
    assert.notEqual(ids[0], value);
    assert.match(ids[0]!, /^[0-9a-f-]{36}$/);
  });
}

test('X-Request-Id sent twice: one value reaches the upstream', async () => {
  const { res, got } = await send('std', ['X-Request-Id: first-id', 'X-Request-Id: second-id']);
  assert.equal(res.status, 200);
  const ids: string[] = [];
  for (let i = 0; i < got!.rawHeaders.length; i += 2) if (canonical(got!.rawHeaders[i]!) === 'x-request-id') ids.push(got!.rawHeaders[i + 1]!);
  assert.equal(ids.length, 1, `x-request-id values: ${JSON.stringify(ids)}`);
});
