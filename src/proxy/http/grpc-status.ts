// gRPC-shaped answers for refusals portcullis makes itself: a gRPC client cannot read
// a JSON body, it reads grpc-status / grpc-message from a trailers-only response
// (HTTP 200, content-type application/grpc, HEADERS with END_STREAM).
import type { HttpErrorCode } from '../../errors.js';

/** gRPC status codes (grpc/doc/statuscodes.md) for each SPEC §5 error. */
const STATUS: Record<HttpErrorCode, number> = {
  bad_request: 13, // INTERNAL: the gRPC HTTP mapping for 400
  client_certificate_required: 16, // UNAUTHENTICATED
  // an invalid certificate is missing valid credentials, not a policy refusal
  client_certificate_invalid: 16, // UNAUTHENTICATED
  forbidden: 7, // PERMISSION_DENIED
  misdirected_request: 7, // PERMISSION_DENIED: this connection's certificate policy does not cover the authority
  no_route: 12, // UNIMPLEMENTED: the gRPC HTTP mapping for 404
  body_too_large: 8, // RESOURCE_EXHAUSTED
  headers_too_large: 8, // RESOURCE_EXHAUSTED
  upstream_unavailable: 14, // UNAVAILABLE
  no_healthy_upstream: 14, // UNAVAILABLE
  upstream_overloaded: 14, // UNAVAILABLE: retryable, as the gRPC HTTP mapping has it for 503
  upstream_timeout: 4, // DEADLINE_EXCEEDED
};

export function grpcStatusFor(code: HttpErrorCode): number {
  return STATUS[code];
}

/** grpc-message is percent-encoded UTF-8: everything outside 0x20-0x7E, and '%' itself. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** grpc-timeout ("100m", "5S", ...) in milliseconds; 0 when absent or malformed. */
export function parseGrpcTimeout(v: string | undefined): number {
  if (!v) return 0;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return 0;
  const n = Number(m[1]);
  const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };
  return Math.max(1, Math.ceil(n * unitMs[m[2]!]!));
}

/** content-type application/grpc, application/grpc+proto, ...; grpc-web is plain HTTP. */
export function grpcKind(contentType: string | undefined): 'grpc' | 'grpc-web' | undefined {
  if (!contentType || !contentType.startsWith('application/grpc')) return undefined;
  const rest = contentType.charCodeAt(16);
  if (contentType.startsWith('application/grpc-web')) return 'grpc-web';
  return Number.isNaN(rest) || rest === 0x2b || rest === 0x3b ? 'grpc' : undefined;
}
