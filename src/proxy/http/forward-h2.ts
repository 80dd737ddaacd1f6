// Forwards one request over HTTP/2 to an h2c or https (ALPN h2) upstream and streams the
// response back into a ResponseSink. This is the gRPC path: request and response bodies
// stream independently (bidi calls), trailers (grpc-status) are passed through, and a
// trailers-only response (HEADERS with END_STREAM) stays trailers-only for the client.
// The stream may have to wait for a connection slot (upstreams.<name>.limits); a client
// that goes away meanwhile leaves the queue.
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { Readable } from 'node:stream';
import type { Endpoint } from '../../upstream/pool.js';
import type { H2StreamRequest } from '../../upstream/h2-session-pool.js';
import { classifyUpstreamError, failureOf, upstreamCause, type ForwardResult, type HeaderMap, type ResponseSink } from './forward.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** Connection-specific fields that HTTP/2 forbids (RFC 9113 §8.2.2). */
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'te', 'http2-settings']);

export interface H2ForwardRequest {
  endpoint: Endpoint;
  method: string;
  path: string;
  /** [name, value, ...] from the pipeline (Host becomes :authority) */
  headers: string[];
  body: AsyncIterable<Buffer> | null;
  /** pass `te: trailers` on (gRPC requires it) */
  teTrailers: boolean;
  /** time allowed until the response headers; 0 = none */
  headersTimeout: number;
  /** idle time allowed between body chunks; 0 = none */
  bodyTimeout: number;
  /** overall time allowed (gRPC deadline); 0 = none */
  deadline: number;
}

class UpstreamTimeout extends Error {
  code = 'PCL_UPSTREAM_TIMEOUT';
}

function requestHeaders(f: H2ForwardRequest): OutgoingHttpHeaders {
  const secure = f.endpoint.url.protocol === 'https:';
  const out: OutgoingHttpHeaders = { ':method': f.method, ':path': f.path, ':scheme': secure ? 'https' : 'http' };
  let authority: string | undefined;
  const h = f.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (name === 'host') {
      authority ??= h[i + 1]!;
      continue;
    }
    if (H2_FORBIDDEN.has(name)) continue;
    const prev = out[name];
    if (prev === undefined) out[name] = h[i + 1]!;
    else if (Array.isArray(prev)) prev.push(h[i + 1]!);
    else out[name] = [String(prev), h[i + 1]!];
  }
  out[':authority'] = authority || f.endpoint.authority;
  if (f.teTrailers) out['te'] = 'trailers';
  return out;
}

/** Response headers or trailers from an h2 upstream, without pseudo and hop-by-hop fields. */
function responseFields(h: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const k in h) {
    if (k.charCodeAt(0) === 0x3a || H2_FORBIDDEN.has(k)) continue;
    const v = h[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export function forwardH2(sink: ResponseSink, f: H2ForwardRequest, upstreamName: string, done: (r: ForwardResult) => void): void {
  const pool = f.endpoint.h2!;
  let bytesOut = 0;
  let finished = false;
  let trailers: HeaderMap | undefined;
  const timers: NodeJS.Timeout[] = [];
  let stream: http2.ClientHttp2Stream | undefined;
  /** the session carrying the stream has connected: something may have reached the upstream */
  let sessionUp = false;
  const finish = (r: ForwardResult) => {
    if (finished) return;
    finished = true;
    for (const t of timers) clearTimeout(t);
    unsubscribe();
    done(r);
  };
  const fail = (err: Error & { code?: string; cause?: unknown }) => {
    if (finished) return;
    // a session-level failure (refused, TLS, connect timeout) reaches the stream as a cancel
    const root = (err.code === 'ERR_HTTP2_STREAM_CANCEL' && err.cause instanceof Error ? err.cause : err) as Error & { code?: string };
    const e = classifyUpstreamError(root, upstreamName, f.endpoint.label);
    if (stream && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
    pending?.cancel();
    const failure = sink.closed ? 'other' : failureOf(root, !sessionUp && root.code !== 'PCL_UPSTREAM_TIMEOUT' && root.code !== 'PCL_UPSTREAM_OVERLOADED');
    finish({ status: sink.headersSent ? sink.status : 0, bytesOut, error: { ...e, cause: upstreamCause(root) }, failure });
  };
  // the client went away (a reset stream, a closed connection): stop the upstream stream,
  // or leave the queue for a connection, at once
  const unsubscribe = sink.onAbort(() => {
    if (finished) return;
    if (stream) {
      if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
    } else fail(new Error('client closed the connection'));
  });
  if (f.headersTimeout > 0) {
    // counts from now: time spent waiting for a connection slot is part of it
    timers.push(setTimeout(() => fail(new UpstreamTimeout(`no response headers within ${f.headersTimeout} ms`)), f.headersTimeout));
  }
  if (f.deadline > 0) timers.push(setTimeout(() => fail(new UpstreamTimeout(`deadline of ${f.deadline} ms exceeded`)), f.deadline));
  let pending: H2StreamRequest | undefined;
  pending = pool.request(requestHeaders(f), f.body === null, (err, s) => {
    if (err || !s) return fail(err ?? new Error('no stream'));
    if (finished) {
      s.close(NGHTTP2_CANCEL);
      return;
    }
    stream = s;
    attach(s);
  });

  /** the response is gRPC and its HEADERS did not end the stream: a grpc-status trailer must follow */
  let grpcOpen = false;

  function attach(stream: http2.ClientHttp2Stream): void {
    if (f.bodyTimeout > 0) stream.setTimeout(f.bodyTimeout, () => fail(new UpstreamTimeout(`idle for ${f.bodyTimeout} ms`)));
    const session = stream.session;
    sessionUp = !!session && !session.connecting;
    const sendBody = () => {
      sessionUp = true;
      if (f.body === null || finished) return;
      const src = f.body instanceof Readable ? f.body : Readable.from(f.body, { objectMode: false });
      // pipe (not pipeline): an upstream failure must not destroy the client's stream, the
      // client still gets an answer (a gRPC status) after it
      src.pipe(stream);
      src.once('error', (err) => fail(err));
      stream.once('close', () => src.unpipe(stream));
    };
    // the body waits for the connection: if it cannot be made, the body is still unread
    // and the request can go to another endpoint whole
    if (sessionUp || !session) sendBody();
    else session.once('connect', sendBody);
    stream.on('response', (headers, flags) => {
      if (finished) return;
      if (f.headersTimeout > 0) clearTimeout(timers[0]!);
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      grpcOpen = !endStream && String(headers['content-type'] ?? '').startsWith('application/grpc');
      sink.start(Number(headers[':status']), responseFields(headers), undefined, endStream);
    });
    stream.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
      if (!sink.write(chunk)) {
        stream.pause();
        sink.onceDrain(() => stream.resume());
      }
    });
    stream.on('trailers', (t) => (trailers = responseFields(t)));
    stream.on('end', () => {
      if (finished) return;
      if (!sink.headersSent) {
        fail(new Error('the upstream ended the stream without a response'));
        return;
      }
      // a gRPC response ends with a grpc-status trailer; without one the upstream went away
      // mid-call (a killed server's session closing ends its streams): the client must get
      // UNAVAILABLE, not a stream that ends without a status (grpc-js: INTERNAL)
      if (grpcOpen && trailers?.['grpc-status'] === undefined) {
        fail(Object.assign(new Error('the upstream ended the gRPC call without a status (it went away mid-call)'), { code: 'PCL_UPSTREAM_CLOSED' }));
        return;
      }
      sink.end(trailers);
      finish({ status: sink.status, bytesOut });
    });
    stream.on('error', (err) => fail(err));
    stream.on('close', () => {
      if (finished) return;
      const e = new Error(`the upstream reset the stream (HTTP/2 error code ${stream.rstCode ?? 'unknown'})`) as Error & { code?: string };
      e.code = `H2_RST_${stream.rstCode ?? 0}`;
      fail(e);
    });
  }
}
