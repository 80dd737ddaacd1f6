// The gRPC answer shapes portcullis produces itself: status per SPEC §5 error, the
// grpc-message encoding (gRPC's PROTOCOL-HTTP2 spec) and grpc-timeout parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeGrpcMessage, grpcKind, grpcStatusFor, parseGrpcTimeout } from './grpc-status.js';

test('refusals map to the gRPC statuses clients act on', () => {
  assert.equal(grpcStatusFor('forbidden'), 7);
  assert.equal(grpcStatusFor('client_certificate_required'), 16);
  assert.equal(grpcStatusFor('client_certificate_invalid'), 16);
  assert.equal(grpcStatusFor('upstream_unavailable'), 14);
  assert.equal(grpcStatusFor('no_healthy_upstream'), 14);
  assert.equal(grpcStatusFor('upstream_overloaded'), 14);
  assert.equal(grpcStatusFor('upstream_timeout'), 4);
  assert.equal(grpcStatusFor('no_route'), 12);
});

test('grpc-message percent-encodes non-ASCII, control characters and % only', () => {
  assert.equal(encodeGrpcMessage('route a (b): ok; x=y'), 'route a (b): ok; x=y');
  assert.equal(encodeGrpcMessage('100% ü\n'), '100%25 %C3%BC%0A');
  assert.equal(decodeURIComponent(encodeGrpcMessage('naïve 50% ✓')), 'naïve 50% ✓');
});

test('grpc-timeout units, and malformed values ignored', () => {
  assert.equal(parseGrpcTimeout('5S'), 5000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('2M'), 120_000);
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('1500u'), 2);
  assert.equal(parseGrpcTimeout('1n'), 1, 'never rounds down to "no deadline"');
  assert.equal(parseGrpcTimeout(undefined), 0);
  assert.equal(parseGrpcTimeout('5s'), 0);
  assert.equal(parseGrpcTimeout('123456789S'), 0, 'at most 8 digits');
});

test('gRPC content types', () => {
  assert.equal(grpcKind('application/grpc'), 'grpc');
  assert.equal(grpcKind('application/grpc+proto'), 'grpc');
  assert.equal(grpcKind('application/grpc;charset=utf-8'), 'grpc');
  assert.equal(grpcKind('application/grpc-web+proto'), 'grpc-web');
  assert.equal(grpcKind('application/grpcx'), undefined);
  assert.equal(grpcKind('application/json'), undefined);
  assert.equal(grpcKind(undefined), undefined);
});
