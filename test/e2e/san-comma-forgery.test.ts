// Regression test for finding 8, "X-Client-SAN can be forged through a comma inside a DNS
// SAN issued by a careless CA": `DNS:a.example.com,URI:spiffe://.../admin` read as a DNS
// entry plus a URI entry the certificate does not have. Values in X-Client-SAN are now
// %-escaped (`,` `%` space, controls, non-ASCII), so splitting on "," gives exactly the
// certificate's entries and decoding each gives its value back. The same certificate's
// commas in subject attributes stay RFC 4514-escaped in X-Client-Subject, and XFCC
// quotes such values; authorization never saw the forged entry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueCert } from '../../src/pki/issue.js';
import type { PkiEntry } from '../helpers/pki.js';
import { useProxy, tlsListener, nodeRequest, type Received } from '../helpers/proxy.js';
import { h2Request } from '../helpers/raw-clients.js';

const ADMIN = 'spiffe://example.org/ns/prod/sa/admin';
const FORGING_DNS = `a.example.com,URI:${ADMIN}`;
const PERCENT_URI = 'spiffe://example.org/ns/prod/sa/pay%2Cment';

const fx = useProxy(({ pki, up }) => ({
  listeners: [
    tlsListener(pki, {
      identity: { headers: ['standard', 'xfcc'] },
      routes: [
        { name: 'admin', match: { path: '/admin' }, allow: [{ uri: ADMIN }], upstream: 'app' },
        { name: 'catch-all', upstream: 'app' },
      ],
    }),
  ],
  upstreams: { app: { endpoints: [up.url] } },
}));

let forgerIssued: Promise<PkiEntry> | undefined;

/** What a careless CA would sign: commas in a DNS SAN and in subject attributes. Issued once. */
function forger(): Promise<PkiEntry> {
  forgerIssued ??= issueCert(fx.pki.handles.root, {
    type: 'client',
    cn: 'evil,O=Admin',
    o: ['Example, Inc.'],
    dns: [FORGING_DNS, 'b.example.com'],
    uri: [PERCENT_URI],
    email: ['x@example.com'],
  }).then((c) => {
    const e = { cert: join(fx.dir, 'forger.crt'), key: join(fx.dir, 'forger.key'), chain: join(fx.dir, 'forger.crt'), serial: c.serial };
    writeFileSync(e.cert, c.certPem);
    writeFileSync(e.key, c.keyPem, { mode: 0o600 });
    return e;
  });
  return forgerIssued;
}

async function viaHttp1(path: string): Promise<{ status?: number; got?: Received }> {
  const who = await forger();
  const r = await nodeRequest({
    host: '127.0.0.1',
    servername: 'localhost',
    port: fx.cli.port,
    path,
    ca: readFileSync(fx.pki.ca.cert),
    cert: readFileSync(who.cert),
    key: readFileSync(who.key),
  });
  return { status: r.status, got: fx.up.received.find((x) => x.url === path) };
}

/** X-Client-SAN as a consumer reads it: split on ",", then "TYPE:" and the %-decoded value. */
function readSan(v: string): [string, string][] {
  return v.split(',').map((entry) => {
    const c = entry.indexOf(':');
    return [entry.slice(0, c), decodeURIComponent(entry.slice(c + 1))];
  });
}

/** RFC 4514: RDNs separated by unescaped ",", attribute values with "\" escapes. */
function readDn(dn: string): [string, string][] {
  const out: [string, string][] = [];
  let cur = '';
  for (let i = 0; i < dn.length; i++) {
    if (dn[i] === '\\') cur += dn[i]! + dn[++i]!;
    else if (dn[i] === ',') {
      out.push(splitAva(cur));
      cur = '';
    } else cur += dn[i];
  }
  out.push(splitAva(cur));
  return out;
}
function splitAva(ava: string): [string, string] {
  const eq = ava.indexOf('=');
  return [ava.slice(0, eq), ava.slice(eq + 1).replace(/\\(.)/g, '$1')];
}

/** Envoy XFCC, one element: pairs split on unquoted ";", quoted values with "\" escapes. */
function readXfcc(v: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < v.length) {
    const eq = v.indexOf('=', i);
    const key = v.slice(i, eq);
    let value = '';
    i = eq + 1;
    if (v[i] === '"') {
      for (i++; i < v.length && v[i] !== '"'; i++) value += v[i] === '\\' ? v[++i] : v[i];
      i++;
    } else {
      while (i < v.length && v[i] !== ';' && v[i] !== ',') value += v[i++];
    }
    assert.notEqual(v[i], ',', 'one certificate is one XFCC element');
    out.push([key, value]);
    if (v[i] === ';') i++;
  }
  return out;
}

test('X-Client-SAN: a comma inside a DNS SAN is escaped, so the list holds exactly the certificate\'s entries', async () => {
  const { status, got } = await viaHttp1('/san');
  assert.equal(status, 200);
  const san = got!.headers['x-client-san'] as string;
  assert.equal(san, `DNS:a.example.com%2CURI:${ADMIN},DNS:b.example.com,URI:spiffe://example.org/ns/prod/sa/pay%252Cment,email:x@example.com`);
  assert.deepEqual(readSan(san), [
    ['DNS', FORGING_DNS],
    ['DNS', 'b.example.com'],
    ['URI', PERCENT_URI],
    ['email', 'x@example.com'],
  ]);
  assert.ok(!readSan(san).some(([t, v]) => t === 'URI' && v === ADMIN), 'no forged URI entry');
});

test('X-Client-Subject keeps RFC 4514 escaping of commas in attribute values; X-Client-CN is the value itself', async () => {
  const { got } = await viaHttp1('/subject');
  const subject = got!.headers['x-client-subject'] as string;
  assert.equal(subject, 'CN=evil\\,O=Admin,O=Example\\, Inc.');
  assert.deepEqual(readDn(subject), [
    ['CN', 'evil,O=Admin'],
    ['O', 'Example, Inc.'],
  ]);
  assert.equal(got!.headers['x-client-cn'], 'evil,O=Admin');
});

test('XFCC quotes the comma-holding values: one element, one DNS value per SAN, no forged URI', async () => {
  const { got } = await viaHttp1('/xfcc');
  const pairs = readXfcc(got!.headers['x-forwarded-client-cert'] as string);
  assert.deepEqual(pairs.filter(([k]) => k === 'DNS').map(([, v]) => v), [FORGING_DNS, 'b.example.com']);
  assert.deepEqual(pairs.filter(([k]) => k === 'URI').map(([, v]) => v), [PERCENT_URI]);
  assert.deepEqual(readDn(pairs.find(([k]) => k === 'Subject')![1]), [
    ['CN', 'evil,O=Admin'],
    ['O', 'Example, Inc.'],
  ]);
});

test('authorization is not fooled: a rule on the forged URI refuses the certificate, on HTTP/1.1 and HTTP/2', async () => {
  const n = fx.up.received.length;
  assert.equal((await viaHttp1('/admin')).status, 403);
  const h2 = await h2Request(fx.cli.port, fx.pki, { ':path': '/admin' }, await forger());
  assert.equal(h2.status, 403, h2.error ?? h2.body);
  assert.equal(fx.up.received.length, n);
  // and h2 carries the same escaped list
  const ok = await h2Request(fx.cli.port, fx.pki, { ':path': '/san-h2' }, await forger());
  assert.equal(ok.status, 200);
  assert.match(fx.up.received.find((x) => x.url === '/san-h2')!.headers['x-client-san'] as string, /^DNS:a\.example\.com%2CURI:/);
});
