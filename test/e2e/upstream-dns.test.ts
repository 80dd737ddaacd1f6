// Issue 13 item 7, DNS: an endpoint written with a host name is one endpoint per address,
// re-resolved every dns_refresh by one resolver in the primary. Proven with real upstream
// sockets on several loopback addresses (all of 127/8 and ::1 are loopback on Linux):
// `localhost` through the system resolver, and a name whose answer the test changes
// through the test-only hosts file (PORTCULLIS_TEST_HOSTS_FILE, honoured only with
// PORTCULLIS_FAULT_INJECTION=1): traffic moves to the new address without a failed request,
// a request in flight on a removed address finishes, a failed lookup keeps the last set,
// and a name that never resolved answers 503 no_healthy_upstream naming the DNS error.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import dns from 'node:dns';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCli, tempDir, cleanup, eventually } from '../helpers/proxy.js';
import { get, metrics, sample } from '../helpers/http-get.js';
import { freePort } from '../helpers/upstream-process.js';

const dirs: string[] = [];
const servers: http.Server[] = [];
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  dirs.forEach(cleanup);
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface AddrServer {
  address: string;
  /** paths of the requests it answered, "probe" for health checks */
  seen: string[];
  hosts: string[];
}

/** An HTTP server on one address; /slow answers after 1.5 s. */
async function serveOn(address: string, port: number): Promise<AddrServer> {
  const me: AddrServer = { address, seen: [], hosts: [] };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      me.seen.push('probe');
      res.end('ok');
      return;
    }
    me.seen.push(req.url ?? '');
    me.hosts.push(req.headers.host ?? '');
    const body = JSON.stringify({ address });
    setTimeout(() => res.end(body), req.url === '/slow' ? 1_500 : 0);
  });
  await new Promise<void>((r) => server.listen(port, address, r));
  servers.push(server);
  return me;
}

const requests = (s: AddrServer) => s.seen.filter((p) => p !== 'probe').length;

test('localhost: every address the system resolver gives is an endpoint, named by address and name', async (t) => {
  const want = [...new Set((await dns.promises.lookup('localhost', { all: true })).map((a) => a.address))].sort();
  const port = await freePort();
  const ups = await Promise.all(want.map((a) => serveOn(a, port)));
  const dir = tempDir();
  dirs.push(dir);
  const cli = await startCli({ workers: 2, listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ upstream: 'app' }] }], upstreams: { app: { endpoints: [`http://localhost:${port}`] } } }, { dir });
  t.after(() => cli.stop());
  for (let i = 0; i < 20; i++) assert.equal((await get(cli.port, `/r${i}`)).status, 200);
  for (const u of ups) assert.ok(requests(u) > 0, `${u.address} got no traffic`);
  const m = await metrics(cli.adminPort);
  for (const a of want) {
    const label = `http://${a.includes(':') ? `[${a}]` : a}:${port} (localhost)`;
    assert.equal(sample(m, 'portcullis_upstream_endpoint_healthy', { upstream: 'app', endpoint: label }), 1, `gauge for ${label}`);
    assert.ok(sample(m, 'portcullis_upstream_requests_total', { upstream: 'app', endpoint: label, result: 'ok' }) > 0, `requests counted for ${label}`);
  }
});

test('a changed DNS answer moves traffic to the new address without a failed request; removed addresses drain; failures keep the last set', async (t) => {
  const port = await freePort();
  const [a2, a6, a3] = await Promise.all([serveOn('127.0.0.2', port), serveOn('::1', port), serveOn('127.0.0.3', port)]);
  const dir = tempDir();
  dirs.push(dir);
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '127.0.0.2 app.test\n::1 app.test\n');
  const cli = await startCli(
    {
      workers: 2,
      listeners: [{ name: 'plain', address: '127.0.0.1:0', routes: [{ match: { path: '/never' }, upstream: 'never' }, { upstream: 'app' }] }],
      upstreams: {
        app: { endpoints: [`http://app.test:${port}`], dns_refresh: '200ms', health_check: { path: '/healthz', interval: '300ms', timeout: '200ms' } },
        never: { endpoints: ['http://never.invalid:80'], dns_refresh: '200ms' },
      },
    },
    { dir, env: { PORTCULLIS_FAULT_INJECTION: '1', PORTCULLIS_TEST_HOSTS_FILE: hostsFile } },
  );
  t.after(() => cli.stop());

  // a name that never resolved: 503 no_healthy_upstream naming the DNS error, at once
  const never = await get(cli.port, '/never');
  assert.equal(never.status, 503);
  const nb = JSON.parse(never.body) as { error: string; message: string };
  assert.equal(nb.error, 'no_healthy_upstream');
  assert.match(nb.message, /^upstream never has no healthy endpoint: 1 of 1 endpoints are down \(http:\/\/never\.invalid:80: DNS lookup of never\.invalid failed: (ENOTFOUND|EAI_AGAIN)\); start or fix an endpoint$/);
  await cli.waitLog(/"event":"upstream_dns_failed","host":"never\.invalid"/);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  t.after(() => agent.destroy());
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const clients = Array.from({ length: 10 }, async (_, c) => {
    let i = 0;
    while (running) {
      try {
        const r = await get(cli.port, `/c${c}/${i++}`, { agent });
        if (r.status === 200) ok++;
        else failures.push(`${r.status} ${r.body}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  });
  const stopClients = async () => {
    running = false;
    await Promise.all(clients);
  };
  t.after(stopClients);
  await eventually(() => requests(a2) > 20 && requests(a6) > 20, 'traffic on both addresses of app.test (127.0.0.2 and ::1)');
  assert.equal(requests(a3), 0);
  assert.ok(a2.hosts.every((h) => h === `127.0.0.1:${cli.port}`), 'the client\'s Host goes through unchanged');

  // slow requests in flight on the addresses that are about to leave
  const slow = Array.from({ length: 4 }, () => get(cli.port, '/slow'));
  await sleep(200);
  writeFileSync(hostsFile, '127.0.0.3 app.test\n');
  await cli.waitLog(/"event":"upstream_dns_changed","host":"app\.test","addresses":\["127\.0\.0\.3"\],"added":\["127\.0\.0\.3"\]/);
  const movedAt = Date.now();
  await eventually(() => requests(a3) > 20, 'traffic on the new address 127.0.0.3');
  const moveMs = Date.now() - movedAt;
  await sleep(300);
  const before = [requests(a2), requests(a6)];
  await sleep(500);
  assert.deepEqual([requests(a2), requests(a6)], before, 'removed addresses get no new requests');
  for (const r of await Promise.all(slow)) assert.equal(r.status, 200, 'a request in flight on a removed address finishes');
  assert.ok(a3.seen.includes('probe'), 'the new address is health checked');

  // the lookup fails (the name leaves the hosts file; .test never resolves): the last set stays
  writeFileSync(hostsFile, '# nothing\n');
  await cli.waitLog(/"event":"upstream_dns_failed","host":"app\.test"/);
  const afterFail = requests(a3);
  await sleep(600);
  assert.ok(requests(a3) > afterFail + 20, 'traffic goes on to the last good address');
  await stopClients();
  assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed`);
  assert.ok(ok > 200, `ok=${ok}`);
  // logged once per change, not once per lookup or per worker
  const failedLines = cli.stderr().split('\n').filter((l) => l.includes('"event":"upstream_dns_failed","host":"app.test"'));
  assert.equal(failedLines.length, 1, failedLines.join('\n'));
  const m = await metrics(cli.adminPort);
  assert.equal(sample(m, 'portcullis_upstream_endpoint_healthy', { upstream: 'app', endpoint: `http://127.0.0.3:${port} (app.test)` }), 1);
  assert.equal(sample(m, 'portcullis_upstream_endpoint_healthy', { upstream: 'app', endpoint: `http://127.0.0.2:${port} (app.test)` }), 0, 'no gauge for a removed address');
  t.diagnostic(`traffic reached the new address ${moveMs} ms after the change was logged; ${ok} requests`);
});
