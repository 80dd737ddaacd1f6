// SendTimeouts on real loopback sockets: the TCP write-queue size it relies on is there
// (and non-zero when a client stops reading) on this Node, a stopped reader is reported
// once after the timeout, a slow but steady reader never is, and 0 watches nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SendTimeouts, tcpWriteQueueSize, sweepPeriod, type Stalled } from './send-timeout.js';

/** A server connection that writes 64 KiB chunks as fast as the client takes them, and the client. */
async function pair(): Promise<{ server: net.Socket; client: net.Socket; close(): void }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  const chunk = Buffer.alloc(64 * 1024, 1);
  const pump = () => {
    while (!server.destroyed && server.write(chunk));
    if (!server.destroyed) server.once('drain', pump);
  };
  pump();
  server.on('error', () => undefined);
  client.on('error', () => undefined);
  return {
    server,
    client,
    close: () => {
      server.destroy();
      client.destroy();
      srv.close();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the sweep period is a tenth of the timeout, between 50 ms and 1 s', () => {
  assert.equal(sweepPeriod(60_000), 1000);
  assert.equal(sweepPeriod(1000), 100);
  assert.equal(sweepPeriod(100), 50);
});

test('a TCP socket exposes its write queue size; it is non-zero once the client stops reading', async () => {
  const p = await pair();
  try {
    p.client.pause();
    await sleep(300);
    const q = tcpWriteQueueSize(p.server);
    assert.equal(typeof q, 'number', 'the TCP handle has no writeQueueSize on this Node; send_timeout would fall back to the public counters');
    assert.ok(q! > 0, `write queue ${q}`);
  } finally {
    p.close();
  }
});

test('a client that stops reading is reported once after the timeout and not before', async () => {
  const p = await pair();
  const stalled: Stalled[] = [];
  const st = new SendTimeouts((s) => stalled.push(s));
  try {
    st.watch(p.server, 300);
    p.client.pause();
    const start = performance.now();
    while (stalled.length === 0 && performance.now() - start < 5000) await sleep(20);
    const after = performance.now() - start;
    assert.equal(stalled.length, 1);
    assert.ok(after >= 300, `reported after ${after} ms`);
    assert.equal(stalled[0]!.outer, p.server);
    assert.ok(stalled[0]!.queuedBytes > 0);
    assert.equal(st.fellBack, false);
    await sleep(400);
    assert.equal(stalled.length, 1, 'reported twice');
  } finally {
    st.stop();
    p.close();
  }
});

test('a slow reader that keeps taking bytes is never reported', async () => {
  const p = await pair();
  const stalled: Stalled[] = [];
  const st = new SendTimeouts((s) => stalled.push(s));
  try {
    // 1 s of no progress counts as stalled, ten times the reading cadence below, so a busy
    // machine that stretches one 100 ms sleep cannot make a reader look stalled
    st.watch(p.server, 1000);
    p.client.pause();
    const start = performance.now();
    while (performance.now() - start < 2500) {
      await sleep(100);
      // reads for a moment every 100 ms: the kernel takes more, the marker moves
      p.client.resume();
      await sleep(5);
      p.client.pause();
    }
    assert.deepEqual(stalled, []);
  } finally {
    st.stop();
    p.close();
  }
});

test('send_timeout 0 watches nothing', async () => {
  const p = await pair();
  const stalled: Stalled[] = [];
  const st = new SendTimeouts((s) => stalled.push(s));
  try {
    st.watch(p.server, 0);
    p.client.pause();
    await sleep(200);
    st.sweep(performance.now() + 3_600_000);
    assert.deepEqual(stalled, []);
  } finally {
    st.stop();
    p.close();
  }
});
