// Regression test for issue 15 "`portcullis demo` leaves its private keys in a temp folder
// when stopped with Ctrl-C": the real CLI is started, stopped with each signal a terminal
// or a supervisor sends, and the folder it printed must be gone (unless --dir chose it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../helpers/proxy.js';

interface Demo {
  proc: ChildProcess;
  output: () => string;
  /** resolves once `marker` has been printed */
  waitFor(marker: string): Promise<void>;
  exited: Promise<number | null>;
}

function startDemo(args: string[] = []): Demo {
  const proc = spawn(process.execPath, [CLI, 'demo', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    output: () => out,
    exited,
    waitFor: (marker) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`demo never printed "${marker}":\n${out}`)), 60_000);
        const look = () => {
          if (!out.includes(marker)) return;
          clearTimeout(timer);
          proc.stdout!.off('data', look);
          resolve();
        };
        proc.stdout!.on('data', look);
        look();
        void exited.then(() => {
          if (!out.includes(marker)) {
            clearTimeout(timer);
            reject(new Error(`demo exited before printing "${marker}":\n${out}`));
          }
        });
      }),
  };
}

/** The folder from the demo's first line: "portcullis demo — files in DIR ...". */
function folderOf(out: string): string {
  const m = /files in (\S+)/.exec(out);
  assert.ok(m, out);
  return m[1]!;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`demo stopped with ${signal} while serving removes its temp folder and private keys`, async () => {
    const d = startDemo();
    try {
      await d.waitFor('press Ctrl-C');
      const dir = folderOf(d.output());
      assert.ok(readdirSync(dir).some((f) => f.endsWith('.key')), 'the demo wrote its keys');
      d.proc.kill(signal);
      assert.equal(await d.exited, 0, d.output());
      assert.equal(existsSync(dir), false, `${dir} is still there after ${signal}:\n${d.output()}`);
    } finally {
      d.proc.kill('SIGKILL');
    }
  });
}

test('demo stopped with Ctrl-C during start-up (keys being generated) removes its folder too', async () => {
  const d = startDemo();
  try {
    await d.waitFor('files in');
    const dir = folderOf(d.output());
    d.proc.kill('SIGINT');
    assert.equal(await d.exited, 0, d.output());
    assert.equal(existsSync(dir), false, d.output());
  } finally {
    d.proc.kill('SIGKILL');
  }
});

test('demo --dir keeps the folder the user chose when stopped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-demo-kept-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = startDemo(['--dir', dir]);
  try {
    await d.waitFor('press Ctrl-C');
    d.proc.kill('SIGTERM');
    assert.equal(await d.exited, 0, d.output());
    assert.ok(existsSync(join(dir, 'portcullis.yaml')), d.output());
    assert.ok(existsSync(join(dir, 'allowed.key')));
    assert.match(d.output(), /the files stay in/);
  } finally {
    d.proc.kill('SIGKILL');
  }
});
