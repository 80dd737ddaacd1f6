// Unit tests for authorize(): deny precedence, listener vs route lists, no identity, and
// the rule name and reason each decision reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Identity } from '../pki/identity-types.js';
import { compileRules, type CompiledRule, type Rule } from './rules.js';
import { authorize, type AuthorizeInput } from './authorize.js';

function identity(cn: string, ou = 'prod'): Identity {
  return {
    subject: `CN=${cn},OU=${ou}`,
    issuer: 'CN=CA',
    cn: [cn],
    ou: [ou],
    o: [],
    issuerCn: ['CA'],
    serial: '01',
    fingerprint: '00'.repeat(32),
    spkiFingerprint: '11'.repeat(32),
    spiffeId: `spiffe://example.org/ns/${ou}/sa/${cn}`,
    uris: [`spiffe://example.org/ns/${ou}/sa/${cn}`],
    dns: [],
    emails: [],
    ips: [],
    notBefore: new Date(0),
    notAfter: new Date(4e12),
    der: Buffer.alloc(0),
    chainDer: [],
  };
}

const facts = { method: 'GET', host: 'api.example.com', path: '/' };

interface Lists {
  listenerAllow?: Rule[];
  listenerDeny?: Rule[];
  routeAllow?: Rule[];
  routeDeny?: Rule[];
}

function decide(lists: Lists, id: Identity | undefined) {
  const c = (rules: Rule[] | undefined, where: string): CompiledRule[] => compileRules(rules ?? [], where);
  const input: AuthorizeInput = {
    listenerAllow: c(lists.listenerAllow, 'listeners[api].allow'),
    listenerDeny: c(lists.listenerDeny, 'listeners[api].deny'),
    routeAllow: c(lists.routeAllow, 'routes[charge].allow'),
    routeDeny: c(lists.routeDeny, 'routes[charge].deny'),
    identity: id,
    facts,
  };
  return authorize(input);
}

test('no rules at all: allowed, with or without a certificate', () => {
  assert.deepEqual(decide({}, identity('web')), { allowed: true, reason: 'no allow rules' });
  assert.deepEqual(decide({}, undefined), { allowed: true, reason: 'no allow rules' });
});

test('allow rule matches: allowed by that rule; none matches: denied without a rule', () => {
  const lists = { routeAllow: [{ cn: ['api'] }, { cn: ['web'] }] };
  assert.deepEqual(decide(lists, identity('web')), {
    allowed: true,
    rule: 'routes[charge].allow[1]',
    reason: 'allowed by routes[charge].allow[1]',
  });
  const d = decide(lists, identity('db'));
  assert.deepEqual(d, { allowed: false, reason: 'no allow rule matched' });
  assert.equal(d.rule, undefined);
});

test('first matching allow rule is the one reported', () => {
  const d = decide({ routeAllow: [{ ou: ['prod'] }, { cn: ['web'] }] }, identity('web'));
  assert.equal(d.rule, 'routes[charge].allow[0]');
});

test('deny beats allow', () => {
  const d = decide({ routeAllow: [{ cn: ['web'] }], routeDeny: [{ ou: ['prod'] }] }, identity('web'));
  assert.deepEqual(d, { allowed: false, rule: 'routes[charge].deny[0]', reason: 'denied by routes[charge].deny[0]' });
  // the same deny does not affect an identity it does not match
  assert.deepEqual(decide({ routeAllow: [{ cn: ['web'] }], routeDeny: [{ ou: ['prod'] }] }, identity('web', 'dev')), {
    allowed: true,
    rule: 'routes[charge].allow[0]',
    reason: 'allowed by routes[charge].allow[0]',
  });
});

test('deny applies even when the allow list is empty', () => {
  const d = decide({ listenerDeny: [{ cn: ['web'] }] }, identity('web'));
  assert.deepEqual(d, { allowed: false, rule: 'listeners[api].deny[0]', reason: 'denied by listeners[api].deny[0]' });
  assert.equal(decide({ listenerDeny: [{ cn: ['web'] }] }, identity('api')).allowed, true);
});

test('listener deny always applies, even when the route allows', () => {
  const d = decide(
    { listenerDeny: [{ cn: ['web'] }], routeAllow: [{ cn: ['web'] }], routeDeny: [{ cn: ['other'] }] },
    identity('web'),
  );
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'listeners[api].deny[0]');
});

test('listener deny is reported before a route deny that also matches', () => {
  const d = decide({ listenerDeny: [{ ou: ['prod'] }], routeDeny: [{ cn: ['web'] }] }, identity('web'));
  assert.equal(d.rule, 'listeners[api].deny[0]');
  const e = decide({ listenerDeny: [{ ou: ['dev'] }], routeDeny: [{ cn: ['web'] }] }, identity('web'));
  assert.equal(e.rule, 'routes[charge].deny[0]');
});

test('listener allow is the default for a route without its own allow list', () => {
  const lists = { listenerAllow: [{ ou: ['prod'] }] };
  assert.equal(decide(lists, identity('web', 'prod')).rule, 'listeners[api].allow[0]');
  assert.deepEqual(decide(lists, identity('web', 'dev')), { allowed: false, reason: 'no allow rule matched' });
});

test('a route allow list replaces the listener allow list', () => {
  const lists = { listenerAllow: [{ ou: ['prod'] }], routeAllow: [{ cn: ['admin'] }] };
  // wider: admin from dev passes though the listener default would refuse it
  assert.equal(decide(lists, identity('admin', 'dev')).rule, 'routes[charge].allow[0]');
  // narrower: prod web no longer passes though the listener default would admit it
  assert.deepEqual(decide(lists, identity('web', 'prod')), { allowed: false, reason: 'no allow rule matched' });
});

test('no identity: denies cannot match, a non-empty allow list refuses', () => {
  assert.deepEqual(decide({ routeAllow: [{ cn: ['web'] }] }, undefined), {
    allowed: false,
    reason: 'no client certificate',
  });
  assert.deepEqual(decide({ listenerAllow: [{ cn: ['web'] }] }, undefined), {
    allowed: false,
    reason: 'no client certificate',
  });
  assert.deepEqual(decide({ listenerDeny: [{ cn: ['web'] }], routeDeny: [{ ou: ['prod'] }] }, undefined), {
    allowed: true,
    reason: 'no allow rules',
  });
});

test('wildcard rules through authorize', () => {
  const lists = { listenerAllow: [{ spiffe_id: ['spiffe://example.org/ns/prod/**'] }], routeDeny: [{ spiffe_id: ['spiffe://example.org/ns/*/sa/db'] }] };
  assert.equal(decide(lists, identity('web', 'prod')).allowed, true);
  assert.equal(decide(lists, identity('db', 'prod')).rule, 'routes[charge].deny[0]');
  assert.equal(decide(lists, identity('web', 'dev')).allowed, false);
});

test('decisions with a fixed reason are shared and frozen', () => {
  const a = decide({}, identity('web'));
  assert.ok(Object.isFrozen(a));
  assert.throws(() => {
    (a as { allowed: boolean }).allowed = false;
  }, TypeError);
});
