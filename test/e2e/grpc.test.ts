// gRPC through the real CLI: a real grpc-js server (h2c, and TLS with ALPN h2) behind
// portcullis and a real grpc-js client with a client certificate. All four call shapes,
// trailers and trailers-only answers passed through, identity metadata at the server,
// and the gRPC statuses portcullis answers itself: PERMISSION_DENIED, UNAUTHENTICATED,
// UNAVAILABLE, DEADLINE_EXCEEDED. The service is defined in code (JSON messages).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener, type RunningCli } from '../helpers/proxy.js';

interface Msg {
  text?: string;
  n?: number;
  sleep?: number;
  fail?: boolean;
  spiffe?: string;
  spoofSeen?: string;
}

const serialize = (m: Msg) => Buffer.from(JSON.stringify(m));
const deserialize = (b: Buffer) => JSON.parse(b.toString()) as Msg;

function serviceDef(name: string): grpc.ServiceDefinition {
  const m = (method: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Msg, Msg> => ({
    path: `/${name}/${method}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  });
  return { unary: m('Unary', false, false), serverStream: m('ServerStream', false, true), clientStream: m('ClientStream', true, false), bidi: m('Bidi', true, true) };
}

/** Methods called on the upstream servers, and calls they saw cancelled. */
const seen: { path: string; metadata: grpc.Metadata; deadline?: grpc.Deadline }[] = [];
const cancelled: string[] = [];

const impl: grpc.UntypedServiceImplementation = {
  unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
    seen.push({ path: call.getPath(), metadata: call.metadata, deadline: call.getDeadline() });
    const req = call.request;
    if (req.fail) {
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing: ünïcode 100%' });
      return;
    }
    const reply = () => {
      const trailers = new grpc.Metadata();
      trailers.set('x-trailer-check', 'kept');
      const md = call.metadata;
      cb(null, { text: req.text, spiffe: String(md.get('x-client-spiffe-id')[0] ?? ''), spoofSeen: md.get('x-client-cn').join('|') }, trailers);
    };
    if (!req.sleep) return reply();
    const t = setTimeout(reply, req.sleep);
    call.on('cancelled', () => {
      clearTimeout(t);
      cancelled.push(req.text ?? '');
    });
  },
  serverStream(call: grpc.ServerWritableStream<Msg, Msg>) {
    seen.push({ path: call.getPath(), metadata: call.metadata });
    for (let i = 0; i < (call.request.n ?? 0); i++) call.write({ n: i });
    call.end();
  },
  clientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
    seen.push({ path: call.getPath(), metadata: call.metadata });
    let sum = 0;
    call.on('data', (m: Msg) => (sum += m.n ?? 0));
    call.on('end', () => cb(null, { n: sum }));
  },
  bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
    seen.push({ path: call.getPath(), metadata: call.metadata });
    call.on('data', (m: Msg) => call.write({ text: (m.text ?? '').toUpperCase() }));
    call.on('end', () => call.end());
  },
};

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let h2cServer: grpc.Server;
let tlsServer: grpc.Server;

function bind(server: grpc.Server, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))));
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  h2cServer = new grpc.Server();
  for (const name of ['echo.Echo', 'echo.Slow', 'echo.Denied']) h2cServer.addService(serviceDef(name), impl);
  const h2cPort = await bind(h2cServer, grpc.ServerCredentials.createInsecure());
  tlsServer = new grpc.Server();
  tlsServer.addService(serviceDef('echo.Tls'), impl);
  const tlsPort = await bind(tlsServer, grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(pki.server.key), cert_chain: readFileSync(pki.server.chain) }], false));
  const req = { client_auth: 'require' };
  cli = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          // optional at the handshake so that a call without a certificate reaches a route
          tls: { client_auth: 'optional' },
          routes: [
            { name: 'denied', match: { path: '/echo.Denied/' }, allow: [{ cn: 'reporting' }], upstream: 'grpc', ...req },
            { name: 'down', match: { path: '/echo.Down/' }, upstream: 'down', ...req },
            { name: 'slow', match: { path: '/echo.Slow/' }, timeout: '300ms', upstream: 'grpc', ...req },
            { name: 'tls', match: { path: '/echo.Tls/' }, upstream: 'grpcTls', ...req },
            { name: 'grpc', upstream: 'grpc', ...req },
          ],
        }),
      ],
      upstreams: {
        grpc: { endpoints: [`h2c://127.0.0.1:${h2cPort}`] },
        grpcTls: { endpoints: [`https://127.0.0.1:${tlsPort}`], tls: { ca: pki.ca.cert } },
        down: { endpoints: ['h2c://127.0.0.1:1'] },
      },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  h2cServer?.forceShutdown();
  tlsServer?.forceShutdown();
  cleanup(dir);
});

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall & grpc.ClientReadableStream<Msg> & grpc.ClientWritableStream<Msg>>;

function client(service: string, withCert = true): AnyClient {
  const Ctor = grpc.makeGenericClientConstructor(serviceDef(service), service);
  const ca = readFileSync(pki.ca.cert);
  const creds = withCert ? grpc.credentials.createSsl(ca, readFileSync(pki.client.key), readFileSync(pki.client.cert)) : grpc.credentials.createSsl(ca);
  return new Ctor(`127.0.0.1:${cli.port}`, creds) as unknown as AnyClient;
}

interface UnaryResult {
  status: grpc.StatusObject;
  res?: Msg;
}

function unary(c: AnyClient, req: Msg, opts: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let res: Msg | undefined;
    const callOpts: grpc.CallOptions = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
    const call = c.unary(req, opts.metadata ?? new grpc.Metadata(), callOpts, (_err: unknown, r?: Msg) => (res = r));
    // grpc-js calls back before it emits 'status'
    call.on('status', (status: grpc.StatusObject) => resolve({ status, res }));
  });
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('unary over h2c: the server sees the real identity metadata (spoofed metadata scrubbed) and its trailers come back', async () => {
  const c = client('echo.Echo');
  try {
    const md = new grpc.Metadata();
    md.set('x-client-spiffe-id', 'spiffe://evil/admin');
    md.set('x-client-cn', 'root');
    const r = await unary(c, { text: 'hi' }, { metadata: md });
    assert.equal(r.status.code, grpc.status.OK, r.status.details);
    assert.equal(r.res?.text, 'hi');
    assert.equal(r.res?.spiffe, 'spiffe://example.org/ns/prod/sa/payment');
    assert.equal(r.res?.spoofSeen, 'payment-service', 'only the proxy-set X-Client-CN reached the server');
    assert.deepEqual(r.status.metadata.get('x-trailer-check'), ['kept']);
    const last = seen.at(-1)!;
    assert.equal(last.path, '/echo.Echo/Unary');
    assert.equal(last.metadata.get('x-client-verify')[0], 'SUCCESS');
  } finally {
    c.close();
  }
});

test('server streaming, client streaming and bidi calls stream through in both directions', async () => {
  const c = client('echo.Echo');
  try {
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c.serverStream({ n: 5 });
      s.on('data', (m: Msg) => got.push(m.n!));
      s.on('status', (st: grpc.StatusObject) => (st.code === 0 ? resolve() : reject(new Error(st.details))));
      s.on('error', reject);
    });
    assert.deepEqual(got, [0, 1, 2, 3, 4]);

    const sum = await new Promise<Msg>((resolve, reject) => {
      const w = c.clientStream((err: grpc.ServiceError | null, r?: Msg) => (err ? reject(err) : resolve(r!)));
      for (const n of [1, 2, 3, 4]) w.write({ n });
      w.end();
    });
    assert.equal(sum.n, 10);

    // one message at a time: each answer must arrive before the next request is sent,
    // which only works if neither direction is buffered until the end
    const duplex = c.bidi() as unknown as grpc.ClientDuplexStream<Msg, Msg>;
    const answers: string[] = [];
    for (const word of ['alpha', 'beta', 'gamma']) {
      const next = new Promise<Msg>((resolve) => duplex.once('data', resolve));
      duplex.write({ text: word });
      answers.push((await next).text!);
    }
    const done = new Promise<grpc.StatusObject>((resolve) => duplex.on('status', resolve));
    duplex.end();
    assert.equal((await done).code, grpc.status.OK);
    assert.deepEqual(answers, ['ALPHA', 'BETA', 'GAMMA']);
  } finally {
    c.close();
  }
});

test("an upstream's error status (a trailers-only answer) passes through with its percent-encoded message", async () => {
  const c = client('echo.Echo');
  try {
    const r = await unary(c, { fail: true });
    assert.equal(r.status.code, grpc.status.NOT_FOUND);
    assert.equal(r.status.details, 'no such thing: ünïcode 100%');
  } finally {
    c.close();
  }
});

test('https upstream with ALPN h2 (TLS gRPC server) works too', async () => {
  const c = client('echo.Tls');
  try {
    const r = await unary(c, { text: 'over tls' });
    assert.equal(r.status.code, grpc.status.OK, r.status.details);
    assert.equal(r.res?.spiffe, 'spiffe://example.org/ns/prod/sa/payment');
  } finally {
    c.close();
  }
});

test('portcullis refusals are gRPC statuses: PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE', async () => {
  const n = seen.length;
  const c = client('echo.Denied');
  const anon = client('echo.Echo', false);
  const down = client('echo.Down');
  try {
    const denied = await unary(c, { text: 'x' });
    assert.equal(denied.status.code, grpc.status.PERMISSION_DENIED);
    assert.match(denied.status.details, /route denied does not allow this client/);
    const noCert = await unary(anon, { text: 'x' });
    assert.equal(noCert.status.code, grpc.status.UNAUTHENTICATED);
    assert.match(noCert.status.details, /requires a client certificate/);
    const unavailable = await unary(down, { text: 'x' });
    assert.equal(unavailable.status.code, grpc.status.UNAVAILABLE);
    assert.match(unavailable.status.details, /upstream down .* refused the connection/);
    assert.equal(seen.length, n, 'no refused call reached a server');
  } finally {
    c.close();
    anon.close();
    down.close();
  }
});

test("deadlines: the client's deadline cancels the upstream call; a route timeout answers DEADLINE_EXCEEDED", async () => {
  const c = client('echo.Echo');
  const slow = client('echo.Slow');
  try {
    const started = Date.now();
    const r = await unary(c, { text: 'client-deadline', sleep: 3000 }, { deadlineMs: 300 });
    assert.equal(r.status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 2500);
    // the cancellation travelled through the proxy to the server (RST_STREAM upstream)
    await waitFor(() => cancelled.includes('client-deadline'));
    // grpc-js turns the grpc-timeout header into the server call's deadline
    const deadline = Number(seen.at(-1)!.deadline);
    assert.ok(deadline < started + 1500, `grpc-timeout reached the server (deadline ${deadline - started} ms after the call started)`);

    const r2 = await unary(slow, { text: 'route-timeout', sleep: 3000 }, { deadlineMs: 10_000 });
    assert.equal(r2.status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.match(r2.status.details, /did not answer in time/, 'answered by portcullis, not by the client library');
    await waitFor(() => cancelled.includes('route-timeout'));
  } finally {
    c.close();
    slow.close();
  }
});
