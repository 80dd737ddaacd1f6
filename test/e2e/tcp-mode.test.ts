// protocol: tcp listeners through the real CLI with real TLS clients (Node tls, openssl
// s_client): a large transfer both ways, half-close in both directions, client
// verification and listener rules, the connection access-log line, an unreachable upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let cli: RunningCli;
let dir: string;

/** What a raw upstream saw on one connection. */
interface Seen {
  bytes: number;
  sha: ReturnType<typeof createHash>;
  data: Buffer[];
  ended: boolean;
}

/** A TCP server (half-open capable) that hands each connection to `onConn` and records what it read. */
async function rawServer(onConn: (s: net.Socket, seen: Seen) => void): Promise<{ port: number; seen: Seen[]; close(): void }> {
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    const rec: Seen = { bytes: 0, sha: createHash('sha256'), data: [], ended: false };
    seen.push(rec);
    s.on('data', (c: Buffer) => {
      rec.bytes += c.length;
      rec.sha.update(c);
      if (rec.data.length < 64) rec.data.push(c);
    });
    s.on('end', () => (rec.ended = true));
    onConn(s, rec);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let echo: Awaited<ReturnType<typeof rawServer>>;
let greeter: Awaited<ReturnType<typeof rawServer>>;
let tlsUpstream: tls.Server;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  // echoes every byte; after the proxy half-closes toward it, it still answers (late, so a
  // proxy that closed the client at the client's EOF would lose it) with what it received
  echo = await rawServer((s, rec) => {
    s.pipe(s, { end: false });
    s.on('end', () => setTimeout(() => s.end(`\nEOF bytes=${rec.bytes} sha256=${rec.sha.copy().digest('hex')}\n`), 300));
  });
  // speaks first and half-closes at once, then keeps reading what the client sends
  greeter = await rawServer((s) => s.end('hello from upstream\n'));
  // a tls:// upstream that requires a client certificate (mTLS out) and greets with its CN
  tlsUpstream = tls.createServer(
    { cert: readFileSync(pki.server.chain), key: readFileSync(pki.server.key), ca: readFileSync(pki.ca.cert), requestCert: true, rejectUnauthorized: true, allowHalfOpen: true },
    (s) => {
      s.on('error', () => undefined);
      s.write(`hello ${s.getPeerX509Certificate()?.subject.split('\n').find((l) => l.startsWith('CN='))}\n`);
      s.pipe(s, { end: false });
      s.on('end', () => s.end('bye\n'));
    },
  );
  await new Promise<void>((r) => tlsUpstream.listen(0, '127.0.0.1', r));
  const down = net.createServer();
  await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
  const downPort = (down.address() as AddressInfo).port;
  await new Promise((r) => down.close(r));
  const tlsCfg = { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert };
  cli = await startCli(
    {
      listeners: [
        { name: 'echo', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'echo' },
        { name: 'greeter', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'greeter' },
        {
          name: 'rules',
          address: '127.0.0.1:0',
          protocol: 'tcp',
          tls: { ...tlsCfg, client_auth: 'optional' },
          upstream: 'echo',
          allow: [{ ou: 'prod' }],
          deny: [{ cn: 'payment-service' }],
        },
        { name: 'down', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'down' },
        { name: 'tls-out', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'secure' },
        { name: 'idle', address: '127.0.0.1:0', protocol: 'tcp', tls: tlsCfg, upstream: 'echo', limits: { idle_timeout: '500ms' } },
      ],
      upstreams: {
        echo: { endpoints: [`tcp://127.0.0.1:${echo.port}`] },
        greeter: { endpoints: [`tcp://127.0.0.1:${greeter.port}`] },
        secure: {
          endpoints: [`tls://localhost:${(tlsUpstream.address() as AddressInfo).port}`],
          tls: { ca: pki.ca.cert, cert: pki.client2.cert, key: pki.client2.key },
        },
        down: { endpoints: [`tcp://127.0.0.1:${downPort}`], timeouts: { connect: '1s' } },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  echo?.close();
  greeter?.close();
  tlsUpstream?.close();
  cleanup(dir);
});

interface Client {
  sock: tls.TLSSocket;
  /** everything received until the proxy ended or closed the connection */
  done: Promise<{ data: Buffer; ended: boolean; error?: Error }>;
}

function connect(listener: string, entry?: PkiEntry): Promise<Client> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port: cli.ports[listener]!,
      servername: 'localhost',
      ca: readFileSync(pki.ca.cert),
      ...(entry ? { cert: readFileSync(entry.cert), key: readFileSync(entry.key) } : {}),
    });
    // our write side may end while the proxy still answers
    sock.allowHalfOpen = true;
    const chunks: Buffer[] = [];
    let ended = false;
    let error: Error | undefined;
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => (ended = true));
    const done = new Promise<{ data: Buffer; ended: boolean; error?: Error }>((r) => sock.on('close', () => r({ data: Buffer.concat(chunks), ended, ...(error ? { error } : {}) })));
    sock.on('error', (e) => {
      error = e;
      reject(e);
    });
    sock.once('secureConnect', () => resolve({ sock, done }));
  });
}

/** Connects and waits for the outcome; for refusals, which TLS 1.3 reports after the handshake. */
async function outcome(listener: string, entry?: PkiEntry, send?: string): Promise<{ data: Buffer; ended: boolean; error?: Error }> {
  try {
    const c = await connect(listener, entry);
    c.sock.on('error', () => undefined);
    // ending our side lets an allowed connection finish (the echo answers at EOF)
    c.sock.end(send ?? '');
    return await c.done;
  } catch (error) {
    return { data: Buffer.alloc(0), ended: false, error: error as Error };
  }
}

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const connLine = (listener: string, pred: (l: Record<string, unknown>) => boolean = () => true) =>
  cli.accessLines().find((l) => l.event === 'connection' && l.listener === listener && pred(l));

test('50 MB each way arrive byte-exact, then the half-close lets the upstream answer after EOF', async () => {
  const size = 50 * 1024 * 1024;
  const payload = randomBytes(size);
  const sent = createHash('sha256').update(payload).digest('hex');
  const c = await connect('echo', pki.client);
  let off = 0;
  const chunk = 256 * 1024;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (off < size) {
        const ok = c.sock.write(payload.subarray(off, off + chunk));
        off += chunk;
        if (!ok) return void c.sock.once('drain', pump);
      }
      c.sock.end();
      resolve();
    };
    pump();
  });
  const r = await c.done;
  assert.ok(r.ended, 'the proxy ended the connection cleanly');
  const trailer = `\nEOF bytes=${size} sha256=${sent}\n`;
  assert.equal(r.data.length, size + trailer.length);
  assert.equal(createHash('sha256').update(r.data.subarray(0, size)).digest('hex'), sent, 'what came back is what was sent');
  assert.equal(r.data.subarray(size).toString(), trailer, 'the upstream received every byte and answered after the client EOF');
  const line = await waitFor(() => connLine('echo', (l) => l.bytes_in === size));
  assert.equal(line.bytes_out, size + trailer.length);
});

test('client half-close: the upstream reads EOF, answers later, and the client receives it', async () => {
  const c = await connect('echo', pki.client);
  c.sock.end('ping');
  const r = await c.done;
  assert.equal(r.data.toString(), `ping\nEOF bytes=4 sha256=${createHash('sha256').update('ping').digest('hex')}\n`);
  assert.ok(r.ended);
});

test('upstream half-close: the client gets EOF and can still send, and the upstream reads it', async () => {
  const before = greeter.seen.length;
  const c = await connect('greeter', pki.client);
  await new Promise<void>((r) => c.sock.once('end', r));
  c.sock.end('sent after the upstream finished\n');
  const r = await c.done;
  assert.equal(r.data.toString(), 'hello from upstream\n');
  const rec = await waitFor(() => (greeter.seen[before]?.ended ? greeter.seen[before] : undefined));
  assert.equal(Buffer.concat(rec.data).toString(), 'sent after the upstream finished\n');
});

test('the connection access-log line carries the SPEC §9 fields and byte counts', async () => {
  const c = await connect('echo', pki.client);
  c.sock.end('0123456789');
  await c.done;
  const line = await waitFor(() => connLine('echo', (l) => l.bytes_in === 10));
  for (const k of ['time', 'level', 'event', 'listener', 'remote_addr', 'tls_version', 'client', 'decision', 'upstream', 'bytes_in', 'bytes_out', 'duration_ms']) {
    assert.ok(k in line, `missing ${k}`);
  }
  assert.equal(line.upstream, 'echo');
  assert.equal(line.tls_version, 'TLSv1.3');
  assert.equal(line.remote_addr, '127.0.0.1');
  assert.equal((line.client as { verify: string }).verify, 'SUCCESS');
  assert.equal((line.client as { serial: string }).serial, pki.client.serial);
  assert.equal((line.decision as { allowed: boolean }).allowed, true);
  assert.equal(line.bytes_out, 10 + `\nEOF bytes=10 sha256=${createHash('sha256').update('0123456789').digest('hex')}\n`.length);
  assert.ok((line.duration_ms as number) >= 300, 'logged at close, after the late answer');
});

test('no client certificate: the handshake fails with certificate_required and nothing reaches the upstream', async () => {
  const before = echo.seen.length;
  const r = await outcome('echo', undefined, 'must not arrive');
  assert.match(String(r.error?.message), /certificate required/i);
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(echo.seen.length, before, 'no upstream connection was opened');
});

for (const [name, key, reason] of [
  ['a certificate from an untrusted CA', 'untrusted', 'unknown_ca'],
  ['an expired certificate', 'expired', 'expired'],
] as const) {
  test(`${name}: closed right after the handshake (${reason}), logged, nothing reaches the upstream`, async () => {
    const before = echo.seen.length;
    const r = await outcome('echo', pki[key], 'must not arrive');
    assert.equal(r.data.length, 0);
    const line = await waitFor(() => cli.accessLines().find((l) => l.event === 'tls_handshake_failed' && (l.client as { serial?: string }).serial === pki[key].serial));
    assert.equal((line.client as { verify: string }).verify, `FAILED:${reason}`);
    assert.equal(echo.seen.length, before, 'no upstream connection was opened');
  });
}

test('listener rules: a deny rule, an unmatched allow list and a missing certificate close the connection, logged', async () => {
  const before = echo.seen.length;
  for (const entry of [pki.client, pki.client2, undefined]) {
    const r = await outcome('rules', entry, 'must not arrive');
    assert.equal(r.data.length, 0);
  }
  assert.equal(echo.seen.length, before, 'nothing reached the upstream');
  const refused = (serial: string | undefined) => waitFor(() => connLine('rules', (l) => (l.client as { serial?: string }).serial === serial && !(l.decision as { allowed: boolean }).allowed));
  const denied = await refused(pki.client.serial);
  assert.equal((denied.decision as { rule?: string }).rule, 'listeners[rules].deny[0]');
  assert.equal((denied.decision as { reason?: string }).reason, 'denied by listeners[rules].deny[0]');
  assert.equal(denied.bytes_in, 0);
  assert.equal(((await refused(pki.client2.serial)).decision as { reason: string }).reason, 'no allow rule matched');
  assert.equal(((await refused(undefined)).decision as { reason: string }).reason, 'no client certificate');
  // the rules select: an identity the allow rule matches and no deny rule names passes
  const ok = await outcome('rules', pki.noEku, 'x');
  assert.match(ok.data.toString(), /^x\nEOF bytes=1 /, 'allowed client is served');
});

test('an unreachable upstream closes the client promptly and is logged', async () => {
  const t0 = Date.now();
  const r = await outcome('down', pki.client, 'hello?');
  assert.ok(Date.now() - t0 < 3000, 'closed within the connect timeout');
  assert.equal(r.data.length, 0);
  const line = await waitFor(() => connLine('down'));
  assert.match(String(line.error), /^upstream_unavailable: tcp:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  assert.equal((line.decision as { allowed: boolean }).allowed, true);
});

test('tls:// upstream: verified against tls.ca, the proxy presents tls.cert (mTLS out), half-close passes through', async () => {
  const c = await connect('tls-out', pki.client);
  c.sock.end('echo me\n');
  const r = await c.done;
  assert.equal(r.data.toString(), 'hello CN=reporting\necho me\nbye\n');
  assert.ok(r.ended);
});

test('limits.idle_timeout closes a connection on which nothing moves, and says so in the log', async () => {
  const c = await connect('idle', pki.client);
  c.sock.write('x');
  const t0 = Date.now();
  // the proxy closing shows as EOF; this client is half-open capable, so it ends its side
  await new Promise<void>((res) => c.sock.once('end', res));
  const took = Date.now() - t0;
  c.sock.end();
  const r = await c.done;
  assert.equal(r.data.toString(), 'x');
  assert.ok(took >= 400 && took < 3000, `closed after ${took}ms`);
  const line = await waitFor(() => connLine('idle'));
  assert.equal(line.error, 'idle_timeout');
  assert.equal(line.bytes_in, 1);
});

test('openssl s_client talks through the TCP listener', async () => {
  const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${cli.ports.echo}`, '-servername', 'localhost', '-CAfile', pki.ca.cert, '-cert', pki.client.cert, '-key', pki.client.key, '-quiet', '-verify_return_error']);
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  p.stdin.write('hello from openssl\n');
  try {
    await waitFor(() => out.includes('hello from openssl'), 10_000);
  } finally {
    p.kill();
  }
  assert.equal(out, 'hello from openssl\n', err);
});
