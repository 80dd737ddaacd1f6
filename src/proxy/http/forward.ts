// Forwards one request to an HTTP/1.1 (or https) upstream endpoint through undici's
// dispatch API and streams the response back into a ResponseSink: data is written to the
// client as it arrives, with backpressure (the upstream read pauses while the client is
// full). Nothing is buffered whole. The sink hides whether the client speaks HTTP/1.1
// or HTTP/2, so both front ends share this one upstream path.
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

export type HeaderMap = Record<string, string | string[]>;

/** Where a response goes: an HTTP/1.1 ServerResponse or an HTTP/2 stream. */
export interface ResponseSink {
  /** the client went away */
  readonly closed: boolean;
  readonly headersSent: boolean;
  readonly status: number;
  /** endStream: the upstream said there is no body and no trailers (gRPC trailers-only) */
  start(status: number, headers: HeaderMap, statusMessage: string | undefined, endStream: boolean): void;
  write(chunk: Buffer): boolean;
  onceDrain(cb: () => void): void;
  end(trailers: HeaderMap | undefined): void;
  /** calls cb if the client goes away before end(); returns an unsubscribe function */
  onAbort(cb: () => void): () => void;
}

export interface ForwardRequest {
  endpoint: Endpoint;
  method: string;
  path: string;
  headers: string[];
  body: AsyncIterable<Buffer> | null;
  headersTimeout: number;
  bodyTimeout: number;
}

/** Classifies an upstream failure into SPEC §5's 502 / 504. */
export function classifyUpstreamError(err: Error & { code?: string }, upstream: string, endpoint: string): { code: HttpErrorCode; message: string } {
  const code = err.code ?? '';
  if (code === 'PCL_BODY_TOO_LARGE') {
    return { code: 'body_too_large', message: `${err.message}; send less or raise limits.max_body_bytes` };
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'PCL_UPSTREAM_CONNECT_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not accept a connection in time; check that it is up and reachable` };
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'PCL_UPSTREAM_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not answer in time; raise the route or upstream timeout or fix the slow upstream` };
  }
  if (code === 'ECONNREFUSED') {
    return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) refused the connection; check that it is running` };
  }
  return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) failed: ${code || err.message}; check the upstream's logs` };
}

export function forward(sink: ResponseSink, f: ForwardRequest, upstreamName: string, done: (r: ForwardResult) => void): void {
  const dispatcher = f.endpoint.dispatcher;
  if (!dispatcher) throw new Error(`endpoint ${f.endpoint.label} has no HTTP/1.1 dispatcher`);
  let bytesOut = 0;
  let finished = false;
  let controller: Dispatcher.DispatchController | undefined;
  // the client went away before the response was complete: stop the upstream request
  const unsubscribe = sink.onAbort(() => controller?.abort(new Error('client closed the connection')));
  const finish = (r: ForwardResult) => {
    if (finished) return;
    finished = true;
    unsubscribe();
    done(r);
  };
  const onDrain = () => controller?.resume();

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      controller = c;
      if (sink.closed) c.abort(new Error('client closed the connection'));
    },
    onResponseStart(_c, statusCode, headers, statusMessage) {
      if (sink.closed) return;
      sink.start(statusCode, filterResponseHeaders(headers as Record<string, string | string[] | undefined>), statusMessage, false);
    },
    onResponseData(c, chunk) {
      bytesOut += chunk.length;
      if (!sink.write(chunk)) {
        c.pause();
        sink.onceDrain(onDrain);
      }
    },
    onResponseEnd(_c, trailers) {
      const t = trailers && Object.keys(trailers).length > 0 ? filterResponseHeaders(trailers as Record<string, string | string[] | undefined>) : undefined;
      sink.end(t);
      finish({ status: sink.status, bytesOut });
    },
    onResponseError(_c, err) {
      const e = classifyUpstreamError(err as Error & { code?: string }, upstreamName, f.endpoint.label);
      finish({ status: sink.headersSent ? sink.status : 0, bytesOut, error: { ...e, cause: (err as Error & { code?: string }).code ?? err.message } });
    },
  };
  dispatcher.dispatch(
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
