// Forwards one request to an upstream endpoint through undici's dispatch API and streams
// the response back: data is written to the client as it arrives, with backpressure
// (the upstream read pauses while the client socket is full). Nothing is buffered whole.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Endpoint } from '../../upstream/pool.js';
import { filterResponseHeaders } from '../request-headers.js';
import type { HttpErrorCode } from '../../errors.js';

export interface ForwardResult {
  status: number;
  bytesOut: number;
  /** set when portcullis answered instead of the upstream */
  error?: { code: HttpErrorCode; message: string; cause: string };
}

export interface ForwardRequest {
  endpoint: Endpoint;
  method: string;
  path: string;
  headers: string[];
  body: AsyncIterable<Buffer> | IncomingMessage | null;
  headersTimeout: number;
  bodyTimeout: number;
}

/** Classifies an upstream failure into SPEC §5's 502 / 504. */
export function classifyUpstreamError(err: Error & { code?: string }, upstream: string, endpoint: string): { code: HttpErrorCode; message: string } {
  const code = err.code ?? '';
  if (code === 'PCL_BODY_TOO_LARGE') {
    return { code: 'body_too_large', message: `${err.message}; send less or raise limits.max_body_bytes` };
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not accept a connection in time; check that it is up and reachable` };
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not answer in time; raise the route or upstream timeout or fix the slow upstream` };
  }
  if (code === 'ECONNREFUSED') {
    return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) refused the connection; check that it is running` };
  }
  return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) failed: ${code || err.message}; check the upstream's logs` };
}

export function forward(req: IncomingMessage, res: ServerResponse, f: ForwardRequest, upstreamName: string, done: (r: ForwardResult) => void): void {
  let bytesOut = 0;
  let finished = false;
  let controller: Dispatcher.DispatchController | undefined;
  const finish = (r: ForwardResult) => {
    if (finished) return;
    finished = true;
    res.off('close', onClientClose);
    done(r);
  };
  const onClientClose = () => {
    // the client went away before the response was complete: stop the upstream request
    if (!res.writableFinished) controller?.abort(new Error('client closed the connection'));
  };
  res.on('close', onClientClose);
  const onDrain = () => controller?.resume();

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      controller = c;
      if (res.destroyed) c.abort(new Error('client closed the connection'));
    },
    onResponseStart(_c, statusCode, headers, statusMessage) {
      if (res.destroyed) return;
      res.statusCode = statusCode;
      if (statusMessage) res.statusMessage = statusMessage;
      const h = filterResponseHeaders(headers as Record<string, string | string[] | undefined>);
      for (const k in h) res.setHeader(k, h[k]!);
    },
    onResponseData(c, chunk) {
      bytesOut += chunk.length;
      if (!res.write(chunk)) {
        c.pause();
        res.once('drain', onDrain);
      }
    },
    onResponseEnd(_c, trailers) {
      if (trailers && Object.keys(trailers).length > 0) res.addTrailers(trailers as Record<string, string>);
      res.end();
      finish({ status: res.statusCode, bytesOut });
    },
    onResponseError(_c, err) {
      const e = classifyUpstreamError(err as Error & { code?: string }, upstreamName, f.endpoint.label);
      finish({ status: res.headersSent ? res.statusCode : 0, bytesOut, error: { ...e, cause: (err as Error & { code?: string }).code ?? err.message } });
    },
  };
  f.endpoint.dispatcher.dispatch(
    {
      path: f.path,
      method: f.method as Dispatcher.HttpMethod,
      headers: f.headers,
      body: f.body as Dispatcher.DispatchOptions['body'],
      headersTimeout: f.headersTimeout,
      bodyTimeout: f.bodyTimeout,
    },
    handler,
  );
}
