// `ticket-key rotate` without a proxy: keys move one file down the list, the oldest is
// dropped, the first file gets a fresh key (or the --next file's), files stay mode 0600,
// and a missing or broken first file is refused before anything is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { rotateTicketKeys } from './ticket-key.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

test('rotate shifts keys down the list and drops the oldest; --next promotes the staged key', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-tk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [cur, prev, older, next] = ['current', 'previous', 'older', 'next'].map((n) => join(dir, `${n}.key`)) as [string, string, string, string];
  const k = [randomBytes(80), randomBytes(80), randomBytes(48), randomBytes(80)];
  writeFileSync(cur, k[0]!);
  // previous.key does not exist yet: the first rotation creates it
  writeFileSync(older, k[2]!);
  assert.deepEqual(rotateTicketKeys([cur, prev]), { dropped: false });
  assert.ok(readFileSync(prev).equals(k[0]!));
  const fresh = readFileSync(cur);
  assert.equal(fresh.length, 80);
  assert.ok(!fresh.equals(k[0]!));
  assert.equal(statSync(cur).mode & 0o777, 0o600);

  writeFileSync(next, k[3]!);
  assert.deepEqual(rotateTicketKeys([cur, prev, older], next), { dropped: true });
  assert.ok(readFileSync(cur).equals(k[3]!), 'the staged key did not become current');
  assert.ok(readFileSync(prev).equals(fresh));
  assert.ok(readFileSync(older).equals(k[0]!));
  assert.ok(!readFileSync(next).equals(k[3]!), 'the next file did not get a fresh key');
  assert.equal(statSync(next).mode & 0o777, 0o600);
});

test('rotate refuses a missing or broken current file and writes nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-tk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cur = join(dir, 'current.key');
  const prev = join(dir, 'previous.key');
  const k = randomBytes(80);
  writeFileSync(prev, k);
  assert.throws(() => rotateTicketKeys([cur, prev]), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.FILE_NOT_FOUND && e.message.includes('ticket-key new'));
  writeFileSync(cur, 'not a key');
  assert.throws(() => rotateTicketKeys([cur, prev]), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.TICKET_KEY_INVALID);
  assert.ok(readFileSync(prev).equals(k));
});
