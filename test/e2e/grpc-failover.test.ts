// Issue 13's kill drill with a real gRPC client: a grpc-js client with a client certificate
// (mTLS to the proxy's listener) calls three grpc-js servers (h2c) that run as child
// processes. One is SIGKILLed mid-run and restarted: every call that the killed server had
// not already taken succeeds (connect failures fail over, then the health check takes it
// out); the few it had taken when it died end UNAVAILABLE, never INTERNAL (grpc-status
// trailer from the proxy, the status gRPC clients retry for idempotent methods: the proxy
// cannot, the server may have run them); the restarted server takes calls again; all are killed: every call ends UNAVAILABLE with the
// no_healthy_upstream message in under 100 ms; a restart recovers. About 15 s.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { makeTestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener } from '../helpers/proxy.js';
import { startGrpcUpstreamProcess, type GrpcUpstreamProcess } from '../helpers/grpc-upstream-process.js';

const dirs: string[] = [];
const procs: GrpcUpstreamProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  dirs.forEach(cleanup);
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Msg {
  n?: number;
  server?: string;
}
const ser = (m: Msg) => Buffer.from(JSON.stringify(m));
const de = (b: Buffer) => JSON.parse(b.toString()) as Msg;
const def: grpc.ServiceDefinition = {
  unary: { path: '/drill.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de },
};

interface Result {
  code: number;
  details: string;
  ms: number;
  server?: string;
  at: number;
}

const INTERVAL = 300;
const HEALTHY = 2;

test('gRPC (grpc-js client and servers): one of three SIGKILLed mid-run and restarted, then all: UNAVAILABLE no_healthy_upstream fast, then recovery', async (t) => {
  const dir = tempDir();
  dirs.push(dir);
  const pki = await makeTestPki(`${dir}/pki`);
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startGrpcUpstreamProcess(n)));
  procs.push(...ups);
  const cli = await startCli(
    {
      workers: 2,
      listeners: [tlsListener(pki, { routes: [{ upstream: 'grpc' }] })],
      upstreams: {
        // a gRPC server answers a plain GET with 415: the check proves the server answers HTTP/2
        grpc: { endpoints: ups.map((u) => u.url), health_check: { path: '/healthz', interval: `${INTERVAL}ms`, timeout: '250ms', healthy: HEALTHY, unhealthy: 2, expect: [415] } },
      },
    },
    { dir },
  );
  t.after(() => cli.stop());
  const Ctor = grpc.makeGenericClientConstructor(def, 'drill.Echo');
  const client = new Ctor(`127.0.0.1:${cli.port}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(pki.client.key), readFileSync(pki.client.cert)), {
    'grpc.ssl_target_name_override': 'localhost',
  }) as unknown as grpc.Client & { unary: (req: Msg, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Msg) => void) => grpc.ClientUnaryCall };
  t.after(() => client.close());
  const call = (n: number) =>
    new Promise<Result>((resolve) => {
      const t0 = performance.now();
      client.unary({ n }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => {
        resolve({ code: err ? err.code : 0, details: err ? err.details : '', ms: performance.now() - t0, server: res?.server, at: Date.now() });
      });
    });

  const CALLERS = 16;
  const results: Result[] = [];
  let running = true;
  const callers = Array.from({ length: CALLERS }, async (_, c) => {
    let i = 0;
    while (running) results.push(await call(c * 1_000_000 + i++));
  });
  const stopCallers = async () => {
    running = false;
    await Promise.all(callers);
  };
  t.after(stopCallers);
  await sleep(1_500);
  const killedAt = Date.now();
  await ups[1]!.kill();
  await sleep(2_000);
  const callsBefore = ups[1]!.calls;
  await ups[1]!.restart();
  const restartedAt = Date.now();
  while (ups[1]!.calls === callsBefore) {
    assert.ok(Date.now() - restartedAt < 5_000, 'the restarted server never got a call');
    await sleep(20);
  }
  const backMs = Date.now() - restartedAt;
  await sleep(1_500);
  await stopCallers();
  const failed = results.filter((r) => r.code !== 0);
  t.diagnostic(`${results.length} calls, ${failed.length} failed (in flight on the killed server); restarted server back after ${backMs} ms`);
  const bad = failed.filter((f) => f.code !== grpc.status.UNAVAILABLE || f.at - killedAt > 250 || f.at < killedAt);
  assert.deepEqual(bad.map((f) => `${f.code} ${f.details} (${f.at - killedAt} ms after the kill)`), [], 'only calls in flight on the killed server fail, and with UNAVAILABLE');
  assert.ok(failed.length <= CALLERS, `${failed.length} failed calls: more than were in flight`);
  assert.ok(results.length > 500, `${results.length} calls`);
  for (const u of ups) assert.ok(u.calls > 0, `server ${u.name} got calls`);
  assert.ok(backMs <= INTERVAL * HEALTHY + INTERVAL + 500, `the restarted server took ${backMs} ms to get calls`);

  // all down: UNAVAILABLE naming no_healthy_upstream, fast, for every call
  await Promise.all(ups.map((u) => u.kill()));
  const deadline = Date.now() + 3_000;
  while ((await call(0)).details.indexOf('no healthy endpoint') < 0) assert.ok(Date.now() < deadline, 'all servers never marked down');
  for (let i = 0; i < 20; i++) {
    const r = await call(i);
    assert.equal(r.code, grpc.status.UNAVAILABLE);
    // each endpoint named with why: a failed probe or a passive ejection, with the errno
    assert.match(r.details, /^upstream grpc has no healthy endpoint: 3 of 3 endpoints are down \((h2c:\/\/127\.0\.0\.1:\d+: (failed health check|ejected for \d+ s more after failures in a row): ECONNREFUSED(; )?){3}\); start or fix an endpoint$/);
    assert.ok(r.ms < 100, `${r.ms} ms`);
  }

  // recovery follows a restart
  await ups[2]!.restart();
  const recoverBy = Date.now() + INTERVAL * HEALTHY + INTERVAL + 1_500;
  let r: Result;
  while ((r = await call(1)).code !== 0) {
    assert.ok(Date.now() < recoverBy, `no recovery: ${r.code} ${r.details}`);
    await sleep(25);
  }
  assert.equal(r.server, 'c');
});
