// Issue 16, the proxy's own CRL findings: a CRL whose cRLNumber is marked critical was
// used, and a CRL signed by an issuer whose key usage lacks cRLSign was trusted. Also the
// other CRLs RFC 5280 says not to use (an unprocessed critical extension, on the CRL or an
// entry) and the cRLNumber rule per crl_mode (chain refuses a CRL without one, leaf uses it
// and warns), with the load-time warnings `portcullis check` shows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { build, buildCrl, type Built, type CrlSpec } from '../../test/helpers/chains.js';
import { seq, tlv, generalName } from '../../test/helpers/der-builder.js';
import { buildCrlCheck } from './revocation.js';
import { setTlsLog, tlsLog } from './tls-log.js';
import type { Identity } from '../pki/identity-types.js';
import type { CheckFailure } from './trust.js';

let dir: string;
let root: Built;
let inter: Built;
let noCrlSign: Built;
const X = (b: Built) => new X509Certificate(b.pem);
const leaves: Record<'viaInt' | 'viaNoCrlSign', Built> = {} as never;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-crlu-'));
  root = build({ cn: 'CRL Root', ca: true });
  inter = build({ cn: 'CRL Intermediate', ca: true }, root);
  noCrlSign = build({ cn: 'CRL Intermediate without cRLSign', ca: true, ku: ['keyCertSign'] }, root);
  leaves.viaInt = build({ cn: 'via-int' }, inter);
  leaves.viaNoCrlSign = build({ cn: 'via-no-crlsign' }, noCrlSign);
});

after(() => rmSync(dir, { recursive: true, force: true }));

const noId = {} as Identity;
let n = 0;
function judge(issuer: Built, spec: CrlSpec, leaf: Built, mode: 'chain' | 'leaf' = 'chain'): { failure: CheckFailure | undefined; warnings: string[] } {
  const files = [buildCrl(root), buildCrl(issuer, spec)].map((pem) => {
    const f = join(dir, `crl-${n++}.pem`);
    writeFileSync(f, pem);
    return f;
  });
  const warnings: string[] = [];
  const previous = tlsLog();
  setTlsLog(pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) }));
  try {
    const c = buildCrlCheck(files, mode, [X(root)], 'tls');
    return { failure: c.check(X(leaf), [X(issuer)], noId) as CheckFailure | undefined, warnings };
  } finally {
    setTlsLog(previous);
  }
}

test('a conforming CRL from each CA passes (the baseline the findings differ from)', () => {
  assert.equal(judge(inter, {}, leaves.viaInt).failure, undefined);
});

test('a CRL whose cRLNumber is marked critical is not used: the chain is refused as revocation_unknown', () => {
  const r = judge(inter, { number: 'critical' }, leaves.viaInt);
  assert.equal(r.failure?.reason, 'revocation_unknown');
  assert.match(r.failure!.detail, /cRLNumber extension is marked critical/);
  assert.match(r.warnings.join('\n'), /"event":"crl_unusable".*cRLNumber extension is marked critical/);
});

test('a CRL signed by an issuer whose key usage lacks cRLSign is not trusted', () => {
  const r = judge(noCrlSign, {}, leaves.viaNoCrlSign);
  assert.equal(r.failure?.reason, 'revocation_unknown');
  assert.match(r.failure!.detail, /key usage without cRLSign/);
  // the same leaf stays refused in leaf mode: its own CRL is the one that may not be used
  assert.equal(judge(noCrlSign, {}, leaves.viaNoCrlSign, 'leaf').failure?.reason, 'revocation_unknown');
});

test('an unprocessed critical extension on the CRL or on an entry makes it unusable', () => {
  const unknown = judge(inter, { extra: [{ id: '1.3.6.1.4.1.55555.2', critical: true, value: Buffer.from([0x05, 0x00]) }] }, leaves.viaInt);
  assert.equal(unknown.failure?.reason, 'revocation_unknown');
  assert.match(unknown.failure!.detail, /1\.3\.6\.1\.4\.1\.55555\.2 marked critical/);
  const idp = judge(inter, { extra: [{ id: '2.5.29.28', critical: true, value: seq(tlv(0x81, Buffer.from([0xff]))) }] }, leaves.viaInt);
  assert.match(idp.failure!.detail, /issuingDistributionPoint marked critical/);
  const entry = judge(inter, { revoked: [Buffer.from([1, 2, 3])], entryExtra: [{ id: '2.5.29.29', critical: true, value: seq(generalName({ dns: 'x.example' })) }] }, leaves.viaInt);
  assert.match(entry.failure!.detail, /an entry has the extension certificateIssuer marked critical/);
  // a non-critical unknown extension is ignored, as RFC 5280 allows
  assert.equal(judge(inter, { extra: [{ id: '1.3.6.1.4.1.55555.2', critical: false, value: Buffer.from([0x05, 0x00]) }] }, leaves.viaInt).failure, undefined);
});

test('a CRL without cRLNumber: refused in crl_mode chain, used with a warning in crl_mode leaf', () => {
  const chain = judge(inter, { number: 'absent' }, leaves.viaInt, 'chain');
  assert.equal(chain.failure?.reason, 'revocation_unknown');
  assert.match(chain.failure!.detail, /no cRLNumber/);
  assert.match(chain.warnings.join('\n'), /"refused":true/);
  const leaf = judge(inter, { number: 'absent' }, leaves.viaInt, 'leaf');
  assert.equal(leaf.failure, undefined);
  assert.match(leaf.warnings.join('\n'), /"event":"crl_unusable".*"refused":false.*used anyway in crl_mode: leaf/);
});
