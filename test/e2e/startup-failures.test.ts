// Start-up fails closed (SPEC §5): a bad config or a bad certificate, key or CA file stops
// `portcullis run` with exit 1 before anything listens, with a message that names the
// field, the file and a stable [PCL_ERR_*] code; `portcullis check` reports the same
// problems (every one of them) and prints a one-line summary for a good config.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { tempDir, cleanup, CLI } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(join(dir, 'pki'));
  writeFileSync(join(dir, 'empty-ca.crt'), '');
  writeFileSync(join(dir, 'not-pem.crt'), 'this is not a certificate, just some text\n');
});

after(() => cleanup(dir));

interface Exit {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the CLI to completion without blocking the other cases; kills it after `timeoutMs`. */
function cli(args: string[], timeoutMs = 10_000): Promise<Exit> {
  return new Promise((resolve) => {
    const started = Date.now();
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

interface TlsFields {
  cert?: string;
  key?: string;
  client_ca?: string;
  client_auth?: string;
  [k: string]: string | undefined;
}

/** A YAML config as a person writes it; file paths are written relative to the config's folder. */
function yaml(tls: TlsFields, opts: { address?: string; route?: string; top?: string } = {}): string {
  const rel = (v: string) => (v.startsWith('/') ? relative(dir, v) : v);
  const lines = Object.entries(tls)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `      ${k}: ${['cert', 'key', 'client_ca'].includes(k) ? rel(v!) : v}`);
  return [
    'workers: 1',
    'admin:',
    '  address: 127.0.0.1:0',
    'log:',
    '  access: off',
    'listeners:',
    '  - name: api',
    `    address: ${opts.address ?? '127.0.0.1:0'}`,
    '    tls:',
    ...lines,
    '    routes:',
    `      - upstream: ${opts.route ?? 'app'}`,
    'upstreams:',
    '  app:',
    '    endpoints: [http://127.0.0.1:8080]',
    ...(opts.top ? [opts.top] : []),
    '',
  ].join('\n');
}

const good = (): TlsFields => ({ cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert, client_auth: 'require' });

let n = 0;
function writeConfig(text: string, name: string): string {
  const f = join(dir, `${name}-${n++}.yaml`);
  writeFileSync(f, text);
  return f;
}

/** What one bad config must produce; `file` is the file the message must name. */
interface Case {
  name: string;
  config: () => string;
  code: string;
  field?: string;
  file: () => string;
  /** more text stderr must contain */
  also?: RegExp[];
}

const cases: Case[] = [
  {
    name: 'a missing certificate file',
    config: () => yaml({ ...good(), cert: 'pki/does-not-exist.crt' }),
    code: 'PCL_ERR_FILE_NOT_FOUND',
    field: 'listeners[0].tls.cert',
    file: () => join(dir, 'pki/does-not-exist.crt'),
  },
  {
    name: 'an empty CA file',
    config: () => yaml({ ...good(), client_ca: join(dir, 'empty-ca.crt') }),
    code: 'PCL_ERR_FILE_EMPTY',
    field: 'listeners[0].tls.client_ca',
    file: () => join(dir, 'empty-ca.crt'),
  },
  {
    name: 'a CA file holding a certificate that is not a CA',
    config: () => yaml({ ...good(), client_ca: pki.client.cert }),
    code: 'PCL_ERR_CA_NOT_CA',
    field: 'listeners[0].tls.client_ca',
    file: () => pki.client.cert,
  },
  {
    name: 'a certificate file that is not PEM',
    config: () => yaml({ ...good(), cert: join(dir, 'not-pem.crt') }),
    code: 'PCL_ERR_CERT_PARSE',
    field: 'listeners[0].tls.cert',
    file: () => join(dir, 'not-pem.crt'),
  },
  {
    name: 'a key file that holds a certificate (cert and key swapped)',
    config: () => yaml({ ...good(), key: pki.server.cert }),
    code: 'PCL_ERR_KEY_PARSE',
    field: 'listeners[0].tls.key',
    file: () => pki.server.cert,
  },
  {
    name: "a key that does not match the certificate (another entry's key)",
    config: () => yaml({ ...good(), key: pki.client.key }),
    code: 'PCL_ERR_KEY_MISMATCH',
    field: 'listeners[0].tls.key',
    file: () => pki.client.key,
  },
  {
    name: 'client_auth require without client_ca',
    config: () => yaml({ ...good(), client_ca: undefined }),
    code: 'PCL_ERR_CONFIG_INVALID',
    field: 'listeners[0].tls.client_ca',
    file: () => '', // the config file itself, filled in below
  },
  {
    name: 'an unknown key',
    config: () => yaml({ ...good(), client_cert_required: 'yes' }),
    code: 'PCL_ERR_CONFIG_INVALID',
    field: 'listeners[0].tls.client_cert_required',
    file: () => '',
  },
  {
    name: 'bad YAML syntax',
    config: () => yaml(good()).replace('    routes:\n', '    routes: [\n'),
    code: 'PCL_ERR_CONFIG_PARSE',
    file: () => '',
    also: [/line \d+/],
  },
];

describe('start-up refuses a bad config or file: run exits 1 without listening, check agrees', { concurrency: 2 }, () => {
  for (const c of cases) {
    test(c.name, async () => {
      const cfg = writeConfig(c.config(), c.name.replace(/\W+/g, '-'));
      const file = c.file() || cfg;
      const [run, check] = await Promise.all([cli(['run', '-c', cfg]), cli(['check', '-c', cfg])]);

      assert.equal(run.signal, null, `run did not exit by itself within 10 s (is it listening?):\n${run.stderr}`);
      assert.equal(run.status, 1, run.stderr);
      // run fails as soon as it has read the config: about as fast as check, which does the same reading
      assert.ok(run.ms < check.ms + 3_000, `run took ${run.ms} ms to fail, check ${check.ms} ms`);
      assert.doesNotMatch(run.stderr, /"event":"listening"/, 'a listener came up');
      for (const [what, r] of [['run', run], ['check', check]] as const) {
        assert.equal(r.status, 1, `${what}: ${r.stdout}${r.stderr}`);
        assert.ok(r.stderr.includes(`[${c.code}]`), `${what}: expected [${c.code}] in:\n${r.stderr}`);
        if (c.field) assert.ok(r.stderr.includes(c.field), `${what}: expected the field ${c.field} in:\n${r.stderr}`);
        assert.ok(r.stderr.includes(file) || r.stderr.includes(basename(file)), `${what}: expected the file ${file} in:\n${r.stderr}`);
        for (const re of c.also ?? []) assert.match(r.stderr, re);
        assert.doesNotMatch(r.stdout, /config OK/);
      }
    });
  }

  test('a config with three distinct errors reports all three, each with its path', async () => {
    const cfg = writeConfig(yaml({ ...good(), client_auth: 'sometimes' }, { route: 'nope', top: 'colour: blue' }), 'three-errors');
    const [run, check] = await Promise.all([cli(['run', '-c', cfg]), cli(['check', '-c', cfg])]);
    for (const [what, r] of [['run', run], ['check', check]] as const) {
      assert.equal(r.status, 1, `${what}: ${r.stderr}`);
      const errorLines = r.stderr.split('\n').filter((l) => /\[PCL_ERR_[A-Z_]+\]/.test(l));
      assert.equal(errorLines.length, 3, `${what}: expected 3 errors, got:\n${r.stderr}`);
      for (const [field, about] of [
        ['listeners[0].tls.client_auth', /sometimes/],
        ['listeners[0].routes[0].upstream', /nope/],
        ['colour', /unknown key/],
      ] as const) {
        const line = errorLines.find((l) => l.includes(field));
        assert.ok(line, `${what}: no error names ${field}:\n${r.stderr}`);
        assert.match(line, about);
        assert.match(line, /\[PCL_ERR_CONFIG_INVALID\]/);
      }
      assert.ok(r.stderr.includes(cfg) || r.stderr.includes(basename(cfg)), `${what}: the config file is not named:\n${r.stderr}`);
    }
    assert.doesNotMatch(run.stderr, /"event":"listening"/);
  });

  test('check prints a one-line summary and exits 0 for a valid config', async () => {
    const cfg = writeConfig(yaml(good()), 'valid');
    const r = await cli(['check', '-c', cfg]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `expected one line, got:\n${r.stdout}`);
    assert.match(lines[0]!, /\bapi\b/, 'the summary names the listener');
    assert.equal(r.stderr.trim(), '');
  });
});

test('a listener address already in use: run exits 1 naming the listener and the address', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => blocker.close(r)));
  const port = (blocker.address() as AddressInfo).port;
  const cfg = writeConfig(yaml(good(), { address: `127.0.0.1:${port}` }), 'port-in-use');
  const r = await cli(['run', '-c', cfg]);
  assert.equal(r.signal, null, `run did not exit by itself:\n${r.stderr}`);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /\bapi\b/, 'the message names the listener');
  assert.ok(r.stderr.includes(`127.0.0.1:${port}`), `the message names the address:\n${r.stderr}`);
  assert.match(r.stderr, /EADDRINUSE|in use/i);
  assert.match(r.stderr, /\[PCL_ERR_LISTEN_FAILED\]/);
  assert.doesNotMatch(r.stderr, /"event":"listening"/);
});
