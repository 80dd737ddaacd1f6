// renderIdentityHead: the identity block the upstream client appends to every request head
// without re-checking it, so it must refuse anything that could break the head's framing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderIdentityHead, sanValue } from './identity-headers.js';

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

test('X-Client-SAN values: the separator, "%", spaces, control characters and non-ASCII are %-escaped; decoding gives the value back', () => {
  assert.equal(sanValue('a.example.com'), 'a.example.com');
  assert.equal(sanValue('spiffe://example.org/ns/prod/sa/pay'), 'spiffe://example.org/ns/prod/sa/pay');
  assert.equal(sanValue('a.example.com,URI:spiffe://example.org/admin'), 'a.example.com%2CURI:spiffe://example.org/admin');
  assert.equal(sanValue('spiffe://x/a%2Cb'), 'spiffe://x/a%252Cb');
  assert.equal(sanValue('a b\r\n\u0000\u007f'), 'a%20b%0D%0A%00%7F');
  assert.equal(sanValue('bücher'), 'b%C3%BCcher');
  for (const v of ['a,b,,c', '%%2C%', 'x y', 'é€😀', 'DNS:a,URI:b']) {
    const e = sanValue(v);
    assert.ok(!/[, %\x00-\x1f\x7f-\uffff]/.test(e.replace(/%[0-9A-F]{2}/g, '')), e);
    assert.equal(decodeURIComponent(e), v);
  }
});
