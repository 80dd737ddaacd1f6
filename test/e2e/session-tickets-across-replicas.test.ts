// Session resumption across replicas (issue 14 item 6): two portcullis processes that
// share tls.session_tickets.key_files resume each other's TLS sessions (TLS 1.2 and 1.3,
// checked with isSessionReused() on Node's client); a process without the key files does
// not. Rotating the files (`portcullis ticket-key rotate`, picked up by the file watcher)
// keeps sessions sealed with the previous key resuming until that key leaves the list. A
// change of client CAs on one replica stops its sessions from resuming across (tickets
// are bound to each entry's trust digest). A key file that is replaced by garbage fails
// the reload and the old keys keep serving; at start-up a missing, unreadable or
// wrong-size key file stops the proxy with one sentence naming the file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, runCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { exchange, logEvents, reloadedAfter, waitFor, type Exchange } from '../helpers/trust-e2e.js';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
type Version = (typeof VERSIONS)[number];

let pki: TestPki;
let up: EchoUpstream;
let root: string;
let keys: { current: string; previous: string };
let bundleB: string;
let a: RunningCli;
let b: RunningCli;

/** Replaces a file by rename, as a Secret update or `ticket-key rotate` does. */
function replace(file: string, data: string | Buffer): void {
  const staged = join(root, 'staging', 'file');
  writeFileSync(staged, data, { mode: 0o600 });
  renameSync(staged, file);
}

function config(clientCa: string, sessionTickets = true): Record<string, unknown> {
  return {
    listeners: [tlsListener(pki, { tls: { client_ca: clientCa, ...(sessionTickets ? { session_tickets: { key_files: [keys.current, keys.previous] } } : {}) } })],
    upstreams: { app: { endpoints: [up.url] } },
  };
}

before(async () => {
  root = tempDir();
  mkdirSync(join(root, 'staging'));
  mkdirSync(join(root, 'tickets'));
  pki = await makeTestPki(join(root, 'pki'));
  keys = { current: join(root, 'tickets', 'current.key'), previous: join(root, 'tickets', 'previous.key') };
  for (const f of [keys.current, keys.previous]) {
    const r = runCli(['ticket-key', 'new', f]);
    assert.equal(r.status, 0, r.stderr);
  }
  bundleB = join(root, 'b-client-cas.pem');
  writeFileSync(bundleB, readFileSync(pki.ca.cert));
  up = await startEchoUpstream();
  const dirA = join(root, 'a');
  const dirB = join(root, 'b');
  mkdirSync(dirA);
  mkdirSync(dirB);
  a = await startCli(config(pki.ca.cert), { dir: dirA });
  // two workers: each reads the key files itself
  b = await startCli({ ...config(bundleB), workers: 2 }, { dir: dirB });
});

after(async () => {
  await a?.stop();
  await b?.stop();
  await up?.close();
  cleanup(root);
});

const on = (cli: RunningCli, version: Version, session?: Buffer, path = '/'): Promise<Exchange> =>
  exchange({ port: cli.port, ca: pki.ca.cert, client: pki.client, version, ...(session ? { session } : {}), path });

async function sessionFrom(cli: RunningCli, version: Version): Promise<Buffer> {
  const r = await on(cli, version);
  assert.equal(r.status, 200, `${version}: ${r.error ?? r.body}`);
  assert.ok(r.session, `${version}: no session ticket was issued`);
  return r.session;
}

async function resumes(cli: RunningCli, version: Version, session: Buffer, path: string): Promise<boolean> {
  const before = up.received.length;
  const r = await on(cli, version, session, path);
  assert.equal(r.status, 200, `${version} ${path}: ${r.error ?? r.body}`);
  // the request went through with the client's identity, resumed or not
  assert.equal(up.received.length, before + 1);
  assert.equal(up.received.at(-1)?.url, path);
  assert.equal(up.received.at(-1)?.headers['x-client-serial'], pki.client.serial);
  return r.reused;
}

/** Both instances have finished a reload that started after `counts` were taken. */
async function bothReloaded(counts: [number, number]): Promise<void> {
  await reloadedAfter(a, counts[0]);
  await reloadedAfter(b, counts[1]);
}
const reloadCounts = (): [number, number] => [logEvents(a, 'reload_started').length, logEvents(b, 'reload_started').length];

test('a session from instance A resumes on instance B and back; without the shared key files it does not', async () => {
  mkdirSync(join(root, 'c'));
  const c = await startCli(config(pki.ca.cert, false), { dir: join(root, 'c') });
  try {
    for (const v of VERSIONS) {
      const fromA = await sessionFrom(a, v);
      assert.equal(await resumes(b, v, fromA, `/a-to-b-${v}`), true, `${v}: A's session did not resume on B`);
      const fromB = await sessionFrom(b, v);
      assert.equal(await resumes(a, v, fromB, `/b-to-a-${v}`), true, `${v}: B's session did not resume on A`);
      // control: an instance with its own random ticket secret
      assert.equal(await resumes(c, v, fromA, `/a-to-c-${v}`), false, `${v}: a session resumed on an instance that does not share the keys`);
    }
  } finally {
    await c.stop();
  }
});

test('after rotation the previous key still opens tickets, on both instances; once it leaves the list it does not', async () => {
  const sealedWithK1 = new Map<Version, Buffer>();
  for (const v of VERSIONS) sealedWithK1.set(v, await sessionFrom(a, v));

  let counts = reloadCounts();
  const r = runCli(['ticket-key', 'rotate', keys.current, keys.previous]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(statSync(keys.current).mode & 0o777, 0o600);
  await bothReloaded(counts);

  const sealedWithK2 = new Map<Version, Buffer>();
  for (const v of VERSIONS) {
    assert.equal(await resumes(a, v, sealedWithK1.get(v)!, `/k1-on-a-${v}`), true, `${v}: the previous key no longer opens A's tickets`);
    assert.equal(await resumes(b, v, sealedWithK1.get(v)!, `/k1-on-b-${v}`), true, `${v}: the previous key does not open A's tickets on B`);
    // new tickets are sealed with the new first key, which both instances know
    sealedWithK2.set(v, await sessionFrom(b, v));
    assert.equal(await resumes(a, v, sealedWithK2.get(v)!, `/k2-on-a-${v}`), true, `${v}: B's new ticket did not resume on A`);
  }

  counts = reloadCounts();
  assert.equal(runCli(['ticket-key', 'rotate', keys.current, keys.previous]).status, 0);
  await bothReloaded(counts);
  for (const v of VERSIONS) {
    assert.equal(await resumes(a, v, sealedWithK1.get(v)!, `/k1-gone-${v}`), false, `${v}: a ticket resumed after its key left the list`);
    assert.equal(await resumes(b, v, sealedWithK2.get(v)!, `/k2-previous-${v}`), true, `${v}: the key now second in the list does not open its tickets`);
  }
});

test('a key file replaced by one of the wrong size fails the reload; the old keys keep serving on both instances', async () => {
  const good = readFileSync(keys.current);
  const fromA = new Map<Version, Buffer>();
  for (const v of VERSIONS) fromA.set(v, await sessionFrom(a, v));
  const failedBefore = [logEvents(a, 'reload_failed').length, logEvents(b, 'reload_failed').length];

  replace(keys.current, Buffer.alloc(10, 7));
  await waitFor(() => logEvents(a, 'reload_failed').length > failedBefore[0]! && logEvents(b, 'reload_failed').length > failedBefore[1]!, 10_000, 'both reloads to fail');
  const failure = String(logEvents(b, 'reload_failed').at(-1)?.error);
  assert.match(failure, /PCL_ERR_TICKET_KEY_INVALID/);
  assert.ok(failure.includes(keys.current), failure);
  assert.match(failure, /ticket-key new/);

  for (const v of VERSIONS) {
    assert.equal(await resumes(b, v, fromA.get(v)!, `/after-bad-reload-${v}`), true, `${v}: B lost its keys in a failed reload`);
    const fromB = await sessionFrom(b, v);
    assert.equal(await resumes(a, v, fromB, `/after-bad-reload-back-${v}`), true, `${v}: B's new tickets are not sealed with the old shared key`);
  }

  const counts = reloadCounts();
  replace(keys.current, good);
  await bothReloaded(counts);
});

test('after a client CA change on B, sessions do not resume across A and B, while each still resumes its own', async () => {
  const fromA = new Map<Version, Buffer>();
  for (const v of VERSIONS) fromA.set(v, await sessionFrom(a, v));
  const started = logEvents(b, 'reload_started').length;
  replace(bundleB, readFileSync(pki.ca.cert, 'utf8') + readFileSync(pki.otherCa.cert, 'utf8'));
  await reloadedAfter(b, started);

  for (const v of VERSIONS) {
    assert.equal(await resumes(b, v, fromA.get(v)!, `/ca-change-a-to-b-${v}`), false, `${v}: A's session resumed on B under other trust`);
    assert.equal(await resumes(a, v, fromA.get(v)!, `/ca-change-a-to-a-${v}`), true, `${v}: A's own session stopped resuming on A`);
    const fromB = await sessionFrom(b, v);
    assert.equal(await resumes(a, v, fromB, `/ca-change-b-to-a-${v}`), false, `${v}: B's session resumed on A under other trust`);
    assert.equal(await resumes(b, v, fromB, `/ca-change-b-to-b-${v}`), true, `${v}: B's own session stopped resuming on B`);
  }
});

test('start-up stops with one sentence naming the key file: missing, unreadable, wrong size, base64 of the wrong size, not random', async () => {
  const dir = join(root, 'startup');
  mkdirSync(dir);
  const cases: { name: string; make(file: string): void; code: string; says: RegExp }[] = [
    { name: 'missing', make: () => undefined, code: 'PCL_ERR_FILE_NOT_FOUND', says: /file not found/ },
    // a folder where the key file should be: unreadable as a file even for root
    { name: 'unreadable', make: (f) => mkdirSync(f), code: 'PCL_ERR_FILE_UNREADABLE', says: /not a file/ },
    { name: 'wrong-size', make: (f) => writeFileSync(f, Buffer.alloc(32, 1)), code: 'PCL_ERR_TICKET_KEY_INVALID', says: /holds 32 bytes, not 80 or 48/ },
    { name: 'base64-short', make: (f) => writeFileSync(f, `${Buffer.alloc(40, 3).toString('base64')}\n`), code: 'PCL_ERR_TICKET_KEY_INVALID', says: /base64 text of 40 bytes/ },
    { name: 'zeros', make: (f) => writeFileSync(f, Buffer.alloc(80)), code: 'PCL_ERR_TICKET_KEY_INVALID', says: /not random bytes/ },
  ];
  for (const c of cases) {
    const file = join(dir, `${c.name}.key`);
    c.make(file);
    const cfg = join(dir, `${c.name}.json`);
    writeFileSync(
      cfg,
      JSON.stringify({ workers: 1, admin: { address: '127.0.0.1:0' }, log: { access: 'off' }, ...config(pki.ca.cert, false), listeners: [tlsListener(pki, { tls: { session_tickets: { key_files: [keys.current, file] } } })] }),
    );
    const r = runCli(['run', '-c', cfg], { timeoutMs: 20_000 });
    assert.equal(r.status, 1, `${c.name}: exit ${r.status}\n${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
    assert.equal(lines.length, 1, `${c.name}: expected one error line:\n${r.stderr}`);
    assert.ok(lines[0]!.includes(file), `${c.name}: the message does not name ${file}: ${lines[0]}`);
    assert.ok(lines[0]!.includes('listeners[0].tls.session_tickets.key_files[1]'), lines[0]);
    assert.ok(lines[0]!.endsWith(`[${c.code}]`), lines[0]);
    assert.match(lines[0]!, c.says);
    // `check` reports the same problem
    const chk = runCli(['check', '-c', cfg]);
    assert.equal(chk.status, 1, `${c.name}: check exit ${chk.status}`);
    assert.ok(chk.stderr.includes(c.code), chk.stderr);
  }
});
