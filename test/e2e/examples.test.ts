// examples/ (issue 15 item 7): each example's README commands, run as printed on a copy of
// its folder with the real CLI, create the certificates it expects, and the config then
// passes `portcullis check --strict` (no error, no warning) and the editor JSON Schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { CLI, REPO_ROOT, cleanup, runCli, tempDir } from '../helpers/proxy.js';

const EXAMPLES = join(REPO_ROOT, 'examples');
const folders = readdirSync(EXAMPLES).filter((f) => statSync(join(EXAMPLES, f)).isDirectory());

test('examples/ holds the four set-ups the README promises, each listed in examples/README.md', () => {
  assert.deepEqual([...folders].sort(), ['edge-proxy', 'sidecar', 'sni-vhosts', 'tcp-proxy-protocol']);
  const index = readFileSync(join(EXAMPLES, 'README.md'), 'utf8');
  for (const f of folders) assert.match(index, new RegExp(`\\[${f}\\]\\(${f}/\\)`));
});

/** A `portcullis` on PATH that runs this checkout's CLI, as the README's commands expect. */
function shim(dir: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'portcullis'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(bin, 'portcullis'), 0o755);
  return bin;
}

for (const name of folders) {
  test(`examples/${name}: the README's commands work as printed and the config passes check --strict`, (t) => {
    const dir = tempDir(`pcl-example-${name}-`);
    t.after(() => cleanup(dir));
    const work = join(dir, name);
    cpSync(join(EXAMPLES, name), work, { recursive: true });
    const readme = readFileSync(join(work, 'README.md'), 'utf8');
    const block = /## Try it[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, `examples/${name}/README.md has no "## Try it" sh block`);
    const bin = shim(dir);
    const run = spawnSync('sh', ['-e', '-x', '-c', block], { cwd: work, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    assert.equal(run.status, 0, `the README's commands failed:\n${run.stderr}\n${run.stdout}`);

    const strict = runCli(['check', '--strict', '-c', join(work, 'portcullis.yaml')]);
    assert.equal(strict.status, 0, strict.stderr);
    assert.equal(strict.stderr, '', 'no warnings');
    assert.match(strict.stdout, /^config OK: /);

    const editor = z.fromJSONSchema(JSON.parse(runCli(['schema']).stdout));
    const parsed = editor.safeParse(parse(readFileSync(join(work, 'portcullis.yaml'), 'utf8')));
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  });
}
