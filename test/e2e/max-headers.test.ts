// limits.max_headers (default 100): a request with more header fields than this gets
// 431 headers_too_large on HTTP/1.1 (bodies or not)
// and on HTTP/2, and nothing is forwarded. Below the limit every field arrives: Node's
// http.Server drops fields past maxHeadersCount (2000 by default) from req.headers
// without a word, so a Transfer-Encoding after the 2000th field once left a chunked body
// behind; the proxy must never rely on that truncation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener, type RunningCli } from '../helpers/proxy.js';
import { h2Request, jsonError, rawHttp1, startRawUpstream, type RawUpstream } from '../helpers/raw-clients.js';

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: RawUpstream;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(join(dir, 'pki'));
  up = await startRawUpstream();
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, { name: 'small', limits: { max_headers: 20 } }),
        tlsListener(pki, { name: 'default' }),
        tlsListener(pki, { name: 'large', limits: { max_headers: 3000, max_header_bytes: 131072 } }),
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

/** `count` header fields in all, Host and Connection included. */
function head(count: number, first = 'GET /h HTTP/1.1', extra: string[] = []): string {
  const lines = [first, 'Host: localhost', 'Connection: close', ...extra];
  for (let i = lines.length - 1; i < count; i++) lines.push(`X-H-${i}: v`);
  return lines.join('\r\n') + '\r\n\r\n';
}

/** How many of the test's own X-H-* fields request `i` carried upstream. */
const clientFields = (i: number) => up.received[i]!.fields.filter(([k]) => /^x-h-/i.test(k)).length;

test('HTTP/1.1: max_headers fields pass whole, one more gets 431 and is not forwarded', async () => {
  let n = up.received.length;
  const ok = await rawHttp1(cli.ports.small!, pki, head(20));
  assert.equal(ok.status, 200, ok.raw);
  assert.equal(clientFields(n), 18, 'every client field arrived');
  n = up.received.length;
  const r = await rawHttp1(cli.ports.small!, pki, head(21));
  assert.equal(r.status, 431, r.raw);
  const e = jsonError(r.body);
  assert.equal(e.error, 'headers_too_large');
  assert.match(e.message!, /21 header fields, more than 20; send fewer or raise limits\.max_headers/);
  assert.equal(up.received.length, n);
});

test('HTTP/1.1 chunked POST: the same limit', async () => {
  const n = up.received.length;
  const body = '5\r\nhello\r\n0\r\n\r\n';
  const over = await rawHttp1(cli.ports.small!, pki, head(21, 'POST /h HTTP/1.1', ['Transfer-Encoding: chunked']) + body);
  assert.equal(over.status, 431, over.raw);
  assert.equal(jsonError(over.body).error, 'headers_too_large');
  assert.equal(up.received.length, n);
  const ok = await rawHttp1(cli.ports.small!, pki, head(20, 'POST /h HTTP/1.1', ['Transfer-Encoding: chunked']) + body);
  assert.equal(ok.status, 200, ok.raw);
  assert.equal(up.received[n]!.body.toString(), 'hello');
});

test('the default is 100 fields, on HTTP/1.1 and HTTP/2', async () => {
  const n = up.received.length;
  assert.equal((await rawHttp1(cli.ports.default!, pki, head(100))).status, 200);
  assert.equal((await rawHttp1(cli.ports.default!, pki, head(101))).status, 431);
  const h = (count: number) => {
    // :authority becomes Host: it counts as one field, as Host does on HTTP/1.1
    const out: Record<string, string> = { ':path': '/h2' };
    for (let i = 1; i < count; i++) out[`x-h-${i}`] = 'v';
    return out;
  };
  const ok = await h2Request(cli.ports.default!, pki, h(100));
  assert.equal(ok.status, 200, ok.error ?? ok.body);
  const over = await h2Request(cli.ports.default!, pki, h(101));
  assert.equal(over.status, 431, over.error ?? over.body);
  assert.equal(jsonError(over.body).error, 'headers_too_large');
  assert.equal(up.received.length, n + 2);
});

test('HTTP/2: cookie crumbs count as the one Cookie field they are joined into', async () => {
  const n = up.received.length;
  const headers: Record<string, string | string[]> = { ':path': '/crumbs', cookie: Array.from({ length: 40 }, (_, i) => `c${i}=${i}`) };
  const r = await h2Request(cli.ports.small!, pki, headers);
  assert.equal(r.status, 200, r.error ?? r.body);
  const cookie = up.received[n]!.fields.filter(([k]) => k.toLowerCase() === 'cookie');
  assert.equal(cookie.length, 1);
  assert.equal(cookie[0]![1].split('; ').length, 40);
});

test('a limit above Node\'s 2000: 2500 fields arrive whole on HTTP/1.1 (both paths) and HTTP/2, none dropped', async () => {
  let n = up.received.length;
  const fast = await rawHttp1(cli.ports.large!, pki, head(2500));
  assert.equal(fast.status, 200, fast.raw.slice(0, 300));
  assert.equal(clientFields(n), 2498, 'every X-H- field arrived');
  // Transfer-Encoding as the 2400th field: past Node's default maxHeadersCount
  n = up.received.length;
  const lines = head(2399, 'POST /h HTTP/1.1').slice(0, -2) + 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
  const handed = await rawHttp1(cli.ports.large!, pki, lines);
  assert.equal(handed.status, 200, handed.raw.slice(0, 300));
  assert.equal(up.received[n]!.body.toString(), 'hello', 'the chunked body arrived');
  n = up.received.length;
  const h: Record<string, string> = { ':path': '/h2' };
  for (let i = 1; i < 2500; i++) h[`x-h-${i}`] = 'v';
  const r = await h2Request(cli.ports.large!, pki, h);
  assert.equal(r.status, 200, r.error ?? r.body);
  assert.equal(clientFields(n), 2499, 'every x-h- field arrived');
});
