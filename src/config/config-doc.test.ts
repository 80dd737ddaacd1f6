// docs/configuration.md and `portcullis schema` are generated from the zod schema: these
// tests fail when the committed doc and the schema drift apart (fix: `npm run docs`), when
// a key has no description, and when the JSON Schema editors use would accept a file the
// proxy refuses or refuse one it accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigSchema } from './schema.js';
import { configJsonSchema, type JsonSchema } from './json-schema.js';
import { docProblems, fullExample, renderConfigDoc } from './config-doc.js';
import { PENDING_DOCS } from './key-docs.js';

// compiled to dist/src/config/, three levels below the repository root
const DOC = fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url));

test('docs/configuration.md is what the schema generates (run `npm run docs` after changing the schema)', () => {
  const committed = readFileSync(DOC, 'utf8');
  const generated = renderConfigDoc();
  if (committed !== generated) {
    const a = committed.split('\n');
    const b = generated.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    assert.fail(`docs/configuration.md is out of date with src/config/schema.ts (first difference at line ${i + 1}:\n  doc:    ${a[i]}\n  schema: ${b[i]}); run npm run docs`);
  }
});

test('every key of the schema is described, has a default or an example, and no description is stale', () => {
  const p = docProblems();
  assert.deepEqual(p.undocumented, [], 'keys without a description in src/config/key-docs.ts');
  assert.deepEqual(p.stale, [], 'descriptions of keys the schema does not have');
  assert.deepEqual(p.noExample, [], 'keys with neither a default nor an example');
});

test('a key added to the schema shows up in the doc by itself, flagged until it is described', () => {
  const schema = configJsonSchema({ internal: true });
  const limits = (((schema.properties as any).listeners.items.properties.limits as JsonSchema).properties as Record<string, JsonSchema>);
  limits.max_widgets = { type: 'integer', minimum: 1, default: 7 };
  const doc = renderConfigDoc(schema);
  assert.match(doc, /\| `max_widgets` \| integer ≥ 1 \| `7` \| \*\*Undocumented: describe it in src\/config\/key-docs\.ts\.\*\* \|/);
  assert.deepEqual(docProblems(schema).undocumented, ['listeners[].limits.max_widgets']);
});

test('a key announced in PENDING_DOCS is documented as soon as the schema has it, and reported as landed', () => {
  const schema = configJsonSchema({ internal: true });
  const limits = (((schema.properties as any).listeners.items.properties.limits as JsonSchema).properties as Record<string, JsonSchema>);
  limits.max_widgets = { type: 'integer', minimum: 1, default: 7 };
  PENDING_DOCS['listeners[].limits.max_widgets'] = { text: 'Widgets per connection.' };
  try {
    assert.match(renderConfigDoc(schema), /\| `max_widgets` \| integer ≥ 1 \| `7` \| Widgets per connection\. \|/);
    const p = docProblems(schema);
    assert.deepEqual(p.undocumented, []);
    assert.deepEqual(p.landed, ['listeners[].limits.max_widgets']);
  } finally {
    delete PENDING_DOCS['listeners[].limits.max_widgets'];
  }
});

test('the complete example in the doc is a valid config shape', () => {
  const r = ConfigSchema.safeParse(fullExample());
  assert.ok(r.success, JSON.stringify(r.error?.issues, null, 2));
});

test('the JSON Schema for editors accepts and refuses what the proxy does', () => {
  const editor = z.fromJSONSchema(configJsonSchema());
  const listener = { address: '0.0.0.0:8443', tls: { cert: 'pki/s.crt', key: 'pki/s.key', client_ca: 'pki/ca.crt' }, routes: [{ upstream: 'app' }] };
  const base = { listeners: [listener], upstreams: { app: { endpoints: 'http://127.0.0.1:8080' } } };
  const withListener = (extra: Record<string, unknown>) => ({ ...base, listeners: [{ ...listener, ...extra }] });
  const withTls = (extra: Record<string, unknown>) => withListener({ tls: { ...listener.tls, ...extra } });
  const cases: [string, unknown][] = [
    ['minimal, one string where a list is accepted', base],
    ['durations as text and as milliseconds', withListener({ limits: { idle_timeout: '1h30m', header_timeout: 2500 } })],
    ['false for an off switch', withTls({ ocsp: { mode: false } })],
    ['workers auto and 2', { ...base, workers: 2 }],
    ['lists of rules', withListener({ allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/**', ou: ['a', 'b'] }] })],
    ['an unknown key', { ...base, listenrs: [] }],
    ['an unknown key deep down', withTls({ client_authentication: 'require' })],
    ['a value outside an enum', withTls({ client_auth: 'maybe' })],
    ['workers 0', { ...base, workers: 0 }],
    ['a duration that is not one', withListener({ limits: { idle_timeout: '5 minutes' } })],
    ['no listeners', { upstreams: {} }],
    ['a string where a number goes', withListener({ limits: { max_headers: '100' } })],
  ];
  for (const [what, input] of cases) {
    assert.equal(editor.safeParse(input).success, ConfigSchema.safeParse(input).success, `${what}: the editor schema and the proxy disagree`);
  }
  // and the cases do test both outcomes
  assert.ok(cases.some(([, c]) => ConfigSchema.safeParse(c).success));
  assert.ok(cases.some(([, c]) => !ConfigSchema.safeParse(c).success));
});
