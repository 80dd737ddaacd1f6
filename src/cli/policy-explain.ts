// Why a route or a rule did (not) match, for `portcullis policy test`. Never a second
// matcher: each condition is compiled on its own by the real compilers (compileRoutes,
// compileRules) and tested with the real matchers (matchRoute, CompiledRule.matches), so
// "which condition failed" is decided by the same code that decides the request. Whole
// routes and rules are judged by the listener's own compiled table and rules.
import { compileRoutes, hostWithoutPort, matchRoute, type RouteInput } from '../routing/route-table.js';
import { compileRules, RULE_KEYS, type CompiledRule, type Rule, type RuleKey } from '../policy/rules.js';
import type { Identity } from '../pki/identity-types.js';

export interface Verdict {
  matched: boolean;
  /** one line per condition: what it asks and what the request or identity has */
  why: string[];
}

type MatchKey = 'methods' | 'host' | 'path' | 'path_exact' | 'path_regex';
const MATCH_KEYS: readonly MatchKey[] = ['methods', 'host', 'path', 'path_exact', 'path_regex'];

const list = (v: readonly string[]) => v.join(', ');

/** Each condition of a route's match, tested alone: which hold and which do not. */
export function explainRoute(route: RouteInput, host: string, path: string, method: string): Verdict {
  const m = route.match;
  const why: string[] = [];
  let matched = true;
  const bare = hostWithoutPort(host) || '(none)';
  for (const key of MATCH_KEYS) {
    const value = m?.[key];
    if (value === undefined) continue;
    const alone = compileRoutes([{ match: { [key]: value } }]);
    const ok = matchRoute(alone, host, path, method) !== undefined;
    matched &&= ok;
    why.push(describeMatch(key, value, ok, { host: bare, path, method }));
  }
  if (why.length === 0) why.push('no match conditions: every request matches');
  return { matched, why };
}

function describeMatch(key: MatchKey, value: string | readonly string[], ok: boolean, r: { host: string; path: string; method: string }): string {
  const v = typeof value === 'string' ? value : list(value);
  switch (key) {
    case 'methods':
      return ok ? `method ${r.method} is one of ${v}` : `method ${r.method} is not one of ${v} (methods are exact and case-sensitive; HEAD is not implied by GET)`;
    case 'host':
      return ok ? `host ${r.host} is ${v}` : `host ${r.host} is not ${v} (*.example.com matches exactly one label)`;
    case 'path':
      return ok ? `path ${r.path} starts with ${v}` : `path ${r.path} does not start with ${v}`;
    case 'path_exact':
      return ok ? `path ${r.path} is exactly ${v}` : `path ${r.path} is not exactly ${v}`;
    case 'path_regex':
      return ok ? `path ${r.path} matches the whole of ${v}` : `path ${r.path} does not match the whole of ${v} (anchored: ^(?:${v})$)`;
  }
}

/** What the identity has for a rule key, as a rule would be written. */
function actual(key: RuleKey, id: Identity): string[] {
  switch (key) {
    case 'spiffe_id':
      return id.spiffeId === undefined ? [] : [id.spiffeId];
    case 'uri':
      return id.uris;
    case 'dns':
      return id.dns;
    case 'email':
      return id.emails;
    case 'cn':
      return id.cn;
    case 'ou':
      return id.ou;
    case 'o':
      return id.o;
    case 'issuer_cn':
      return id.issuerCn;
    case 'serial':
      return id.serial ? [id.serial] : [];
    case 'fingerprint':
      return id.fingerprint ? [`sha256:${id.fingerprint}`] : [];
  }
}

const WHAT: Record<RuleKey, string> = {
  spiffe_id: 'SPIFFE ID',
  uri: 'URI SANs',
  dns: 'DNS SANs',
  email: 'email SANs',
  cn: 'subject CN',
  ou: 'subject OU',
  o: 'subject O',
  issuer_cn: 'issuer CN',
  serial: 'serial',
  fingerprint: 'fingerprint',
};

/** The mistake people make with URI wildcards, spelled out when it is the likely cause. */
function wildcardHint(key: RuleKey, values: readonly string[], has: string[]): string {
  if (key !== 'spiffe_id' && key !== 'uri') return '';
  const star = values.find((v) => v.endsWith('/*'));
  if (!star) return '';
  const prefix = star.slice(0, -1);
  return has.some((h) => h.startsWith(prefix) && h.slice(prefix.length).includes('/'))
    ? ` ("*" is exactly one path segment; ${prefix}** matches every path below)`
    : '';
}

/** Each condition of a rule, tested alone against the identity. */
export function explainRule(rule: Rule | undefined, compiled: CompiledRule, identity: Identity | undefined): Verdict {
  if (identity === undefined) return { matched: false, why: ['no verified client certificate, so no condition can hold'] };
  const matched = compiled.matches(identity);
  if (!rule) return { matched, why: [matched ? 'every condition holds' : 'a condition does not hold'] };
  const why: string[] = [];
  for (const key of RULE_KEYS) {
    const given = rule[key];
    if (given === undefined) continue;
    const values = typeof given === 'string' ? [given] : [...given];
    const alone = compileRules([{ [key]: values } as Rule], 'explain')[0]!;
    const ok = alone.matches(identity);
    const has = actual(key, identity);
    const shown = has.length ? list(has) : '(none)';
    why.push(
      ok
        ? `${key} ${list(values)} matches the ${WHAT[key]} ${shown}`
        : `${key} ${list(values)} does not match the ${WHAT[key]} ${shown}${wildcardHint(key, values, has)}`,
    );
  }
  return { matched, why };
}
