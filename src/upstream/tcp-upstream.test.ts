// TcpUpstream against real local sockets: balancing order with failover candidates, the
// connect timeout (a TLS endpoint that never answers its handshake), refused connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { TcpUpstream, type TcpConnectError } from './tcp-upstream.js';
import type { UpstreamConfig } from '../config/schema.js';

function cfg(endpoints: string[], over: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { endpoints, balance: 'round_robin', timeouts: { connect: 2000, request: 30_000, idle: 60_000 }, ...over } as UpstreamConfig;
}

function connect(up: TcpUpstream, i = 0): Promise<{ err?: TcpConnectError; sock?: net.Socket; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => up.connect(up.endpoints[i]!, (err, sock) => resolve({ ...(err ? { err } : {}), ...(sock ? { sock } : {}), ms: Date.now() - t0 })));
}

test('round robin: each call starts at the next endpoint and lists the others after it', () => {
  const up = new TcpUpstream('db', cfg(['tcp://10.0.0.1:1', 'tcp://10.0.0.2:2', 'tcp://[::1]:3']), 'upstreams.db');
  const firsts = [0, 1, 2, 3].map(() => up.order().map((e) => e.port));
  assert.deepEqual(firsts, [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 2, 3]]);
  assert.equal(up.endpoints[2]!.host, '::1');
});

test('least_request prefers the endpoint with the fewest open connections', () => {
  const up = new TcpUpstream('db', cfg(['tcp://10.0.0.1:1', 'tcp://10.0.0.2:2'], { balance: 'least_request' }), 'upstreams.db');
  up.endpoints[0]!.active = 3;
  assert.equal(up.order()[0]!.port, 2);
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
  assert.equal(up.endpoints[0]!.active, 1);
  ok.sock.destroy();
  await new Promise((r) => ok.sock!.once('close', r));
  assert.equal(up.endpoints[0]!.active, 0);
  await new Promise((r) => server.close(r));
  const refused = await connect(up);
  assert.equal(refused.err?.code, 'ECONNREFUSED');
});
