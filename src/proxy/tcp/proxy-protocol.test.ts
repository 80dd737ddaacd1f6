// Unit tests of the PROXY header writer, read back with the independent parser the
// end-to-end tests use, plus a few exact byte sequences taken from the spec's layout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxyV1Header, proxyV2Header, ipv6Bytes, type SslFacts } from './proxy-protocol.js';
import { parseV2, SIGNATURE } from '../../../test/helpers/proxy-protocol.js';

const v4 = { srcAddr: '192.0.2.10', srcPort: 51000, dstAddr: '198.51.100.1', dstPort: 8443 };
const v6 = { srcAddr: '2001:db8::1', srcPort: 40000, dstAddr: '2001:db8::2', dstPort: 443 };

test('v1: TCP4, TCP6, mapped IPv4 and UNKNOWN lines', () => {
  assert.equal(proxyV1Header(v4).toString(), 'PROXY TCP4 192.0.2.10 198.51.100.1 51000 8443\r\n');
  assert.equal(proxyV1Header(v6).toString(), 'PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n');
  const mapped = { srcAddr: '::ffff:127.0.0.1', srcPort: 1, dstAddr: '::ffff:127.0.0.2', dstPort: 2 };
  assert.equal(proxyV1Header(mapped).toString(), 'PROXY TCP4 127.0.0.1 127.0.0.2 1 2\r\n');
  assert.equal(proxyV1Header({ srcAddr: undefined, srcPort: undefined, dstAddr: undefined, dstPort: undefined }).toString(), 'PROXY UNKNOWN\r\n');
  // the spec caps a v1 line at 107 bytes; the longest TCP6 form must stay under it
  const longest = { srcAddr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', srcPort: 65535, dstAddr: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', dstPort: 65535 };
  assert.ok(proxyV1Header(longest).length <= 107);
});

test('v2 without TLS: exact bytes of a TCP4 header', () => {
  const h = proxyV2Header(v4, undefined);
  const expected = Buffer.concat([
    SIGNATURE,
    Buffer.from([0x21, 0x11, 0x00, 0x0c]),
    Buffer.from([192, 0, 2, 10, 198, 51, 100, 1]),
    Buffer.from([0xc7, 0x38, 0x20, 0xfb]), // 51000, 8443
  ]);
  assert.deepEqual(h, expected);
});

test('v2 TCP6 addresses and ports', () => {
  const h = parseV2(proxyV2Header(v6, undefined))!;
  assert.equal(h.familyProtocol, 0x21);
  assert.equal(h.length, 16 + 36);
  assert.equal(h.src, '2001:db8:0:0:0:0:0:1');
  assert.equal(h.dst, '2001:db8:0:0:0:0:0:2');
  assert.equal(h.srcPort, 40000);
  assert.equal(h.dstPort, 443);
});

test('ipv6Bytes handles compression, IPv4 tails and zone ids', () => {
  assert.equal(ipv6Bytes('::1').toString('hex'), '00000000000000000000000000000001');
  assert.equal(ipv6Bytes('::ffff:10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
  assert.equal(ipv6Bytes('fe80::1%eth0').toString('hex'), 'fe800000000000000000000000000001');
  assert.equal(ipv6Bytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008');
});

test('v2 SSL TLV with a verified certificate: flags, verify=0, every sub-TLV, lengths', () => {
  const der = Buffer.from('3082deadbeef', 'hex');
  const ssl: SslFacts = { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: { cn: 'payment-service', der }, resumed: false };
  const buf = proxyV2Header(v4, ssl);
  const h = parseV2(buf)!;
  assert.equal(h.length, buf.length, 'the length field covers addresses and TLVs exactly');
  assert.equal(h.tlvs.length, 1);
  assert.equal(h.ssl!.client, 0x01 | 0x02 | 0x04);
  assert.equal(h.ssl!.verify, 0);
  const sub = new Map(h.ssl!.subs.map((t) => [t.type, t.value]));
  assert.deepEqual([...sub.keys()], [0x21, 0x22, 0x23, 0x28]);
  assert.equal(sub.get(0x21)!.toString(), 'TLSv1.3');
  assert.equal(sub.get(0x22)!.toString(), 'payment-service');
  assert.equal(sub.get(0x23)!.toString(), 'TLS_AES_256_GCM_SHA384');
  assert.deepEqual(sub.get(0x28), der);
  // the SSL TLV's own header: type 0x20 and a big-endian length of 5 + sub-TLVs
  const at = 16 + 12;
  assert.equal(buf[at], 0x20);
  assert.equal(buf.readUInt16BE(at + 1), 5 + (3 + 7) + (3 + 15) + (3 + 22) + (3 + der.length));
});

test('v2 SSL TLV without a certificate: SSL flag only, verify non-zero, no CN or certificate', () => {
  const h = parseV2(proxyV2Header(v4, { version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256', resumed: false }))!;
  assert.equal(h.ssl!.client, 0x01);
  assert.notEqual(h.ssl!.verify, 0);
  assert.deepEqual(h.ssl!.subs.map((t) => t.type), [0x21, 0x23]);
});

test('v2 resumed session: certificate flagged for the session, not the connection', () => {
  const h = parseV2(proxyV2Header(v4, { version: 'TLSv1.3', cipher: 'x', verified: { cn: undefined, der: Buffer.from([0x30]) }, resumed: true }))!;
  assert.equal(h.ssl!.client, 0x01 | 0x04);
  assert.deepEqual(h.ssl!.subs.map((t) => t.type), [0x21, 0x23, 0x28]);
});

test('v2 leaves out a certificate too large for the 16-bit length instead of corrupting it', () => {
  const der = Buffer.alloc(70_000, 1);
  const buf = proxyV2Header(v4, { version: 'TLSv1.3', cipher: 'x', verified: { cn: 'big', der }, resumed: false });
  const h = parseV2(buf)!;
  assert.equal(h.length, buf.length);
  assert.equal(h.ssl!.verify, 0);
  assert.deepEqual(h.ssl!.subs.map((t) => t.type), [0x21, 0x22, 0x23]);
});

test('v2 UNSPEC family when addresses are unknown keeps the TLVs', () => {
  const h = parseV2(proxyV2Header({ srcAddr: undefined, srcPort: undefined, dstAddr: undefined, dstPort: undefined }, { version: 'TLSv1.3', cipher: 'x', resumed: false }))!;
  assert.equal(h.familyProtocol, 0x00);
  assert.equal(h.versionCommand, 0x21);
  assert.ok(h.ssl);
});
