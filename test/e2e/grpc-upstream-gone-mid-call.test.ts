// Finding (gRPC kill drill, issue 13): a gRPC server killed after it sent a call's response
// headers but before its grpc-status trailer made the proxy end the client's stream without
// a status, which grpc-js reports as INTERNAL "Received RST_STREAM with code 0 (Call ended
// without gRPC status)". Clients retry UNAVAILABLE, not INTERNAL: the proxy must end such a
// call with grpc-status 14. Reproduced deterministically with an h2c upstream that sends
// the headers and then drops its connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { makeTestPki } from '../helpers/pki.js';
import { startCli, tempDir, cleanup, tlsListener } from '../helpers/proxy.js';

test('an upstream that goes away after the response headers: the gRPC client gets UNAVAILABLE, not INTERNAL', async (t) => {
  const dir = tempDir();
  t.after(() => cleanup(dir));
  const pki = await makeTestPki(`${dir}/pki`);
  let calls = 0;
  const upstream = http2.createServer();
  upstream.on('stream', (stream) => {
    calls++;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    // the server dies mid-call: its connection closes without trailers
    setTimeout(() => stream.session?.destroy(), 20);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.after(() => upstream.close());
  const cli = await startCli({ listeners: [tlsListener(pki, { routes: [{ upstream: 'grpc' }] })], upstreams: { grpc: { endpoints: [`h2c://127.0.0.1:${(upstream.address() as AddressInfo).port}`], retries: 0 } } }, { dir });
  t.after(() => cli.stop());
  const ser = (m: object) => Buffer.from(JSON.stringify(m));
  const de = (b: Buffer) => JSON.parse(b.toString()) as object;
  const Ctor = grpc.makeGenericClientConstructor({ unary: { path: '/gone.Svc/Unary', requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de } }, 'gone.Svc');
  const client = new Ctor(`127.0.0.1:${cli.port}`, grpc.credentials.createSsl(readFileSync(pki.ca.cert), readFileSync(pki.client.key), readFileSync(pki.client.cert)), { 'grpc.ssl_target_name_override': 'localhost' }) as unknown as grpc.Client & {
    unary: (req: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall;
  };
  t.after(() => client.close());
  const err = await new Promise<grpc.ServiceError | null>((resolve) => client.unary({}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, resolve));
  assert.equal(calls, 1, 'the call reached the upstream');
  assert.equal(err?.code, grpc.status.UNAVAILABLE, `${err?.code} ${err?.details}`);
  assert.match(err!.details, /closed the connection before the response was complete/);
});
