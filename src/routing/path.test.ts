// Unit tests for request-target normalization: query split, unreserved decoding,
// slash merging, dot-segment removal, and the inputs that must be refused (route-bypass
// attempts). Helpers normalize with merge_slashes on (the default) unless told otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, removeDotSegments } from './path.js';

function ok(target: string, path: string, query = '', mergeSlashes = true): void {
  assert.deepEqual(normalizePath(target, mergeSlashes), { ok: true, path, query }, target);
}

function bad(target: string, reason: string): void {
  assert.deepEqual(normalizePath(target, true), { ok: false, reason }, JSON.stringify(target));
  assert.deepEqual(normalizePath(target, false), { ok: false, reason }, JSON.stringify(target));
}

test('plain paths pass through unchanged', () => {
  ok('/', '/');
  ok('/a/b/c', '/a/b/c');
  ok('/a/b/', '/a/b/');
  ok('/.well-known/acme', '/.well-known/acme');
  ok('/a/..b/c.', '/a/..b/c.');
  ok('/a/.../b', '/a/.../b');
});

test('query is split off verbatim', () => {
  ok('/a?b=1', '/a', '?b=1');
  ok('/a?', '/a', '?');
  ok('/a?x=%2F&y=/../z', '/a', '?x=%2F&y=/../z'); // not decoded, no dot removal
  ok('/a/../b?q=%zz', '/b', '?q=%zz');
  ok('/a?b?c', '/a', '?b?c');
});

test('asterisk form', () => {
  ok('*', '*');
  bad('*?x', 'request target must start with "/"');
  bad('**', 'request target must start with "/"');
});

test('dot-segments are removed (RFC 3986 5.2.4)', () => {
  ok('/a/./b/../c', '/a/c');
  ok('/..', '/');
  ok('/.', '/');
  ok('/../../a', '/a');
  ok('/a/..', '/');
  ok('/a/b/..', '/a/');
  ok('/a/b/.', '/a/b/');
  ok('/a/b/./', '/a/b/');
  ok('/a//../b', '/a/b', '', false); // without merging, ".." removes the empty segment
  ok('/a/b/../../../c/', '/c/');
  ok('/public/../admin', '/admin');
  assert.equal(removeDotSegments('/a/b/c/./../../g'), '/a/g'); // RFC 3986 5.2.4 example
  assert.equal(removeDotSegments('/mid/content=5/../6'), '/mid/6');
});

test('merge_slashes on: runs of slashes in the path become one, before dot-segments; the query is untouched', () => {
  ok('//admin', '/admin');
  ok('///admin//x///', '/admin/x/');
  ok('/a//b', '/a/b');
  ok('//', '/');
  ok('/a//../b', '/b'); // merged first, as nginx does: /a/../b
  ok('/x//..//admin', '/admin');
  ok('/%2e%2e//admin', '/admin');
  ok('//admin?next=//x//y', '/admin', '?next=//x//y');
  ok('/a?b//c', '/a', '?b//c');
});

test('merge_slashes off: the path keeps its slashes', () => {
  ok('//admin', '//admin', '', false);
  ok('/a//b', '/a//b', '', false);
  ok('/a//b?c//d', '/a//b', '?c//d', false);
  ok('/a/..//b', '//b', '', false);
});

test('unreserved %-escapes are decoded, others kept with uppercase hex', () => {
  ok('/%41%62%7e%2D%5f%2e', '/Ab~-_.');
  ok('/a%20b', '/a%20b');
  ok('/a%3fb', '/a%3Fb');
  ok('/%e2%82%ac', '/%E2%82%AC');
  ok('/a%25b', '/a%25b');
  ok('/%00', '/%00');
});

test('encoded-dot bypass attempts resolve before matching', () => {
  ok('/public/%2e%2e/admin', '/admin');
  ok('/public/%2E%2E/admin', '/admin');
  ok('/public/.%2e/admin', '/admin');
  ok('/public/%2e./admin', '/admin');
  ok('/public/%2e/admin', '/public/admin');
  // double encoding is decoded once only: it stays a literal segment
  ok('/public/%252e%252e/admin', '/public/%252e%252e/admin');
  ok('/public/%25%32%65%25%32%65/admin', '/public/%252e%252e/admin');
});

test('encoded slash or backslash is refused', () => {
  bad('/public/..%2fadmin', 'encoded slash or backslash in path');
  bad('/public%2F..%2Fadmin', 'encoded slash or backslash in path');
  bad('/public/..%5cadmin', 'encoded slash or backslash in path');
  bad('/a%5C', 'encoded slash or backslash in path');
  bad('/public/..\\admin', 'backslash in path');
  // only the path is checked for these: a query may carry them
  ok('/a?next=%2Fadmin&p=a\\b', '/a', '?next=%2Fadmin&p=a\\b');
});

test('invalid %-escapes are refused', () => {
  bad('/a%', 'invalid percent-encoding in path');
  bad('/a%4', 'invalid percent-encoding in path');
  bad('/a%zz', 'invalid percent-encoding in path');
  bad('/a%g1/b', 'invalid percent-encoding in path');
  bad('/%%41', 'invalid percent-encoding in path');
});

test('non-origin-form, control characters, fragments are refused', () => {
  bad('', 'request target must start with "/"');
  bad('a/b', 'request target must start with "/"');
  bad('http://example.com/a', 'request target must start with "/"');
  bad('/a\u0000b', 'control character in request target');
  bad('/a\r\nX: y', 'control character in request target');
  bad('/a\tb', 'control character in request target');
  bad('/a\u007fb', 'control character in request target');
  bad('/a?b\u0001', 'control character in request target');
  bad('/a b', 'space in request target');
  bad('/caf\u00e9', 'non-ASCII character in request target');
  bad('/a#frag', 'fragment ("#") in request target');
  bad('/a?b#frag', 'fragment ("#") in request target');
});

test('normalizing is idempotent and leaves no dot-segments (exhaustive over small inputs)', () => {
  // Upstreams may normalize again; they must arrive at the very path that was matched.
  const parts = ['a', '.', '..', '%2e', '%2E%2e', '', 'b%41', '.%2e', '...'];
  let count = 0;
  const walk = (prefix: string, depth: number): void => {
    if (depth === 0) return;
    for (const p of parts) {
      const target = `${prefix}/${p}`;
      for (const merge of [true, false]) {
        const once = normalizePath(target, merge);
        assert.ok(once.ok, target);
        assert.deepEqual(normalizePath(once.path, merge), once, target);
        assert.ok(!/(^|\/)\.\.?(\/|$)/.test(once.path), `${target} -> ${once.path}`);
        if (merge) assert.ok(!once.path.includes('//'), `${target} -> ${once.path}`);
      }
      count++;
      walk(target, depth - 1);
    }
  };
  walk('', 4);
  assert.equal(count, 9 + 81 + 729 + 6561);
});
