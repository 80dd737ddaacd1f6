// Regression tests for issue 15: "`portcullis check` says OK for a server certificate issued
// by an intermediate with no chain in the file, and for a `crl` that covers one of two
// trusted CAs (which, with crl_mode: chain, locks out every client of the other CA)", and
// the other warnings check now gives: certificates expiring within 30 days, private keys
// readable by others, client_auth optional with nothing requiring a certificate.
// The real CLI on openssl-made certificates; where a warning predicts a failure, the test
// also shows the failure with a real client against the real proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OpensslPki, type OsslCert } from '../helpers/openssl-pki.js';
import { build, buildCrl, type CrlSpec } from '../helpers/chains.js';
import { CLI, cleanup, curl, startCli, startEchoUpstream, tempDir, type EchoUpstream } from '../helpers/proxy.js';

let dir: string;
let o: OpensslPki;
let rootA: OsslCert;
let rootB: OsslCert;
let issuing: OsslCert;
let viaIntermediate: OsslCert;
let fromRoot: OsslCert;
let expiringSoon: OsslCert;
let clientB: OsslCert;
let crlA: string;
let crlB: string;
let up: EchoUpstream;

before(async () => {
  dir = tempDir('pcl-check-warn-');
  o = new OpensslPki(join(dir, 'pki'));
  rootA = o.root('Ops Root A');
  rootB = o.root('Ops Root B');
  issuing = o.intermediate('Ops Issuing CA', rootA);
  viaIntermediate = o.leaf('server', 'localhost', issuing);
  fromRoot = o.leaf('server', 'localhost', rootA);
  expiringSoon = o.leaf('server', 'localhost', rootA, { days: 10 });
  clientB = o.leaf('client', 'billing', rootB, { spiffeId: 'spiffe://example.org/ns/prod/sa/billing' });
  crlA = o.crl(rootA);
  crlB = o.crl(rootB);
  up = await startEchoUpstream();
});
after(async () => {
  await up?.close();
  cleanup(dir);
});

interface Listener {
  cert?: string;
  key?: string;
  tls?: Record<string, unknown>;
  protocol?: 'tcp';
  allow?: unknown[];
  routes?: unknown[];
}

let n = 0;
/** Writes a config (JSON) with one listener and returns its path. */
function config(l: Listener): string {
  const file = join(dir, `cfg-${++n}.json`);
  const listener: Record<string, unknown> = {
    name: 'api',
    address: '127.0.0.1:0',
    ...(l.protocol ? { protocol: 'tcp', upstream: 'db' } : { routes: l.routes ?? [{ upstream: 'app' }] }),
    tls: { cert: l.cert ?? fromRoot.cert, key: l.key ?? fromRoot.key, client_ca: rootA.cert, ...l.tls },
    ...(l.allow ? { allow: l.allow } : {}),
  };
  writeFileSync(file, JSON.stringify({ workers: 1, admin: { address: '127.0.0.1:0' }, listeners: [listener], upstreams: { app: { endpoints: [up.url] }, db: { endpoints: [`tcp://127.0.0.1:${up.port}`] } } }));
  return file;
}

function check(file: string, ...extra: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'check', '-c', file, ...extra], { encoding: 'utf8', timeout: 30_000 });
  const lines = (prefix: string) => r.stderr.split('\n').filter((x) => x.startsWith(prefix));
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, warnings: lines('warning: '), errors: lines('error: ') };
}

test('a root-issued server certificate with its CA trusted, key 0600, require: no warning at all', () => {
  const r = check(config({}));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.doesNotMatch(r.stdout, /warning/);
});

test('check-server-chain-without-intermediate: warns, and a real client indeed fails to verify the served chain', async (t) => {
  const leafOnly = config({ cert: viaIntermediate.cert, key: viaIntermediate.key });
  const r = check(leafOnly);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.warnings.length, 1, r.stderr);
  // the intermediate is known nowhere in the config, so it cannot be a root clients hold
  assert.match(r.warnings[0]!, /^warning: listeners\[0\]\.tls\.cert: "CN=localhost" in .* was issued by "CN=Ops Issuing CA", which is neither in the file nor a root CA this config or the system trusts, .*"unable to get local issuer certificate"; append the certificate of "CN=Ops Issuing CA".*\[PCL_WARN_CHAIN_INCOMPLETE\]$/);
  assert.match(r.stdout, /^config OK: .*; 1 warning \(--strict makes them errors\)\n$/);

  // the intermediate known to the config (here in client_ca): named as an intermediate
  const known = check(config({ cert: viaIntermediate.cert, key: viaIntermediate.key, tls: { client_ca: [rootA.cert, issuing.cert] } }));
  assert.match(known.warnings.join('\n'), /was issued by the intermediate CA "CN=Ops Issuing CA", which is not in the file.*append the certificate of "CN=Ops Issuing CA" after the certificate \(leaf first, then intermediates\)/);

  // what the warning predicts: a client that trusts Ops Root A cannot verify the leaf alone
  const cli = await startCli(JSON.parse(spawnSync('cat', [leafOnly], { encoding: 'utf8' }).stdout), { dir: tempDir('pcl-check-warn-run-') });
  t.after(async () => {
    await cli.stop();
    cleanup(cli.dir);
  });
  const s = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${cli.port}`, '-servername', 'localhost', '-CAfile', rootA.cert, '-verify_return_error', '-brief'], { input: '', encoding: 'utf8', timeout: 20_000 });
  assert.match(s.stderr + s.stdout, /unable to get local issuer certificate/);

  // with the chain in the file: no warning
  const chained = o.bundle('chained.crt', [viaIntermediate, issuing]);
  const fixed = check(config({ cert: chained, key: viaIntermediate.key }));
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.equal(fixed.stderr, '');
});

test('check-crl-covers-one-of-two-cas: crl_mode chain with a CRL from A only warns that B is locked out, as it is', async (t) => {
  const file = config({ tls: { client_ca: [rootA.cert, rootB.cert], crl: crlA } });
  const r = check(file);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.warnings.length, 1, r.stderr);
  assert.match(r.warnings[0]!, /^warning: listeners\[0\]\.tls\.crl: no CRL from the trusted CA "CN=Ops Root B" \(.*\), and with crl_mode: chain .* all of its clients are refused \(revocation_unknown\).*\[PCL_WARN_CRL_LOCKOUT\]$/);

  // what the warning predicts: B's client is refused by the running proxy
  const cli = await startCli(JSON.parse(spawnSync('cat', [file], { encoding: 'utf8' }).stdout), { dir: tempDir('pcl-check-warn-run-') });
  t.after(async () => {
    await cli.stop();
    cleanup(cli.dir);
  });
  const refused = await curl(`https://localhost:${cli.port}/`, ['--cacert', rootA.cert, '--cert', clientB.cert, '--key', clientB.key]);
  assert.notEqual(refused.status, 200, refused.body);
  assert.equal(up.received.length, 0);
  await new Promise((res) => setTimeout(res, 200));
  assert.ok(cli.accessLines().some((l) => l.event === 'tls_handshake_failed' && JSON.stringify(l).includes('revocation_unknown')), JSON.stringify(cli.accessLines()));

  // both CRLs: no warning; leaf mode with two roots: no warning (roots are never looked up)
  assert.equal(check(config({ tls: { client_ca: [rootA.cert, rootB.cert], crl: [crlA, crlB] } })).stderr, '');
  assert.equal(check(config({ tls: { client_ca: [rootA.cert, rootB.cert], crl: crlA, crl_mode: 'leaf' } })).stderr, '');
  // leaf mode still needs the CRL of a trusted intermediate, which issues the clients
  const inter = check(config({ tls: { client_ca: [rootA.cert, issuing.cert], crl: crlA, crl_mode: 'leaf' } }));
  assert.match(inter.warnings.join('\n'), /no CRL from the trusted intermediate CA "CN=Ops Issuing CA".*\[PCL_WARN_CRL_LOCKOUT\]/);
});

test('check-certificate-expiring-within-30-days: a server certificate valid for 10 more days is reported', () => {
  const r = check(config({ cert: expiringSoon.cert, key: expiringSoon.key }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.warnings.length, 1, r.stderr);
  assert.match(r.warnings[0]!, /^warning: listeners\[0\]\.tls\.cert: certificate "CN=localhost" in .* expires in (9|10) days \(\d{4}-\d\d-\d\d\); renew it before then.*\[PCL_WARN_CERT_EXPIRING\]$/);
});

test('check-key-readable-by-others: world-readable private keys are reported with the chmod to fix them; group-readable ones (Kubernetes fsGroup, systemd) are not', (t) => {
  const k = o.leaf('server', 'localhost', rootA);
  t.after(() => chmodSync(k.key, 0o600));
  chmodSync(k.key, 0o644);
  const world = check(config({ cert: k.cert, key: k.key }));
  assert.equal(world.code, 0, world.stderr);
  assert.match(world.warnings.join('\n'), /^warning: listeners\[0\]\.tls\.key: private key .* is readable by every user \(mode 0644\); .*chmod 640 .*\[PCL_WARN_KEY_PERMISSIONS\]$/);
  chmodSync(k.key, 0o640);
  assert.equal(check(config({ cert: k.cert, key: k.key })).stderr, '');
  chmodSync(k.key, 0o600);
  assert.equal(check(config({ cert: k.cert, key: k.key })).stderr, '');
});

test('check-optional-client-auth-unenforced: optional with no route requiring a certificate is reported', () => {
  const open = check(config({ tls: { client_auth: 'optional' } }));
  assert.equal(open.code, 0, open.stderr);
  assert.match(open.warnings.join('\n'), /^warning: listeners\[0\]\.tls\.client_auth: optional, but no route requires a certificate .*\[PCL_WARN_CLIENT_AUTH_UNENFORCED\]$/);
  // a route that requires one, or allow rules (only a verified identity matches them): fine
  const required = check(config({ tls: { client_auth: 'optional' }, routes: [{ match: { path: '/admin' }, client_auth: 'require', upstream: 'app' }, { upstream: 'app' }] }));
  assert.equal(required.stderr, '');
  const ruled = check(config({ tls: { client_auth: 'optional' }, allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/**' }] }));
  assert.equal(ruled.stderr, '');
  // a TCP listener has no routes: optional without allow rules forwards anyone
  const tcp = check(config({ protocol: 'tcp', tls: { client_auth: 'optional' } }));
  assert.match(tcp.warnings.join('\n'), /optional, and the listener has no allow rules.*\[PCL_WARN_CLIENT_AUTH_UNENFORCED\]/);
});

test('check-accepted-but-not-implemented: health_check and balance are built now (issue 13), so check no longer warns about them', () => {
  const file = join(dir, 'not-built.json');
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ name: 'api', address: '127.0.0.1:0', tls: { cert: fromRoot.cert, key: fromRoot.key, client_ca: rootA.cert }, routes: [{ upstream: 'app' }] }],
      upstreams: {
        app: { endpoints: [up.url], balance: 'least_request', health_check: { path: '/up' } },
        db: { endpoints: [`tcp://127.0.0.1:${up.port}`], balance: 'least_request' },
      },
    }),
  );
  const r = check(file);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    r.warnings.map((w) => w.replace(/^(warning: [^:]+): .*(\[\w+\])$/, '$1: $2')),
    [],
    r.stderr,
  );
});

test('check-crl-unusable (issue 16): a CRL the listener will not use is a warning naming why, in chain mode as a refusal and in leaf mode as a CRL used anyway', () => {
  // one root per case, its CRL made field by field (openssl always writes a conforming one)
  const caseOf = (label: string, spec: CrlSpec, ku?: 'no-crl-sign') => {
    const root = build({ cn: `CRL Root ${label}`, ca: true, ...(ku ? { ku: ['keyCertSign' as const] } : {}) });
    const ca = join(dir, `crl-root-${label}.pem`);
    const crl = join(dir, `crl-${label}.pem`);
    writeFileSync(ca, root.pem);
    writeFileSync(crl, buildCrl(root, spec));
    return { tls: { client_ca: ca, crl } };
  };
  const expect: [string, ReturnType<typeof caseOf>, RegExp][] = [
    ['no cRLNumber, crl_mode chain', caseOf('no-number', { number: 'absent' }), /is not used because it has no cRLNumber, which RFC 5280 §5.2.3 requires.*refused \(revocation_unknown\)/],
    ['critical cRLNumber', caseOf('critical-number', { number: 'critical' }), /is not used because .*cRLNumber extension is marked critical.*refused \(revocation_unknown\)/],
    ['unknown critical extension', caseOf('critical-ext', { extra: [{ id: '1.3.6.1.4.1.55555.2', critical: true, value: Buffer.from([0x05, 0x00]) }] }), /is not used because .*critical.*refused \(revocation_unknown\)/],
    ['issuer without cRLSign', caseOf('no-crl-sign', {}, 'no-crl-sign'), /is not used because its issuer "CN=CRL Root no-crl-sign" has a key usage without cRLSign.*refused \(revocation_unknown\)/],
  ];
  for (const [what, l, re] of expect) {
    const r = check(config(l));
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    const w = r.warnings.filter((x) => x.includes('[PCL_WARN_CRL_UNUSABLE]'));
    assert.equal(w.length, 1, `${what}: ${r.stderr}`);
    assert.match(w[0]!, /^warning: listeners\[0\]\.tls\.crl: the CRL of "CN=CRL Root /);
    assert.match(w[0]!, re, what);
    const strict = check(config(l), '--strict');
    assert.equal(strict.code, 1, `${what}: --strict makes it an error`);
    assert.ok(strict.errors.some((x) => x.includes('[PCL_WARN_CRL_UNUSABLE]')), strict.stderr);
  }
  // leaf mode uses a CRL without cRLNumber, and check still says so
  const leaf = check(config({ tls: { ...caseOf('no-number-leaf', { number: 'absent' }).tls, crl_mode: 'leaf' } }));
  assert.equal(leaf.code, 0, leaf.stderr);
  assert.match(leaf.warnings.join('\n'), /is used only because crl_mode is leaf, although it has no cRLNumber.*\[PCL_WARN_CRL_UNUSABLE\]/);
  // a conforming CRL from the generator: no CRL warning (the others here are about the test's
  // own files: a 30-day root, the server certificate's root not in client_ca)
  const ok = check(config(caseOf('conforming', {})));
  assert.deepEqual(ok.warnings.filter((x) => /\[PCL_WARN_CRL_/.test(x)), [], ok.stderr);
});

test('check --strict turns every warning into an error and exits 1', () => {
  const file = config({ cert: viaIntermediate.cert, key: viaIntermediate.key, tls: { client_auth: 'optional', client_ca: [rootA.cert, rootB.cert], crl: crlA } });
  const loose = check(file);
  assert.equal(loose.code, 0);
  assert.equal(loose.warnings.length, 3, loose.stderr);
  const strict = check(file, '--strict');
  assert.equal(strict.code, 1);
  assert.equal(strict.stdout, '');
  assert.equal(strict.errors.length, 3, strict.stderr);
  assert.match(strict.stderr, /3 problems in this configuration \(--strict\):/);
  for (const code of ['PCL_WARN_CHAIN_INCOMPLETE', 'PCL_WARN_CRL_LOCKOUT', 'PCL_WARN_CLIENT_AUTH_UNENFORCED']) assert.match(strict.stderr, new RegExp(`\\[${code}\\]`));
  // --strict on a clean config changes nothing
  assert.equal(check(config({}), '--strict').code, 0);
});
