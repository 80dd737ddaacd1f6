// Writes the JSON errors portcullis itself produces (SPEC §5).
import type { ServerResponse } from 'node:http';
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
