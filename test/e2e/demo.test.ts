// `portcullis demo` must work offline in one command: the printed curl commands, run as
// printed, give 200 with identity, 403, and a handshake failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { CLI, runCli } from '../helpers/proxy.js';

test('demo --exit makes the three requests itself and exits 0', () => {
  const r = runCli(['demo', '--exit', '--port', '0'], { timeoutMs: 60_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /demo OK/);
  assert.match(r.stdout, /"x-client-verify": "SUCCESS"/);
});

test('the curl commands the demo prints work as printed', async () => {
  const proc = spawn(process.execPath, [CLI, 'demo', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`demo did not start:\n${out}`)), 60_000);
      proc.stdout.on('data', () => {
        if (out.includes('press Ctrl-C')) {
          clearTimeout(t);
          resolve();
        }
      });
      proc.once('exit', () => reject(new Error(`demo exited early:\n${out}`)));
    });
    const cmds = out.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('curl '));
    assert.equal(cmds.length, 3);
    const run = (cmd: string) => spawnSync('sh', ['-c', `${cmd} -sS -w '\\n%{http_code}'`], { encoding: 'utf8', timeout: 20_000 });
    const allowed = run(cmds[0]!);
    assert.equal(allowed.status, 0, allowed.stderr);
    assert.match(allowed.stdout, /\n200$/);
    assert.equal(JSON.parse(allowed.stdout.slice(0, allowed.stdout.lastIndexOf('\n'))).identity['x-client-spiffe-id'], 'spiffe://demo.local/ns/payments/sa/billing');
    const denied = run(cmds[1]!);
    assert.match(denied.stdout, /"error":"forbidden"[\s\S]*\n403$/);
    const none = run(cmds[2]!);
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /certificate required/i);
  } finally {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGINT');
    await exited;
  }
});
