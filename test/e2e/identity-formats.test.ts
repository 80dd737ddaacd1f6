// The identity header formats of SPEC §4 as the upstream receives them: the forwarded
// certificate (X-Client-Cert), Envoy's X-Forwarded-Client-Cert and RFC 9440's Client-Cert /
// Client-Cert-Chain. Each value is decoded and compared with the certificate files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { type PkiEntry } from '../helpers/pki.js';
import { useProxy, tlsListener, nodeRequest, type Received } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
      workers: 1,
      listeners: [
        tlsListener(pki, { name: 'all', identity: { headers: ['standard', 'xfcc', 'rfc9440'], forward_cert: true } }),
        tlsListener(pki, { name: 'xfcc', identity: { headers: ['xfcc'], forward_cert: true } }),
        tlsListener(pki, { name: 'xfcc-nocert', identity: { headers: ['xfcc'] } }),
        tlsListener(pki, { name: 'rfc', identity: { headers: ['rfc9440'] } }),
      ],
      upstreams: { app: { endpoints: [up.url] } } }));

const der = (file: string) => new X509Certificate(readFileSync(file)).raw;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One request through `listener`, presenting `entry` (its chain when `sendChain`); returns what the upstream got. */
async function via(listener: string, entry: PkiEntry, sendChain = false, headers: Record<string, string> = {}): Promise<Received> {
  const path = `/formats-${Math.random().toString(16).slice(2)}`;
  const r = await nodeRequest({
    host: '127.0.0.1',
    servername: 'localhost',
    port: fx.cli.ports[listener],
    path,
    headers,
    ca: readFileSync(fx.pki.ca.cert),
    cert: readFileSync(sendChain ? entry.chain : entry.cert),
    key: readFileSync(entry.key) });
  assert.equal(r.status, 200, r.error?.message ?? r.body);
  const got = fx.up.received.find((x) => x.url === path);
  assert.ok(got, 'the request reached the upstream');
  return got;
}

/** Values of header `name` (any case) as the upstream received them. */
function all(got: Received, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < got.rawHeaders.length; i += 2) if (got.rawHeaders[i]!.toLowerCase() === name) out.push(got.rawHeaders[i + 1]!);
  return out;
}

function one(got: Received, name: string): string {
  const v = all(got, name);
  assert.equal(v.length, 1, `${name} should arrive exactly once, got ${JSON.stringify(v)}`);
  return v[0]!;
}

/** Envoy XFCC: elements separated by ',', pairs by ';', values optionally quoted with \-escapes. */
function parseXfcc(header: string): [string, string][][] {
  const elements: [string, string][][] = [];
  let pairs: [string, string][] = [];
  let i = 0;
  while (i < header.length) {
    const eq = header.indexOf('=', i);
    assert.ok(eq > i, `malformed XFCC at ${i}: ${header}`);
    const key = header.slice(i, eq);
    i = eq + 1;
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === '\\') i++;
        value += header[i];
        i++;
      }
      assert.equal(header[i], '"', 'unterminated quoted XFCC value');
      i++;
    } else {
      while (i < header.length && header[i] !== ';' && header[i] !== ',') value += header[i++];
    }
    pairs.push([key, value]);
    if (header[i] === ';') i++;
    else if (header[i] === ',') {
      elements.push(pairs);
      pairs = [];
      i++;
    }
  }
  elements.push(pairs);
  return elements;
}

/** "-----BEGIN CERTIFICATE-----..." PEM(s) → DERs. */
function pemDers(pem: string): Buffer[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  assert.equal(blocks.join(''), pem, 'nothing but certificates in the PEM');
  return blocks.map((b) => new X509Certificate(b).raw);
}

/** RFC 8941 byte sequence `:<base64>:` → bytes. */
function byteSeq(v: string): Buffer {
  const m = /^:([A-Za-z0-9+/]*={0,2}):$/.exec(v.trim());
  assert.ok(m, `not an RFC 8941 byte sequence: ${v.slice(0, 80)}`);
  return Buffer.from(m[1]!, 'base64');
}

const URL_ENCODED = /^[A-Za-z0-9%\-_.!~*'()]+$/;

test('X-Client-Cert is the URL-encoded PEM of exactly the client certificate', async () => {
  const got = await via('all', fx.pki.client);
  const v = one(got, 'x-client-cert');
  assert.match(v, URL_ENCODED, 'a header-safe URL encoding (no raw newlines, spaces or quotes)');
  const pem = decodeURIComponent(v);
  const ders = pemDers(pem);
  assert.equal(ders.length, 1, 'only the leaf');
  assert.deepEqual(ders[0], der(fx.pki.client.cert));
  // and the standard identity is still there
  assert.equal(one(got, 'x-client-verify'), 'SUCCESS');
  assert.equal(one(got, 'x-client-fingerprint'), sha256(der(fx.pki.client.cert)));
});

test('X-Forwarded-Client-Cert has Hash, Cert, Subject, URI and DNS of the client, in Envoy\'s format', async () => {
  const got = await via('all', fx.pki.client);
  const raw = one(got, 'x-forwarded-client-cert');
  const elements = parseXfcc(raw);
  assert.equal(elements.length, 1, `one element for one client, got ${raw}`);
  const pairs = elements[0]!;
  const keys = pairs.map(([k]) => k).filter((k) => k !== 'Chain');
  assert.deepEqual(keys, ['Hash', 'Cert', 'Subject', 'URI', 'DNS'], raw);
  const get = (k: string) => pairs.find(([key]) => key === k)?.[1];
  assert.equal(get('Hash'), sha256(der(fx.pki.client.cert)));
  assert.match(get('Hash')!, /^[0-9a-f]{64}$/);
  assert.match(raw, /;Cert="[^"]+";/, 'Cert is quoted');
  assert.match(get('Cert')!, URL_ENCODED);
  const certDers = pemDers(decodeURIComponent(get('Cert')!));
  assert.equal(certDers.length, 1);
  assert.deepEqual(certDers[0], der(fx.pki.client.cert));
  assert.match(raw, /;Subject="CN=payment-service,OU=prod,O=Example";/);
  assert.equal(get('Subject'), 'CN=payment-service,OU=prod,O=Example');
  assert.equal(get('URI'), 'spiffe://example.org/ns/prod/sa/payment');
  assert.equal(get('DNS'), 'payment.svc.example.com');
  // a client chained to the root directly has nothing to put in Chain besides the leaf
  const chain = get('Chain');
  if (chain !== undefined) assert.deepEqual(pemDers(decodeURIComponent(chain))[0], der(fx.pki.client.cert));
});

test('Client-Cert (RFC 9440) is the client certificate DER as a byte sequence', async () => {
  const got = await via('all', fx.pki.client);
  assert.deepEqual(byteSeq(one(got, 'client-cert')), der(fx.pki.client.cert));
  const chain = all(got, 'client-cert-chain');
  assert.ok(chain.length <= 1);
  if (chain.length === 1) {
    // the chain never repeats the leaf (RFC 9440 §2.2); the root may be there
    for (const item of chain[0]!.split(',')) {
      const b = byteSeq(item);
      assert.notDeepEqual(b, der(fx.pki.client.cert));
      assert.deepEqual(b, der(fx.pki.ca.cert));
    }
  }
});

test('an intermediate-issued client sent with its chain: Client-Cert is the leaf, Client-Cert-Chain holds the intermediate', async () => {
  const got = await via('all', fx.pki.viaIntermediate, true);
  assert.deepEqual(byteSeq(one(got, 'client-cert')), der(fx.pki.viaIntermediate.cert));
  const items = one(got, 'client-cert-chain').split(',').map(byteSeq);
  assert.ok(items.length >= 1);
  assert.deepEqual(items[0], der(fx.pki.intermediate.cert), 'the intermediate comes first');
  for (const b of items.slice(1)) assert.deepEqual(b, der(fx.pki.ca.cert), 'anything after the intermediate can only be the root');
  assert.equal(one(got, 'x-client-issuer'), 'CN=Test Intermediate CA');
  // XFCC of the same request describes the same leaf
  const xfcc = parseXfcc(one(got, 'x-forwarded-client-cert'))[0]!;
  const get = (k: string) => xfcc.find(([key]) => key === k)?.[1];
  assert.equal(get('Hash'), sha256(der(fx.pki.viaIntermediate.cert)));
  assert.equal(get('Subject'), 'CN=via-intermediate,OU=prod,O=Example');
  assert.deepEqual(pemDers(decodeURIComponent(get('Cert')!)), [der(fx.pki.viaIntermediate.cert)]);
  const chain = get('Chain');
  if (chain !== undefined) {
    const ders = pemDers(decodeURIComponent(chain));
    assert.deepEqual(ders[0], der(fx.pki.viaIntermediate.cert), 'Envoy\'s Chain starts with the leaf');
    assert.deepEqual(ders[1], der(fx.pki.intermediate.cert));
  }
});

test('headers: [xfcc] only: X-Forwarded-Client-Cert and no X-Client-* header at all, even spoofed ones', async () => {
  for (const listener of ['xfcc', 'xfcc-nocert']) {
    const got = await via(listener, fx.pki.client, false, { 'X-Client-Verify': 'SUCCESS', 'X-Client-CN': 'admin' });
    const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.deepEqual(names.filter((n) => n.startsWith('x-client')), [], `${listener}: ${names.join(', ')}`);
    assert.deepEqual(names.filter((n) => n.startsWith('client-cert')), [], `${listener}: rfc9440 is not enabled`);
    const pairs = parseXfcc(one(got, 'x-forwarded-client-cert'))[0]!;
    const get = (k: string) => pairs.find(([key]) => key === k)?.[1];
    assert.equal(get('Hash'), sha256(der(fx.pki.client.cert)));
    assert.equal(get('Subject'), 'CN=payment-service,OU=prod,O=Example');
    assert.equal(get('URI'), 'spiffe://example.org/ns/prod/sa/payment');
    assert.equal(get('DNS'), 'payment.svc.example.com');
    if (listener === 'xfcc') assert.deepEqual(pemDers(decodeURIComponent(get('Cert')!)), [der(fx.pki.client.cert)]);
    else assert.equal(get('Cert'), undefined, 'no Cert without forward_cert');
    // X-Forwarded-* are not identity formats: they are always set
    assert.equal(one(got, 'x-forwarded-for'), '127.0.0.1');
    assert.equal(one(got, 'x-forwarded-proto'), 'https');
  }
});

test('headers: [rfc9440] only: Client-Cert and no X-Client-* or XFCC', async () => {
  const got = await via('rfc', fx.pki.client, false, { 'X-Client-Verify': 'SUCCESS', 'X-Forwarded-Client-Cert': 'Hash=00' });
  const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.deepEqual(names.filter((n) => n.startsWith('x-client') || n === 'x-forwarded-client-cert'), [], names.join(', '));
  assert.deepEqual(byteSeq(one(got, 'client-cert')), der(fx.pki.client.cert));
});
