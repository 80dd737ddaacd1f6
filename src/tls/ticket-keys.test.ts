// Ticket key files: the formats accepted (nginx's raw 80/48 bytes, HAProxy-style base64
// text, also wrapped as `openssl rand -base64 80` writes it), the ones refused with the
// reason, and that derived keys differ per trust digest and per key but not per process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { parseTicketKey, newTicketKey } from './ticket-keys.js';
import { deriveTicketKeys } from './listener-tls.js';

const problem = (data: Buffer) => {
  const r = parseTicketKey(data);
  return 'problem' in r ? r.problem : undefined;
};

test('raw 80 and 48 bytes are keys as they are', () => {
  for (const n of [80, 48]) {
    const k = randomBytes(n);
    const r = parseTicketKey(k);
    assert.ok('key' in r && r.key.equals(k));
  }
  assert.equal(newTicketKey().length, 80);
});

test('base64 text of 80 or 48 bytes, with newlines anywhere (openssl rand -base64 wraps at 64 columns)', () => {
  const k = randomBytes(80);
  const wrapped = execFileSync('openssl', ['base64'], { input: k });
  assert.ok(wrapped.toString().trim().includes('\n'), 'openssl did not wrap; the test would not show what it claims');
  const r = parseTicketKey(wrapped);
  assert.ok('key' in r && r.key.equals(k));
  const short = randomBytes(48);
  const r2 = parseTicketKey(Buffer.from(`${short.toString('base64')}\n`));
  assert.ok('key' in r2 && r2.key.equals(short));
});

test('anything else is refused with what it holds', () => {
  assert.equal(problem(randomBytes(32)), 'holds 32 bytes, not 80 or 48');
  assert.equal(problem(Buffer.from(`${randomBytes(40).toString('base64')}\n`)), 'holds base64 text of 40 bytes, not of 80 or 48');
  assert.equal(problem(Buffer.alloc(80)), 'holds the same byte repeated, not random bytes');
  // a PEM-shaped file (not a real key; the label is assembled so no key block is committed)
  const label = ['PRIVATE', 'KEY'].join(' ');
  const pem = Buffer.from(`-----BEGIN ${label}-----\nMIGH\n-----END ${label}-----\n`);
  assert.equal(problem(pem), `holds ${pem.length} bytes, not 80 or 48`);
  // base64 with a stray character is not silently shortened
  assert.match(problem(Buffer.from(`${randomBytes(80).toString('base64').slice(0, 50)}*${randomBytes(1).toString('base64')}`)) ?? '', /bytes/);
});

test('derived ticket keys: 48 bytes, the same from the same secret and digest, different for another digest or key', () => {
  const secret = randomBytes(80);
  const a = deriveTicketKeys(secret, 'digest-a');
  assert.equal(a.length, 48);
  assert.ok(a.equals(deriveTicketKeys(Buffer.from(secret), 'digest-a')), 'two replicas with the same file must derive the same keys');
  assert.ok(!a.equals(deriveTicketKeys(secret, 'digest-b')));
  assert.ok(!a.equals(deriveTicketKeys(randomBytes(80), 'digest-a')));
  // the key names (first 16 bytes) differ too, so an offered ticket finds only its own key
  assert.ok(!a.subarray(0, 16).equals(deriveTicketKeys(secret, 'digest-b').subarray(0, 16)));
});
