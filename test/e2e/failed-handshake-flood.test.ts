// Finding 9 (security review): a failed handshake held its socket 200 ms to deliver the
// alert, and max_connections defaulted to unlimited, so a flood of bad handshakes held
// sockets. The courtesy hold now applies to a few sockets at a time per listener; past
// that a failed handshake closes with its alert at once (and max_connections has a
// default, see connection-limits.test.ts). 500 concurrent handshakes without a
// certificate or with an untrusted one: a good client is still served during the flood
// and the worker's open file descriptors return to where they were. 500 concurrent
// ClientHellos the listener refuses (cheap for both sides, so they fail within the hold
// window): every client gets its alert, and no more than MAX_HELD_FAILED_HANDSHAKES
// closes are held back at a time (before the fix: all 500).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { useProxy, curl, certArgs, tlsListener } from '../helpers/proxy.js';
import { MAX_HELD_FAILED_HANDSHAKES, FAILED_HANDSHAKE_HOLD_MS } from '../../src/runtime/listener-server.js';

const FLOOD = 500;

const fx = useProxy(({ pki, up }) => ({
  listeners: [tlsListener(pki)],
  upstreams: { app: { endpoints: [up.url] } },
}));

async function workerPid(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${fx.cli.adminPort}/status`);
  const doc = (await res.json()) as { workers: { pid: number }[] };
  assert.equal(doc.workers.length, 1);
  return doc.workers[0]!.pid;
}

const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** The most intervals [from, to] open at one instant. */
function maxOverlap(intervals: [number, number][]): number {
  const edges = intervals.flatMap(([a, b]) => [[a, 1], [b, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let open = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (open += d));
  return max;
}

/** A TLS 1.2 ClientHello offering only TLS_NULL_WITH_NULL_NULL: OpenSSL refuses it with a handshake_failure alert, for almost no CPU on either side. */
function refusedClientHello(): Buffer {
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0x00]), // session id
    Buffer.from([0x00, 0x02, 0x00, 0x00]), // cipher suites: TLS_NULL_WITH_NULL_NULL
    Buffer.from([0x01, 0x00]), // compression: null
  ]);
  const hs = Buffer.concat([Buffer.from([0x01, 0x00, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01, hs.length >> 8, hs.length & 0xff]), hs]);
}

interface Refused {
  /** what the server sent (its alert), when it arrived, and when its FIN (or reset) did */
  data: Buffer;
  alertAt: number;
  closedAt: number;
}

function sendRefusedHello(port: number): Promise<Refused> {
  return new Promise((resolve) => {
    const r: Refused = { data: Buffer.alloc(0), alertAt: 0, closedAt: 0 };
    const s = net.connect(port, '127.0.0.1', () => s.write(refusedClientHello()));
    s.on('data', (d: Buffer) => {
      r.alertAt = performance.now();
      r.data = Buffer.concat([r.data, d]);
    });
    const done = () => {
      if (r.closedAt) return;
      r.closedAt = performance.now();
      s.destroy();
      resolve(r);
    };
    s.on('end', done);
    s.on('error', done);
    s.on('close', done);
  });
}

async function settleFds(pid: number, baseline: number): Promise<number> {
  let fds = openFds(pid);
  for (let i = 0; i < 100 && fds > baseline + 2; i++) {
    await new Promise((r) => setTimeout(r, 50));
    fds = openFds(pid);
  }
  return fds;
}

const good = () => curl(`https://localhost:${fx.cli.port}/good`, certArgs(fx.pki.ca.cert, fx.pki.client));

test(`${FLOOD} concurrent handshakes without a certificate or with an untrusted one: a good client is served meanwhile and the worker's fds return to baseline`, async () => {
  const { pki, up } = fx;
  // warm up (pooled upstream connection, front ends built on first use), then measure
  assert.equal((await good()).status, 200);
  const pid = await workerPid();
  const baseline = openFds(pid);

  const ca = readFileSync(pki.ca.cert);
  const untrusted = { cert: readFileSync(pki.untrusted.cert), key: readFileSync(pki.untrusted.key) };
  const flood: Promise<string>[] = [];
  for (let i = 0; i < FLOOD; i++) {
    flood.push(
      new Promise((resolve) => {
        const t = tls.connect({ host: '127.0.0.1', port: fx.cli.port, servername: 'localhost', ca, ...(i % 2 === 1 ? untrusted : {}) });
        t.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        t.on('close', () => resolve('closed'));
        t.resume();
      }),
    );
  }
  const before = up.received.length;
  const during = await good();
  const outcomes = await Promise.all(flood);
  assert.equal(during.status, 200, `good client during the flood: ${during.stderr}`);
  assert.ok(up.received.slice(before).some((r) => r.url === '/good'), 'the upstream did not see the good request');
  // every flood connection was refused, none served
  assert.equal(up.received.length - before, 1);
  assert.equal(outcomes.filter((o) => o === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED').length, FLOOD / 2, outcomes.join(' '));

  const fds = await settleFds(pid, baseline);
  assert.ok(fds <= baseline + 2, `worker has ${fds} open fds, ${baseline} before the flood`);
  assert.equal((await good()).status, 200);
});

test(`${FLOOD} concurrent refused ClientHellos: each gets its alert, at most ${MAX_HELD_FAILED_HANDSHAKES} closes are held back at a time, fds return to baseline`, async (t) => {
  assert.equal((await good()).status, 200);
  const pid = await workerPid();
  const baseline = openFds(pid);
  const results = await Promise.all(Array.from({ length: FLOOD }, () => sendRefusedHello(fx.cli.port)));
  // an alert record (0x15) with handshake_failure (40) reached every client before the close
  const alerted = results.filter((r) => r.data[0] === 0x15 && r.data[6] === 40).length;
  assert.equal(alerted, FLOOD);
  // the close came with the alert, or after the courtesy hold: count the holds that overlapped
  const held = results.filter((r) => r.closedAt - r.alertAt >= FAILED_HANDSHAKE_HOLD_MS / 2).map((r) => [r.alertAt, r.closedAt] as [number, number]);
  const overlap = maxOverlap(held);
  t.diagnostic(`${held.length} of ${FLOOD} closes held back, at most ${overlap} at once`);
  // the cap is exact in the worker; the client sees each alert and FIN a little late, by
  // varying amounts, which can stretch a few intervals into each other
  assert.ok(overlap <= MAX_HELD_FAILED_HANDSHAKES + 4, `${overlap} failed handshakes were held open at once (${held.length} of ${FLOOD} held)`);
  assert.ok(held.length > 0, 'no failed handshake got the courtesy hold');
  const fds = await settleFds(pid, baseline);
  assert.ok(fds <= baseline + 2, `worker has ${fds} open fds, ${baseline} before the flood`);
  assert.equal((await good()).status, 200);
});
