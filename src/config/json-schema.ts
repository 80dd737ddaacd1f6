// The config file's JSON Schema, generated from the one zod schema (schema.ts) with the
// descriptions of key-docs.ts: `portcullis schema` prints it for editors, and
// docs/configuration.md is rendered from it (config-doc.ts). Nothing here lists keys: a key
// added to schema.ts appears in both by itself (and the docs test asks for its text).
//
// The schema describes what may be *written* (zod's "input" side): durations as "5s",
// a single string where a list is accepted, `false` for an "off" switch. zod cannot see
// through those preprocessing steps, so schema.ts marks them (INPUT_KIND) and this file
// writes them out; defaults are given as they would be written ("5m", not 300000).
import { z } from 'zod';
import { ConfigSchema, INPUT_KIND, type InputKind } from './schema.js';
import { formatDuration } from './duration.js';
import { docFor, SHAPE_ALIASES } from './key-docs.js';

export type JsonSchema = { [k: string]: unknown };

/** A duration as written: "1h30m", "500ms", "90d", or a number of milliseconds. */
const DURATION_PATTERN = '^\\s*(\\d+|(\\d+(\\.\\d+)?(ms|s|m|h|d))+)\\s*$';

function clear(o: JsonSchema): void {
  for (const k of Object.keys(o)) delete o[k];
}

/**
 * Rewrites a node marked with INPUT_KIND into the forms the file may use. zod calls the
 * override for a wrapper (.default, .optional) after copying the inner node's result into
 * it, so a node already rewritten is recognized by its shape and left alone.
 */
function writeInputForm(js: JsonSchema, kind: InputKind): void {
  const done = kind === 'switch' ? (js.enum as unknown[] | undefined)?.includes(false) : js.anyOf !== undefined;
  if (done) return;
  const keep = { description: js.description, default: js.default };
  switch (kind) {
    case 'duration': {
      const positive = js.exclusiveMinimum === 0;
      clear(js);
      js.anyOf = [
        { type: 'string', pattern: DURATION_PATTERN, description: 'e.g. 500ms, 5s, 2m, 1h, 90d, 1h30m' },
        positive ? { type: 'number', exclusiveMinimum: 0, description: 'milliseconds' } : { type: 'number', minimum: 0, description: 'milliseconds' },
      ];
      break;
    }
    case 'list': {
      const { [INPUT_KIND]: _k, default: _d, description: _desc, ...array } = js;
      clear(js);
      // a single value stands for a list of one
      js.anyOf = [array.items, array];
      break;
    }
    case 'switch': {
      const values = (js.enum as unknown[]) ?? [];
      clear(js);
      js.enum = [...values, false];
      break;
    }
    case 'workers':
      clear(js);
      js.anyOf = [{ const: 'auto' }, { type: 'integer', minimum: 1 }];
      break;
  }
  js[INPUT_KIND] = kind;
  if (keep.description !== undefined) js.description = keep.description;
  if (keep.default !== undefined) js.default = keep.default;
}

/** zod's JSON Schema of the input side, with input forms and defaults written out. */
function rawSchema(): JsonSchema {
  return z.toJSONSchema(ConfigSchema, {
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      const js = ctx.jsonSchema as JsonSchema;
      const def = (ctx.zodSchema as unknown as { _zod: { def: { type: string; defaultValue?: unknown } } })._zod.def;
      const kind = js[INPUT_KIND] as InputKind | undefined;
      // zod drops the default of a transformed value in input mode (the default is an
      // output value); put it back as it would be written
      if (def.type === 'default' && js.default === undefined) {
        const v = def.defaultValue;
        js.default = kind === 'duration' && typeof v === 'number' ? formatDuration(v) : v;
      }
      if (kind) writeInputForm(js, kind);
    },
  }) as JsonSchema;
}

/** Dotted key paths as key-docs.ts writes them: listeners[].tls.ocsp.mode, upstreams.<name>.tls. */
export function childPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/** The path whose documentation applies: an aliased shape (e.g. an SNI entry's ocsp) uses the canonical one. */
export function canonicalPath(path: string): string {
  for (const [alias, canonical] of Object.entries(SHAPE_ALIASES)) {
    if (path === alias || path.startsWith(`${alias}.`) || path.startsWith(`${alias}[`)) return canonical + path.slice(alias.length);
  }
  return path;
}

export interface Visit {
  path: string;
  node: JsonSchema;
  /** the key under its parent (undefined for the root and list items) */
  key: string | undefined;
  required: boolean;
}

/** Every map key of the schema, depth first in schema order, with its path. */
export function walk(node: JsonSchema, visit: (v: Visit) => void, path = ''): void {
  const props = node.properties as Record<string, JsonSchema> | undefined;
  const required = new Set((node.required as string[] | undefined) ?? []);
  for (const [key, child] of Object.entries(props ?? {})) {
    const p = childPath(path, key);
    visit({ path: p, node: child, key, required: required.has(key) });
    walk(child, visit, p);
  }
  const items = node.items as JsonSchema | undefined;
  if (items && typeof items === 'object') walk(items, visit, `${path}[]`);
  const extra = node.additionalProperties;
  if (extra && typeof extra === 'object') walk(extra as JsonSchema, visit, `${path}.<name>`);
}

/**
 * The JSON Schema with descriptions and examples, for docs (`internal`: keeps the
 * INPUT_KIND marks the doc renderer reads) or for editors (marks removed).
 */
export function configJsonSchema(opts: { internal?: boolean } = {}): JsonSchema {
  // a deep copy: zod shares one object between the places a sub-schema is reused, and
  // each place gets its own description
  const schema = JSON.parse(JSON.stringify(rawSchema())) as JsonSchema;
  schema.title = 'portcullis configuration (portcullis.yaml)';
  schema.description = 'Generated from the zod schema by `portcullis schema`; see docs/configuration.md.';
  walk(schema, ({ path, node }) => {
    const doc = docFor(canonicalPath(path));
    if (!doc) return;
    node.description = doc.text;
    if (doc.example !== undefined) node.examples = [doc.example];
  });
  if (!opts.internal) {
    const strip = (n: unknown): void => {
      if (Array.isArray(n)) n.forEach(strip);
      else if (n && typeof n === 'object') {
        delete (n as JsonSchema)[INPUT_KIND];
        Object.values(n).forEach(strip);
      }
    };
    strip(schema);
  }
  return schema;
}
