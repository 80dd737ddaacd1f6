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

/** One request's undici handler: a class so the hot path allocates one object, not a handful of closures. */
class Forwarding implements Dispatcher.DispatchHandler {
  private bytesOut = 0;
  private finished = false;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly unsubscribe: () => void;
  private onDrain: (() => void) | undefined;

  constructor(
    private readonly sink: ResponseSink,
    private readonly endpointLabel: string,
    private readonly upstreamName: string,
    private readonly done: (r: ForwardResult) => void,
  ) {
    // the client went away before the response was complete: stop the upstream request
    this.unsubscribe = sink.onAbort(() => this.controller?.abort(new Error('client closed the connection')));
  }

  private finish(r: ForwardResult): void {
    if (this.finished) return;
    this.finished = true;
    this.unsubscribe();
    this.done(r);
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.controller = c;
    if (this.sink.closed) c.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (this.sink.closed) return;
    this.sink.start(statusCode, filterResponseHeaders(headers), statusMessage, false);
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytesOut += chunk.length;
    if (!this.sink.write(chunk)) {
      c.pause();
      this.sink.onceDrain((this.onDrain ??= () => this.controller?.resume()));
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    const t = trailers && Object.keys(trailers).length > 0 ? filterResponseHeaders(trailers) : undefined;
    this.sink.end(t);
    this.finish({ status: this.sink.status, bytesOut: this.bytesOut });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    const e = classifyUpstreamError(err as Error & { code?: string }, this.upstreamName, this.endpointLabel);
    this.finish({ status: this.sink.headersSent ? this.sink.status : 0, bytesOut: this.bytesOut, error: { ...e, cause: (err as Error & { code?: string }).code ?? err.message } });
  }
}

export function forward(sink: ResponseSink, f: ForwardRequest, upstreamName: string, done: (r: ForwardResult) => void): void {
  const dispatcher = f.endpoint.dispatcher;
  if (!dispatcher) throw new Error(`endpoint ${f.endpoint.label} has no HTTP/1.1 dispatcher`);
  dispatcher.dispatch(
    {
      path: f.path,
      method: f.method as Dispatcher.HttpMethod,
      headers: f.headers,
      body: f.body as Dispatcher.DispatchOptions['body'],
      headersTimeout: f.headersTimeout,
      bodyTimeout: f.bodyTimeout,
    },
    new Forwarding(sink, f.endpoint.label, upstreamName, done),
  );
}
