// Picks the upstream endpoint and the wire for an admitted request: H1Pool (HTTP/1.1,
// over http or https) for ordinary requests, node:http2 sessions for h2c endpoints and for every
// gRPC call (gRPC needs HTTP/2 trailers end to end, which HTTP/1.1 cannot carry).
// Every request holds one of its upstream's in-flight slots (limits.max_requests) until
// it is done or its client goes away, whichever comes first: a reset HTTP/2 stream gives
// its slot back at once, not when the upstream side has finished tearing down.
import type { Admission } from './pipeline.js';
import { forward, type ForwardResult, type ResponseSink } from './forward.js';
import { forwardH2 } from './forward-h2.js';

export interface DispatchOptions {
  method: string;
  body: AsyncIterable<Buffer> | null;
  /** the request is a gRPC call (content-type application/grpc*) */
  grpc: boolean;
  /** the client's grpc-timeout in ms; 0 = none */
  grpcTimeout: number;
}

export function dispatchUpstream(sink: ResponseSink, adm: Admission, o: DispatchOptions, done: (r: ForwardResult) => void): void {
  const route = adm.route;
  const limiter = route.upstream.limiter;
  if (!limiter.startRequest()) {
    const e = limiter.requestsRefusal();
    done({ status: 0, bytesOut: 0, error: { code: 'upstream_overloaded', message: e.message, cause: e.limit } });
    return;
  }
  let holding = true;
  const endRequest = () => {
    if (!holding) return;
    holding = false;
    limiter.endRequest();
  };
  const unsubscribe = sink.onAbort(endRequest);
  const finished = done;
  done = (r) => {
    endRequest();
    unsubscribe();
    finished(r);
  };
  const endpoint = route.upstream.pick();
  const headersTimeout = route.timeout ?? route.upstream.requestTimeout;
  if (endpoint.h2 && (o.grpc || !endpoint.h1)) {
    // gRPC streams are long-lived by design: the call's deadline (grpc-timeout, capped by
    // the route's timeout) bounds them, not the upstream's request/idle timeouts
    const deadline = o.grpc ? minPositive(o.grpcTimeout, route.timeout ?? 0) : 0;
    forwardH2(
      sink,
      {
        endpoint,
        method: o.method,
        path: adm.pathWithQuery,
        headers: adm.headers,
        body: o.body,
        teTrailers: adm.teTrailers,
        headersTimeout: o.grpc ? 0 : headersTimeout,
        bodyTimeout: o.grpc ? 0 : route.upstream.idleTimeout,
        deadline,
      },
      route.upstreamName,
      done,
    );
    return;
  }
  if (o.grpc) {
    done({
      status: 0,
      bytesOut: 0,
      error: {
        code: 'upstream_unavailable',
        message: `upstream ${route.upstreamName} (${endpoint.label}) is HTTP/1.1 and cannot carry gRPC; declare it as h2c:// or https:// (ALPN h2)`,
        cause: 'grpc_needs_h2',
      },
    });
    return;
  }
  forward(
    sink,
    {
      endpoint,
      method: o.method,
      path: adm.pathWithQuery,
      headers: adm.headers,
      trusted: adm.identityHead === undefined ? undefined : { from: adm.identityFrom, head: adm.identityHead },
      body: o.body,
      headersTimeout,
      bodyTimeout: route.upstream.idleTimeout,
    },
    route.upstreamName,
    done,
  );
}

function minPositive(a: number, b: number): number {
  if (a <= 0) return b;
  if (b <= 0) return a;
  return Math.min(a, b);
}
