// The ClientHello reader on real ClientHellos from Node's TLS client (TLS 1.2 with a
// session_ticket, TLS 1.3 with a PSK identity, with and without SNI), delivered one byte
// per TCP segment, followed by a real handshake on the bytes it put back; and on input
// that is not a ClientHello, which must give no hint and never throw.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { createCA, issueCert } from '../pki/issue.js';
import { ticketKeyName } from '../platform/node-internals.js';
import { assembleClientHello, parseClientHello, peekClientHello, MAX_CLIENT_HELLO_BYTES, type ClientHelloHint } from './client-hello.js';

let ca: string;
let context: tls.SecureContext;
const ticketKeys = randomBytes(48);

before(async () => {
  const root = await createCA({ name: 'Hello CA' });
  const server = await issueCert(root, { type: 'server', cn: 'localhost', dns: ['localhost', 'b.example'] });
  ca = root.certPem;
  context = tls.createSecureContext({ cert: server.chainPem, key: server.keyPem, ticketKeys });
});

interface Served {
  port: number;
  hints: (ClientHelloHint | undefined)[];
  close(): Promise<void>;
}

/** A listener that peeks each ClientHello, then completes a real TLS handshake on the socket. */
async function serve(): Promise<Served> {
  const hints: (ClientHelloHint | undefined)[] = [];
  const server = net.createServer((raw) => {
    peekClientHello(raw, (hint) => {
      hints.push(hint);
      const s = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
      s.on('secure', () => s.end('ok'));
      s.on('error', () => s.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    hints,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * One handshake through a relay that forwards the client's bytes one at a time, so the
 * ClientHello arrives in many TCP segments; resolves with what the client saw.
 */
async function connect(port: number, o: { version: tls.SecureVersion; servername?: string; session?: Buffer }): Promise<{ body: string; reused: boolean; session?: Buffer }> {
  const relay = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    up.setNoDelay(true);
    c.on('data', async (d: Buffer) => {
      c.pause();
      for (const b of d) {
        up.write(Buffer.from([b]));
        await new Promise((r) => setImmediate(r));
      }
      c.resume();
    });
    up.pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    c.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  try {
    return await new Promise((resolve, reject) => {
      let body = '';
      let reused = false;
      let session: Buffer | undefined;
      const s = tls.connect({
        host: '127.0.0.1',
        port: (relay.address() as AddressInfo).port,
        ca,
        minVersion: o.version,
        maxVersion: o.version,
        ...(o.servername ? { servername: o.servername } : { checkServerIdentity: () => undefined }),
        ...(o.session ? { session: o.session } : {}),
      });
      s.on('session', (x: Buffer) => (session ??= x));
      s.on('secureConnect', () => (reused = s.isSessionReused()));
      s.on('data', (d: Buffer) => (body += d.toString()));
      s.on('error', reject);
      s.on('close', () => resolve({ body, reused, ...(session ? { session } : {}) }));
    });
  } finally {
    await new Promise((r) => relay.close(r));
  }
}

let served: Served;
before(async () => {
  served = await serve();
});
after(() => served.close());

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${version}: server name and the offered ticket's key name, from a hello split into 1-byte segments; the handshake still completes and resumes`, async () => {
    const first = await connect(served.port, { version, servername: 'B.Example' });
    assert.equal(first.body, 'ok');
    const h1 = served.hints.at(-1);
    assert.deepEqual(h1, { serverName: 'b.example', ticketKeyNames: [] });
    assert.ok(first.session, 'no session to resume with');

    const again = await connect(served.port, { version, servername: 'B.Example', session: first.session });
    assert.equal(again.body, 'ok');
    assert.equal(again.reused, true, 'the handshake on the put-back bytes did not resume');
    const h2 = served.hints.at(-1)!;
    assert.equal(h2.serverName, 'b.example');
    assert.equal(h2.ticketKeyNames.length, 1);
    // the offered ticket starts with the key name of the ticketKeys that sealed it
    assert.deepEqual(h2.ticketKeyNames[0], ticketKeyName(ticketKeys));
  });
}

test('no SNI: no server name, and the handshake completes', async () => {
  const r = await connect(served.port, { version: 'TLSv1.3' });
  assert.equal(r.body, 'ok');
  assert.deepEqual(served.hints.at(-1), { serverName: undefined, ticketKeyNames: [] });
});

test('bytes that are not a ClientHello give no hint and are put back as they came', async () => {
  const server = net.createServer((raw) => {
    peekClientHello(raw, (hint) => {
      raw.resume();
      let echoed = '';
      raw.on('data', (d: Buffer) => (echoed += d.toString('latin1')));
      raw.on('end', () => raw.end(`${hint === undefined ? 'none' : 'hint'}|${echoed}`));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const send = (data: Buffer) =>
    new Promise<string>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => c.end(data));
      let out = '';
      c.on('data', (d: Buffer) => (out += d.toString('latin1')));
      c.on('close', () => resolve(out));
    });
  try {
    assert.equal(await send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'none|GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // a handshake record that is not a ClientHello (type 2, ServerHello)
    const notHello = Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0]);
    assert.equal(await send(notHello), `none|${notHello.toString('latin1')}`);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('a client that closes before its ClientHello is complete is destroyed without a callback', async () => {
  let called = false;
  const closed = new Promise<void>((resolve) => {
    const server = net.createServer((raw) => {
      peekClientHello(raw, () => (called = true));
      raw.on('close', () => {
        server.close();
        resolve();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = net.connect((server.address() as AddressInfo).port, '127.0.0.1', () => c.end(Buffer.from([22, 3, 1, 0x02, 0x00, 1, 0])));
      c.on('error', () => undefined);
    });
  });
  await closed;
  assert.equal(called, false);
});

test('assembleClientHello: more until complete, empty records skipped, other for non-handshake bytes and hellos over OpenSSL\'s limit', () => {
  assert.equal(assembleClientHello(Buffer.alloc(0)).state, 'more');
  assert.equal(assembleClientHello(Buffer.from([22, 3])).state, 'more');
  assert.equal(assembleClientHello(Buffer.from([23, 3, 3, 0, 1, 0])).state, 'other');
  // a ClientHello of 6 bytes in two records of 5
  const body = Buffer.from([1, 0, 0, 6, 3, 3, 9, 9, 9, 9]);
  const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, 0, b.length]), b]);
  const two = Buffer.concat([rec(body.subarray(0, 5)), rec(body.subarray(5))]);
  assert.equal(assembleClientHello(two.subarray(0, 12)).state, 'more');
  const done = assembleClientHello(two);
  assert.ok(done.state === 'done');
  assert.deepEqual([...done.msg], [3, 3, 9, 9, 9, 9]);
  // empty handshake records in front, which OpenSSL skips
  const empties = Buffer.concat([Buffer.from([22, 3, 1, 0, 0, 22, 3, 1, 0, 0]), two]);
  const skipped = assembleClientHello(empties);
  assert.ok(skipped.state === 'done' && skipped.msg.length === 6);
  // a length beyond what any client sends
  const big = Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]);
  assert.equal(assembleClientHello(big).state, 'other');
  assert.ok(MAX_CLIENT_HELLO_BYTES < 0xffffff);
});

test('parseClientHello never throws: truncations and random corruption of a real hello', async () => {
  // a real ClientHello body with SNI and a ticket, captured from the client
  const first = await connect(served.port, { version: 'TLSv1.2', servername: 'b.example' });
  const captured = await new Promise<Buffer>((resolve) => {
    const server = net.createServer((raw) => {
      const chunks: Buffer[] = [];
      raw.on('data', (d: Buffer) => {
        chunks.push(d);
        const r = assembleClientHello(Buffer.concat(chunks));
        if (r.state === 'done') {
          resolve(r.msg);
          raw.destroy();
          server.close();
        }
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'b.example', session: first.session!, maxVersion: 'TLSv1.2' });
      c.on('error', () => undefined);
    });
  });
  const hint = parseClientHello(captured);
  assert.equal(hint?.serverName, 'b.example');
  assert.equal(hint?.ticketKeyNames.length, 1);
  for (let n = 0; n < captured.length; n += 7) parseClientHello(captured.subarray(0, n));
  for (let i = 0; i < 2000; i++) {
    const m = Buffer.from(captured);
    for (let k = 0; k < 4; k++) m[Math.floor(Math.random() * m.length)] = Math.floor(Math.random() * 256);
    const h = parseClientHello(m);
    if (h) for (const name of h.ticketKeyNames) assert.equal(name.length, 16);
  }
});
