// The start-up self-test of the undocumented Node APIs portcullis uses, run on every Node
// major in CI (.ci/run): on a supported runtime it finds nothing and checkRuntime passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { checkRuntime, runtimeProblems, HTTPParser, methods, HEAD_STOP, interceptDestroy } from './node-internals.js';

test(`this runtime (${process.version}) has every internal portcullis relies on`, () => {
  assert.deepEqual(runtimeProblems(), []);
  assert.doesNotThrow(() => checkRuntime());
});

test('llhttp is reachable and knows the methods', () => {
  assert.equal(typeof HTTPParser, 'function');
  assert.ok(methods.includes('GET') && methods.includes('PATCH'));
  assert.equal(HEAD_STOP, 2);
});

test('Node closes a failed server-side handshake through the socket instance\'s destroy() (item 9, the held close)', async () => {
  const raw = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const sock = new tls.TLSSocket(raw, { isServer: true, secureContext: tls.createSecureContext() });
  let intercepted = 0;
  interceptDestroy(sock, (original, err) => {
    intercepted++;
    return original(err);
  });
  // the error listener does not call destroy itself: only Node's own close path may reach it
  const failed = new Promise<string | undefined>((r) => sock.once('error', (e: Error & { code?: string }) => r(e.code)));
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  raw.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.equal(await failed, 'ERR_SSL_HTTP_REQUEST');
  await closed;
  assert.ok(intercepted >= 1, 'the failed handshake was closed without going through the instance destroy()');
  raw.destroy();
});
