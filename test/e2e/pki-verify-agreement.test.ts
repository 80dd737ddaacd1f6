// `portcullis cert verify` must reach the proxy's verdict for the same certificate: the
// real CLI proxy (`portcullis run`, same CA, CRL and verify_depth) handshakes with every
// certificate of the test set, and cert verify judges the same files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki, type PkiEntry, type TestPki } from '../helpers/pki.js';
import { certArgs, cleanup, curl, runCli, startCli, startEchoUpstream, tempDir, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let up: EchoUpstream;
let proxy: RunningCli;
let dir: string;
const DEPTH = 2;

before(async () => {
  dir = tempDir('pcl-agree-');
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream();
  proxy = await startCli(
    { listeners: [tlsListener(pki, { tls: { client_ca: [pki.ca.cert], verify_depth: DEPTH, crl: [pki.crl] } })], upstreams: { app: { endpoints: [up.url] } } },
    { dir },
  );
});

after(async () => {
  await proxy?.stop();
  await up?.close();
  if (dir) cleanup(dir);
});

async function waitFor(fn: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return fn();
}

/** The proxy's verdict: accepted, or the reason it logged for the failed handshake. */
async function proxyVerdict(e: PkiEntry, sendChain: boolean): Promise<{ accepted: boolean; reason?: string }> {
  const r = await curl(`https://localhost:${proxy.port}/agree`, certArgs(pki.ca.cert, e, sendChain));
  if (r.status === 200) return { accepted: true };
  const line = (): Record<string, unknown> | undefined =>
    proxy.accessLines().find((l) => l.event === 'tls_handshake_failed' && (l.client as { serial?: string } | undefined)?.serial === e.serial);
  await waitFor(() => !!line());
  const verify = (line()?.client as { verify?: string } | undefined)?.verify ?? `status ${r.status}: ${r.stderr.trim()}`;
  return { accepted: false, reason: verify.replace(/^FAILED:/, '') };
}

function cliVerdict(e: PkiEntry, sendChain: boolean): { accepted: boolean; codes: string[]; out: string } {
  const args = ['cert', 'verify', '--json', '--ca', pki.ca.cert, '--crl', pki.crl, '--verify-depth', String(DEPTH), ...(sendChain ? ['--chain', e.chain] : []), e.cert];
  const r = runCli(args);
  const j = JSON.parse(r.stdout) as { accepted: boolean; reasons: { code: string }[] };
  assert.equal(r.status, j.accepted ? 0 : 1, 'exit code follows the verdict');
  return { accepted: j.accepted, codes: j.reasons.map((x) => x.code), out: r.stdout };
}

const cases: [string, keyof TestPki, boolean][] = [
  ['good client', 'client', false],
  ['no EKU', 'noEku', false],
  ['via intermediate, chain sent', 'viaIntermediate', true],
  ['via intermediate, intermediate missing', 'viaIntermediate', false],
  ['deeper than verify_depth', 'deep', true],
  ['expired', 'expired', false],
  ['not yet valid', 'notYetValid', false],
  ['wrong CA', 'untrusted', false],
  ['wrong EKU', 'serverEkuOnly', false],
  ['CA as leaf', 'caAsLeaf', false],
  ['revoked', 'revoked', false],
];

for (const [name, key, sendChain] of cases) {
  test(`cert verify and the proxy agree: ${name}`, async () => {
    const e = pki[key] as PkiEntry;
    const p = await proxyVerdict(e, sendChain);
    const c = cliVerdict(e, sendChain);
    assert.equal(c.accepted, p.accepted, `proxy ${JSON.stringify(p)} vs cert verify ${c.out}`);
    if (!p.accepted) assert.ok(c.codes.includes(p.reason!), `proxy refused with ${p.reason}, cert verify said ${c.codes.join(', ')}`);
  });
}
