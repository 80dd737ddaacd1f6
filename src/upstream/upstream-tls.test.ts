// Unit tests of upstream-tls.ts's pure parts: how verify_names matches SANs, and the
// sentence a failed upstream handshake becomes. The end-to-end cases against a real nginx
// are in test/e2e/mtls-out-nginx.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSubjectAltName } from '../pki/identity.js';
import { matchesVerifyNames, describeUpstreamTlsError, UpstreamIdentityError } from './upstream-tls.js';

const ID = 'spiffe://example.org/ns/prod/sa/payments';
const names = [ID, 'payments.internal'];
const match = (san: string) => matchesVerifyNames(parseSubjectAltName(san), names);

test('verify_names: a URI entry matches a URI SAN, a DNS entry a DNS SAN (without case or trailing dot)', () => {
  assert.equal(match(`URI:${ID}`), true);
  assert.equal(match('DNS:payments.internal'), true);
  assert.equal(match('DNS:Payments.Internal.'), true);
  assert.equal(match(`DNS:other.internal, URI:${ID}`), true);
  assert.equal(match('DNS:imposter.internal, URI:spiffe://example.org/ns/prod/sa/imposter'), false);
  assert.equal(match(''), false);
});

test('verify-names-dns-san-posing-as-spiffe-id: names match only SANs of their own kind', () => {
  assert.equal(match(`DNS:${ID}`), false);
  assert.equal(match('URI:payments.internal'), false);
  // the URI itself is compared exactly: a SPIFFE ID is case-sensitive in its path
  assert.equal(match('URI:spiffe://example.org/ns/prod/sa/Payments'), false);
});

test('verify_names: no wildcard matching, and a quoted SAN is read whole, not split on ", "', () => {
  assert.equal(match('DNS:*.internal'), false);
  assert.equal(matchesVerifyNames(parseSubjectAltName('DNS:*.internal'), ['*.internal']), true);
  // what Node prints for a DNS SAN "x, URI:<id>, DNS:y"
  assert.equal(match(`DNS:"x\\u002c URI:${ID}\\u002c DNS:y"`), false);
  assert.equal(match(`DNS:"x, URI:${ID}, DNS:y"`), false);
});

test('describeUpstreamTlsError: one sentence, cause then fix, for each kind of failure', () => {
  const ep = 'https://10.0.0.2:8443';
  const say = (err: Error) => describeUpstreamTlsError(err, 'payments', ep);
  const identity = say(new UpstreamIdentityError(parseSubjectAltName('DNS:a.internal, URI:spiffe://x/y'), names, 'upstreams.payments.tls.verify_names'));
  assert.equal(
    identity,
    `upstream payments (${ep}) presented a certificate for DNS:a.internal, URI:spiffe://x/y but upstreams.payments.tls.verify_names accepts only ${ID}, payments.internal; check that the endpoint is the service you mean, or add one of its names to upstreams.payments.tls.verify_names`,
  );
  const untrusted = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  assert.match(say(untrusted)!, /no CA in upstreams\.payments\.tls\.ca issued \(unable to verify the first certificate\); set upstreams\.payments\.tls\.ca .*portcullis doctor https:\/\/10\.0\.0\.2:8443/);
  const alert = Object.assign(new Error('tlsv1 alert unknown ca'), { code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' });
  assert.equal(say(alert), `upstream payments (${ep}) refused the client certificate portcullis presented (TLS alert unknown_ca); check that upstreams.payments.tls.cert is valid and issued by a CA the upstream trusts`);
  const required = Object.assign(new Error('tlsv13 alert certificate required'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' });
  assert.match(say(required)!, /requires a client certificate and portcullis sent none \(TLS alert certificate_required\); set upstreams\.payments\.tls\.cert and upstreams\.payments\.tls\.key/);
  const plainHttp = Object.assign(new Error('wrong version number'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' });
  assert.match(say(plainHttp)!, /failed \(ERR_SSL_WRONG_VERSION_NUMBER\); check that the endpoint speaks TLS/);
  const expired = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
  assert.match(say(expired)!, /presented a certificate that is expired; renew/);
  for (const m of [identity, say(untrusted), say(alert), say(required), say(plainHttp), say(expired)]) {
    assert.doesNotMatch(m!, /\.\s+\S/, `one sentence: ${m}`);
    assert.match(m!, /; \S/, `cause; fix: ${m}`);
  }
  // not a TLS failure: left to the caller's own classification
  assert.equal(say(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), undefined);
});
