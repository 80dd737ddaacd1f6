// Unit tests for request-method checks: known methods pass as written, case variants of
// them are refused naming the right spelling, non-tokens are refused, extension methods
// pass exactly, and the known list covers every method this Node version's parser knows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { METHODS } from 'node:http';
import { KNOWN_METHODS, methodProblem } from './method.js';

test('known methods written in upper case pass', () => {
  for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PROPFIND', 'M-SEARCH']) {
    assert.equal(methodProblem(m), undefined, m);
  }
});

test('a case variant of a known method is refused, naming the known one', () => {
  assert.equal(methodProblem('delete'), 'the method "delete" is not DELETE: methods are case-sensitive (RFC 9110 §9.1); send DELETE');
  assert.match(methodProblem('Get')!, /send GET$/);
  assert.match(methodProblem('pAtCh')!, /send PATCH$/);
  assert.match(methodProblem('m-search')!, /send M-SEARCH$/);
});

test('a method that is not a token is refused', () => {
  for (const m of ['', 'GET /', 'GE\tT', 'GET\r\n', 'G(ET)', 'GÉT', 'GET,POST']) {
    assert.match(methodProblem(m)!, /is not a token/, JSON.stringify(m));
  }
});

test('extension methods are tokens and pass exactly as written', () => {
  for (const m of ['FROB', 'frob', 'X-Custom', 'BREW']) assert.equal(methodProblem(m), undefined, m);
});

test('KNOWN_METHODS holds every method node:http knows on this Node version', () => {
  for (const m of METHODS) assert.ok(KNOWN_METHODS.has(m), `${m} is missing from KNOWN_METHODS`);
});
