// Writes the JSON errors portcullis itself produces (SPEC §5), on an HTTP/1.1 response or
// as raw bytes on a socket that has left the HTTP parser (parse errors, WebSocket upgrades).
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { HttpErrors, httpErrorBody, type HttpErrorCode } from '../../errors.js';

export function sendError(res: ServerResponse, error: HttpErrorCode, message: string, requestId: string, extra?: Record<string, string>): number {
  const status = HttpErrors[error];
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return status;
  }
  // drop anything an upstream response had started to set before it failed
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const body = httpErrorBody(error, message, requestId);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(body);
  return status;
}

/**
 * A complete HTTP/1.1 error response, as a string. `connection`: its last header lines
 * (each ending in CRLF); by default it closes the connection.
 */
export function rawErrorResponse(error: HttpErrorCode, message: string, requestId: string, connection = 'connection: close\r\n'): string {
  const status = HttpErrors[error];
  const body = httpErrorBody(error, message, requestId);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nx-request-id: ${requestId}\r\n${connection}\r\n${body}`;
}

/**
 * What to answer a request that could not be parsed (llhttp's error code): 431 for
 * headers over limits.max_header_bytes, 400 otherwise, then close. Timeouts just close.
 */
export function parseErrorResponse(code: string | undefined, maxHeaderBytes: number): { close: boolean; response: string } {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'HPE_HEADERS_TIMEOUT') return { close: true, response: '' };
  if (code === 'HPE_HEADER_OVERFLOW') {
    return { close: false, response: rawErrorResponse('headers_too_large', `the request headers exceed ${maxHeaderBytes} bytes; send smaller headers or raise limits.max_header_bytes`, randomUUID()) };
  }
  return { close: false, response: rawErrorResponse('bad_request', 'the request could not be parsed as HTTP/1.1; check the client', randomUUID()) };
}
