// Graceful shutdown through the real CLI: on SIGTERM or SIGINT the proxy stops accepting,
// lets in-flight requests finish, and exits 0; `--drain-timeout` bounds how long it waits
// for a request that would take longer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, tempDir, cleanup, tlsListener, CLI, type EchoUpstream } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let up: EchoUpstream;
/** resolvers for "the upstream has received a request for this path" */
const arrived = new Map<string, () => void>();
const timers = new Set<NodeJS.Timeout>();

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  // /wait/<ms>/<tag>: answers 200 "done <tag>" after <ms>
  up = await startEchoUpstream((req, res) => {
    const m = /^\/wait\/(\d+)\/([\w-]+)$/.exec(req.url ?? '');
    if (!m) return false;
    req.resume();
    arrived.get(m[2]!)?.();
    const t = setTimeout(() => {
      timers.delete(t);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`done ${m[2]}`);
    }, Number(m[1]));
    timers.add(t);
    res.on('close', () => clearTimeout(t));
    return true;
  });
});

after(async () => {
  for (const t of timers) clearTimeout(t);
  await up?.close();
  cleanup(dir);
});

interface Proxy {
  proc: ChildProcess;
  port: number;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/**
 * Starts `portcullis run` with its own --drain-timeout and resolves once the listener is
 * ready. `onReady` runs synchronously in the very callback that sees the ready line.
 */
async function launch(drainMs: number, workers: number, onReady?: (proc: ChildProcess) => void): Promise<Proxy> {
  const cfgPath = join(dir, `drain-${drainMs}-${Date.now()}.json`);
  const config = { workers, admin: { address: '127.0.0.1:0' }, log: { level: 'info', access: 'off' }, listeners: [tlsListener(pki)], upstreams: { app: { endpoints: [up.url] } } };
  writeFileSync(cfgPath, JSON.stringify(config));
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfgPath, '--drain-timeout', String(drainMs)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  let ready = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) => proc.once('exit', (code, signal) => r({ code, signal, at: Date.now() })));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      // never leave a half-started proxy behind: it would keep this test file alive
      proc.kill('SIGKILL');
      reject(new Error(`portcullis did not start in time:\n${err}`));
    }, 15_000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /"event":"listening".*?"address":"[^"]*:(\d+)"/.exec(err);
      if (m && !ready) {
        ready = true;
        onReady?.(proc);
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`portcullis exited with ${code} before it was ready:\n${err}`));
    });
  });
  return { proc, port, stderr: () => err, exited };
}

interface Res {
  status?: number;
  body: string;
  complete: boolean;
  error?: NodeJS.ErrnoException;
  at: number;
}

function get(port: number, path: string): Promise<Res> {
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        path,
        agent: false,
        ca: readFileSync(pki.ca.cert),
        cert: readFileSync(pki.client.cert),
        key: readFileSync(pki.client.key),
      },
      (res: http.IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('error', () => undefined);
        res.on('close', () => resolve({ status: res.statusCode, body, complete: res.complete, at: Date.now() }));
      },
    );
    req.on('error', (error) => resolve({ body: '', complete: false, error, at: Date.now() }));
    req.end();
  });
}

/** Does a TCP connection to the port succeed? */
function canConnect(port: number): Promise<{ ok: boolean; code?: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve({ ok: true });
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code }));
  });
}

function upstreamGot(tag: string): Promise<void> {
  return new Promise((r) => arrived.set(tag, r));
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} while a slow request is in flight: it completes with 200, new connections are refused, exit 0`, async (t) => {
    // two workers, so the drain is coordinated across processes
    const p = await launch(3_000, 2);
    t.after(() => p.proc.kill('SIGKILL'));
    const tag = `slow-${signal}`;
    const got = upstreamGot(tag);
    const inflight = get(p.port, `/wait/1000/${tag}`);
    let settled = false;
    void inflight.then(() => (settled = true));
    await got;

    const signalledAt = Date.now();
    p.proc.kill(signal);
    await waitFor(() => /"event":"shutdown"/.test(p.stderr()));
    // the listening socket goes away while the slow request is still being served
    let refused: { ok: boolean; code?: string } = { ok: true };
    const until = Date.now() + 700;
    while (Date.now() < until) {
      refused = await canConnect(p.port);
      if (!refused.ok) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(settled, false, 'the in-flight request ended before the new-connection check');
    assert.equal(refused.ok, false, `a new connection was accepted ${Date.now() - signalledAt} ms after ${signal}`);
    assert.equal(refused.code, 'ECONNREFUSED');

    const r = await inflight;
    assert.equal(r.error, undefined, `the in-flight request failed: ${r.error?.message}`);
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(r.body, `done ${tag}`);

    const exit = await Promise.race([p.exited, new Promise<null>((res) => setTimeout(() => res(null), 5_000))]);
    assert.ok(exit, `the proxy did not exit within 5 s of the last request finishing:\n${p.stderr()}`);
    assert.equal(exit.signal, null);
    assert.equal(exit.code, 0, p.stderr());
    // nothing left to drain once the slow request finished: no waiting out the 3 s drain timeout
    assert.ok(exit.at - r.at < 2_000, `exited ${exit.at - r.at} ms after the last request finished`);
  });
}

test('--drain-timeout 500 cuts a request that would take 5 s and still exits 0 within ~2 s', async (t) => {
  const p = await launch(500, 1);
  t.after(() => p.proc.kill('SIGKILL'));
  const got = upstreamGot('too-slow');
  const inflight = get(p.port, '/wait/5000/too-slow');
  await got;
  const signalledAt = Date.now();
  p.proc.kill('SIGTERM');
  const exit = await Promise.race([p.exited, new Promise<null>((res) => setTimeout(() => res(null), 6_000))]);
  assert.ok(exit, `the proxy did not exit within 6 s of SIGTERM with --drain-timeout 500:\n${p.stderr()}`);
  assert.equal(exit.code, 0, p.stderr());
  assert.equal(exit.signal, null);
  assert.ok(exit.at - signalledAt < 2_500, `exited ${exit.at - signalledAt} ms after SIGTERM; the drain timeout is 500 ms`);
  const r = await inflight;
  assert.ok(r.error || !r.complete || r.status !== 200, `the cut request looked successful: ${r.status} ${r.body}`);
  assert.ok(r.at - signalledAt < 2_500, 'the client learned of the cut promptly');
});

test('SIGTERM the moment the proxy reports ready is still a graceful shutdown (exit 0, not killed by the signal)', async (t) => {
  // Whoever waits for "listening" (a test, a supervisor) may signal at once; the proxy must
  // already handle the signal by then rather than die of its default action.
  const p = await launch(3_000, 1, (proc) => proc.kill('SIGTERM'));
  t.after(() => p.proc.kill('SIGKILL'));
  const exit = await Promise.race([p.exited, new Promise<null>((res) => setTimeout(() => res(null), 8_000))]);
  assert.ok(exit, `the proxy did not exit within 8 s:\n${p.stderr()}`);
  assert.equal(exit.signal, null, `the proxy was killed by ${exit.signal} instead of shutting down:\n${p.stderr()}`);
  assert.equal(exit.code, 0, p.stderr());
  assert.match(p.stderr(), /"event":"shutdown"/);
});
