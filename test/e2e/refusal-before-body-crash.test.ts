// Regression (issue 12, finding 1, critical): when portcullis answered a Content-Length
// request before its body had arrived (a 401/403/404/413 refusal, or an upstream that
// answers early) and the client kept sending body bytes, the worker crashed
// (`Cannot read properties of null (reading 'push')`), cutting every connection on it.
// On an `optional` listener a client without a certificate could do it. Every refusal
// status, both listener modes, bodies of 1 MB arriving over many reads and 300 KB in one
// write; afterwards the same worker (no worker_exited) still serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { connectRaw } from '../helpers/raw-http1.js';

const MB = 1024 * 1024;

const fx = useProxy(
  ({ pki, up }) => {
    const routes = [
      { name: 'secure', match: { path: '/secure' }, client_auth: 'require', upstream: 'app' },
      { name: 'denied', match: { path: '/denied' }, allow: [{ cn: 'nobody-has-this-cn' }], upstream: 'app' },
      { name: 'app', match: { path: '/app' }, upstream: 'app' },
    ];
    const limits = { max_body_bytes: 2 * MB };
    return {
      listeners: [
        tlsListener(pki, { name: 'req', limits, routes }),
        tlsListener(pki, { name: 'opt', limits, routes, tls: { client_auth: 'optional' } }),
      ],
      upstreams: { app: { endpoints: [up.url] } },
    };
  },
  {
    upstream: (req, res) => {
      if (req.url === '/app/early') {
        // answers at once, without reading the body
        res.end('early');
        return true;
      }
      return false;
    },
  },
);

interface Case {
  listener: 'req' | 'opt';
  withCert: boolean;
  path: string;
  status: number;
  length: number;
}

const cases: Case[] = [
  { listener: 'req', withCert: true, path: '/nowhere', status: 404, length: MB },
  { listener: 'req', withCert: true, path: '/denied', status: 403, length: MB },
  { listener: 'req', withCert: true, path: '/app/too-big', status: 413, length: 3 * MB },
  { listener: 'req', withCert: true, path: '/app/early', status: 200, length: MB },
  { listener: 'opt', withCert: false, path: '/nowhere', status: 404, length: MB },
  { listener: 'opt', withCert: false, path: '/secure', status: 401, length: MB },
  { listener: 'opt', withCert: false, path: '/app/too-big', status: 413, length: 3 * MB },
  { listener: 'opt', withCert: false, path: '/app/early', status: 200, length: MB },
  { listener: 'opt', withCert: true, path: '/denied', status: 403, length: MB },
];

/** Sends the head, then `length` body bytes in 16 KiB writes, yielding between them. */
async function refusedWhileSending(c: Case, oneWrite: boolean): Promise<number> {
  const conn = await connectRaw(fx.cli.ports[c.listener]!, fx.pki, c.withCert ? fx.pki.client : null);
  conn.sock.write(`POST ${c.path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${c.length}\r\n\r\n`);
  const answer = conn.read();
  if (oneWrite) {
    conn.sock.write(Buffer.alloc(300 * 1024, 0x61));
  } else {
    const chunk = Buffer.alloc(16 * 1024, 0x62);
    for (let sent = 0; sent < c.length && !conn.sock.destroyed; sent += chunk.length) {
      conn.sock.write(chunk);
      await new Promise((r) => setImmediate(r));
    }
  }
  const r = await answer;
  conn.sock.destroy();
  return r.status;
}

function workerExits(): string[] {
  return fx.cli.stderr().split('\n').filter((l) => l.includes('"worker_exited"') || l.includes('"worker_failed"'));
}

for (const c of cases) {
  test(`${c.listener} listener, ${c.withCert ? 'with' : 'without'} a certificate: POST ${c.path} answered ${c.status} while a 1 MB body is still arriving over many writes; the worker survives`, async () => {
    assert.equal(await refusedWhileSending(c, false), c.status);
    assert.equal(await refusedWhileSending(c, true), c.status, 'the 300 KB-at-once variant');
    assert.deepEqual(workerExits(), []);
  });
}

test('after every refusal the same worker still forwards a normal request', async () => {
  const conn = await connectRaw(fx.cli.ports.req!, fx.pki);
  conn.sock.write('POST /app/fine HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello');
  const r = await conn.read();
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, 5);
  conn.sock.destroy();
  assert.deepEqual(workerExits(), []);
  assert.doesNotMatch(fx.cli.stderr(), /TypeError|connection_error/);
});
