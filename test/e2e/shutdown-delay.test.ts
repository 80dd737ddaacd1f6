// Rolling updates without errors (issue 14 item 5, shutdown.delay): an old and a new
// instance, a client load of keep-alive HTTP/1.1 connections and HTTP/2 sessions sending
// requests back to back to the old one, plus a new connection to it every 50 ms. SIGTERM
// turns the old one's /readyz to 503 at once while its listener keeps accepting and
// serving for shutdown.delay (2 s); then the listener closes and what is in flight drains:
// each HTTP/1.1 connection ends with an answer saying Connection: close, each HTTP/2
// session with GOAWAY, and the clients carry on against the new instance (the test's
// load balancer). No request fails; an HTTP/2 stream that crossed the GOAWAY is refused
// unprocessed and retried (RFC 9113 §8.7); new connections succeed throughout the grace;
// the old instance exits 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, tempDir, cleanup, tlsListener, CLI, type EchoUpstream } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let up: EchoUpstream;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream();
});

after(async () => {
  await up?.close();
  cleanup(dir);
});

interface Proxy {
  proc: ChildProcess;
  port: number;
  adminPort: number;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

async function launch(extra: Record<string, unknown>, drainMs: number, workers: number, detached = false): Promise<Proxy> {
  const cfgPath = join(dir, `delay-${Date.now()}.json`);
  const config = { workers, admin: { address: '127.0.0.1:0' }, log: { level: 'info', access: 'off' }, listeners: [tlsListener(pki)], upstreams: { app: { endpoints: [up.url] } }, ...extra };
  writeFileSync(cfgPath, JSON.stringify(config));
  // detached: its own process group, to signal the whole group as systemd does
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfgPath, '--drain-timeout', String(drainMs)], { stdio: ['ignore', 'ignore', 'pipe'], detached });
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) => proc.once('exit', (code, signal) => r({ code, signal, at: Date.now() })));
  const ports = await new Promise<{ port: number; admin: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`portcullis did not start in time:\n${err}`));
    }, 15_000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const l = /"event":"listening".*?"address":"[^"]*:(\d+)"/.exec(err);
      const a = /"event":"admin_listening".*?"address":"[^"]*:(\d+)"/.exec(err);
      if (l && a) {
        clearTimeout(timer);
        resolve({ port: Number(l[1]), admin: Number(a[1]) });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`portcullis exited with ${code} before it was ready:\n${err}`));
    });
  });
  return { proc, port: ports.port, adminPort: ports.admin, stderr: () => err, exited };
}

const tlsClient = () => ({ ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });

interface Outcome {
  ok: boolean;
  path: string;
  at: number;
  /** sent on a connection that had already served a request */
  existing: boolean;
  /** the port it went to */
  port: number;
  /** the answer said Connection: close */
  closing?: boolean;
  error?: string;
  /** HTTP/2: the stream was refused unprocessed (REFUSED_STREAM) */
  refused?: boolean;
}

function get(port: number, path: string, agent: https.Agent | false): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', servername: 'localhost', port, path, agent, ...tlsClient() }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('error', () => undefined);
      res.on('close', () => {
        const ok = res.complete && res.statusCode === 200 && JSON.parse(body || '{}').url === path;
        const closing = res.headers.connection === 'close';
        resolve({ ok, path, port, at: Date.now(), existing: req.reusedSocket, closing, ...(ok ? {} : { error: `incomplete or wrong answer (${res.statusCode})` }) });
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, path, port, at: Date.now(), existing: req.reusedSocket, error: e.code ?? e.message }));
    req.end();
  });
}

/**
 * The load balancer of the test: where a client opens its next connection. The old
 * instance, until the balancer has seen its /readyz say 503 and taken it out (here half
 * way through shutdown.delay); then the new one. Connections already open stay where they
 * are, as with any L4 balancer (a Kubernetes Service).
 */
interface Balancer {
  target(): number;
}

/**
 * A keep-alive HTTP/1.1 client (one connection at a time) sending requests back to back
 * until `stop()`. A connection ends when an answer says Connection: close; the next one
 * goes where the balancer says.
 */
async function http1Loop(lb: Balancer, id: string, out: Outcome[], stop: () => boolean): Promise<void> {
  let agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  let port = lb.target();
  try {
    for (let n = 0; !stop(); n++) {
      const r = await get(port, `/h1/${id}/${n}`, agent);
      out.push(r);
      if (r.closing || !r.ok) {
        agent.destroy();
        agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
        port = lb.target();
      }
    }
  } finally {
    agent.destroy();
  }
}

/**
 * An HTTP/2 client that keeps requests going on one session; on GOAWAY it opens its next
 * session where the balancer says, and a stream refused unprocessed (REFUSED_STREAM) is
 * retried there, as RFC 9113 §8.7 allows and browsers, gRPC and Go do.
 */
async function http2Loop(lb: Balancer, id: string, out: Outcome[], stop: () => boolean): Promise<void> {
  let n = 0;
  let retry: string | undefined;
  while (!stop()) {
    const port = lb.target();
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername: 'localhost', ...tlsClient() });
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    session.on('error', () => undefined);
    const up = await new Promise<boolean>((resolve) => {
      session.once('connect', () => resolve(true));
      session.once('error', () => resolve(false));
    });
    if (!up) {
      out.push({ ok: false, path: '(connect)', port, at: Date.now(), existing: false, error: 'connect failed' });
      session.destroy();
      continue;
    }
    for (let first = true; !goaway && !session.closed && !stop(); first = false) {
      const path = retry ?? `/h2/${id}/${n++}`;
      retry = undefined;
      const r = await new Promise<Outcome>((resolve) => {
        const s = session.request({ ':path': path });
        let status = 0;
        let body = '';
        s.setEncoding('utf8');
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (d: string) => (body += d));
        s.on('error', (e: NodeJS.ErrnoException) => {
          const refused = s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
          resolve({ ok: false, path, port, at: Date.now(), existing: !first, refused, error: `${e.code ?? e.message} rst=${s.rstCode}` });
        });
        s.on('end', () => {
          const ok = status === 200 && JSON.parse(body || '{}').url === path;
          resolve({ ok, path, port, at: Date.now(), existing: !first, ...(ok ? {} : { error: `wrong answer ${status}` }) });
        });
        s.end();
      });
      out.push(r);
      if (r.refused) retry = path;
    }
    session.close();
  }
}

async function admin(p: Proxy, path: string): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${p.adminPort}${path}`)).status;
  } catch {
    return 0;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('rolling update under keep-alive HTTP/1.1 and HTTP/2 load, shutdown.delay 2s: readyz 503 at once, new connections served during the grace, no request on an open connection fails, exit 0', async (t) => {
  const DELAY = 2_000;
  const [old, next] = await Promise.all([launch({ shutdown: { delay: '2s' } }, 5_000, 2), launch({}, 3_000, 1)]);
  t.after(() => {
    old.proc.kill('SIGKILL');
    next.proc.kill('SIGKILL');
  });
  assert.equal(await admin(old, '/readyz'), 200);
  let removed = false;
  const lb: Balancer = { target: () => (removed ? next.port : old.port) };

  const h1: Outcome[] = [];
  const h2: Outcome[] = [];
  const fresh: Outcome[] = [];
  let stop = false;
  const loops = [...[0, 1, 2, 3].map((i) => http1Loop(lb, String(i), h1, () => stop)), ...[0, 1].map((i) => http2Loop(lb, String(i), h2, () => stop))];
  // this machine may be busy: wait for the load to get going rather than a fixed time
  const going = Date.now();
  while (!(h1.filter((r) => r.ok).length > 10 && h2.filter((r) => r.ok).length > 10)) {
    assert.ok(Date.now() - going < 15_000, 'the load did not get going');
    await sleep(50);
  }

  const signalledAt = Date.now();
  old.proc.kill('SIGTERM');
  // new connections to the old instance all along, as a balancer that has not caught up yet
  let newConns = true;
  const freshLoop = (async () => {
    for (let n = 0; newConns; n++) {
      void get(old.port, `/fresh/${n}`, false).then((r) => fresh.push(r));
      await sleep(50);
    }
  })();
  // readiness turns at once, liveness stays: the first /readyz after the primary has
  // handled the signal (its `shutdown` log line) is 503, however busy this machine is
  while (!/"event":"shutdown"/.test(old.stderr())) {
    assert.ok(Date.now() - signalledAt < 10_000, `no shutdown event after SIGTERM:\n${old.stderr()}`);
    await sleep(10);
  }
  assert.equal(await admin(old, '/readyz'), 503, '/readyz was not 503 once the signal was handled');
  assert.equal(await admin(old, '/healthz'), 200);

  // during the grace: still 503, still accepting; the balancer takes the endpoint out
  await sleep(DELAY / 2);
  assert.equal(await admin(old, '/readyz'), 503);
  assert.equal(await canConnect(old.port), true, 'the listener stopped accepting during the grace');
  removed = true;
  const graceEnd = signalledAt + DELAY;

  // after the grace the listener closes
  while (await canConnect(old.port)) {
    assert.ok(Date.now() - signalledAt < DELAY + 2_000, 'the listener still accepts 2 s after the grace');
    await sleep(25);
  }
  const closedAt = Date.now();
  assert.ok(closedAt - signalledAt >= DELAY - 50, `the listener closed ${closedAt - signalledAt} ms after SIGTERM, before the ${DELAY} ms grace`);
  newConns = false;
  await freshLoop;

  const exit = await Promise.race([old.exited, sleep(8_000).then(() => null)]);
  assert.ok(exit, `no exit within 8 s of the listener closing:\n${old.stderr()}`);
  assert.equal(exit.signal, null);
  assert.equal(exit.code, 0, old.stderr());
  // the clients carry on against the new instance for a moment, then stop
  await sleep(300);
  stop = true;
  await Promise.all(loops);
  await sleep(100);

  const seen = (path: string) => up.received.filter((r) => r.url === path).length;
  const served = (rs: Outcome[]) => rs.filter((r) => r.ok && r.port === old.port && r.at > signalledAt).length;
  t.diagnostic(`after SIGTERM the old instance served ${served(h1)} HTTP/1.1 and ${served(h2)} HTTP/2 requests on open connections and ${fresh.filter((r) => r.ok).length} on new ones; ${h2.filter((r) => r.refused).length} HTTP/2 streams were refused unprocessed and retried`);
  const failed = [...h1, ...h2].filter((r) => !r.ok && !r.refused);
  assert.deepEqual(failed, [], `requests failed (SIGTERM at ${signalledAt}, listener closed at ${closedAt}): ${JSON.stringify(failed.slice(0, 5).map((f) => ({ ...f, upstreamSaw: seen(f.path) })))}`);
  // HTTP/2 streams that crossed the GOAWAY: never forwarded by the old instance, served once on the retry
  for (const r of h2.filter((x) => x.refused)) assert.equal(seen(r.path), 1, `${r.path} was refused but reached the upstream ${seen(r.path)} times`);
  const on = (rs: Outcome[], port: number, from: number) => rs.filter((r) => r.ok && r.port === port && r.at > from).length;
  assert.ok(on(h1, old.port, signalledAt) > 20, `only ${on(h1, old.port, signalledAt)} HTTP/1.1 requests were served by the old instance after SIGTERM`);
  assert.ok(on(h2, old.port, signalledAt) > 20, `only ${on(h2, old.port, signalledAt)} HTTP/2 requests were served by the old instance after SIGTERM`);
  // every HTTP/1.1 connection of the old instance ended with an answer saying Connection: close
  assert.equal(h1.filter((r) => r.port === old.port && r.closing).length, 4);
  // and the clients went on, on the new instance
  assert.ok(on(h1, next.port, closedAt) > 0 && on(h2, next.port, closedAt) > 0, 'the clients did not move to the new instance');
  // every new connection opened during the grace was served
  const inGrace = fresh.filter((r) => r.at > signalledAt + 100 && r.at < graceEnd - 100);
  assert.ok(inGrace.length >= 10, `only ${inGrace.length} new connections during the grace`);
  assert.deepEqual(inGrace.filter((r) => !r.ok), [], 'a new connection failed during the grace');
  // a new connection after the listener closed is refused, not hung
  const late = fresh.filter((r) => r.at > closedAt + 200);
  assert.ok(late.every((r) => !r.ok && r.error === 'ECONNREFUSED'), JSON.stringify(late.slice(0, 3)));
  await next.proc.kill('SIGTERM');
});

test('draining HTTP/1.1: a connection that sends within a second gets its answer with Connection: close; one idle longer is closed; exit does not wait for --drain-timeout', async (t) => {
  const p = await launch({}, 20_000, 1);
  t.after(() => p.proc.kill('SIGKILL'));
  const busy = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const idle = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => {
    busy.destroy();
    idle.destroy();
  });
  assert.equal((await get(p.port, '/busy/1', busy)).ok, true);
  const first = await get(p.port, '/idle/1', idle);
  assert.equal(first.ok, true);
  assert.equal(first.closing, false);
  const idleSocketClosed = new Promise<number>((resolve) => {
    const sockets = Object.values(idle.freeSockets).flat();
    assert.equal(sockets.length, 1);
    sockets[0]!.once('close', () => resolve(Date.now()));
  });
  const signalledAt = Date.now();
  p.proc.kill('SIGTERM');
  await new Promise<void>((resolve) => {
    const check = () => (/"event":"shutdown"/.test(p.stderr()) ? resolve() : setTimeout(check, 5));
    check();
  });
  await sleep(400);
  const again = await get(p.port, '/busy/2', busy);
  assert.equal(again.ok, true, `a request on an open connection during the drain failed: ${again.error}`);
  assert.equal(again.existing, true);
  assert.equal(again.closing, true, 'the answer during the drain did not say Connection: close');
  const closedAt = await idleSocketClosed;
  assert.ok(closedAt - signalledAt >= 900, `the idle connection was closed ${closedAt - signalledAt} ms after SIGTERM, before it had been idle a second`);
  const exit = await Promise.race([p.exited, sleep(6_000).then(() => null)]);
  assert.ok(exit, 'the proxy waited for the drain timeout instead of closing the idle connection');
  assert.equal(exit.code, 0, p.stderr());
  assert.ok(exit.at - signalledAt < 4_000, `exited ${exit.at - signalledAt} ms after SIGTERM`);
});

test('shutdown.delay 0 (the default) keeps the old behaviour: the listener closes at once on SIGTERM', async (t) => {
  const p = await launch({}, 3_000, 1);
  t.after(() => p.proc.kill('SIGKILL'));
  const signalledAt = Date.now();
  p.proc.kill('SIGTERM');
  while (await canConnect(p.port)) {
    assert.ok(Date.now() - signalledAt < 1_000, 'the listener still accepts 1 s after SIGTERM without a delay');
    await sleep(10);
  }
  const exit = await Promise.race([p.exited, sleep(5_000).then(() => null)]);
  assert.ok(exit && exit.code === 0, p.stderr());
});

test('a second SIGTERM during the grace skips the rest of it', async (t) => {
  const p = await launch({ shutdown: { delay: '30s' } }, 3_000, 1);
  t.after(() => p.proc.kill('SIGKILL'));
  p.proc.kill('SIGTERM');
  await sleep(300);
  assert.equal(await canConnect(p.port), true, 'the listener closed before the grace was over');
  const second = Date.now();
  p.proc.kill('SIGTERM');
  const exit = await Promise.race([p.exited, sleep(5_000).then(() => null)]);
  assert.ok(exit, `no exit within 5 s of the second SIGTERM:\n${p.stderr()}`);
  assert.equal(exit.code, 0, p.stderr());
  assert.ok(exit.at - second < 3_000);
  assert.match(p.stderr(), /"event":"shutdown_delay_skipped"/);
});

test('SIGTERM to the whole process group (systemd\'s default KillMode=control-group) still serves for shutdown.delay', async (t) => {
  const p = await launch({ shutdown: { delay: '1500ms' } }, 3_000, 2, true);
  t.after(() => p.proc.kill('SIGKILL'));
  const signalledAt = Date.now();
  process.kill(-p.proc.pid!, 'SIGTERM');
  await sleep(700);
  // the workers got the signal too; they must leave the shutdown to the primary
  const r = await get(p.port, '/group', false);
  assert.equal(r.ok, true, `a new connection ${Date.now() - signalledAt} ms into the grace failed: ${r.error}`);
  while (await canConnect(p.port)) {
    assert.ok(Date.now() - signalledAt < 4_000, 'the listener still accepts 4 s after SIGTERM');
    await sleep(25);
  }
  assert.ok(Date.now() - signalledAt >= 1_400, `the listener closed ${Date.now() - signalledAt} ms after SIGTERM, before shutdown.delay`);
  const exit = await Promise.race([p.exited, sleep(5_000).then(() => null)]);
  assert.ok(exit && exit.code === 0, p.stderr());
});
