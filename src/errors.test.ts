// The catalogue of codes (errors.ts) and its documentation: codes are unique, and every
// code a user can see — start-up and CLI errors, check warnings, HTTP errors, handshake
// results — has a section in docs/troubleshooting.md with its cause and fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, HttpErrors, WarningCodes } from './errors.js';
import { HANDSHAKE_RESULTS } from './tls/verify-result.js';

// compiled to dist/src/, two levels below the repository root
const DOC = readFileSync(fileURLToPath(new URL('../../docs/troubleshooting.md', import.meta.url)), 'utf8');

/** `### \`code\`` headings and the text under each, up to the next heading. */
function documented(): Map<string, string> {
  const out = new Map<string, string>();
  const parts = DOC.split(/^### `([^`]+)`\s*$/m);
  for (let i = 1; i < parts.length; i += 2) out.set(parts[i]!, parts[i + 1]!.split(/^#{2,3} /m)[0]!);
  return out;
}

// names the product contract fixes before their code lands (SPEC §10)
const ANNOUNCED = new Set(['upstream_overloaded']);

const CATALOGUE = [
  ...Object.values(ErrorCodes),
  ...Object.values(WarningCodes),
  ...Object.keys(HttpErrors),
  ...HANDSHAKE_RESULTS.filter((r) => r !== 'ok'),
];

test('codes are unique across the catalogue', () => {
  assert.equal(new Set(CATALOGUE).size, CATALOGUE.length);
});

test('docs/troubleshooting.md has a cause and a fix for every code in the catalogue', () => {
  const doc = documented();
  const missing = CATALOGUE.filter((c) => !doc.has(c));
  assert.deepEqual(missing, [], 'codes without a section in docs/troubleshooting.md (add "### `CODE`" with **Cause.** and **Fix.**)');
  for (const c of CATALOGUE) {
    const text = doc.get(c)!;
    assert.match(text, /\*\*Cause\.\*\* \S/, `${c}: no **Cause.**`);
    assert.match(text, /\*\*Fix\.\*\* \S/, `${c}: no **Fix.**`);
  }
});

test('docs/troubleshooting.md documents no code the catalogue does not have', () => {
  const known = new Set<string>([...CATALOGUE, ...ANNOUNCED]);
  const stale = [...documented().keys()].filter((c) => !known.has(c));
  assert.deepEqual(stale, [], 'sections for codes that do not exist (renamed or removed?)');
});
