// `node dist/bench/ocsp-cache.js`: what OCSP checking of client certificates costs once its
// cache is warm. One proxy (1 worker) with two listeners, identical but for ocsp (off vs
// hard against a real `openssl ocsp` responder); N sequential full handshakes, each with
// one request (the check runs between handshake and request, so the request is needed to
// see it), in rounds A B A B; prints connections/s per listener and the ratio.
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki } from '../test/helpers/pki.js';
import { issueCert } from '../src/pki/issue.js';
import { startCli, startEchoUpstream, tempDir, cleanup, tlsListener } from '../test/helpers/proxy.js';
import { writeIndex, writeCaFiles, startResponder, startCountingRelay } from '../test/helpers/ocsp-responder.js';
import { X509Certificate } from 'node:crypto';
import { buildOcspCheck } from '../src/tls/ocsp-check.js';
import { buildIdentity } from '../src/pki/identity.js';

const N = Number(process.env.BENCH_OCSP_N ?? 500);
const ROUNDS = Number(process.env.BENCH_OCSP_ROUNDS ?? 2);

function once(port: number, ca: Buffer, cert: Buffer, key: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, cert, key, session: undefined });
    let got = '';
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => (got.startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(`no 200: ${got.slice(0, 40)}`))));
  });
}

async function rate(port: number, ca: Buffer, cert: Buffer, key: Buffer, n: number): Promise<number> {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await once(port, ca, cert, key);
  return n / (Number(process.hrtime.bigint() - t) / 1e9);
}

const dir = tempDir('pcl-bench-ocsp-');
try {
  const pki = await makeTestPki(join(dir, 'pki'));
  const leaf = await issueCert(pki.handles.root, { type: 'client', cn: 'bench' });
  writeFileSync(join(dir, 'c.crt'), leaf.certPem);
  writeFileSync(join(dir, 'c.key'), leaf.keyPem);
  const root = writeCaFiles(dir, 'root', pki.handles.root);
  const index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: leaf.serial }]);
  const responder = await startResponder({ index, ca: root.cert, signerCert: root.cert, signerKey: root.key, nmin: 60 });
  const relay = await startCountingRelay(responder.url);
  const up = await startEchoUpstream();
  const cli = await startCli(
    {
      log: { level: 'info', access: 'off' },
      listeners: [
        tlsListener(pki, { name: 'off' }),
        tlsListener(pki, { name: 'ocsp', tls: { ocsp: { mode: 'hard', responder: relay.url, cache: '5m' } } }),
      ],
      upstreams: { app: { endpoints: [up.url] } },
    },
    { dir },
  );
  const ca = readFileSync(pki.ca.cert);
  const cert = readFileSync(join(dir, 'c.crt'));
  const key = readFileSync(join(dir, 'c.key'));
  // warm-up: JIT, connection pools, and the one OCSP lookup
  const cold = process.hrtime.bigint();
  await once(cli.ports.ocsp!, ca, cert, key);
  const coldMs = Number(process.hrtime.bigint() - cold) / 1e6;
  for (const port of [cli.ports.off!, cli.ports.ocsp!]) await rate(port, ca, cert, key, 50);
  const results: Record<string, number[]> = { off: [], ocsp: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of ['off', 'ocsp'] as const) results[name]!.push(await rate(cli.ports[name]!, ca, cert, key, N));
  }
  // the check alone, in this process, with a warm cache: what a warm lookup adds per handshake
  const leafX = new X509Certificate(leaf.certPem);
  const check = buildOcspCheck({ mode: 'hard', responder: relay.url, cache: 300_000, timeout: 2000 }, [new X509Certificate(pki.handles.root.certPem)])!;
  const id = buildIdentity(leafX, []);
  if ((await check(leafX, [], id)) !== undefined) throw new Error('the in-process check failed');
  const M = 100_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < M; i++) await check(leafX, [], id);
  const warmCheckUs = Number(process.hrtime.bigint() - t0) / 1e3 / M;
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const off = median(results.off!);
  const on = median(results.ocsp!);
  console.log(JSON.stringify({ handshakes_per_run: N, rounds: ROUNDS, off_per_s: results.off!.map(Math.round), ocsp_warm_per_s: results.ocsp!.map(Math.round), ratio: +(on / off).toFixed(3), ocsp_lookups: relay.count(), first_handshake_with_cold_cache_ms: Math.round(coldMs), warm_check_us: +warmCheckUs.toFixed(2) }));
  await cli.stop();
  await up.close();
  await relay.stop();
  await responder.stop();
} finally {
  cleanup(dir);
}
