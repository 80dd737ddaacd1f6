// Alert and HTTP-refusal translation used by `portcullis doctor`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adviseAlert, adviseHttp, adviseSilentClose, alertFromError } from './doctor-advice.js';

test('alert names come out of Node error codes and OpenSSL messages', () => {
  assert.equal(alertFromError({ code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' }), 'certificate_required');
  assert.equal(alertFromError({ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' }), 'unknown_ca');
  assert.equal(alertFromError({ code: 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED' }), 'certificate_expired');
  assert.equal(alertFromError({ message: 'error:0A000418:SSL routines::tlsv1 alert unknown ca:ssl/record/rec_layer_s3.c:1586:SSL alert number 48' }), 'unknown_ca');
  assert.equal(alertFromError({ code: 'ECONNRESET', message: 'socket hang up' }), undefined);
  assert.equal(alertFromError(undefined), undefined);
});

test('each alert gets the cause and fix the issue promises', () => {
  assert.match(adviseAlert('certificate_required', { sent: false }).cause, /requires a client certificate/);
  assert.match(adviseAlert('certificate_required', { sent: false }).fix, /--cert and --key/);
  const unknown = adviseAlert('unknown_ca', { sent: true, issuer: 'CN=Other Root CA' });
  assert.match(unknown.cause, /does not trust the CA that signed your certificate: "CN=Other Root CA"/);
  assert.match(adviseAlert('certificate_expired', { sent: true, notAfter: '2020-01-01T00:00:00.000Z' }).cause, /expired.*2020-01-01/);
  assert.match(adviseAlert('bad_certificate', { sent: true }).cause, /bad/);
  assert.match(adviseAlert('handshake_failure', { sent: false }).fix, /--cert and --key/);
  assert.match(adviseAlert('certificate_revoked', { sent: true }).cause, /revoked/);
  assert.match(adviseAlert('something_new', { sent: true }).cause, /something_new/);
  // local findings are folded into the explanation
  const local = adviseAlert('certificate_unknown', { sent: true, localProblems: [{ code: 'expired', message: 'it expired yesterday' }] });
  assert.match(local.cause, /it expired yesterday/);
});

test('HTTP-level refusals: nginx pages and portcullis JSON errors', () => {
  const nginx = (body: string) => ({ status: 400, headers: { 'content-type': 'text/html', server: 'nginx' }, body });
  assert.equal(adviseHttp(nginx('<center>No required SSL certificate was sent</center>'), { sent: false })?.code, 'certificate_required');
  assert.equal(adviseHttp(nginx('<center>The SSL certificate error</center>'), { sent: true })?.code, 'certificate_rejected');
  const json = (status: number, error: string, message: string) => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error, message, request_id: 'r' }) });
  assert.equal(adviseHttp(json(401, 'client_certificate_required', 'send one'), { sent: false })?.code, 'certificate_required');
  assert.match(adviseHttp(json(403, 'client_certificate_invalid', 'expired'), { sent: true })!.cause, /expired/);
  assert.equal(adviseHttp(json(403, 'forbidden', 'route charge'), { sent: true })?.code, 'forbidden');
  assert.equal(adviseHttp({ status: 200, headers: {}, body: 'ok' }, { sent: true }), undefined);
  assert.equal(adviseHttp({ status: 404, headers: {}, body: 'nope' }, { sent: false }), undefined);
});

test('a silent close is explained by whether a certificate was sent', () => {
  assert.match(adviseSilentClose({ sent: false }, 'TLSv1.3').fix, /--cert and --key/);
  assert.match(adviseSilentClose({ sent: true, issuer: 'CN=X' }, 'TLSv1.3').cause, /refused it.*does not trust the CA.*CN=X/);
  const local = adviseSilentClose({ sent: true, issuer: 'CN=X', localProblems: [{ code: 'expired', message: 'it expired', fix: 'renew it' }] }, 'TLSv1.3');
  assert.match(local.cause, /problem of its own: it expired/);
  assert.equal(local.fix, 'renew it');
});
