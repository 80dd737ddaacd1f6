// Regression tests for issue 15's README findings: "the full configuration reference is a
// link to a file outside the repository" and "the README's own example rule
// (spiffe://example.org/ns/prod/*) refuses the README's own example certificate
// (.../ns/prod/sa/billing)". The README keeps exactly its two set-up commands on top,
// every link in it and in docs/ and examples/ stays inside the repository and resolves,
// and its walkthrough, run as printed with the real CLI, admits its example certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { CLI, REPO_ROOT, cleanup, tempDir } from '../helpers/proxy.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

test('readme-two-setup-commands: the first code block is exactly the two set-up commands', () => {
  const first = /```(\w*)\n([\s\S]*?)```/.exec(README);
  assert.ok(first);
  const commands = first[2]!.trim().split('\n').map((l) => l.replace(/\s+#.*$/, '').trim());
  assert.deepEqual(commands, ['npm install && npm start', 'npm test']);
  assert.ok(README.indexOf(first[0]) < README.indexOf('\n## '), 'they come before the first section');
});

/** Markdown files of the repository that users read. */
function markdownFiles(): string[] {
  const out = [join(REPO_ROOT, 'README.md')];
  const walk = (dir: string) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith('.md')) out.push(p);
    }
  };
  walk(join(REPO_ROOT, 'docs'));
  walk(join(REPO_ROOT, 'examples'));
  return out;
}

/** GitHub's heading anchors, plus explicit <a id> anchors. */
function anchorsOf(md: string): Set<string> {
  const out = new Set<string>();
  for (const m of md.matchAll(/^#{1,6} (.+)$/gm)) out.add(m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'));
  for (const m of md.matchAll(/<a id="([^"]+)"><\/a>/g)) out.add(m[1]!);
  return out;
}

test('readme-no-link-leaves-repo: README links stay in the repository, and every relative link in README, docs/ and examples/ resolves', () => {
  const problems: string[] = [];
  for (const file of markdownFiles()) {
    const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
    const where = relative(REPO_ROOT, file);
    for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/i.test(target) || target.startsWith('//')) {
        if (where === 'README.md') problems.push(`${where}: ${target} leaves the repository`);
        continue;
      }
      const [path, anchor] = target.split('#');
      const abs = path ? resolve(dirname(file), path) : file;
      if (relative(REPO_ROOT, abs).startsWith('..')) {
        problems.push(`${where}: ${target} points outside the repository`);
        continue;
      }
      if (!existsSync(abs)) {
        problems.push(`${where}: ${target} does not exist`);
        continue;
      }
      if (anchor && abs.endsWith('.md') && !anchorsOf(readFileSync(abs, 'utf8')).has(anchor)) problems.push(`${where}: ${target} has no such anchor`);
    }
  }
  assert.deepEqual(problems, []);
});

test('readme-example-rule-matches-example-certificate: the walkthrough, run as printed, admits the README certificate by the README rule', (t) => {
  const dir = tempDir('pcl-readme-');
  t.after(() => cleanup(dir));
  const yaml = /```yaml\n(listeners:[\s\S]*?)```/.exec(README)?.[1];
  assert.ok(yaml, 'the README has a config');
  writeFileSync(join(dir, 'portcullis.yaml'), yaml);
  const block = /```sh\n(portcullis ca init[\s\S]*?)```/.exec(README)?.[1];
  assert.ok(block, 'the README has the walkthrough commands');
  // everything but `portcullis run`, which would serve until stopped
  const commands = block.split('\n').filter((l) => l.trim() && !l.startsWith('portcullis run')).join('\n');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'portcullis'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(bin, 'portcullis'), 0o755);
  const r = spawnSync('sh', ['-e', '-c', commands], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}`);
  assert.match(r.stdout, /config OK: 1 listener \(api https :8443\), 2 upstreams, 2 routes/);
  assert.match(r.stdout, /identity: CN=billing, SPIFFE ID spiffe:\/\/example\.org\/ns\/prod\/sa\/billing/);
  assert.match(r.stdout, /decision: ALLOWED by routes\[charge\]\.allow\[0\]; forwarded to upstream payments/);
  // the README's rule and certificate are the ones in its text
  assert.match(README, /--spiffe-id spiffe:\/\/example\.org\/ns\/prod\/sa\/billing/);
  // and the rule the README had before (one segment) is what refused that certificate
  writeFileSync(join(dir, 'old.yaml'), yaml.replace('spiffe://example.org/ns/prod/**', 'spiffe://example.org/ns/prod/*'));
  const old = spawnSync(process.execPath, [CLI, 'policy', 'test', '-c', join(dir, 'old.yaml'), '--cert', join(dir, 'pki/billing.crt'), '--method', 'POST', '--path', '/v1/charge'], { encoding: 'utf8' });
  assert.equal(old.status, 1);
  assert.match(old.stdout, /"\*" is exactly one path segment/);
});
