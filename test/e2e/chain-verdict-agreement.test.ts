// Issue 16: `cert verify` said "accepted" for chains the proxy refused, the proxy accepted
// chains RFC 5280 refuses, and cert verify crashed on one. Every chain of the generated set
// (test/helpers/chains.ts, one small PKI per rule) goes through the real proxy (a Node TLS
// client presenting leaf + intermediates to `portcullis run`), `portcullis cert verify` and
// `portcullis doctor`, and all three must reach the verdict the case expects: the proxy's
// logged result, cert verify's result with an explanation that accounts for it, doctor's
// observed answer and its --client-ca prediction. One proxy process serves every case
// (a listener per trust setting) to keep the run short.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeChainSet, type ChainCase, type ChainSet } from '../helpers/chains.js';
import { CLI, cleanup, startCli, startEchoUpstream, tempDir, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { createCA, issueCert } from '../../src/pki/issue.js';

interface Seen {
  proxy?: string;
  verify?: { accepted: boolean; result: string; agrees: boolean; codes: string[] };
  verifyLoad?: string;
  checkLoad?: string;
  doctor?: { accepted: boolean; predicted: { accepted: boolean; result: string } | null; raw: string };
}

// generated before the tests are declared (one test per chain); keys are made here, at test time
const dir = tempDir('pcl-chains-');
const set: ChainSet = makeChainSet(join(dir, 'chains'));
let up: EchoUpstream;
let proxy: RunningCli;
let serverCa: string;
const seen = new Map<string, Seen>();
const key = (c: ChainCase) => `${c.listener}/${c.name}`;
const isLoad = (c: ChainCase) => c.listener.startsWith('load-');

function listenerConfig(name: string, t: ChainSet['listeners'][string], server: { cert: string; key: string }): Record<string, unknown> {
  return {
    name,
    address: '127.0.0.1:0',
    tls: { cert: server.cert, key: server.key, client_ca: t.client_ca, ...(t.crl ? { crl: t.crl, crl_mode: t.crl_mode } : {}), ...(t.cert_policy ? { cert_policy: t.cert_policy } : {}) },
    routes: [{ upstream: 'app' }],
  };
}

/** The proxy's verdict: 200 from the upstream, or the result it logged for the refusal. */
async function proxyVerdict(c: ChainCase): Promise<string> {
  const before = proxy.accessLines().filter((l) => l.event === 'tls_handshake_failed').length;
  const status = await new Promise<number>((resolve) => {
    const chunks: Buffer[] = [];
    // security level 0 on this test client only: OpenSSL 3.5 (Node 22, 24) will not even
    // load a chain with an RSA-1024 CA, and the point is to see what the proxy does with it
    const sock = tls.connect({ host: '127.0.0.1', port: proxy.ports[c.listener]!, servername: 'localhost', ca: readFileSync(serverCa), cert: readFileSync(c.chain), key: readFileSync(c.key), ciphers: 'DEFAULT:@SECLEVEL=0' });
    sock.on('secureConnect', () => sock.write('GET /agree HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1] ?? 0)));
  });
  if (status === 200) return 'ok';
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = proxy.accessLines().filter((l) => l.event === 'tls_handshake_failed');
    if (lines.length > before) {
      const l = lines[before]! as { listener?: string; client?: { verify?: string }; decision?: { reason?: string } };
      assert.equal(l.listener, c.listener, 'refusals are probed one at a time');
      return (l.client?.verify ?? '').replace(/^FAILED:/, '') || (l.decision?.reason ?? '').split(':')[0]!;
    }
    if (Date.now() > deadline) return `status ${status}, no refusal logged`;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Runs jobs at most `n` at a time (2 cores, and other work on the machine). */
async function pool<T>(items: T[], n: number, job: (x: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: n }, async () => {
    for (let x = queue.shift(); x !== undefined; x = queue.shift()) await job(x);
  }));
}

function trustArgs(t: ChainSet['listeners'][string], forDoctor: boolean): string[] {
  const a = t.client_ca.flatMap((f) => [forDoctor ? '--client-ca' : '--ca', f]);
  for (const f of t.crl ?? []) a.push('--crl', f);
  if (t.crl) a.push('--crl-mode', t.crl_mode ?? 'chain');
  if (!forDoctor && t.cert_policy?.strict_rfc5280) a.push('--strict-rfc5280');
  return a;
}

before(async () => {
  const ca = await createCA({ name: 'Agreement Server CA' });
  const srv = await issueCert(ca, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
  serverCa = join(dir, 'server-ca.pem');
  const server = { cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  writeFileSync(serverCa, ca.certPem);
  writeFileSync(server.cert, srv.chainPem);
  writeFileSync(server.key, srv.keyPem, { mode: 0o600 });
  up = await startEchoUpstream();
  const served = Object.entries(set.listeners).filter(([name]) => !name.startsWith('load-'));
  proxy = await startCli({ listeners: served.map(([name, t]) => listenerConfig(name, t, server)), upstreams: { app: { endpoints: [up.url] } } }, { dir });

  for (const c of set.cases) seen.set(key(c), {});
  // the proxy: one connection at a time, so each refusal line belongs to its case
  for (const c of set.cases.filter((x) => !isLoad(x))) seen.get(key(c))!.proxy = await proxyVerdict(c);

  // cert verify: one process per listener, every chain of that listener in it
  const byListener = new Map<string, ChainCase[]>();
  for (const c of set.cases) byListener.set(c.listener, [...(byListener.get(c.listener) ?? []), c]);
  const verifyJobs = [...byListener.entries()].map(([name, cases]) => async () => {
    const t = set.listeners[name]!;
    const r = await run(['cert', 'verify', '--json', ...trustArgs(t, false), ...cases.map((c) => c.chain)]);
    if (name.startsWith('load-')) {
      seen.get(key(cases[0]!))!.verifyLoad = `${r.code} ${r.err}`;
      const cfg = join(dir, `${name}.json`);
      writeFileSync(cfg, JSON.stringify({ listeners: [listenerConfig(name, t, server)], upstreams: { app: { endpoints: [up.url] } } }));
      const chk = await run(['check', '-c', cfg]);
      seen.get(key(cases[0]!))!.checkLoad = `${chk.code} ${chk.err}`;
      return;
    }
    assert.ok(/^[[{]/.test(r.out), `cert verify gave no JSON for ${name} (exit ${r.code}): ${r.err}`);
    const parsed = JSON.parse(r.out) as unknown;
    const list = (Array.isArray(parsed) ? parsed : [parsed]) as { accepted: boolean; result: string; explainerAgrees: boolean; reasons: { code: string }[] }[];
    cases.forEach((c, i) => {
      const j = list[i]!;
      seen.get(key(c))!.verify = { accepted: j.accepted, result: j.result, agrees: j.explainerAgrees, codes: j.reasons.map((x) => x.code) };
    });
  });
  // doctor: one process per chain, against the listener that judges it
  const doctorJobs = set.cases
    .filter((c) => !isLoad(c))
    .map((c) => async () => {
      const t = set.listeners[c.listener]!;
      const r = await run(['doctor', `https://127.0.0.1:${proxy.ports[c.listener]}/`, '--servername', 'localhost', '--cert', c.chain, '--key', c.key, '--ca', serverCa, ...trustArgs(t, true), '--json', '--timeout', '10000']);
      if (r.code === 1 && /cannot be presented by this TLS library/.test(r.err)) {
        // OpenSSL 3.5 refuses to load the chain as a client: doctor says so and stops
        seen.get(key(c))!.doctor = { accepted: false, predicted: null, raw: r.err };
        return;
      }
      assert.ok(r.out.startsWith('{'), `doctor gave no JSON for ${c.name} (exit ${r.code}): ${r.err}`);
      const j = JSON.parse(r.out) as { client: { refused: unknown; predicted: { accepted: boolean; result: string } | null }; http: { status: number } | null };
      seen.get(key(c))!.doctor = { accepted: j.client.refused === null && j.http?.status === 200, predicted: j.client.predicted, raw: r.out };
    });
  await pool([...verifyJobs, ...doctorJobs], 3, (job) => job());
});

after(async () => {
  await proxy?.stop();
  await up?.close();
  cleanup(dir);
});

test('the agreement set covers every rule, and every chain was judged by all three', () => {
  const rules = new Set(set.cases.map((c) => c.rule));
  for (const r of ['name-constraints', 'name-constraints-misplaced', 'leaf-key-cert-sign', 'ca-not-v3-ca', 'critical-extension', 'ca-key-policy', 'strict-aki', 'strict-ski', 'strict-critical', 'crl-unusable']) {
    assert.ok(rules.has(r), `no chain for rule ${r}`);
  }
  assert.ok(set.cases.length >= 60, `${set.cases.length} chains`);
  for (const c of set.cases) {
    const s = seen.get(key(c))!;
    assert.ok(isLoad(c) ? s.verifyLoad && s.checkLoad : s.proxy && s.verify && s.doctor, `${c.name} was not judged by all three`);
  }
});

// one test per chain, so a failure names the chain and what each tool said
for (const cs of set.cases) {
  test(`agreement: ${key(cs)}`, () => {
    const s = seen.get(key(cs))!;
    const expect = [cs.expect].flat();
    if (isLoad(cs)) {
      // a trust anchor that is no CA: run (check) and cert verify refuse to load it alike
      assert.match(s.checkLoad!, /^1 .*PCL_ERR_CA_NOT_CA/s, s.checkLoad);
      assert.match(s.verifyLoad!, /^1 .*PCL_ERR_CA_NOT_CA/s, s.verifyLoad);
      return;
    }
    assert.ok(expect.includes(s.proxy!), `proxy said ${s.proxy}, expected ${expect.join(' or ')}`);
    const accepted = s.proxy === 'ok';
    assert.equal(s.verify!.accepted, accepted, `cert verify ${JSON.stringify(s.verify)} vs proxy ${s.proxy}`);
    assert.equal(s.verify!.result, s.proxy, `cert verify's result ${s.verify!.result} vs the proxy's ${s.proxy}`);
    assert.ok(s.verify!.agrees, `the explanation (${s.verify!.codes.join(', ')}) does not account for ${s.proxy}`);
    assert.equal(s.doctor!.accepted, accepted, `doctor observed ${s.doctor!.accepted ? 'acceptance' : 'a refusal'}, proxy ${s.proxy}: ${s.doctor!.raw}`);
    // doctor's prediction has no strict_rfc5280 switch: it predicts the default policy
    if (cs.listener !== 'strict' && !/cannot be presented/.test(s.doctor!.raw)) {
      assert.equal(s.doctor!.predicted?.accepted, accepted, `doctor predicted ${JSON.stringify(s.doctor!.predicted)}, proxy ${s.proxy}`);
      assert.equal(s.doctor!.predicted?.result, s.proxy);
    }
  });
}

test('portcullis check shows the load-time warnings: unusable CRLs and trust anchors under the key floor', async () => {
  const cfg = join(dir, 'check-warnings.json');
  const server = { cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  const names = ['main', 'crl-crl-without-number-chain-mode', 'crl-crl-number-critical'];
  writeFileSync(cfg, JSON.stringify({ listeners: names.map((n) => listenerConfig(n, set.listeners[n]!, server)), upstreams: { app: { endpoints: [up.url] } } }));
  const r = await run(['check', '-c', cfg]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /"event":"crl_unusable".*no cRLNumber.*"refused":true|"refused":true.*no cRLNumber/);
  assert.match(r.err, /cRLNumber extension is marked critical/);
  // and as check warnings (--strict makes them errors): one per unusable CRL
  assert.equal(r.err.split('\n').filter((l) => l.startsWith('warning: ') && l.endsWith('[PCL_WARN_CRL_UNUSABLE]')).length, 2, r.err);
  assert.match(r.err, /"event":"weak_trust_anchor".*Root trust-anchor-rsa-1024/);
});

test('cert verify -c takes the trust of a listener (strict_rfc5280 here) from the config file', async () => {
  const cfg = join(dir, 'verify-config.json');
  const server = { cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  writeFileSync(cfg, JSON.stringify({ listeners: ['main', 'strict'].map((n) => listenerConfig(n, set.listeners[n]!, server)), upstreams: { app: { endpoints: [up.url] } } }));
  const c = set.cases.find((x) => x.name === 'leaf-without-aki')!;
  const strict = JSON.parse((await run(['cert', 'verify', '--json', '-c', cfg, '--listener', 'strict', c.chain])).out) as { accepted: boolean; result: string };
  assert.deepEqual([strict.accepted, strict.result], [false, 'invalid_cert']);
  const main = JSON.parse((await run(['cert', 'verify', '--json', '-c', cfg, c.chain])).out) as { accepted: boolean; result: string };
  assert.deepEqual([main.accepted, main.result], [true, 'ok'], 'without --listener: the first TLS listener');
});
