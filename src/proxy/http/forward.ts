// Forwards one request to an HTTP/1.1 (or https) upstream endpoint through its H1Pool
// and streams the response back into a ResponseSink: data is written to the
// client as it arrives, with backpressure (the upstream read pauses while the client is
// full). Nothing is buffered whole. The sink hides whether the client speaks HTTP/1.1
// or HTTP/2, so both front ends share this one upstream path.
import type { H1Call, H1Handler } from '../../upstream/h1-pool.js';
import type { Endpoint } from '../../upstream/pool.js';
import { describeUpstreamTlsError } from '../../upstream/upstream-tls.js';
import { filterRawResponseHeaders, headerMapOf } from '../request-headers.js';
import type { HttpErrorCode } from '../../errors.js';

export interface ForwardResult {
  status: number;
  bytesOut: number;
  /** set when portcullis answered instead of the upstream */
  error?: { code: HttpErrorCode; message: string; cause: string };
  /**
   * with error: what failed, for failover and outlier detection. connect: nothing reached
   * the upstream (any request may go elsewhere); reset: the upstream closed or reset before
   * any response byte; timeout; other: not the endpoint's fault (limits, the client left).
   */
  failure?: FailureKind;
}

export type FailureKind = 'connect' | 'reset' | 'timeout' | 'other';

/** Errors the upstream layer marks as raised before the connection could carry a request. */
export function isConnectFailure(err: unknown): boolean {
  return (err as { connectFailed?: boolean } | null)?.connectFailed === true;
}

/** Which kind of failure an upstream error is (see ForwardResult.failure). */
export function failureOf(err: Error & { code?: string }, connecting: boolean): FailureKind {
  const code = err.code ?? '';
  if (code === 'PCL_UPSTREAM_OVERLOADED' || code === 'PCL_BODY_TOO_LARGE' || code === 'PCL_BAD_REQUEST_HEAD') return 'other';
  if (connecting || code === 'PCL_UPSTREAM_CONNECT_TIMEOUT') return 'connect';
  if (code === 'PCL_UPSTREAM_TIMEOUT') return 'timeout';
  return 'reset';
}

export type HeaderMap = Record<string, string | string[]>;

/** Where a response goes: an HTTP/1.1 ServerResponse or an HTTP/2 stream. */
export interface ResponseSink {
  /** the client went away */
  readonly closed: boolean;
  readonly headersSent: boolean;
  readonly status: number;
  /**
   * headers: a map, or [name, value, ...] as the HTTP/1.1 upstream sent them (already
   * filtered), which an HTTP/1.1 client gets without an intermediate map.
   * endStream: the upstream said there is no body and no trailers (gRPC trailers-only).
   * trailers: trailers may follow the body (default true); false for an HTTP/1.1
   * response with a content-length, whose end needs no trailer section.
   */
  start(status: number, headers: HeaderMap | string[], statusMessage: string | undefined, endStream: boolean, trailers?: boolean): void;
  /** flushed: called when this chunk has left the queue (written, or the write failed) */
  write(chunk: Buffer, flushed?: () => void): boolean;
  /** bytes written but not yet handed to the kernel or the TLS layer */
  queued(): number;
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
  /** headers[from..] are already rendered and checked as `head` (the identity headers) */
  trusted?: { from: number; head: string } | undefined;
  body: AsyncIterable<Buffer> | null;
  headersTimeout: number;
  bodyTimeout: number;
}

/**
 * The access log's `error` for an upstream failure: the errno or internal code, or for
 * upstream_overloaded the limit that was reached (max_connections, max_pending).
 */
export function upstreamCause(err: Error & { code?: string; limit?: string }): string {
  return err.limit ?? err.code ?? err.message;
}

/** Classifies an upstream failure into SPEC §5's 502 / 503 / 504. */
export function classifyUpstreamError(err: Error & { code?: string }, upstream: string, endpoint: string): { code: HttpErrorCode; message: string } {
  const code = err.code ?? '';
  if (code === 'PCL_BODY_TOO_LARGE') {
    return { code: 'body_too_large', message: `${err.message}; send less or raise limits.max_body_bytes` };
  }
  if (code === 'PCL_UPSTREAM_OVERLOADED') {
    // the limiter's message names the upstream, the limit reached and what to raise
    return { code: 'upstream_overloaded', message: err.message };
  }
  if (code === 'PCL_UPSTREAM_CONNECT_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not accept a connection in time; check that it is up and reachable` };
  }
  if (code === 'PCL_UPSTREAM_TIMEOUT') {
    return { code: 'upstream_timeout', message: `upstream ${upstream} (${endpoint}) did not answer in time; raise the route or upstream timeout or fix the slow upstream` };
  }
  if (code === 'ECONNREFUSED') {
    return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) refused the connection; check that it is running` };
  }
  if (code === 'PCL_UPSTREAM_CLOSED' || code === 'ECONNRESET' || code === 'EPIPE') {
    return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) closed the connection before the response was complete; check the upstream's logs` };
  }
  // a failed handshake: which names the upstream showed and which were wanted, or whose
  // certificate which side refused (upstream-tls.ts)
  const tls = describeUpstreamTlsError(err, upstream, endpoint);
  if (tls) return { code: 'upstream_unavailable', message: tls };
  return { code: 'upstream_unavailable', message: `upstream ${upstream} (${endpoint}) failed: ${code || err.message}; check the upstream's logs` };
}

/** One request's upstream handler: a class so the hot path allocates one object, not a handful of closures. */
class Forwarding implements H1Handler {
  private bytesOut = 0;
  private finished = false;
  call: H1Call | undefined;
  private readonly unsubscribe: () => void;
  private onDrain: (() => void) | undefined;
  private onFlushed: (() => void) | undefined;

  constructor(
    private readonly sink: ResponseSink,
    private readonly endpointLabel: string,
    private readonly upstreamName: string,
    private readonly done: (r: ForwardResult) => void,
  ) {
    // the client went away before the response was complete: stop the upstream request
    this.unsubscribe = sink.onAbort(() => this.call?.abort(new Error('client closed the connection')));
  }

  private finish(r: ForwardResult): void {
    if (this.finished) return;
    this.finished = true;
    this.unsubscribe();
    this.done(r);
  }

  onResponseStart(statusCode: number, headers: string[], statusMessage: string, lengthKnown: boolean): void {
    if (this.sink.closed) return;
    this.sink.start(statusCode, filterRawResponseHeaders(headers), statusMessage, false, !lengthKnown);
  }

  onResponseData(chunk: Buffer, borrowed: boolean): boolean {
    this.bytesOut += chunk.length;
    // a borrowed chunk must have left the client's queue before the upstream reads on
    const ok = borrowed ? this.sink.write(chunk, (this.onFlushed ??= () => this.sink.queued() === 0 && this.call?.resume())) : this.sink.write(chunk);
    if (ok && (!borrowed || this.sink.queued() === 0)) return true;
    if (!ok) this.sink.onceDrain((this.onDrain ??= () => this.call?.resume()));
    return false;
  }

  onResponseEnd(trailers: string[] | undefined): void {
    this.sink.end(trailers ? headerMapOf(filterRawResponseHeaders(trailers)) : undefined);
    this.finish({ status: this.sink.status, bytesOut: this.bytesOut });
  }

  onResponseError(err: Error & { code?: string }): void {
    const e = classifyUpstreamError(err, this.upstreamName, this.endpointLabel);
    // the client going away is nobody's failure
    const failure = this.sink.closed ? 'other' : failureOf(err, isConnectFailure(err));
    this.finish({ status: this.sink.headersSent ? this.sink.status : 0, bytesOut: this.bytesOut, error: { ...e, cause: upstreamCause(err) }, failure });
  }
}

export function forward(sink: ResponseSink, f: ForwardRequest, upstreamName: string, done: (r: ForwardResult) => void): void {
  const pool = f.endpoint.h1;
  if (!pool) throw new Error(`endpoint ${f.endpoint.label} has no HTTP/1.1 pool`);
  const handler = new Forwarding(sink, f.endpoint.label, upstreamName, done);
  if (sink.closed) {
    handler.onResponseError(new Error('client closed the connection'));
    return;
  }
  handler.call = pool.request(
    { method: f.method, path: f.path, headers: f.headers, trusted: f.trusted, body: f.body, headersTimeout: f.headersTimeout, bodyTimeout: f.bodyTimeout },
    handler,
  );
}
