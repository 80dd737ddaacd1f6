// Unit tests for Host / :authority validation: what routes by host name passes, and each
// shape that could be read two ways (userinfo, lists, paths, odd ports, odd IPv4 forms)
// is refused with a reason that names it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { hostProblem } from './host.js';

test('host names, IPv4, bracketed IPv6, with and without a port, pass', () => {
  for (const h of [
    'localhost', 'LOCALHOST', 'api.example.com', 'api.example.com.', 'my_svc.internal', 'xn--bcher-kva.example',
    'localhost:8443', 'api.example.com:0', 'api.example.com:65535', '127.0.0.1', '127.0.0.1:443', '[::1]', '[::1]:8443',
    '[2001:db8::1]', '[::ffff:127.0.0.1]:1', 'a', `${'a'.repeat(63)}.com`,
  ]) {
    assert.equal(hostProblem(h), undefined, h);
  }
});

test('userinfo, lists, paths, spaces and other characters are refused, naming the character', () => {
  const cases: [string, RegExp][] = [
    ['a@b', /userinfo \("@"\)/],
    ['user@localhost:8443', /userinfo/],
    ['a,b', /a comma/],
    ['localhost, admin.example.com', /a comma/],
    ['a/b', /a "\/"/],
    ['localhost/admin', /a "\/"/],
    ['a b', /a space/],
    ['a\tb', /a tab/],
    ['a;b', /the character ";"/],
    ['a%2eb', /the character "%"/],
    ['bücher.example', /non-ASCII character "ü"/],
    ['a\u0001b', /control character 0x01/],
    ['a*b', /the character "\*"/],
  ];
  for (const [h, re] of cases) assert.match(hostProblem(h) ?? 'accepted', re, JSON.stringify(h));
});

test('dotted quads agree with net.isIPv4', () => {
  for (const h of ['0.0.0.0', '255.255.255.255', '10.0.0.1', '1.2.3.4', '256.1.1.1', '1.2.3.04', '00.1.2.3', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.4444']) {
    assert.equal(hostProblem(h) === undefined, isIPv4(h), h);
  }
});

test('ports: empty, non-numeric, out of range are refused', () => {
  assert.match(hostProblem('localhost:')!, /empty port/);
  assert.match(hostProblem('[::1]:')!, /empty port/);
  assert.match(hostProblem('localhost:65536')!, /port "65536"/);
  assert.match(hostProblem('localhost:123456')!, /port "123456"/);
  assert.match(hostProblem('localhost:8a')!, /the character "a"|port "8a"/);
  assert.match(hostProblem(':8443')!, /no host name/);
});

test('empty names, empty labels, IPv6 without brackets or with a zone, odd IPv4 forms are refused', () => {
  assert.match(hostProblem('')!, /empty/);
  assert.match(hostProblem('.example.com')!, /empty label/);
  assert.match(hostProblem('a..b')!, /empty label/);
  assert.match(hostProblem('::1')!, /more than one ":"/);
  assert.match(hostProblem('[::1')!, /without closing/);
  assert.match(hostProblem('[fe80::1%25eth0]')!, /not an IPv6 address/);
  assert.match(hostProblem('[localhost]')!, /not an IPv6 address/);
  assert.match(hostProblem('[::1]x')!, /only :port may follow/);
  for (const h of ['127.1', '1.2.3.300', '0x7f.0.0.1', '2130706433', '01.2.3.4']) assert.match(hostProblem(h)!, /not an IPv4 address/, h);
  assert.match(hostProblem(`${'a'.repeat(64)}.com`)!, /label of 64/);
  assert.match(hostProblem(`${'a.'.repeat(127)}ab`)!, /at most 253/);
});
