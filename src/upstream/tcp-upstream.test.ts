// TcpUpstream against real local sockets: balancing order with failover candidates, the
// connect timeout (a TLS endpoint that never answers its handshake), refused connections,
// and upstreams.<name>.limits (a connection waits for a slot, or is refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { TcpUpstream, type TcpConnectError } from './tcp-upstream.js';
import type { UpstreamConfig } from '../config/schema.js';

function cfg(endpoints: string[], over: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    endpoints,
    balance: 'round_robin',
    timeouts: { connect: 2000, request: 30_000, idle: 60_000 },
    limits: { max_connections: 1024, max_pending: 1024, max_requests: 1024 },
    retries: 2,
    retry_budget: { percent: 20, min_concurrent: 3 },
    outlier: { consecutive_failures: 5, base_ejection: 30_000, max_ejection: 300_000, max_ejected_percent: 50, count_5xx: true },
    ...over,
  } as UpstreamConfig;
}

function connect(up: TcpUpstream, i = 0): Promise<{ err?: TcpConnectError; sock?: net.Socket; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => up.connect(up.endpoints[i]!, (err, sock) => resolve({ ...(err ? { err } : {}), ...(sock ? { sock } : {}), ms: Date.now() - t0 })));
}

test('round robin: each pick is the next endpoint; a retry skips the endpoints tried', () => {
  const up = new TcpUpstream('db-rr', cfg(['tcp://10.0.0.1:1', 'tcp://10.0.0.2:2', 'tcp://[::1]:3']), 'upstreams.db');
  const firsts = [0, 1, 2, 3].map(() => up.balancer.pick()!.port);
  assert.deepEqual(firsts, [1, 2, 3, 1]);
  assert.equal(up.balancer.pick(undefined, [up.endpoints[1]!])!.port, 3);
  assert.equal(up.endpoints[2]!.host, '::1');
});

test('least_request prefers the endpoint with the fewest open connections', () => {
  const up = new TcpUpstream('db-lr', cfg(['tcp://10.0.0.1:1', 'tcp://10.0.0.2:2'], { balance: 'least_request' }), 'upstreams.db');
  up.endpoints[0]!.state.inflight = 3;
  for (let i = 0; i < 10; i++) assert.equal(up.balancer.pick()!.port, 2);
  up.endpoints[0]!.state.inflight = 0;
});

test('a tls:// endpoint that never answers the handshake fails after timeouts.connect', async (t) => {
  const accepted: net.Socket[] = [];
  const silent = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of accepted) s.destroy();
    silent.close();
  });
  const port = (silent.address() as AddressInfo).port;
  const up = new TcpUpstream('db', cfg([`tls://127.0.0.1:${port}`], { timeouts: { connect: 200, request: 1, idle: 1 } }), 'upstreams.db');
  const r = await connect(up);
  assert.equal(r.err?.code, 'connect_timeout');
  assert.match(r.err!.message, /^tls:\/\/127\.0\.0\.1:\d+: no connection within 200ms/);
  assert.ok(r.ms >= 180 && r.ms < 2000, `${r.ms}ms`);
});

test('a refused connection reports its errno, and a connected socket counts as active until closed', async () => {
  const server = net.createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const up = new TcpUpstream('db', cfg([`tcp://127.0.0.1:${port}`]), 'upstreams.db');
  const ok = await connect(up);
  assert.ok(ok.sock);
  assert.equal(up.endpoints[0]!.state.inflight, 1);
  ok.sock.destroy();
  await new Promise((r) => ok.sock!.once('close', r));
  assert.equal(up.endpoints[0]!.state.inflight, 0);
  await new Promise((r) => server.close(r));
  const refused = await connect(up);
  assert.equal(refused.err?.code, 'ECONNREFUSED');
});

test('limits: past max_connections a connection waits for a slot, past max_pending it is refused, and a waiter can leave', async (t) => {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const up = new TcpUpstream('db', cfg([`tcp://127.0.0.1:${port}`], { limits: { max_connections: 1, max_pending: 1, max_requests: 10 } }), 'upstreams.db');
  const first = await connect(up);
  assert.ok(first.sock);
  // the second waits in the queue; the third finds the queue full
  let secondDone = false;
  const second = connect(up).then((r) => ((secondDone = true), r));
  const third = await connect(up);
  assert.equal(third.err?.code, 'upstream_overloaded');
  assert.match(third.err!.message, /^upstream db has all 1 connections busy and 1 requests already waiting .*limits\.max_pending/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(secondDone, false, 'still waiting while the first connection is open');
  first.sock.destroy();
  const r2 = await second;
  assert.ok(r2.sock, 'the freed slot went to the waiter');
  assert.equal(up.limiter.connections, 1);
  // a waiter whose client leaves gives its place up
  let heard = false;
  const abort = up.connect(up.endpoints[0]!, () => (heard = true));
  assert.equal(up.limiter.pending, 1);
  abort();
  assert.equal(up.limiter.pending, 0);
  assert.equal(up.limiter.requests, 1, 'only the open connection counts as a request');
  r2.sock.destroy();
  await new Promise((r) => r2.sock!.once('close', r));
  assert.equal(up.limiter.connections, 0);
  assert.equal(up.limiter.requests, 0);
  assert.equal(heard, false);
});

test('limits: a connection that waits longer than timeouts.connect for a slot is refused as overloaded', async (t) => {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const up = new TcpUpstream('db', cfg([`tcp://127.0.0.1:${port}`], { timeouts: { connect: 150, request: 1, idle: 1 }, limits: { max_connections: 1, max_pending: 5, max_requests: 10 } }), 'upstreams.db');
  const first = await connect(up);
  assert.ok(first.sock);
  const late = await connect(up);
  assert.equal(late.err?.code, 'upstream_overloaded');
  assert.match(late.err!.message, /no free connection within 150 ms .*limits\.max_connections/);
  assert.ok(late.ms >= 130, `${late.ms}ms`);
  first.sock.destroy();
});
