// Unit tests for rule compilation and matching: every condition, wildcard and case edge
// cases, any-of lists, all-of maps, and the rules that compileRules refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Identity } from '../pki/identity-types.js';
import { compileRules, validateRules, type Rule } from './rules.js';
import { PortcullisErrors } from '../errors.js';

const FP = 'ab'.repeat(32);

function identity(over: Partial<Identity> = {}): Identity {
  return {
    subject: 'CN=web,OU=prod,O=Example',
    issuer: 'CN=Example CA',
    cn: ['web'],
    ou: ['prod'],
    o: ['Example'],
    issuerCn: ['Example CA'],
    serial: '0A1B',
    fingerprint: FP,
    spkiFingerprint: 'cd'.repeat(32),
    spiffeId: 'spiffe://example.org/ns/prod/sa/web',
    uris: ['spiffe://example.org/ns/prod/sa/web', 'https://svc.example.com/api/v1'],
    dns: ['web.example.com', 'Web.Internal.Example.NET'],
    emails: ['Alice.Smith@Example.COM'],
    ips: ['10.0.0.1'],
    notBefore: new Date(0),
    notAfter: new Date(4e12),
    der: Buffer.alloc(0),
    chainDer: [],
    ...over,
  };
}

/** Does a single rule match this identity? */
function m(rule: Rule, id: Identity = identity()): boolean {
  const [r] = compileRules([rule], 'test');
  return r!.matches(id);
}

function rejects(rule: unknown, pattern: RegExp): void {
  assert.throws(
    () => compileRules([rule as Rule], 'listeners[api].allow'),
    (err: unknown) => err instanceof PortcullisErrors && err.errors.some((e) => pattern.test(e.message)),
  );
}

test('rule names are where[index]', () => {
  const rules = compileRules([{ cn: ['a'] }, { cn: ['b'] }], 'routes[charge].deny');
  assert.deepEqual(
    rules.map((r) => r.name),
    ['routes[charge].deny[0]', 'routes[charge].deny[1]'],
  );
  assert.equal(rules[1]!.denyReason, 'denied by routes[charge].deny[1]');
  assert.equal(rules[0]!.allowReason, 'allowed by routes[charge].deny[0]');
  assert.deepEqual(compileRules([{ serial: ['A'], cn: ['x'] }], 'w')[0]!.keys, ['cn', 'serial']);
});

test('spiffe_id: literal, trust domain case-insensitive, path case-sensitive', () => {
  assert.equal(m({ spiffe_id: ['spiffe://example.org/ns/prod/sa/web'] }), true);
  assert.equal(m({ spiffe_id: ['spiffe://EXAMPLE.org/ns/prod/sa/web'] }), true);
  assert.equal(m({ spiffe_id: ['SPIFFE://example.org/ns/prod/sa/web'] }), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/ns/prod/sa/web'] }, identity({ spiffeId: 'spiffe://Example.ORG/ns/prod/sa/web' })), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/ns/PROD/sa/web'] }), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/ns/prod/sa/we'] }), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/ns/prod/sa/web/x'] }), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org'] }), false);
  // only the identity's SPIFFE ID (the first spiffe URI SAN) counts, not other URI SANs
  const two = identity({ spiffeId: 'spiffe://example.org/a', uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
  assert.equal(m({ spiffe_id: ['spiffe://example.org/b'] }, two), false);
  assert.equal(m({ uri: ['spiffe://example.org/b'] }, two), true);
});

test('spiffe_id: "*" is exactly one non-empty segment', () => {
  const rule = { spiffe_id: ['spiffe://example.org/ns/*/sa/web'] };
  assert.equal(m(rule), true);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/dev/sa/web' })), true);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/a/b/sa/web' })), false, '* crosses /');
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns//sa/web' })), false, '* empty');
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/prod/sa/webx' })), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/*'] }, identity({ spiffeId: 'spiffe://example.org/a' })), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/*'] }, identity({ spiffeId: 'spiffe://example.org/' })), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/*'] }, identity({ spiffeId: 'spiffe://example.org/a/b' })), false);
});

test('spiffe_id: "**" is one or more segments, last only', () => {
  const rule = { spiffe_id: ['spiffe://example.org/ns/prod/**'] };
  assert.equal(m(rule), true);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/prod/x' })), true);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/prod' })), false, '** needs a segment');
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/prod/' })), false, '** segment non-empty');
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/production/x' })), false);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/ns/PROD/x' })), false);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org.evil/ns/prod/x' })), false);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://evil.example.org/ns/prod/x' })), false);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://EXAMPLE.ORG/ns/prod/x' })), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/**'] }), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/*/*/**'] }), true);
  rejects({ spiffe_id: ['spiffe://example.org/**/web'] }, /"\*\*" is only allowed as the last/);
});

test('spiffe_id: regex metacharacters are literal; glob chars only as whole segments', () => {
  const rule = { spiffe_id: ['spiffe://example.org/a.b/*'] };
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/a.b/x' })), true);
  assert.equal(m(rule, identity({ spiffeId: 'spiffe://example.org/aXb/x' })), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/a+(b)'] }, identity({ spiffeId: 'spiffe://example.org/a+(b)' })), true);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/a+(b)'] }, identity({ spiffeId: 'spiffe://example.org/aa(b)' })), false);
  assert.equal(m({ spiffe_id: ['spiffe://example.org/?'] }, identity({ spiffeId: 'spiffe://example.org/x' })), false);
  rejects({ spiffe_id: ['spiffe://example.org/web-*'] }, /must be a whole path segment/);
  rejects({ spiffe_id: ['spiffe://*.example.org/x'] }, /not in the scheme or trust domain/);
  rejects({ spiffe_id: ['https://example.org/x'] }, /must start with spiffe:\/\//);
  rejects({ spiffe_id: ['example.org/x'] }, /must start with spiffe:\/\//);
  rejects({ spiffe_id: ['spiffe:///x'] }, /needs a trust domain/);
});

test('spiffe_id: identity without a SPIFFE ID never matches', () => {
  assert.equal(m({ spiffe_id: ['spiffe://example.org/**'] }, identity({ spiffeId: undefined })), false);
});

test('uri: any URI SAN, same wildcards', () => {
  assert.equal(m({ uri: ['https://svc.example.com/api/v1'] }), true);
  assert.equal(m({ uri: ['HTTPS://SVC.example.com/api/v1'] }), true);
  assert.equal(m({ uri: ['https://svc.example.com/API/v1'] }), false);
  assert.equal(m({ uri: ['https://svc.example.com/api/*'] }), true);
  assert.equal(m({ uri: ['https://svc.example.com/**'] }), true);
  assert.equal(m({ uri: ['https://svc.example.com/*'] }), false);
  assert.equal(m({ uri: ['spiffe://example.org/ns/*/sa/web'] }), true, 'the spiffe SAN is a URI SAN too');
  assert.equal(m({ uri: ['urn:example:web'] }, identity({ uris: ['urn:example:web'] })), true);
  assert.equal(m({ uri: ['urn:example:web'] }, identity({ uris: ['URN:example:web'] })), true);
  assert.equal(m({ uri: ['urn:example:web'] }, identity({ uris: ['urn:example:WEB'] })), false);
  assert.equal(m({ uri: ['https://svc.example.com/api/v1'] }, identity({ uris: [] })), false);
  rejects({ uri: ['not a uri'] }, /must be a URI with a scheme/);
});

test('dns: case-insensitive, wildcard matches exactly one label', () => {
  assert.equal(m({ dns: ['web.example.com'] }), true);
  assert.equal(m({ dns: ['WEB.Example.com'] }), true);
  assert.equal(m({ dns: ['web.internal.example.net'] }), true, 'SAN side folded too');
  assert.equal(m({ dns: ['eb.example.com'] }), false);
  const star = (dns: string[]) => m({ dns: ['*.example.com'] }, identity({ dns }));
  assert.equal(star(['a.example.com']), true);
  assert.equal(star(['A.EXAMPLE.COM']), true);
  assert.equal(star(['a.b.example.com']), false);
  assert.equal(star(['example.com']), false);
  assert.equal(star(['.example.com']), false);
  assert.equal(star(['aexample.com']), false);
  assert.equal(star(['a.example.com.evil']), false);
  assert.equal(star(['x.other.com', 'b.example.com']), true, 'any SAN');
});

test('dns: a wildcard SAN only matches the identical rule', () => {
  const san = (rule: string) => m({ dns: [rule] }, identity({ dns: ['*.example.com'] }));
  assert.equal(san('*.example.com'), true);
  assert.equal(san('*.EXAMPLE.com'), true);
  assert.equal(san('a.example.com'), false);
  assert.equal(san('*.com'), false);
  assert.equal(m({ dns: ['*.example.com'] }, identity({ dns: ['a*.example.com'] })), false);
  assert.equal(m({ dns: ['*.example.com'] }, identity({ dns: ['*a.example.com'] })), false);
  assert.equal(m({ dns: ['*.example.com'] }, identity({ dns: ['*.example.com.evil'] })), false);
  assert.equal(m({ dns: ['*.example.com'] }, identity({ dns: ['*.a.example.com'] })), false);
  rejects({ dns: ['a.*.example.com'] }, /only allowed as the whole first label/);
  rejects({ dns: ['*'] }, /DNS wildcard/);
  rejects({ dns: [''] }, /empty DNS name/);
});

test('dns: ASCII-only case folding (no Unicode tricks)', () => {
  // U+212A KELVIN SIGN lowercases to "k" under Unicode rules
  assert.equal(m({ dns: ['kube.example.com'] }, identity({ dns: ['\u212Aube.example.com'] })), false);
});

test('email: local part case-sensitive, domain case-insensitive', () => {
  assert.equal(m({ email: ['Alice.Smith@example.com'] }), true);
  assert.equal(m({ email: ['Alice.Smith@EXAMPLE.COM'] }), true);
  assert.equal(m({ email: ['alice.smith@example.com'] }), false);
  assert.equal(m({ email: ['Alice.Smith@example.co'] }), false);
  assert.equal(m({ email: ['Smith@example.com'] }), false);
  assert.equal(m({ email: ['"a@b"@example.com'] }, identity({ emails: ['"a@b"@Example.com'] })), true);
  assert.equal(m({ email: ['"a@b"@example.com'] }, identity({ emails: ['"a@b"@Example.con'] })), false);
  rejects({ email: ['example.com'] }, /address like/);
  rejects({ email: ['a@'] }, /address like/);
});

test('cn, ou, o, issuer_cn: exact and case-sensitive, any value of several', () => {
  assert.equal(m({ cn: ['web'] }), true);
  assert.equal(m({ cn: ['Web'] }), false);
  assert.equal(m({ cn: ['we'] }), false);
  assert.equal(m({ ou: ['prod'] }), true);
  assert.equal(m({ ou: ['prod'] }, identity({ ou: ['eng', 'prod'] })), true, 'second subject value');
  assert.equal(m({ ou: ['prod'] }, identity({ ou: [] })), false);
  assert.equal(m({ o: ['Example'] }), true);
  assert.equal(m({ o: ['example'] }), false);
  assert.equal(m({ issuer_cn: ['Example CA'] }), true);
  assert.equal(m({ issuer_cn: ['web'] }), false, 'issuer_cn is not the subject CN');
  assert.equal(m({ cn: ['Example CA'] }), false, 'cn is not the issuer CN');
});

test('serial: hex, leading zeros stripped on both sides', () => {
  assert.equal(m({ serial: ['A1B'] }), true);
  assert.equal(m({ serial: ['0A1B'] }), true);
  assert.equal(m({ serial: ['0a:1b'] }), true);
  assert.equal(m({ serial: ['A1C'] }), false);
  assert.equal(m({ serial: ['A1B'] }, identity({ serial: '00A1B' })), true);
  assert.equal(m({ serial: ['A1B'] }, identity({ serial: 'a1b' })), true);
  assert.equal(m({ serial: ['1A1B'] }), false);
  assert.equal(m({ serial: ['0'] }, identity({ serial: '00' })), true);
  rejects({ serial: ['XYZ'] }, /hexadecimal/);
});

test('fingerprint: sha256:<hex> of the leaf', () => {
  assert.equal(m({ fingerprint: [`sha256:${FP}`] }), true);
  assert.equal(m({ fingerprint: [`SHA256:${FP.toUpperCase()}`] }), true);
  assert.equal(m({ fingerprint: [`sha256:${'ab'.repeat(31)}ac`] }), false);
  assert.equal(m({ fingerprint: [`sha256:${'cd'.repeat(32)}`] }), false, 'SPKI fingerprint is not the leaf fingerprint');
  rejects({ fingerprint: [FP] }, /sha256:/);
  rejects({ fingerprint: ['sha256:abcd'] }, /64 hex/);
});

test('any-of within a condition, all-of across conditions', () => {
  assert.equal(m({ cn: ['nope', 'web'] }), true);
  assert.equal(m({ cn: ['web'], ou: ['prod'], o: ['Example'] }), true);
  assert.equal(m({ cn: ['web'], ou: ['dev'] }), false);
  assert.equal(m({ cn: ['x'], ou: ['prod'] }), false);
  assert.equal(m({ cn: ['web'], ou: ['dev', 'prod'], dns: ['*.example.com'] }), true);
  assert.equal(m({ cn: ['web'], spiffe_id: ['spiffe://example.org/ns/dev/**'] }), false);
  // undefined keys are absent conditions, as the config's full Record type gives them
  assert.equal(m({ cn: ['web'], ou: undefined }), true);
  // a lone string is a one-value list (SPEC §3)
  assert.equal(m({ cn: 'web', dns: '*.example.com' }), true);
  assert.equal(m({ cn: 'we' }), false);
});

test('malformed rules are rejected with every problem and its path', () => {
  rejects({}, /listeners\[api\]\.allow\[0\]: rule has no conditions/);
  rejects({ cn: [] }, /listeners\[api\]\.allow\[0\]\.cn: empty list/);
  rejects({ cn: ['x'], spiffe: ['spiffe://x/y'] }, /listeners\[api\]\.allow\[0\]\.spiffe: unknown condition/);
  rejects({ cn: 42 }, /must be a string or a list/);
  rejects({ cn: ['web', 7] }, /must be a string or a list/);
  rejects(null, /map of conditions/);
  const problems = validateRules([{ cn: [] }, { dns: ['a.*.b'], serial: ['zz'] }], 'routes[x].allow');
  assert.deepEqual(
    problems.map((p) => p.path),
    ['routes[x].allow[0].cn', 'routes[x].allow[1].dns[0]', 'routes[x].allow[1].serial[0]'],
  );
  assert.deepEqual(validateRules([{ cn: ['ok'] }], 'w'), []);
});
