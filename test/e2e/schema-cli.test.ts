// `portcullis schema` (SPEC §10): the real CLI prints a JSON Schema an editor can use on
// portcullis.yaml, and `--markdown` prints exactly the committed docs/configuration.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { REPO_ROOT, runCli } from '../helpers/proxy.js';

test('portcullis schema prints a draft 2020-12 JSON Schema with descriptions, defaults and no internal marks', () => {
  const r = runCli(['schema']);
  assert.equal(r.status, 0, r.stderr);
  const schema = JSON.parse(r.stdout);
  assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  assert.equal(schema.additionalProperties, false);
  const tls = schema.properties.listeners.items.properties.tls.properties;
  assert.match(tls.client_auth.description, /^`require`: a client without a valid certificate/);
  assert.equal(tls.client_auth.default, 'require');
  assert.deepEqual(tls.client_auth.enum, ['require', 'optional', 'none']);
  assert.equal(schema.properties.listeners.items.properties.limits.properties.idle_timeout.default, '1m');
  assert.doesNotMatch(r.stdout, /x-portcullis/);
});

test('an editor using it accepts the README config and flags a typo, as portcullis check does', () => {
  const editor = z.fromJSONSchema(JSON.parse(runCli(['schema']).stdout));
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const block = /```yaml\n(listeners:[\s\S]*?)```/.exec(readme);
  assert.ok(block, 'the README has a YAML config');
  const config = parse(block[1]!);
  assert.ok(editor.safeParse(config).success, JSON.stringify(editor.safeParse(config).error?.issues));
  config.listeners[0].tls.client_auht = 'require';
  assert.equal(editor.safeParse(config).success, false);
});

test('portcullis schema --markdown is docs/configuration.md', () => {
  const r = runCli(['schema', '--markdown']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(join(REPO_ROOT, 'docs/configuration.md'), 'utf8'));
});
