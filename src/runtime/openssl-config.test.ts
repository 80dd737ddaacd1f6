import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { workerOpenSslArgs, WORKER_OPENSSL_CONFIG } from './openssl-config.js';

test('workers get assets/openssl-worker.cnf unless the operator configured OpenSSL', () => {
  assert.ok(existsSync(WORKER_OPENSSL_CONFIG), WORKER_OPENSSL_CONFIG);
  assert.match(readFileSync(WORKER_OPENSSL_CONFIG, 'utf8'), /^NumTickets = 1$/m);
  assert.deepEqual(workerOpenSslArgs({}, ['--enable-source-maps']), { execArgv: ['--enable-source-maps', `--openssl-config=${WORKER_OPENSSL_CONFIG}`] });
  const env = workerOpenSslArgs({ OPENSSL_CONF: '/etc/fips.cnf' }, []);
  assert.deepEqual(env.execArgv, []);
  assert.match(env.skipped ?? '', /OPENSSL_CONF=\/etc\/fips\.cnf/);
  const own = workerOpenSslArgs({}, ['--openssl-config=/x.cnf']);
  assert.deepEqual(own.execArgv, ['--openssl-config=/x.cnf']);
  assert.match(own.skipped ?? '', /--openssl-config=\/x\.cnf/);
});

test('Node starts with the file and OpenSSL accepts it (a broken file would stop every worker)', () => {
  const out = execFileSync(process.execPath, [`--openssl-config=${WORKER_OPENSSL_CONFIG}`, '-e', 'require("node:tls").createSecureContext({}); console.log("ok")'], { encoding: 'utf8' });
  assert.equal(out.trim(), 'ok');
});
