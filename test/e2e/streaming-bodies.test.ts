// Bodies are streamed, never held whole: 200 MB uploads and downloads, with a length and
// chunked, go through the real CLI byte-exact (sha256 on both ends) while the proxy's
// resident memory stays far below the body size, including when the client reads slowly
// (the proxy must push back on the upstream instead of buffering).
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, createWriteStream, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type http from 'node:http';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

const MB = 1024 * 1024;
const SIZE = 200 * MB;
const CHUNK = 256 * 1024;
// An absolute cap below baseline + SIZE (a buffered body cannot pass it). A warmed-up worker
// idles at ~135 MB on Node 20 and ~182 MB on Node 24 (V8 sizes its heap differently), so the
// cap leaves room for the runtime; the growth check below is the tight one.
const RSS_LIMIT = 256 * MB;
/** how much a warmed-up proxy may grow while moving one SIZE body */
const MAX_GROWTH = 40 * MB;

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };

/** What the upstream measured of each upload, by request path. */
const uploads = new Map<string, { bytes: number; sha: string; chunked: boolean }>();
/** sha256 of what the upstream generated for each download, by request path. */
const downloads = new Map<string, { bytes: number; sha: string }>();

// Not a repeated pattern: every chunk differs (a counter is stamped into it), so a
// dropped, duplicated or reordered chunk changes the hash.
const BASE = randomBytes(CHUNK);
function makeChunk(i: number, len = CHUNK): Buffer {
  const b = Buffer.allocUnsafe(len);
  BASE.copy(b, 0, 0, len);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(i ^ 0x5a5a5a5a, len - 4);
  return b;
}

/** Writes SIZE bytes to `out` chunk by chunk, waiting for 'drain', hashing as it goes. */
async function generate(out: NodeJS.WritableStream & { destroyed?: boolean }, size: number): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let sent = 0;
  for (let i = 0; sent < size; i++) {
    const c = makeChunk(i, Math.min(CHUNK, size - sent));
    h.update(c);
    sent += c.length;
    if (!out.write(c)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          out.off('drain', done);
          out.off('close', done);
          resolve();
        };
        out.on('drain', done);
        out.on('close', done);
      });
      if (out.destroyed) throw new Error(`destination closed after ${sent} bytes`);
    }
  }
  return { bytes: sent, sha: h.digest('hex') };
}

function upstreamHandler(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const path = (req.url ?? '').split('?')[0]!;
  if (path.startsWith('/upload/')) {
    const h = createHash('sha256');
    const slow = path.includes('slow');
    let n = 0;
    let sinceBreak = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      h.update(c);
      sinceBreak += c.length;
      if (slow && sinceBreak >= 2 * MB) {
        // a slow upstream: the proxy must stop reading the client instead of buffering
        sinceBreak = 0;
        req.pause();
        setTimeout(() => req.resume(), 25);
      }
    });
    req.on('end', () => {
      const r = { bytes: n, sha: h.digest('hex'), chunked: req.headers['transfer-encoding'] === 'chunked' };
      uploads.set(path, r);
      const body = JSON.stringify(r);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return true;
  }
  if (path.startsWith('/download/')) {
    req.resume();
    const withLength = path.includes('length');
    const size = Number(new URL(req.url ?? '', 'http://x').searchParams.get('size') ?? SIZE);
    res.writeHead(200, withLength ? { 'content-type': 'application/octet-stream', 'content-length': size } : { 'content-type': 'application/octet-stream' });
    generate(res, size).then(
      (r) => {
        downloads.set(path, r);
        res.end();
      },
      () => res.destroy(),
    );
    return true;
  }
  return false;
}

/** The CLI's pid and its descendants (the proxy may run worker processes). */
function processTree(pid: number): number[] {
  const out = [pid];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (kids) for (const k of kids.split(/\s+/)) out.push(...processTree(Number(k)));
    }
  } catch {
    // gone
  }
  return out;
}

/**
 * Samples VmRSS of the CLI process and each of its descendants every 100 ms until
 * stopped; returns the highest RSS any one of them reached, in bytes.
 */
function sampleRss(pid: number): { stop(): { peak: number; pid: number; start: number } } {
  let peak = 0;
  let peakPid = pid;
  /** pid -> RSS at the first sample */
  const first = new Map<number, number>();
  const read = () => {
    for (const p of processTree(pid)) {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
        if (!m) continue;
        const rss = Number(m[1]) * 1024;
        if (!first.has(p)) first.set(p, rss);
        if (rss > peak) {
          peak = rss;
          peakPid = p;
        }
      } catch {
        // process gone
      }
    }
  };
  read();
  const t = setInterval(read, 100);
  return {
    stop() {
      clearInterval(t);
      read();
      return { peak, pid: peakPid, start: first.get(peakPid) ?? peak };
    },
  };
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  tls = { ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) };
  up = await startEchoUpstream(upstreamHandler);
  // one worker: these transfers run one at a time, and a second worker would only cost memory and CPU
  cli = await startCli({ workers: 1, listeners: [tlsListener(pki)], upstreams: { app: { endpoints: [up.url] } } }, { dir });
  // Warm up both directions first. A fresh worker idles at ~95 MB; during its first few tens
  // of MB of traffic its RSS climbs once to ~165 MB (V8 growing its heap, Buffers awaiting
  // GC) and then settles at ~135-140 MB, where it stays flat for 200 or 400 MB bodies alike.
  // Measured after the warm-up, the samples show what streaming costs, not that one-off.
  await upload('/upload/warm-up-length', false, 64 * MB);
  await upload('/upload/warm-up-chunked', true, 64 * MB);
  await download(`/download/warm-up-length?size=${64 * MB}`);
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

function baseOptions(path: string, method = 'GET'): https.RequestOptions {
  return { host: '127.0.0.1', servername: 'localhost', port: cli.port, path, method, agent: false, ...tls };
}

async function withRss<T>(t: TestContext, fn: () => Promise<T>): Promise<T> {
  const rss = sampleRss(cli.proc.pid!);
  const started = Date.now();
  let result: T;
  try {
    result = await fn();
  } finally {
    const { peak, pid, start } = rss.stop();
    assert.ok(peak > 0, 'could not read the proxy RSS');
    const growth = peak - start;
    t.diagnostic(`proxy RSS ${(start / MB).toFixed(1)} MB at start, peak ${(peak / MB).toFixed(1)} MB (pid ${pid}), ${Date.now() - started} ms`);
    assert.ok(peak < RSS_LIMIT, `proxy process ${pid} RSS peaked at ${(peak / MB).toFixed(1)} MB while moving ${SIZE / MB} MB (limit ${RSS_LIMIT / MB} MB)`);
    // independent of the baseline: the body must not pile up in the proxy
    assert.ok(growth < MAX_GROWTH, `proxy process ${pid} RSS grew by ${(growth / MB).toFixed(1)} MB while moving ${SIZE / MB} MB`);
  }
  return result;
}

/** Streams SIZE generated bytes up; resolves with what the client sent and the upstream's JSON answer. */
function upload(path: string, chunked: boolean, size = SIZE): Promise<{ sent: { bytes: number; sha: string }; status?: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { ...baseOptions(path, 'PUT'), headers: chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': size } },
      (res) => {
        let answer = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (answer += d));
        res.on('end', () => sent.then((s) => resolve({ sent: s, status: res.statusCode, answer }), reject));
      },
    );
    req.on('error', reject);
    const sent = generate(req, size).then((s) => {
      req.end();
      return s;
    });
    sent.catch(reject);
  });
}

/** Downloads `path`, hashing as it streams; `slow` pauses the reader regularly so the proxy must apply backpressure. */
function download(path: string, slow = false): Promise<{ status?: number; headers: http.IncomingHttpHeaders; bytes: number; sha: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.request(baseOptions(path), (res) => {
      const h = createHash('sha256');
      let n = 0;
      let sinceBreak = 0;
      res.on('data', (c: Buffer) => {
        h.update(c);
        n += c.length;
        sinceBreak += c.length;
        if (slow && sinceBreak >= 2 * MB) {
          // ~80 MB/s at most: far slower than loopback, so without backpressure the proxy would pile up the rest
          sinceBreak = 0;
          res.pause();
          setTimeout(() => res.resume(), 25);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, bytes: n, sha: h.digest('hex'), complete: res.complete }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a 200 MB chunked upload to a slow-reading upstream arrives byte-exact; the proxy pushes back instead of buffering', async (t) => {
  const path = '/upload/chunked-slow';
  const r = await withRss(t, () => upload(path, true));
  assert.equal(r.status, 200, r.answer);
  const seen = uploads.get(path);
  assert.ok(seen, 'the upstream saw the whole upload');
  assert.equal(seen.chunked, true);
  assert.equal(seen.bytes, SIZE);
  assert.equal(r.sent.bytes, SIZE);
  assert.equal(seen.sha, r.sent.sha);
});

test('a 200 MB upload of a file with curl -T over HTTP/2 (content-length) reaches the upstream byte-exact with bounded proxy memory', async (t) => {
  const file = `${dir}/upload.bin`;
  const out = createWriteStream(file);
  const sent = await generate(out, SIZE);
  out.end();
  await once(out, 'close');
  const path = '/upload/curl-file';
  const r = await withRss(
    t,
    () =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn('curl', ['-sS', '--http2', '--max-time', '60', '-T', file, '--cacert', pki.ca.cert, '--cert', pki.client.cert, '--key', pki.client.key, '-w', '\n%{http_code}', `https://localhost:${cli.port}${path}`]);
        let o = '';
        let e = '';
        p.stdout.on('data', (d: Buffer) => (o += d.toString()));
        p.stderr.on('data', (d: Buffer) => (e += d.toString()));
        p.on('close', (code) => resolve({ code, out: o, err: e }));
      }),
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\n200$/);
  const seen = uploads.get(path);
  assert.ok(seen);
  assert.equal(seen.chunked, false);
  assert.equal(seen.bytes, SIZE);
  assert.equal(seen.sha, sent.sha);
  rmSync(file);
});

for (const [name, path, slow] of [
  ['with content-length', '/download/length', false],
  ['chunked, to a slow reader (backpressure)', '/download/chunked-slow', true],
] as const) {
  test(`a 200 MB download ${name} arrives intact with bounded proxy memory`, async (t) => {
    const r = await withRss(t, () => download(path, slow));
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    const made = downloads.get(path);
    assert.ok(made, 'the upstream finished generating');
    assert.equal(r.bytes, SIZE);
    assert.equal(r.sha, made.sha);
    if (path.includes('length')) assert.equal(r.headers['content-length'], String(SIZE));
    else assert.equal(r.headers['transfer-encoding'], 'chunked');
  });
}

test('a 200 MB download over HTTP/2 (curl) arrives intact with bounded proxy memory', async (t) => {
  const path = '/download/length-h2';
  const r = await withRss(
    t,
    () =>
      new Promise<{ code: number | null; bytes: number; sha: string; err: string }>((resolve) => {
        const p = spawn('curl', ['-sS', '--http2', '--max-time', '60', '-o', '-', '--cacert', pki.ca.cert, '--cert', pki.client.cert, '--key', pki.client.key, `https://localhost:${cli.port}${path}`]);
        const h = createHash('sha256');
        let n = 0;
        let e = '';
        p.stdout.on('data', (d: Buffer) => {
          n += d.length;
          h.update(d);
        });
        p.stderr.on('data', (d: Buffer) => (e += d.toString()));
        p.on('close', (code) => resolve({ code, bytes: n, sha: h.digest('hex'), err: e }));
      }),
  );
  assert.equal(r.code, 0, r.err);
  const made = downloads.get(path);
  assert.ok(made, 'the upstream finished generating');
  assert.equal(r.bytes, SIZE);
  assert.equal(r.sha, made.sha);
});
