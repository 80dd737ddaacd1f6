// The /status document: certificate entries (RFC 3339 not_after, days left, one entry per
// certificate even when listeners share a CA file), uptime and the last reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildStatus, certificateStatus } from './status.js';
import type { LoadedCert } from '../tls/listener-tls.js';

const now = new Date('2025-01-01T12:00:00Z');

const server: LoadedCert = {
  role: 'server',
  file: '/etc/portcullis/server.crt',
  subject: 'CN=api.example.com',
  issuer: 'CN=Example CA',
  notAfter: new Date('2025-01-31T12:00:00.500Z'),
  serial: '0A1B',
};
const ca: LoadedCert = {
  role: 'client_ca',
  file: '/etc/portcullis/ca.crt',
  subject: 'CN=Example CA',
  issuer: 'CN=Example CA',
  notAfter: new Date('2024-12-31T18:00:00Z'),
  serial: '01',
};

test('certificates carry role, file, subject, issuer, RFC 3339 not_after and days_left', () => {
  const out = certificateStatus([server, ca, ca], now);
  assert.deepEqual(out, [
    {
      role: 'server',
      file: '/etc/portcullis/server.crt',
      subject: 'CN=api.example.com',
      issuer: 'CN=Example CA',
      serial: '0A1B',
      not_after: '2025-01-31T12:00:00Z',
      days_left: 30,
    },
    // expired 18 hours ago: a negative count, never "0 days left"
    { role: 'client_ca', file: '/etc/portcullis/ca.crt', subject: 'CN=Example CA', issuer: 'CN=Example CA', serial: '01', not_after: '2024-12-31T18:00:00Z', days_left: -1 },
  ]);
});

test('buildStatus reports version, uptime, generation, workers, listeners and the last reload', () => {
  const doc = buildStatus({
    version: '0.1.0',
    startedAt: new Date('2025-01-01T11:59:00Z'),
    generation: 3,
    certificates: [server],
    workers: [{ id: 1, pid: 42, ready: true }],
    listeners: [{ name: 'api', address: '127.0.0.1:8443' }],
    lastReload: { at: new Date('2025-01-01T11:59:30.123Z'), ok: false, error: 'listeners[0].tls.cert: file not found' },
    now,
  });
  assert.equal(doc.status, 'ok');
  assert.equal(doc.version, '0.1.0');
  assert.equal(doc.started_at, '2025-01-01T11:59:00Z');
  assert.equal(doc.uptime_seconds, 60);
  assert.equal(doc.generation, 3);
  assert.deepEqual(doc.workers, [{ id: 1, pid: 42, ready: true }]);
  assert.deepEqual(doc.listeners, [{ name: 'api', address: '127.0.0.1:8443' }]);
  assert.equal(doc.certificates[0]?.days_left, 30);
  assert.deepEqual(doc.last_reload, { at: '2025-01-01T11:59:30Z', ok: false, error: 'listeners[0].tls.cert: file not found' });
  // the document is plain JSON
  assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
});

test('buildStatus without a reload yet has last_reload null and empty lists', () => {
  const doc = buildStatus({ version: '0.1.0', startedAt: now, generation: 1, certificates: [], now });
  assert.equal(doc.last_reload, null);
  assert.deepEqual(doc.workers, []);
  assert.deepEqual(doc.listeners, []);
  assert.equal(doc.uptime_seconds, 0);
});
