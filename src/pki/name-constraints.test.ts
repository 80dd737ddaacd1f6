// Name-constraint matching, form by form (pure): what each constraint form permits, the
// SPIFFE trust-domain cases, malformed names, and constraints that are themselves invalid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constraintProblems, nameViolations, readNameConstraints, type GeneralName, type NameConstraints, type NamesOf } from './name-constraints.js';
import { generalName, ipBytes, name, nameConstraints, seq, tlv } from '../../test/helpers/der-builder.js';

const nc = (permitted?: Parameters<typeof nameConstraints>[0]['permitted'], excluded?: Parameters<typeof nameConstraints>[0]['excluded']): NameConstraints =>
  readNameConstraints(nameConstraints({ permitted, excluded }));

function names(sans: GeneralName[], extra: Partial<NamesOf> = {}): NamesOf {
  return { sans, subject: name({ cn: 'x' }), subjectEmails: [], cnHosts: [], ...extra };
}
const dns = (text: string): GeneralName => ({ form: 'dns', text });
const uri = (text: string): GeneralName => ({ form: 'uri', text });
const email = (text: string): GeneralName => ({ form: 'email', text });
const ip = (text: string): GeneralName => ({ form: 'ip', bytes: ipBytes(text) });
const ok = (n: NamesOf, c: NameConstraints) => assert.deepEqual(nameViolations(n, c), []);
const bad = (n: NamesOf, c: NameConstraints, re: RegExp) => assert.match(nameViolations(n, c).join('\n'), re);

test('DNS: a constraint covers itself and every name below it; a leading dot only names below', () => {
  const c = nc([{ dns: 'example.com' }]);
  ok(names([dns('example.com')]), c);
  ok(names([dns('A.Example.COM')]), c);
  bad(names([dns('badexample.com')]), c, /outside the permitted DNS "example.com"/);
  const dot = nc([{ dns: '.example.com' }]);
  ok(names([dns('a.example.com')]), dot);
  bad(names([dns('example.com')]), dot, /outside/);
  bad(names([dns('a.example.com')]), nc(undefined, [{ dns: 'example.com' }]), /inside the excluded subtree/);
});

test('SPIFFE: a URI constraint names one trust domain, a leading dot every domain below', () => {
  const c = nc([{ uri: 'prod.example.org' }]);
  ok(names([uri('spiffe://prod.example.org/ns/a/sa/b')]), c);
  bad(names([uri('spiffe://other.example.org/ns/a')]), c, /outside the permitted URI "prod.example.org"/);
  bad(names([uri('spiffe://prod.example.org.evil.com/ns/a')]), c, /outside/);
  bad(names([uri('spiffe://eu.prod.example.org/ns/a')]), c, /outside/);
  ok(names([uri('spiffe://eu.prod.example.org/x')]), nc([{ uri: '.prod.example.org' }]));
  // userinfo and port do not change the host that is judged
  ok(names([uri('https://user@prod.example.org:8443/x')]), c);
  bad(names([uri('urn:uuid:1')]), c, /not a well-formed URI with a DNS host/);
});

test('e-mail: mailbox, host and .domain forms; subject emailAddress is judged too', () => {
  ok(names([email('a@example.com')]), nc([{ email: 'example.com' }]));
  bad(names([email('a@sub.example.com')]), nc([{ email: 'example.com' }]), /outside/);
  ok(names([email('a@sub.example.com')]), nc([{ email: '.example.com' }]));
  bad(names([email('boss@example.com')]), nc(undefined, [{ email: 'boss@example.com' }]), /excluded/);
  ok(names([email('Boss@example.com')]), nc(undefined, [{ email: 'boss@example.com' }]));
  bad(names([], { subjectEmails: ['a@evil.net'] }), nc([{ email: 'example.com' }]), /e-mail "a@evil.net" is outside/);
});

test('IP: address and mask per family', () => {
  const c = nc([{ ip: Buffer.concat([ipBytes('10.0.0.0'), ipBytes('255.0.0.0')]) }]);
  ok(names([ip('10.9.8.7')]), c);
  bad(names([ip('11.0.0.1')]), c, /IP 11\.0\.0\.1 is outside/);
  bad(names([ip('::1')]), c, /outside/);
  bad(names([ip('fd00::1')]), nc(undefined, [{ ip: Buffer.concat([ipBytes('fd00::'), ipBytes('ff00::')]) }]), /excluded/);
});

test('a malformed name of any form fails once any constraint applies, and only then', () => {
  const c = nc([{ uri: 'example.com' }]);
  bad(names([dns('a..example.com')]), c, /not a well-formed DNS name/);
  bad(names([email('no-at-sign')]), c, /not a well-formed e-mail address/);
  ok(names([dns('a..example.com')]), { permitted: undefined, excluded: undefined });
});

test('directoryName: the constraint is a prefix of the subject', () => {
  const c = nc([{ dir: name({ o: 'Example' }) }]);
  ok(names([], { subject: name({ o: 'Example', cn: 'x' }) }), c);
  bad(names([], { subject: name({ o: 'Other', cn: 'x' }) }), c, /directory name is outside/);
});

test('invalid constraints are named: empty, min/max, non-contiguous mask, bad DNS form', () => {
  assert.match(constraintProblems(readNameConstraints(seq())).join(), /empty/);
  assert.match(constraintProblems(readNameConstraints(seq(tlv(0xa0)))).join(), /empty/);
  assert.match(constraintProblems(readNameConstraints(nameConstraints({ permitted: [{ dns: 'example.com' }], withMaximum: true }))).join(), /minimum or maximum/);
  assert.match(constraintProblems(nc([{ ip: Buffer.concat([ipBytes('10.0.0.0'), ipBytes('255.0.255.0')]) }])).join(), /contiguous mask/);
  assert.match(constraintProblems(readNameConstraints(seq(tlv(0xa0, seq(generalName({ dns: 'bad..name' })))))).join(), /not a DNS name/);
  assert.deepEqual(constraintProblems(nc([{ dns: 'example.com' }])), []);
});
