// Picks the upstream endpoint and the wire for an admitted request: H1Pool (HTTP/1.1,
// over http or https) for ordinary requests, node:http2 sessions for h2c endpoints and for every
// gRPC call (gRPC needs HTTP/2 trailers end to end, which HTTP/1.1 cannot carry).
// Every request holds one of its upstream's in-flight slots (limits.max_requests) until
// it is done or its client goes away, whichever comes first: a reset HTTP/2 stream gives
// its slot back at once, not when the upstream side has finished tearing down.
//
// Failover and retries (docs/upstreams.md), at most `retries` more attempts, each on an
// endpoint not tried yet:
//   - a connect failure (refused, timeout, TLS failure: nothing reached the upstream) goes
//     to the next endpoint for any method; the body is still unread;
//   - a reset before any response byte is retried only for idempotent requests without a
//     body, and only within the retry budget (retries in flight <= retry_budget.percent of
//     requests in flight, at least min_concurrent), so an outage cannot multiply load;
//   - nothing is retried once a response byte has gone to the client.
// No available endpoint at all: 503 no_healthy_upstream at once, naming what is down and why.
import type { Admission } from './pipeline.js';
import { forward, type ForwardResult, type ResponseSink } from './forward.js';
import { forwardH2 } from './forward-h2.js';
import type { Endpoint } from '../../upstream/pool.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

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
  const up = route.upstream;
  const limiter = up.limiter;
  const balancer = up.balancer;
  const endpoint = balancer.pick(up.hashKey(adm.clientKey, adm.headers));
  if (!endpoint) {
    done({ status: 0, bytesOut: 0, error: { code: 'no_healthy_upstream', message: `upstream ${route.upstreamName} has no healthy endpoint: ${balancer.downReason()}; start or fix an endpoint`, cause: 'no_healthy_upstream' } });
    return;
  }
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
  const tried: Endpoint[] = [];
  const replayable = o.body === null && IDEMPOTENT.has(o.method);
  let retrying = false;
  const attempt = (ep: Endpoint) => {
    tried.push(ep);
    balancer.begin(ep);
    send(sink, adm, o, ep, (r) => {
      balancer.end(ep);
      if (retrying) {
        retrying = false;
        balancer.retryDone();
      }
      if (!r.error) {
        if (r.status >= 500) balancer.failed(ep, '5xx', `answered ${r.status}`);
        else balancer.succeeded(ep);
        return done(r);
      }
      const f = r.failure ?? 'other';
      if (f !== 'other') balancer.failed(ep, f === 'connect' ? 'connect_failure' : f, r.error.cause);
      const again =
        !sink.closed && !sink.headersSent && tried.length <= balancer.retries && (f === 'connect' || (f === 'reset' && replayable));
      if (again) {
        const next = balancer.pick(undefined, tried);
        // a connect failure costs the upstream nothing; a resent request does, so it takes budget
        if (next && (f === 'connect' || (retrying = balancer.takeRetry()))) {
          if (f === 'connect') balancer.countRetry();
          return attempt(next);
        }
      }
      done(r);
    });
  };
  attempt(endpoint);
}

function send(sink: ResponseSink, adm: Admission, o: DispatchOptions, endpoint: Endpoint, done: (r: ForwardResult) => void): void {
  const route = adm.route;
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
