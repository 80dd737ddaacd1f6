// PROXY protocol on protocol: tcp listeners: v1 and v2 headers consumed by a real
// PROXY-protocol server (nginx from Debian, `listen ... proxy_protocol`), and every byte
// of the v2 header, SSL TLV and its sub-TLVs checked as a raw TCP upstream received them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { makeTestPki, type TestPki, type PkiEntry } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, type RunningCli } from '../helpers/proxy.js';
import { parseV1, parseV2, SIGNATURE } from '../helpers/proxy-protocol.js';
import { freePort } from '../helpers/ports.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx', 'nginx'].find((p) => spawnSync(p, ['-v']).status === 0);
const skipNginx = NGINX ? false : 'nginx is not installed (apt-get install -y nginx); skipping the real PROXY-protocol server checks';

let pki: TestPki;
let cli: RunningCli;
let dir: string;
let nginx: ChildProcess | undefined;
/** every connection the raw upstream accepted, with all the bytes it read */
const captured: Buffer[][] = [];
let raw: net.Server;

async function waitListening(port: number, exited: Promise<unknown>): Promise<void> {
  const end = Date.now() + 10_000;
  let gone = false;
  void exited.then(() => (gone = true));
  while (Date.now() < end && !gone) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not listen on ${port}`);
}

/** nginx in the foreground, its prefix and logs in `prefix`, answering with the PROXY-protocol source it parsed. */
async function startNginx(prefix: string, port: number): Promise<ChildProcess> {
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  const conf = `daemon off;
master_process off;
error_log ${prefix}/err.log;
pid ${prefix}/nginx.pid;
events { worker_connections 64; }
http {
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port} proxy_protocol;
    access_log off;
    location / {
      default_type text/plain;
      return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\\n";
    }
  }
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const proc = spawn(NGINX!, ['-p', prefix, '-c', join(prefix, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    await waitListening(port, exited);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${(err as Error).message}: ${stderr}`);
  }
  return proc;
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  const nginxPort = await freePort();
  if (NGINX) nginx = await startNginx(join(dir, 'nginx'), nginxPort);
  // records everything; answers "done" once the proxy half-closes toward it
  raw = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    captured.push(chunks);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => s.end('done'));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const rawPort = (raw.address() as AddressInfo).port;
  const tlsCfg = { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert };
  const tcp = (name: string, upstream: string, proxy_protocol: string, extra: Record<string, unknown> = {}) => ({
    name,
    address: '127.0.0.1:0',
    protocol: 'tcp',
    tls: tlsCfg,
    upstream,
    proxy_protocol,
    ...extra,
  });
  cli = await startCli(
    {
      listeners: [
        tcp('nginx-v1', 'nginx', 'v1'),
        tcp('nginx-v2', 'nginx', 'v2'),
        tcp('raw-v1', 'raw', 'v1'),
        tcp('raw-v2', 'raw', 'v2'),
        tcp('raw-v2-optional', 'raw', 'v2', { tls: { ...tlsCfg, client_auth: 'optional' } }),
      ],
      upstreams: {
        nginx: { endpoints: [`tcp://127.0.0.1:${nginxPort}`] },
        raw: { endpoints: [`tcp://127.0.0.1:${rawPort}`] },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  nginx?.kill();
  raw?.close();
  cleanup(dir);
});

interface Exchange {
  /** what the client received until the connection closed */
  reply: string;
  localPort: number;
  protocol: string | null;
  cipher: string;
  reused: boolean;
  session: Buffer | undefined;
}

/** One TLS connection to a listener: send `payload`, half-close, read everything back. */
function exchange(listener: string, payload: string, o: { entry?: PkiEntry | undefined; maxVersion?: tls.SecureVersion; session?: Buffer | undefined } = {}): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port: cli.ports[listener]!,
      servername: 'localhost',
      ca: readFileSync(pki.ca.cert),
      ...(o.entry ? { cert: readFileSync(o.entry.cert), key: readFileSync(o.entry.key) } : {}),
      ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
      ...(o.session ? { session: o.session } : {}),
    });
    sock.allowHalfOpen = true;
    let reply = '';
    let session: Buffer | undefined;
    let info: Omit<Exchange, 'reply' | 'session'> | undefined;
    sock.on('session', (s: Buffer) => (session = s));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (reply += d));
    sock.on('error', reject);
    sock.once('secureConnect', () => {
      info = { localPort: sock.localPort!, protocol: sock.getProtocol(), cipher: sock.getCipher().name, reused: sock.isSessionReused() };
      sock.end(payload);
    });
    sock.on('close', () => (info ? resolve({ ...info, reply, session }) : reject(new Error('closed before the handshake'))));
  });
}

const httpGet = 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';

for (const v of ['v1', 'v2'] as const) {
  test(`nginx (listen proxy_protocol) reads the client address from the ${v} header`, { skip: skipNginx }, async () => {
    const x = await exchange(`nginx-${v}`, httpGet, { entry: pki.client });
    assert.match(x.reply, /^HTTP\/1\.1 200 /, x.reply);
    const body = x.reply.slice(x.reply.indexOf('\r\n\r\n') + 4);
    assert.equal(body, `127.0.0.1 ${x.localPort} 127.0.0.1 ${cli.ports[`nginx-${v}`]}\n`);
  });
}

/** The bytes the raw upstream got on the connection opened by the exchange `run`. */
async function capture(run: () => Promise<Exchange>): Promise<{ x: Exchange; bytes: Buffer }> {
  const before = captured.length;
  const x = await run();
  assert.equal(x.reply, 'done');
  assert.equal(captured.length, before + 1, 'one upstream connection');
  return { x, bytes: Buffer.concat(captured[before]!) };
}

test('v1: the exact PROXY line, then the client bytes unchanged', async () => {
  const { x, bytes } = await capture(() => exchange('raw-v1', 'payload-1', { entry: pki.client }));
  const h = parseV1(bytes)!;
  assert.equal(h.line, `PROXY TCP4 127.0.0.1 127.0.0.1 ${x.localPort} ${cli.ports['raw-v1']}`);
  assert.equal(bytes.subarray(h.length).toString(), 'payload-1');
});

test('v2 with a verified client: header, addresses, ports and every SSL sub-TLV, byte by byte', async () => {
  const { x, bytes } = await capture(() => exchange('raw-v2', 'payload-2', { entry: pki.client }));
  assert.deepEqual(bytes.subarray(0, 12), SIGNATURE);
  assert.equal(bytes[12], 0x21, 'version 2, command PROXY');
  assert.equal(bytes[13], 0x11, 'TCP over IPv4');
  const h = parseV2(bytes)!;
  assert.equal(bytes.readUInt16BE(14), h.length - 16);
  assert.equal(bytes.subarray(h.length).toString(), 'payload-2', 'the length field ends exactly where the client bytes start');
  assert.equal(h.src, '127.0.0.1');
  assert.equal(h.dst, '127.0.0.1');
  assert.equal(h.srcPort, x.localPort);
  assert.equal(h.dstPort, cli.ports['raw-v2']);
  assert.deepEqual(h.tlvs.map((t) => t.type), [0x20], 'one TLV: PP2_TYPE_SSL');
  assert.equal(h.ssl!.client, 0x01 | 0x02 | 0x04, 'PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS');
  assert.equal(h.ssl!.verify, 0, 'verified');
  const sub = new Map(h.ssl!.subs.map((t) => [t.type, t.value]));
  assert.deepEqual([...sub.keys()], [0x21, 0x22, 0x23, 0x28]);
  assert.equal(sub.get(0x21)!.toString(), 'TLSv1.3');
  assert.equal(sub.get(0x21)!.toString(), x.protocol);
  assert.equal(sub.get(0x22)!.toString(), 'payment-service');
  assert.equal(sub.get(0x23)!.toString(), x.cipher, 'the cipher the client negotiated');
  const der = new X509Certificate(readFileSync(pki.client.cert)).raw;
  assert.ok(sub.get(0x28)!.equals(der), 'the client certificate DER');
});

test('v2 over TLS 1.2: version and OpenSSL cipher name follow the negotiation', async () => {
  const { x, bytes } = await capture(() => exchange('raw-v2', 'p', { entry: pki.client, maxVersion: 'TLSv1.2' }));
  const sub = new Map(parseV2(bytes)!.ssl!.subs.map((t) => [t.type, t.value.toString('latin1')]));
  assert.equal(sub.get(0x21), 'TLSv1.2');
  assert.equal(sub.get(0x23), x.cipher);
  assert.match(x.cipher, /^ECDHE-/);
});

test('v2 on a resumed session: the certificate is flagged for the session, not this connection', async () => {
  const first = await capture(() => exchange('raw-v2', 'a', { entry: pki.client }));
  assert.ok(first.x.session, 'the server issued a session ticket');
  const { x, bytes } = await capture(() => exchange('raw-v2', 'b', { entry: pki.client, session: first.x.session }));
  assert.ok(x.reused, 'the session was resumed');
  const h = parseV2(bytes)!;
  assert.equal(h.ssl!.client, 0x01 | 0x04);
  assert.equal(h.ssl!.verify, 0);
  const der = new X509Certificate(readFileSync(pki.client.cert)).raw;
  assert.ok(h.ssl!.subs.find((t) => t.type === 0x28)!.value.equals(der));
});

test('v2 without a client certificate (client_auth optional): SSL flag only, verify non-zero, no CN or certificate', async () => {
  const { bytes } = await capture(() => exchange('raw-v2-optional', 'anonymous'));
  const h = parseV2(bytes)!;
  assert.equal(h.ssl!.client, 0x01);
  assert.notEqual(h.ssl!.verify, 0);
  assert.deepEqual(h.ssl!.subs.map((t) => t.type), [0x21, 0x23]);
  assert.equal(bytes.subarray(h.length).toString(), 'anonymous');
});
