// HTTP/2 through the real CLI with real clients (curl --http2, Node http2.connect): the
// upstream (HTTP/1.1) must receive exactly what an HTTP/1.1 client's request produces —
// identity headers, scrubbing, Host from :authority, cookies joined — and refusals
// must be the same SPEC §5 JSON. HTTP/1.1 clients keep working on the same listener.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { useProxy, curl, certArgs, nodeRequest, tlsListener, type Received } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
      listeners: [
        tlsListener(pki, {
          routes: [
            // only CN=reporting may use /admin: the default client (payment-service) is denied
            { name: 'admin', match: { path: '/admin' }, allow: [{ cn: 'reporting' }], upstream: 'app' },
            { name: 'main', upstream: 'app' },
          ] }),
      ],
      upstreams: { app: { endpoints: [up.url] } } }), {
  // /trailers: a chunked body with a trailer section; /sized: a body with a content-length
  upstream: (req, res) => {
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('part one, ');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end('part two');
      return true;
    }
    if (req.url === '/sized') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11 });
      res.end('sized body!');
      return true;
    }
    return false;
  },
});

const url = (path: string) => `https://localhost:${fx.cli.port}${path}`;

/** An h2 session presenting `who`'s certificate. */
function connect(who = fx.pki.client): http2.ClientHttp2Session {
  const s = http2.connect(url('/'), { ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(who.cert), key: readFileSync(who.key) });
  s.on('error', () => undefined);
  return s;
}

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** One request on a session; `raw` headers go out in order as separate fields. */
function request(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = s.request(headers, { endStream: body === undefined });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    let data = '';
    req.setEncoding('utf8');
    req.on('response', (r) => {
      h = r;
      status = Number(r[':status']);
    });
    req.on('data', (d: string) => (data += d));
    req.on('end', () => resolve({ status, headers: h, body: data }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

const identityOf = (r: Received) =>
  Object.fromEntries(Object.entries(r.headers).filter(([k]) => k.startsWith('x-client-') || k === 'x-forwarded-for' || k === 'x-forwarded-proto' || k === 'x-forwarded-host'));

test('curl --http2 gets 200 over h2 and the upstream sees the same identity headers as for HTTP/1.1, spoofed ones scrubbed', async () => {
  const spoof = ['-H', 'X-Client-SPIFFE-ID: spiffe://evil/admin', '-H', 'x-client-cn: root', '-H', 'X-Forwarded-Client-Cert: Hash=00', '-H', 'X_Client_Verify: SUCCESS'];
  const n = fx.up.received.length;
    // a later -w replaces the helper's; keep the status code last, where the helper reads it
  const version = ['-w', '\n%{http_version}\n%{http_code}'];
  const h2 = await curl(url('/h2?q=1'), [...certArgs(fx.pki.ca.cert, fx.pki.client), '--http2', ...version, ...spoof]);
  assert.equal(h2.status, 200, h2.stderr);
  assert.match(h2.body, /\n2$/, 'the response came over HTTP/2');
  const h1 = await curl(url('/h1'), [...certArgs(fx.pki.ca.cert, fx.pki.client), '--http1.1', ...version]);
  assert.equal(h1.status, 200, h1.stderr);
  assert.match(h1.body, /\n1\.1$/, 'HTTP/1.1 clients are still served on the same listener');
  const [viaH2, viaH1] = [fx.up.received[n]!, fx.up.received[n + 1]!];
  assert.equal(viaH2.url, '/h2?q=1');
  assert.equal(viaH2.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
  assert.equal(viaH2.headers['x-client-cn'], 'payment-service');
  assert.equal(viaH2.headers['x-client-verify'], 'SUCCESS');
  assert.equal(viaH2.headers['x-forwarded-client-cert'], undefined);
  assert.deepEqual(identityOf(viaH2), identityOf(viaH1));
  assert.equal(viaH2.headers.host, `localhost:${fx.cli.port}`, ':authority became Host');
  // nothing HTTP/2-specific leaks upstream, and every identity header is there once
  const names = viaH2.rawHeaders.filter((_, i) => i % 2 === 0).map((x) => x.toLowerCase());
  assert.ok(!names.some((x) => x.startsWith(':')), names.join());
  for (const x of names.filter((x) => x.startsWith('x-client-'))) assert.equal(names.filter((m) => m === x).length, 1, x);
});

test('Node http2 client: cookie crumbs are joined, te and connection-specific fields dropped, body and several streams on one session', async () => {
  const s = connect();
  try {
    const n = fx.up.received.length;
    const [a, b] = await Promise.all([
      request(s, { ':method': 'POST', ':path': '/post', cookie: ['a=1', 'b=2'], te: 'trailers', 'content-type': 'text/plain' }, 'hello h2'),
      request(s, { ':path': '/second', 'x-request-id': 'client-chosen-id.1' }),
    ]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const post = fx.up.received.slice(n).find((r) => r.url === '/post')!;
    const second = fx.up.received.slice(n).find((r) => r.url === '/second')!;
    assert.equal(post.method, 'POST');
    assert.equal(post.bodyBytes, 8);
    assert.equal(post.headers.cookie, 'a=1; b=2');
    assert.equal(post.rawHeaders.filter((x) => x.toLowerCase() === 'cookie').length, 1, 'one Cookie field for HTTP/1.1');
    assert.equal(post.headers.te, undefined);
    assert.equal(post.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
    assert.equal(second.headers['x-request-id'], 'client-chosen-id.1', 'a valid client X-Request-Id is kept');
    assert.equal(b.headers['content-type'], 'application/json', 'upstream response headers are relayed');
  } finally {
    s.close();
  }
});

test('a rule that denies the client answers 403 forbidden JSON over h2 (curl and Node) and nothing reaches the upstream', async () => {
  const n = fx.up.received.length;
  const c = await curl(url('/admin/x'), [...certArgs(fx.pki.ca.cert, fx.pki.client), '--http2']);
  assert.equal(c.status, 403);
  assert.equal(JSON.parse(c.body).error, 'forbidden');
  const s = connect();
  try {
    const r = await request(s, { ':path': '/admin' });
    assert.equal(r.status, 403);
    assert.equal(r.headers['content-type'], 'application/json');
    const j = JSON.parse(r.body) as { error: string; message: string; request_id: string };
    assert.equal(j.error, 'forbidden');
    assert.match(j.message, /route admin/);
    assert.equal(r.headers['x-request-id'], j.request_id);
  } finally {
    s.close();
  }
  assert.equal(fx.up.received.length, n);
  // the allowed identity passes the same route over h2
  const ok = connect(fx.pki.client2);
  try {
    assert.equal((await request(ok, { ':path': '/admin' })).status, 200);
  } finally {
    ok.close();
  }
});

test('malformed h2 requests: Host differing from :authority is 400, oversized headers are 431', async () => {
  const s = connect();
  try {
    const n = fx.up.received.length;
    // (Node's client turns a lone host into the authority, so send both explicitly)
    const mismatch = await request(s, { ':path': '/x', ':authority': `localhost:${fx.cli.port}`, host: 'other.example' });
    assert.equal(mismatch.status, 400);
    assert.equal(JSON.parse(mismatch.body).error, 'bad_request');
    const big = await request(s, { ':path': '/x', 'x-big': 'a'.repeat(20_000) });
    assert.equal(big.status, 431);
    assert.equal(JSON.parse(big.body).error, 'headers_too_large');
    assert.equal(fx.up.received.length, n);
  } finally {
    s.close();
  }
});

test('Node https (no ALPN h2) still speaks HTTP/1.1, and h2 requests are logged like HTTP/1.1 ones', async () => {
  const r = await nodeRequest({ host: '127.0.0.1', servername: 'localhost', port: fx.cli.port, path: '/plain-h1', ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) });
  assert.equal(r.status, 200);
  const s = connect();
  try {
    const res = await request(s, { ':path': '/logged-h2', 'x-request-id': 'h2-log-check' });
    assert.equal(res.status, 200);
  } finally {
    s.close();
  }
  const deadline = Date.now() + 5000;
  let line: Record<string, unknown> | undefined;
  while (!line && Date.now() < deadline) {
    line = fx.cli.accessLines().find((l) => l.request_id === 'h2-log-check');
    if (!line) await new Promise((res) => setTimeout(res, 50));
  }
  assert.ok(line, 'access line for the h2 request');
  assert.equal(line.status, 200);
  assert.equal(line.route, 'main');
  assert.equal(line.method, 'GET');
  assert.equal((line.client as { spiffe_id: string }).spiffe_id, 'spiffe://example.org/ns/prod/sa/payment');
});

test('an HTTP/1.1 upstream\'s chunked trailers reach an h2 client; a content-length body ends with its data and carries none', async () => {
  const s = connect();
  try {
    const get = (path: string) =>
      new Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders | undefined }>((resolve, reject) => {
        const req = s.request({ ':path': path });
        let status = 0;
        let body = '';
        let trailers: http2.IncomingHttpHeaders | undefined;
        req.setEncoding('utf8');
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('trailers', (t) => (trailers = t));
        req.on('data', (d: string) => (body += d));
        req.on('end', () => resolve({ status, body, trailers }));
        req.on('error', reject);
      });
    const t = await get('/trailers');
    assert.equal(t.status, 200);
    assert.equal(t.body, 'part one, part two');
    assert.equal(t.trailers?.['x-checksum'], 'abc123');
    const sized = await get('/sized');
    assert.equal(sized.status, 200);
    assert.equal(sized.body, 'sized body!');
    assert.equal(sized.trailers, undefined);
  } finally {
    s.close();
  }
});
