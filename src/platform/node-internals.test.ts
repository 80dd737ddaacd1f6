// The start-up self-test of the undocumented Node APIs portcullis uses, run on every Node
// major in CI (.ci/run): on a supported runtime it finds nothing and checkRuntime passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkRuntime, runtimeProblems, HTTPParser, methods, HEAD_STOP } from './node-internals.js';

test(`this runtime (${process.version}) has every internal portcullis relies on`, () => {
  assert.deepEqual(runtimeProblems(), []);
  assert.doesNotThrow(() => checkRuntime());
});

test('llhttp is reachable and knows the methods', () => {
  assert.equal(typeof HTTPParser, 'function');
  assert.ok(methods.includes('GET') && methods.includes('PATCH'));
  assert.equal(HEAD_STOP, 2);
});
