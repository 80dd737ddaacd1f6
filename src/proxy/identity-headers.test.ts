// renderIdentityHead: the identity block the upstream client appends to every request head
// without re-checking it, so it must refuse anything that could break the head's framing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIdentityHead } from './identity-headers.js';

test('an identity list renders as header lines, in order', () => {
  const ids = Object.freeze(['x-client-verify', 'SUCCESS', 'x-client-subject', 'CN=a,O=b', 'x-forwarded-client-cert', 'Hash=ab;Subject="CN=a"']);
  assert.equal(renderIdentityHead(ids), 'x-client-verify: SUCCESS\r\nx-client-subject: CN=a,O=b\r\nx-forwarded-client-cert: Hash=ab;Subject="CN=a"\r\n');
  assert.equal(renderIdentityHead(ids), renderIdentityHead(ids));
  assert.equal(renderIdentityHead([]), '');
});

test('a value with CR, LF or NUL, or a name that is not a token, is not rendered (the pairs then go through the per-header checks)', () => {
  for (const bad of [
    ['x-client-cn', 'a\r\nx-injected: 1'],
    ['x-client-cn', 'a\nb'],
    ['x-client-cn', 'a\0b'],
    ['x-client cn', 'a'],
    ['x-client-cn:', 'a'],
    ['', 'a'],
  ]) {
    assert.equal(renderIdentityHead(['x-client-verify', 'SUCCESS', ...bad]), undefined, JSON.stringify(bad));
  }
});
