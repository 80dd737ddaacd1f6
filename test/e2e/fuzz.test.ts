// A bounded, seeded fuzz of the real CLI over real mTLS connections, HTTP/1.1 and HTTP/2,
// in front of an upstream that parses strictly and records everything (see
// docs/fuzzing.md). Every input is checked against the invariants in fuzz-oracle.ts and
// the clients: no worker ever exits; responses are well-formed; every request the
// upstream records is one a client actually sent (method, normalized target, identical
// body bytes), is authorized for its route, and carries only the proxy's own identity
// headers. Findings are grouped by kind, each with an input id to replay it alone:
//   FUZZ_SEED=1 FUZZ_ONLY=h1:17 node scripts/run-tests.mjs fuzz
// Longer runs: FUZZ_ITERATIONS=50000 FUZZ_SEED=$RANDOM (and FUZZ_BUDGET_MS, FUZZ_MAX_CRASHES).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, cleanup, nodeRequest } from '../helpers/proxy.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/fuzz-upstream.js';
import { FUZZ_ROUTES, OPT_MAX_BODY, Findings, Oracle, expectedOriginTarget, inputOf } from '../helpers/fuzz-oracle.js';
import { Rng } from '../helpers/fuzz-prng.js';
import { genH1 } from '../helpers/fuzz-h1-gen.js';
import { checkH1, describeStream, registerH1, sendH1, summarizeH1, type FuzzEndpoint, type H1Summary } from '../helpers/fuzz-h1-client.js';
import { genH2Client, genH2Raw } from '../helpers/fuzz-h2-gen.js';
import { checkH2Client, checkH2Raw, registerH2, sendH2Client, sendH2Raw, type H2ClientOutcome, type H2RawOutcome } from '../helpers/fuzz-h2-client.js';
import { ProxyUnderTest, runPhase, type Job, type PhaseStats } from '../helpers/fuzz-run.js';
import { EMPTY_SHA, RequestStreamParser, parseResponses, referenceRequests, type ParsedRequest } from '../helpers/fuzz-http1-parse.js';
import { normalizePath } from '../../src/routing/path.js';

const env = process.env;
const SEED = env.FUZZ_SEED ?? '1';
const ITERATIONS = Number(env.FUZZ_ITERATIONS ?? 3000);
const H1_COUNT = Math.round((ITERATIONS * 2) / 3);
const H2_COUNT = ITERATIONS - H1_COUNT;
/** FUZZ_ONLY=h1:17,h2:4 replays just those inputs, one at a time */
const ONLY = env.FUZZ_ONLY ? new Set(env.FUZZ_ONLY.split(',').map((s) => s.trim())) : undefined;
const CONCURRENCY = ONLY ? 1 : Number(env.FUZZ_CONCURRENCY ?? 10);
const MAX_CRASHES = Number(env.FUZZ_MAX_CRASHES ?? 4);
const BUDGET_MS = Number(env.FUZZ_BUDGET_MS ?? Math.max(120_000, ITERATIONS * 40));

let dir = '';
let pki: TestPki;
let up: RecordingUpstream;
let proxy: ProxyUnderTest;
let ep: FuzzEndpoint;
const oracle = new Oracle();

function listener(name: 'req' | 'opt'): Record<string, unknown> {
  return {
    name,
    address: '127.0.0.1:0',
    tls: { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert, client_auth: name === 'req' ? 'require' : 'optional' },
    limits: name === 'req' ? { header_timeout: '3s', idle_timeout: '5s' } : { header_timeout: '3s', idle_timeout: '5s', max_body_bytes: OPT_MAX_BODY, max_header_bytes: 8192 },
    routes: FUZZ_ROUTES,
  };
}

before(async () => {
  dir = tempDir('pcl-fuzz-');
  pki = await makeTestPki(join(dir, 'pki'));
  up = await startRecordingUpstream();
  proxy = new ProxyUnderTest({ listeners: [listener('req'), listener('opt')], upstreams: { app: { endpoints: [up.url] } } }, dir);
  await proxy.start();
  ep = { port: (l) => proxy.ports[l], ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key), sessions: new Map() };
});

after(async () => {
  await proxy?.stop();
  await up?.close();
  if (dir) cleanup(dir);
});

const replay = (id: string) => `FUZZ_SEED=${SEED} FUZZ_ONLY=${id} node scripts/run-tests.mjs fuzz`;

function h1Job(n: number, findings: Findings): Job {
  const input = genH1(SEED, n);
  let refs: ParsedRequest[] = [];
  return {
    id: input.id,
    register: () => (refs = registerH1(input, oracle)),
    run: async (e) => summarizeH1(refs, await sendH1(input, e, refs)),
    judge: (out, crashed) => checkH1(input, refs, out as H1Summary, findings, crashed),
    describe: () => `  ${input.notes.join('; ')}\n  bytes: ${describeStream(input.stream)}\n  replay: ${replay(input.id)}`,
  };
}

function h2Job(n: number, findings: Findings): Job {
  const raw = Rng.derive(SEED, 'h2kind', n).chance(0.5);
  const input = raw ? genH2Raw(SEED, n) : genH2Client(SEED, n);
  return {
    id: input.id,
    register: () => registerH2(input, oracle),
    run: (e) => (input.kind === 'raw' ? sendH2Raw(input, e) : sendH2Client(input, e)),
    judge: (out, crashed) => (input.kind === 'raw' ? checkH2Raw(input, out as H2RawOutcome, findings) : checkH2Client(input, out as H2ClientOutcome, findings, crashed)),
    describe: () => `  ${input.notes.join('; ')}\n  ${input.kind === 'raw' ? `bytes: ${describeStream(input.bytes)}` : input.reqs.slice(0, 3).map((q) => JSON.stringify(q.headers).slice(0, 300)).join('\n  ')}\n  replay: ${replay(input.id)}`,
  };
}

/** Upstream-side invariants for everything recorded since `from`, once the upstream is quiet. */
async function checkUpstream(from: { records: number; problems: number }, findings: Findings): Promise<void> {
  let n = -1;
  for (let i = 0; i < 60 && n !== up.records.length; i++) {
    n = up.records.length;
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const r of up.records.slice(from.records)) {
    if (env.FUZZ_VERBOSE) console.log(`# upstream got ${r.method} ${r.target} (${r.bodyLength} bytes) ${JSON.stringify(r.headers)}`);
    oracle.check(r, findings);
  }
  for (const p of up.problems.slice(from.problems)) {
    findings.add('malformed-request-to-upstream', p.reason.replace(/\d+/g, 'N').replace(/"[^"]*"/g, '"…"'), inputOf(p.excerpt), `${p.reason}; the request as the upstream got it: ${JSON.stringify(p.excerpt.slice(0, 400))}`);
  }
}

async function phase(name: string, jobs: Job[], findings: Findings): Promise<PhaseStats> {
  const from = { records: up.records.length, problems: up.problems.length };
  const pid = await proxy.workerPid();
  const stats = await runPhase({ jobs, proxy, ep, findings, concurrency: CONCURRENCY, maxCrashes: MAX_CRASHES, budgetMs: BUDGET_MS, maxReplays: 8 });
  await checkUpstream(from, findings);
  const pidNow = await proxy.workerPid();
  // the worker serving at the start must still be the one serving, unless a crash was already reported
  if (pidNow !== pid && stats.crashes === 0) findings.add('worker-crash', 'the worker pid changed without a worker_exited log line', undefined, `pid ${pid} -> ${pidNow}`);
  if (pidNow === undefined) findings.add('worker-crash', 'no ready worker in /status after the phase', undefined, JSON.stringify(await proxy.status()));
  if (ONLY) console.log(`# fuzz ${name}: FUZZ_ONLY selects ${jobs.length} input(s); the others of this seed were not run`);
  console.log(`# fuzz ${name}: seed ${SEED}, ${stats.ran} inputs run, ${stats.notRun} not run, ${stats.crashes} worker crashes, ${up.records.length - from.records} upstream requests, ${stats.ms} ms; slowest inputs: ${stats.slowest.join(', ')}`);
  return stats;
}

function report(f: Findings, jobs: Job[]): string {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  return f
    .list()
    .map((x) => {
      const first = x.inputs.map((i) => byId.get(i)).find(Boolean);
      const shown = first && !x.detail.includes('replay:') ? `\n  first input:\n${first.describe()}` : '';
      return `[${x.invariant}] ${x.signature} (x${x.count}; inputs ${x.inputs.join(', ') || '-'})\n  ${x.detail.replace(/\n/g, '\n  ')}${shown}`;
    })
    .join('\n\n');
}

// The harness checks itself first: an oracle that cannot fail would make the fuzz pass for nothing.
test('fuzz harness: the oracle and the reference parsers catch what they claim to', () => {
  const f = new Findings();
  const o = new Oracle();
  const entry = { input: 'h1:0', rid: 'h1-0-0', listener: 'req' as const, cert: true, method: 'GET', target: '/public?fz=h1-0-0', bodyLength: 0, bodySha: EMPTY_SHA };
  o.register(entry);
  const ids: [string, string][] = [['x-client-verify', 'SUCCESS'], ['x-client-cn', 'payment-service'], ['x-client-spiffe-id', 'spiffe://example.org/ns/prod/sa/payment'], ['x-forwarded-for', '127.0.0.1'], ['x-forwarded-host', 'localhost']];
  o.check({ method: 'GET', target: '/public?fz=h1-0-0', headers: ids, bodyLength: 0, bodySha: EMPTY_SHA }, f);
  assert.deepEqual(f.list(), [], 'a clean forward is not a finding');
  o.check({ method: 'GET', target: '/public?fz=h1-0-0', headers: [...ids, ['X_Client_CN', 'forged-by-client-0']], bodyLength: 0, bodySha: EMPTY_SHA }, f);
  o.check({ method: 'GET', target: '/deny?fz=h1-0-1', headers: ids, bodyLength: 0, bodySha: EMPTY_SHA }, f);
  o.check({ method: 'GET', target: '/public?fz=h1-0-0', headers: ids, bodyLength: 3, bodySha: 'x' }, f);
  assert.deepEqual([...new Set(f.list().map((x) => x.invariant))].sort(), ['forged-identity-header-reached-upstream', 'identity-header-duplicated', 'unauthorized-request-forwarded', 'upstream-body-differs', 'upstream-request-not-sent-by-client']);
  // RFC 9112 §6.1: CL + TE is read by TE alone and closes; sent upstream, it is malformed
  const smuggle = Buffer.from('POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /deny HTTP/1.1\r\nHost: a\r\n\r\n');
  const ref = referenceRequests(smuggle);
  assert.equal(ref.requests.length, 1);
  assert.equal(ref.requests[0]!.bodyLength, 0);
  const strict = new RequestStreamParser('upstream');
  strict.push(smuggle);
  assert.match(strict.error?.reason ?? '', /both Content-Length and Transfer-Encoding/);
  assert.match(parseResponses(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n'), [{ method: 'HEAD', version: '1.1' }]).problem ?? '', /not a status line/);
  // the oracle's reading of the documented normalization is the proxy's (src/routing/path.ts) on every generated target
  for (let n = 0; n < 300; n++) {
    for (const r of referenceRequests(genH1(SEED, n).stream).requests) {
      if (!r.target.startsWith('/')) continue;
      const mine = expectedOriginTarget(r.target);
      const theirs = normalizePath(r.target, true);
      assert.equal(mine.ok ? mine.target : 'refused', theirs.ok ? theirs.path + theirs.query : 'refused', `normalization of ${JSON.stringify(r.target)}`);
    }
  }
});

const selected = (ids: number[], prefix: string) => (ONLY ? ids.filter((n) => ONLY.has(`${prefix}:${n}`)) : ids);

test(`fuzz: HTTP/1.1 inputs over mTLS (seed ${SEED})`, async () => {
  const findings = new Findings();
  const jobs = selected([...Array(H1_COUNT).keys()], 'h1').map((n) => h1Job(n, findings));
  await phase('HTTP/1.1', jobs, findings);
  assert.equal(findings.list().length, 0, `HTTP/1.1 fuzz findings:\n\n${report(findings, jobs)}`);
});

test(`fuzz: HTTP/2 inputs over mTLS (seed ${SEED})`, async () => {
  const findings = new Findings();
  const jobs = selected([...Array(H2_COUNT).keys()], 'h2').map((n) => h2Job(n, findings));
  await phase('HTTP/2', jobs, findings);
  assert.equal(findings.list().length, 0, `HTTP/2 fuzz findings:\n\n${report(findings, jobs)}`);
});

test('after the fuzz, a normal request still gets 200 from the upstream', async () => {
  const n = up.records.length;
  const r = await nodeRequest({ host: '127.0.0.1', port: proxy.ports.req, servername: 'localhost', path: '/public/health?after-fuzz', ca: ep.ca, cert: ep.cert, key: ep.key });
  assert.equal(r.status, 200, `health request: ${r.error?.message ?? r.body}`);
  assert.ok(up.records.slice(n).some((x) => x.target === '/public/health?after-fuzz'), 'the upstream got the health request');
  const metrics = await fetch(`http://127.0.0.1:${proxy.cli.adminPort}/metrics`);
  assert.equal(metrics.status, 200);
  assert.ok((await proxy.status())?.workers.some((w) => w.ready), 'a ready worker in /status');
});
