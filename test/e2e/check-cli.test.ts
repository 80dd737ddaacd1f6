// End-to-end tests of `portcullis check`: runs the real CLI on config files written to a
// temp folder and checks exit codes, the summary line and that every error is printed.
// check provisions the config, so a key that does not match its certificate is an error too.
import { test, before } from 'node:test';
import { copyFileSync } from 'node:fs';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// compiled to dist/test/e2e/check-cli.test.js, so the repo root is three levels up
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'bin', 'portcullis.js');

function check(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [CLI, 'check', ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, errors: r.stderr.split('\n').filter((l) => l.startsWith('error: ')) };
}

let pki: TestPki;
before(async () => {
  pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'portcullis-check-pki-')));
});

/** A temp folder with a real server certificate, key and CA (check parses them, as `nginx -t` does). */
function workspace(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-check-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'pki'));
  copyFileSync(pki.server.chain, join(dir, 'pki', 'server.crt'));
  copyFileSync(pki.server.key, join(dir, 'pki', 'server.key'));
  copyFileSync(pki.ca.cert, join(dir, 'pki', 'ca.crt'));
  return dir;
}

const VALID = `
listeners:
  - name: api
    address: 0.0.0.0:8443
    tls:
      cert: pki/server.crt
      key: pki/server.key
      client_ca: pki/ca.crt
    routes:
      - match: { path: /v1 }
        upstream: app
      - upstream: app
  - name: local
    address: 127.0.0.1:0
    routes:
      - upstream: app
upstreams:
  app:
    endpoints: [http://127.0.0.1:8080]
`;

test('a valid config prints one summary line and exits 0', (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'portcullis.yaml'), VALID);
  const r = check(['-c', join(dir, 'portcullis.yaml')]);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'config OK: 2 listeners (api https :8443, local http 127.0.0.1:0), 1 upstream, 3 routes\n');
});

test('the default config file is ./portcullis.yaml, and paths resolve against its folder', (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'portcullis.yaml'), VALID);
  const r = check([], dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^config OK: /);

  // run from elsewhere: relative pki/ paths still resolve against the config's folder
  const other = check(['-c', join(dir, 'portcullis.yaml')], tmpdir());
  assert.equal(other.code, 0, other.stderr);
});

test('a config with three distinct errors prints all three with their paths and exits 1', (t) => {
  const dir = workspace(t);
  const broken = VALID.replace('client_ca: pki/ca.crt', 'clientca: pki/ca.crt') // unknown key
    .replace('address: 127.0.0.1:0', 'address: 127.0.0.1:0\n    limits: { idle_timeout: 5x }') // bad duration
    .replace('      - upstream: app\n  - name: local', '      - upstream: payments\n  - name: local'); // undefined upstream
  writeFileSync(join(dir, 'portcullis.yaml'), broken);
  const r = check(['-c', join(dir, 'portcullis.yaml')]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.deepEqual(r.errors, [
    'error: listeners[0].tls.clientca: unknown key; did you mean client_ca? [PCL_ERR_CONFIG_INVALID]',
    'error: listeners[0].routes[1].upstream: upstream "payments" is not defined; use one of: app [PCL_ERR_CONFIG_INVALID]',
    'error: listeners[1].limits.idle_timeout: "5x" is not a duration; use e.g. 500ms, 5s, 2m, 1h, 90d [PCL_ERR_CONFIG_INVALID]',
  ]);
});

test('missing, empty and folder-instead-of-file references are all reported', (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'pki', 'server.key'), '');
  rmSync(join(dir, 'pki', 'ca.crt'));
  writeFileSync(join(dir, 'portcullis.yaml'), VALID);
  const r = check(['-c', join(dir, 'portcullis.yaml')]);
  assert.equal(r.code, 1);
  assert.equal(r.errors.length, 2, r.stderr);
  assert.match(r.errors[0]!, /^error: listeners\[0\]\.tls\.key: file is empty: .*server\.key; .* \[PCL_ERR_FILE_EMPTY\]$/);
  assert.equal(
    r.errors[1],
    `error: listeners[0].tls.client_ca: file not found: ${join(dir, 'pki', 'ca.crt')}; check the path (relative paths are resolved against ${dir}) [PCL_ERR_FILE_NOT_FOUND]`,
  );
});

test('a missing config file says how to fix it', (t) => {
  const dir = workspace(t);
  const r = check([], dir);
  assert.equal(r.code, 1);
  assert.deepEqual(r.errors, [`error: config file not found: ${join(dir, 'portcullis.yaml')}; pass -c FILE or create it [PCL_ERR_CONFIG_NOT_FOUND]`]);
});

test('YAML syntax errors name the line; JSON configs are read by extension', (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'bad.yaml'), 'listeners:\n  - name: a\n   address: x\n');
  const bad = check(['-c', join(dir, 'bad.yaml')]);
  assert.equal(bad.code, 1);
  assert.match(bad.errors[0] ?? '', /bad\.yaml: line 3, column \d+: YAML syntax error: .* \[PCL_ERR_CONFIG_PARSE\]$/, bad.stderr);

  const json = {
    listeners: [{ name: 'j', address: '127.0.0.1:0', routes: [{ upstream: 'db' }] }],
    upstreams: { db: { endpoints: ['http://127.0.0.1:5432'] } },
  };
  writeFileSync(join(dir, 'portcullis.json'), JSON.stringify(json));
  const ok = check(['-c', join(dir, 'portcullis.json')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, 'config OK: 1 listener (j http 127.0.0.1:0), 1 upstream, 1 route\n');
});

test('check provisions: a key that does not match its certificate fails with the file named', (t) => {
  const dir = workspace(t);
  copyFileSync(pki.client.key, join(dir, 'pki', 'server.key'));
  writeFileSync(join(dir, 'portcullis.yaml'), VALID);
  const r = check(['-c', join(dir, 'portcullis.yaml')]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /listeners\[0\]\.tls\.key: .*server\.key does not match the certificate in .*server\.crt.*\[PCL_ERR_KEY_MISMATCH\]/);
});

test('check provisions: a SPIFFE pattern with * inside a segment is refused before run would refuse it', (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'portcullis.yaml'), VALID.replace('      - match: { path: /v1 }\n        upstream: app', '      - match: { path: /v1 }\n        allow: [{ spiffe_id: "spiffe://example.org/ns/web-*" }]\n        upstream: app'));
  const r = check(['-c', join(dir, 'portcullis.yaml')]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /spiffe/);
});
