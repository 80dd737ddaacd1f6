// Renders docs/configuration.md from the config's JSON Schema (json-schema.ts, itself from
// the zod schema) and the prose of key-docs.ts: one section per map in the file, one row
// per key with its type, default and meaning, and a complete example built from the
// defaults and examples. `npm run docs` (scripts/gen-config-docs.mjs) writes the file and
// a test fails when the file and the schema drift apart.
import { stringify } from 'yaml';
import { INPUT_KIND } from './schema.js';
import { canonicalPath, childPath, configJsonSchema, type JsonSchema } from './json-schema.js';
import { docFor, KEY_DOCS, PENDING_DOCS, SECTION_TITLES } from './key-docs.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

interface Section {
  path: string;
  node: JsonSchema;
  /** the key whose value this map is, for its introduction */
  owner: string;
}

type Props = Record<string, JsonSchema>;
const propsOf = (n: JsonSchema | undefined): Props | undefined => n?.properties as Props | undefined;

/** The map a key's value is (or holds, for a list of maps or a map of maps), and the section path for it. */
function mapOf(path: string, n: JsonSchema): { path: string; node: JsonSchema } | undefined {
  if (propsOf(n)) return { path, node: n };
  const items = n.items as JsonSchema | undefined;
  if (propsOf(items)) return { path: `${path}[]`, node: items! };
  const extra = n.additionalProperties as JsonSchema | undefined;
  if (extra && typeof extra === 'object' && propsOf(extra)) return { path: `${path}.<name>`, node: extra };
  return undefined;
}

export const anchor = (path: string): string => path.replace(/[^a-z0-9_]+/gi, '-').replace(/^-|-$/g, '').toLowerCase() || 'top-level';

function sections(schema: JsonSchema): Section[] {
  const out: Section[] = [{ path: '', node: schema, owner: '' }];
  const visit = (node: JsonSchema, path: string) => {
    for (const [key, child] of Object.entries(propsOf(node) ?? {})) {
      const p = childPath(path, key);
      const map = mapOf(p, child);
      if (!map || canonicalPath(map.path) !== map.path) continue; // documented once, elsewhere
      out.push({ path: map.path, node: map.node, owner: p });
      visit(map.node, map.path);
    }
  };
  visit(schema, '');
  return out;
}

const code = (s: string) => `\`${s}\``;
/** Inline YAML for a value, as it would be written. */
function yamlInline(v: unknown): string {
  if (typeof v === 'string') return /^[\w./:@*-]+$/.test(v) && !/^(true|false|null|\d+)$/.test(v) ? v : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(yamlInline).join(', ')}]`;
  if (v && typeof v === 'object') return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${yamlInline(x)}`).join(', ')} }`;
  return String(v);
}
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function typeText(n: JsonSchema, link: string | undefined): string {
  const kind = n[INPUT_KIND];
  if (link) {
    if (n.items) return `list of maps, see ${link}`;
    if (n.additionalProperties) return `map of names to maps, see ${link}`;
    return `map, see ${link}`;
  }
  const values = (e: unknown[]) => e.filter((x) => x !== false).map((x) => code(String(x))).join(' | ');
  if (kind === 'duration') return 'duration';
  if (kind === 'workers') return '`auto` or integer ≥ 1';
  if (kind === 'switch') return `${values(n.enum as unknown[])} (\`false\` = \`off\`)`;
  if (kind === 'list') {
    const item = (n.anyOf as JsonSchema[])[0]!;
    return item.enum ? `one or a list of ${values(item.enum as unknown[])}` : 'string or list of strings';
  }
  if (n.enum) return values(n.enum as unknown[]);
  if (n.type === 'array') {
    const item = n.items as JsonSchema;
    return item.enum ? `list of ${values(item.enum as unknown[])}` : `list of ${item.type}s`;
  }
  if (n.type === 'integer' || n.type === 'number') {
    const min = n.minimum as number | undefined;
    const max = n.maximum as number | undefined;
    const word = n.type === 'integer' ? 'integer' : 'number';
    if (max !== undefined && max < MAX_SAFE) return `${word} ${min ?? 0}–${max}`;
    return min !== undefined ? `${word} ≥ ${min}` : word;
  }
  if (n.type === 'object') return 'map';
  return String(n.type ?? 'any');
}

function defaultText(n: JsonSchema): string {
  if (!('default' in n)) return '—';
  const d = n.default;
  if (d && typeof d === 'object' && !Array.isArray(d) && Object.keys(d).length === 0) return '—';
  return code(yamlInline(d));
}

/**
 * Keys of the schema without prose, prose for keys the schema lacks, keys without a default
 * or example, and announced keys that have landed (their PENDING_DOCS entry should move).
 */
export function docProblems(schema: JsonSchema = configJsonSchema({ internal: true })): { undocumented: string[]; stale: string[]; noExample: string[]; landed: string[] } {
  const seen = new Set<string>();
  const undocumented: string[] = [];
  const noExample: string[] = [];
  for (const s of sections(schema)) {
    for (const [key, child] of Object.entries(propsOf(s.node) ?? {})) {
      const p = childPath(s.path, key);
      seen.add(p);
      const doc = docFor(p);
      if (!doc) undocumented.push(p);
      const isMap = mapOf(p, child) !== undefined;
      if (!isMap && !('default' in child) && doc?.example === undefined) noExample.push(p);
    }
  }
  return {
    undocumented,
    stale: Object.keys(KEY_DOCS).filter((k) => !seen.has(k)),
    noExample,
    landed: Object.keys(PENDING_DOCS).filter((k) => seen.has(k)),
  };
}

/** Keys left out of the complete example because they cannot all be set at once. */
const NOT_IN_FULL_EXAMPLE = new Set(['listeners[].routes[].match.path_exact', 'listeners[].routes[].match.path_regex', 'listeners[].upstream', 'listeners[].proxy_protocol']);

/** A value for every key (its example, else its default), maps filled in recursively. */
export function fullExample(schema: JsonSchema = configJsonSchema({ internal: true })): Record<string, unknown> {
  const build = (node: JsonSchema, path: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(propsOf(node) ?? {})) {
      const p = childPath(path, key);
      if (NOT_IN_FULL_EXAMPLE.has(p)) continue;
      const doc = docFor(canonicalPath(p));
      const map = mapOf(p, child);
      if (doc?.example !== undefined) out[key] = doc.example;
      else if (map && canonicalPath(map.path) === map.path) {
        const inner = build(map.node, map.path);
        out[key] = map.path.endsWith('[]') ? [inner] : map.path.endsWith('.<name>') ? { app: inner } : inner;
      } else if ('default' in child && !map) out[key] = child.default;
    }
    return out;
  };
  return build(schema, '');
}

export function renderConfigDoc(schema: JsonSchema = configJsonSchema({ internal: true })): string {
  const all = sections(schema);
  const linkTo = new Map(all.map((s) => [s.path, `[${s.path ? code(s.path) : 'Top level'}](#${anchor(s.path)})`]));
  const out: string[] = [];
  const say = (s = '') => out.push(s);
  say('# Configuration reference');
  say();
  say('<!-- Generated from src/config/schema.ts and src/config/key-docs.ts by `npm run docs`; do not edit by hand. -->');
  say();
  say('Every key of `portcullis.yaml`, with its type, default and meaning, generated from the schema the');
  say('proxy validates with, so it cannot fall behind the code. YAML or JSON; `portcullis check -c FILE`');
  say('validates a file and prints every problem at once, with its path.');
  say();
  say('- **Paths** of files are relative to the config file\'s folder. A changed certificate, key, CA or CRL');
  say('  file reloads by itself; `workers`, `admin` and `log` need a restart.');
  say('- **Durations** are written `500ms`, `5s`, `2m`, `1h`, `90d` or combined (`1h30m`); a bare number');
  say('  is milliseconds. `0` turns a timeout off where the key says so.');
  say('- **Lists of strings** may be given as one string when there is one item (`client_ca: ca.crt`).');
  say('- **Unknown keys are errors**, with a "did you mean" suggestion, so a typo never silently drops a');
  say('  setting.');
  say('- **Editors**: `portcullis schema > portcullis.schema.json` writes the JSON Schema of this file; put');
  say('  `# yaml-language-server: $schema=./portcullis.schema.json` on the first line of `portcullis.yaml`');
  say('  (VS Code YAML extension, Neovim, JetBrains) to get completion and validation while editing.');
  say('- `portcullis policy test` shows which route and rule a request meets; `check --strict` turns');
  say('  warnings (missing intermediates, CRL lock-out, expiring certificates, readable keys) into errors.');
  say('  Ready-made configs are in [examples/](../examples/).');
  say();
  say('## Contents');
  say();
  for (const s of all) say(`${'  '.repeat(Math.max(0, s.path.split(/\.|\[\]/).filter(Boolean).length - 1))}- ${linkTo.get(s.path)}${SECTION_TITLES[s.path] ? `: ${SECTION_TITLES[s.path]}` : ''}`);
  say('- [A complete example](#a-complete-example)');
  for (const s of all) {
    say();
    say(`<a id="${anchor(s.path)}"></a>`);
    say();
    say(`## ${s.path ? code(s.path) : 'Top level'}${SECTION_TITLES[s.path] ? `: ${SECTION_TITLES[s.path]}` : ''}`);
    say();
    const intro = docFor(s.owner)?.text;
    if (intro) {
      say(intro);
      say();
    }
    say('| key | type | default | meaning |');
    say('|---|---|---|---|');
    const required = new Set((s.node.required as string[] | undefined) ?? []);
    for (const [key, child] of Object.entries(propsOf(s.node) ?? {})) {
      const p = childPath(s.path, key);
      const map = mapOf(p, child);
      const link = map ? linkTo.get(canonicalPath(map.path)) : undefined;
      const doc = docFor(p);
      const aliased = map && canonicalPath(map.path) !== map.path ? ` Same keys as ${link}.` : '';
      const example = doc?.example !== undefined && !map ? ` Example: ${code(yamlInline(doc.example))}.` : '';
      const text = doc ? doc.text : '**Undocumented: describe it in src/config/key-docs.ts.**';
      say(`| ${code(key)}${required.has(key) ? ' (required)' : ''} | ${cell(typeText(child, link))} | ${cell(defaultText(child))} | ${cell(`${text}${aliased}${example}`)} |`);
    }
  }
  say();
  say('## A complete example');
  say();
  say('Every key with its example or default value (the keys of a `protocol: tcp` listener and the');
  say('alternatives `path_exact` and `path_regex` are left out because they cannot all be set at once).');
  say('It shows the shape; a real file sets far fewer keys, see [examples/](../examples/).');
  say();
  say('```yaml');
  say(stringify(fullExample(schema), { lineWidth: 0 }).trimEnd());
  say('```');
  return out.join('\n') + '\n';
}
