// Decides whether a request may pass a route (SPEC §3), given the rules compiled once per
// configuration, the connection's identity and the request facts. Pure and per request.
//
// Semantics:
// 1. Deny list = listener deny ∪ route deny. The listener's denies always apply, so a
//    route cannot re-admit an identity the listener bans. Listener denies are checked
//    first; the first matching rule decides: denied, `rule` = its name.
// 2. Allow list = the route's allow if non-empty, else the listener's allow. Listener
//    allows are defaults for routes that set none; a route with its own allow list
//    replaces them (it does not add to them), so a route can be narrower or wider.
// 3. Empty allow list -> allowed (`no allow rules`). Otherwise the first matching allow
//    rule allows (`rule` = its name); if none matches -> denied, `no allow rule matched`.
// 4. No identity (no certificate, client_auth optional/none): every condition is about
//    the certificate, so no rule matches: denies never apply, and a non-empty allow list
//    denies with `no client certificate`.

import type { Identity, RequestFacts } from '../pki/identity-types.js';
import type { CompiledRule } from './rules.js';

export interface Decision {
  readonly allowed: boolean;
  /** name of the rule that decided (see rules.ts), absent when no rule did */
  readonly rule?: string;
  readonly reason: string;
}

export interface AuthorizeInput {
  listenerAllow: readonly CompiledRule[];
  listenerDeny: readonly CompiledRule[];
  routeAllow: readonly CompiledRule[];
  routeDeny: readonly CompiledRule[];
  identity: Identity | undefined;
  /** not used by any condition yet; part of the signature so rules can grow into it */
  facts: RequestFacts;
}

const NO_ALLOW_RULES: Decision = Object.freeze({ allowed: true, reason: 'no allow rules' });
const NO_MATCH: Decision = Object.freeze({ allowed: false, reason: 'no allow rule matched' });
const NO_CERT: Decision = Object.freeze({ allowed: false, reason: 'no client certificate' });

export function authorize(input: AuthorizeInput): Decision {
  const { identity } = input;
  const allow = input.routeAllow.length > 0 ? input.routeAllow : input.listenerAllow;
  if (identity === undefined) return allow.length > 0 ? NO_CERT : NO_ALLOW_RULES;

  const denied = firstMatch(input.listenerDeny, identity) ?? firstMatch(input.routeDeny, identity);
  if (denied) return { allowed: false, rule: denied.name, reason: denied.denyReason };

  if (allow.length === 0) return NO_ALLOW_RULES;
  const allowed = firstMatch(allow, identity);
  if (allowed) return { allowed: true, rule: allowed.name, reason: allowed.allowReason };
  return NO_MATCH;
}

function firstMatch(rules: readonly CompiledRule[], identity: Identity): CompiledRule | undefined {
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (rule.matches(identity)) return rule;
  }
  return undefined;
}
