// Compiles allow/deny rules (SPEC §3) into matchers, once per configuration generation,
// so that checking a request is a few RegExp tests and Set lookups, with no parsing.
//
// Rule names: compileRules(rules, where) names rule i `${where}[${i}]`. `where` is the
// config location of the list, with listener and route *names* where they have them,
// e.g. `listeners[api].allow` -> `listeners[api].allow[0]`, `routes[charge].deny` ->
// `routes[charge].deny[1]`. The name is what access logs and 403 messages show as the
// rule that decided, so it has to let a person find the rule in the file.
//
// Case rules: all case-insensitive comparisons fold ASCII A-Z only. Unicode folding would
// let e.g. U+212A KELVIN SIGN compare equal to "k", so a certificate could match a rule
// it does not literally name.

import type { Identity } from '../pki/identity-types.js';
import { ErrorCodes, PortcullisError, PortcullisErrors } from '../errors.js';

export const RULE_KEYS = [
  'spiffe_id',
  'uri',
  'dns',
  'email',
  'cn',
  'ou',
  'o',
  'issuer_cn',
  'serial',
  'fingerprint',
] as const;

export type RuleKey = (typeof RULE_KEYS)[number];

/**
 * A rule as the config gives it: every present key must hold; each list is any-of. The
 * config normalizes values to lists; a lone string (SPEC §3 allows one) is taken too.
 */
export type Rule = { readonly [K in RuleKey]?: string | readonly string[] | undefined };

/** One condition of a rule, e.g. `cn` with its values, ready to test an identity. */
type Condition = (identity: Identity) => boolean;

export interface CompiledRule {
  /** `${where}[${index}]`, see the header comment */
  readonly name: string;
  /** the keys this rule tests, in RULE_KEYS order (for status pages and debugging) */
  readonly keys: readonly RuleKey[];
  /** `allowed by <name>` / `denied by <name>`, built here so a decision costs no string work */
  readonly allowReason: string;
  readonly denyReason: string;
  /** true when every condition holds for this identity */
  matches(identity: Identity): boolean;
}

const KNOWN_KEYS: ReadonlySet<string> = new Set(RULE_KEYS);

/**
 * Compiles a list of rules. Throws PortcullisErrors listing every problem (with its
 * config path) when a rule is malformed; see validateRules for what is rejected.
 */
export function compileRules(rules: readonly Rule[], where: string): CompiledRule[] {
  const problems: PortcullisError[] = [];
  const out: CompiledRule[] = [];
  rules.forEach((rule, i) => {
    const name = `${where}[${i}]`;
    const compiled = compileRule(rule, name, problems);
    if (compiled) out.push(compiled);
  });
  if (problems.length > 0) throw new PortcullisErrors(problems);
  return out;
}

/** Every problem in a list of rules, for `portcullis check` to report all at once. */
export function validateRules(rules: readonly Rule[], where: string): PortcullisError[] {
  const problems: PortcullisError[] = [];
  rules.forEach((rule, i) => compileRule(rule, `${where}[${i}]`, problems));
  return problems;
}

function problem(path: string, text: string): PortcullisError {
  return new PortcullisError(ErrorCodes.CONFIG_INVALID, `${path}: ${text}`, { path });
}

// Rejected, because each one would silently change what a rule means:
// - unknown keys (a typo would drop a condition and widen an allow rule);
// - a rule with no conditions (it would match every client);
// - an empty value list (it would match nothing: an allow rule that never allows, a deny
//   rule that never denies).
function compileRule(rule: Rule, name: string, problems: PortcullisError[]): CompiledRule | undefined {
  const before = problems.length;
  if (rule === null || typeof rule !== 'object' || Array.isArray(rule)) {
    problems.push(problem(name, 'a rule must be a map of conditions'));
    return undefined;
  }
  for (const key of Object.keys(rule)) {
    if (!KNOWN_KEYS.has(key)) {
      problems.push(problem(`${name}.${key}`, `unknown condition; use one of ${RULE_KEYS.join(', ')}`));
    }
  }
  const conditions: Condition[] = [];
  const keys: RuleKey[] = [];
  for (const key of RULE_KEYS) {
    const given = rule[key];
    if (given === undefined) continue;
    const values = typeof given === 'string' ? [given] : given;
    const path = `${name}.${key}`;
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
      problems.push(problem(path, 'must be a string or a list of strings'));
      continue;
    }
    if (values.length === 0) {
      problems.push(problem(path, 'empty list matches no certificate; remove the key or give a value'));
      continue;
    }
    const condition = compileCondition(key, values, path, problems);
    if (condition) {
      conditions.push(condition);
      keys.push(key);
    }
  }
  if (conditions.length === 0 && problems.length === before) {
    problems.push(problem(name, 'rule has no conditions, so it would match every client certificate'));
  }
  if (problems.length > before) return undefined;
  return makeRule(name, keys, conditions);
}

function makeRule(name: string, keys: RuleKey[], conditions: Condition[]): CompiledRule {
  const n = conditions.length;
  const c0 = conditions[0]!;
  const matches =
    n === 1
      ? c0
      : (identity: Identity): boolean => {
          for (let i = 0; i < n; i++) if (!conditions[i]!(identity)) return false;
          return true;
        };
  return Object.freeze({
    name,
    keys: Object.freeze(keys),
    allowReason: `allowed by ${name}`,
    denyReason: `denied by ${name}`,
    matches,
  });
}

// Pattern conditions (spiffe_id, uri, dns, email, serial) become ONE anchored RegExp per
// condition, the values joined as alternatives: V8 runs a compiled regex faster than a
// hand-written loop of charCodeAt comparisons, and a list of 20 values costs one test per
// SAN instead of 20. Case-insensitive parts are written as [aA] classes rather than with
// the `i` flag, because the same regex also has case-sensitive parts (URI paths, email
// local parts); classes fold ASCII only, which is also what we want (header comment).
function compileCondition(
  key: RuleKey,
  values: readonly string[],
  path: string,
  problems: PortcullisError[],
): Condition | undefined {
  const before = problems.length;
  const each = (compile: (v: string, at: string) => string | undefined, prefix = ''): RegExp | undefined => {
    const sources = values.map((v, i) => compile(v, `${path}[${i}]`));
    if (problems.length > before) return undefined;
    return new RegExp(`^${prefix}(?:${sources.join('|')})$`);
  };
  switch (key) {
    case 'spiffe_id': {
      const re = each((v, at) => uriPatternSource(v, at, problems, true));
      return re && ((id) => id.spiffeId !== undefined && re.test(id.spiffeId));
    }
    case 'uri': {
      const re = each((v, at) => uriPatternSource(v, at, problems, false));
      return re && ((id) => anyMatches(id.uris, re));
    }
    case 'dns': {
      const re = each((v, at) => dnsPatternSource(v, at, problems));
      return re && ((id) => anyMatches(id.dns, re));
    }
    case 'email': {
      const re = each((v, at) => emailPatternSource(v, at, problems));
      return re && ((id) => anyMatches(id.emails, re));
    }
    case 'cn': {
      const set = new Set(values);
      return (id) => anyInSet(id.cn, set);
    }
    case 'ou': {
      const set = new Set(values);
      return (id) => anyInSet(id.ou, set);
    }
    case 'o': {
      const set = new Set(values);
      return (id) => anyInSet(id.o, set);
    }
    case 'issuer_cn': {
      const set = new Set(values);
      return (id) => anyInSet(id.issuerCn, set);
    }
    case 'serial': {
      // The identity's serial keeps whatever leading zero DER needed (a 00 byte before a
      // high bit); rules are written without it, so leading zeros are ignored on both sides:
      // stripped from the rule here, skipped by `0*` in the identity's.
      const re = each((v, at) => {
        const hex = v.replace(/:/g, '');
        if (!/^[0-9A-Fa-f]+$/.test(hex)) {
          problems.push(problem(at, 'serial must be hexadecimal'));
          return undefined;
        }
        return caseless(hex.replace(/^0+/, ''));
      }, '0*');
      return re && ((id) => id.serial.length > 0 && re.test(id.serial));
    }
    case 'fingerprint': {
      const set = new Set<string>();
      values.forEach((v, i) => {
        const m = /^sha256:([0-9a-f:]+)$/i.exec(v);
        const hex = m ? m[1]!.replace(/:/g, '').toLowerCase() : '';
        if (hex.length !== 64) {
          problems.push(problem(`${path}[${i}]`, 'fingerprint must be "sha256:" followed by 64 hex digits'));
        } else set.add(hex);
      });
      if (problems.length > before) return undefined;
      // identity.fingerprint is lowercase hex without prefix (identity-types.ts)
      return (id) => set.has(id.fingerprint);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Per-request loops: plain for-loops, so matching makes no closures or arrays.

function anyMatches(values: readonly string[], re: RegExp): boolean {
  for (let i = 0; i < values.length; i++) if (re.test(values[i]!)) return true;
  return false;
}

function anyInSet(values: readonly string[], set: ReadonlySet<string>): boolean {
  for (let i = 0; i < values.length; i++) if (set.has(values[i]!)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------
// Regex building blocks.

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** Regex source matching `s` literally, ASCII letters in either case. */
function caseless(s: string): string {
  let out = '';
  for (const ch of s) {
    const lower = ch >= 'A' && ch <= 'Z' ? ch.toLowerCase() : ch;
    out += lower >= 'a' && lower <= 'z' ? `[${lower}${lower.toUpperCase()}]` : escapeRegExp(ch);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// URI and SPIFFE ID patterns.
//
// A pattern is split into a case-insensitive head (scheme and, for `scheme://` URIs, the
// authority, i.e. the SPIFFE trust domain) and a case-sensitive path. Wildcards live only
// in the path, and only as whole `/`-separated segments:
//   `*`  one segment: one or more characters other than `/`;
//   `**` the rest: one or more such segments, so `.../prod/**` does not match `.../prod`
//        or `.../prod/`; only allowed as the last segment.
// Anything else is literal. A `*` inside a segment (`web-*`) is an error rather than a
// literal, because whoever wrote it almost certainly meant a glob.

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):/;

function uriPatternSource(
  pattern: string,
  path: string,
  problems: PortcullisError[],
  spiffe: boolean,
): string | undefined {
  const fail = (text: string): undefined => {
    problems.push(problem(path, text));
    return undefined;
  };
  const scheme = SCHEME_RE.exec(pattern);
  if (!scheme) return fail(spiffe ? 'must start with spiffe://' : 'must be a URI with a scheme, e.g. spiffe://example.org/...');
  let headEnd = scheme[0].length;
  if (pattern.startsWith('//', headEnd)) {
    headEnd += 2;
    while (headEnd < pattern.length && !'/?#'.includes(pattern[headEnd]!)) headEnd++;
  }
  const head = pattern.slice(0, headEnd);
  const rest = pattern.slice(headEnd);
  if (spiffe && !/^spiffe:\/\//i.test(head)) return fail('must start with spiffe://');
  if (spiffe && head.length === 'spiffe://'.length) return fail('needs a trust domain after spiffe://');
  if (head.includes('*')) return fail('wildcards are only allowed in the path, not in the scheme or trust domain');
  const segments = rest.split('/');
  let source = caseless(head);
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (i > 0) source += '\\/';
    if (seg === '*') source += '[^/]+';
    else if (seg === '**') {
      if (i !== segments.length - 1) return fail('"**" is only allowed as the last path segment');
      source += '[^/]+(?:\\/[^/]+)*';
    } else if (seg.includes('*')) {
      return fail(`"*" must be a whole path segment ("/*/" or a final "/**"), not part of "${seg}"`);
    } else source += escapeRegExp(seg);
  }
  return source;
}

// ---------------------------------------------------------------------------------------
// DNS names: case-insensitive; `*.example.com` matches exactly one more label. A SAN
// that is itself a wildcard matches only a rule with the identical string: the rule
// `*.example.com` stands for "any single host under example.com", and a certificate for
// all of them is that too, but `a.example.com` must not accept a cert for `*.example.com`.

function dnsPatternSource(pattern: string, path: string, problems: PortcullisError[]): string | undefined {
  const fail = (text: string): undefined => {
    problems.push(problem(path, text));
    return undefined;
  };
  if (pattern.length === 0) return fail('empty DNS name');
  if (pattern.startsWith('*.')) {
    const domain = pattern.slice(2);
    if (domain.length === 0 || domain.includes('*') || domain.startsWith('.')) {
      return fail('a DNS wildcard must be "*." followed by a domain, e.g. *.example.com');
    }
    // one label without dots or stars, or the identical wildcard
    return `(?:[^.*]+|\\*)\\.${caseless(domain)}`;
  }
  if (pattern.includes('*')) return fail('a DNS wildcard is only allowed as the whole first label ("*.example.com")');
  return caseless(pattern);
}

// ---------------------------------------------------------------------------------------
// Email: local part exact (RFC 5321 leaves its case to the receiving host), domain
// case-insensitive. Split at the last "@", since a quoted local part may contain one.

function emailPatternSource(pattern: string, path: string, problems: PortcullisError[]): string | undefined {
  const at = pattern.lastIndexOf('@');
  if (at <= 0 || at === pattern.length - 1) {
    problems.push(problem(path, 'must be an address like name@example.com'));
    return undefined;
  }
  return `${escapeRegExp(pattern.slice(0, at + 1))}${caseless(pattern.slice(at + 1))}`;
}
