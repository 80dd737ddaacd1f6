// Every metric portcullis exports, with its labels and help text (SPEC §8). Metric names,
// label names and label values listed here are public contract: dashboards and alerts
// depend on them. Add new ones; never rename or drop one.

/** `result` of portcullis_tls_handshakes_total */
export const HANDSHAKE_RESULTS = [
  'ok',
  'no_cert',
  'unknown_ca',
  'expired',
  'revoked',
  'revocation_unknown',
  'not_yet_valid',
  'bad_eku',
  'ca_as_leaf',
  'depth_exceeded',
  'pin_mismatch',
  'policy',
  'name_constraint',
  'invalid_cert',
  'error',
] as const;
export type HandshakeResult = (typeof HANDSHAKE_RESULTS)[number];

/** `decision` of portcullis_authz_decisions_total */
export const AUTHZ_DECISIONS = ['allow', 'deny'] as const;
export type AuthzDecision = (typeof AUTHZ_DECISIONS)[number];

/** `result` of portcullis_reloads_total */
export const RELOAD_RESULTS = ['success', 'failure'] as const;
export type ReloadResult = (typeof RELOAD_RESULTS)[number];

/** `result` of portcullis_upstream_requests_total: one attempt on one endpoint */
export const UPSTREAM_RESULTS = ['ok', '5xx', 'connect_failure', 'reset', 'timeout'] as const;
export type UpstreamResultLabel = (typeof UPSTREAM_RESULTS)[number];

/** `result` of portcullis_upstream_health_checks_total */
export const HEALTH_CHECK_RESULTS = ['ok', 'failure'] as const;

/** `role` of portcullis_certificate_expiry_timestamp_seconds */
export const CERT_ROLES = ['server', 'client_ca'] as const;

/**
 * Upper bounds (seconds) of portcullis_request_duration_seconds: 1 ms to 10 s, roughly
 * 1-2.5-5 per decade, so both a local upstream (~1 ms) and a slow one (seconds) resolve.
 */
export const REQUEST_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

export interface MetricDef {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  labels: readonly string[];
}

export const METRICS = {
  handshakes: {
    name: 'portcullis_tls_handshakes_total',
    help: 'TLS handshakes on a listener, by result (ok or why the client certificate was refused).',
    type: 'counter',
    labels: ['listener', 'result'],
  },
  requests: {
    name: 'portcullis_requests_total',
    help: 'HTTP requests answered, by listener, route and status code.',
    type: 'counter',
    labels: ['listener', 'route', 'code'],
  },
  requestDuration: {
    name: 'portcullis_request_duration_seconds',
    help: 'Time from request start to the end of the response, by listener and route.',
    type: 'histogram',
    labels: ['listener', 'route'],
  },
  authz: {
    name: 'portcullis_authz_decisions_total',
    help: 'Authorization decisions, by listener, route and decision (allow or deny).',
    type: 'counter',
    labels: ['listener', 'route', 'decision'],
  },
  activeConnections: {
    name: 'portcullis_active_connections',
    help: 'Open client connections, summed over all workers.',
    type: 'gauge',
    labels: ['listener'],
  },
  endpointHealthy: {
    name: 'portcullis_upstream_endpoint_healthy',
    help: 'Whether an upstream endpoint passes its health check (1) or not (0).',
    type: 'gauge',
    labels: ['upstream', 'endpoint'],
  },
  upstreamRequests: {
    name: 'portcullis_upstream_requests_total',
    help: 'Attempts sent to an upstream endpoint (a retry is a second attempt), by result: ok, 5xx, connect_failure, reset or timeout.',
    type: 'counter',
    labels: ['upstream', 'endpoint', 'result'],
  },
  upstreamRetries: {
    name: 'portcullis_upstream_retries_total',
    help: 'Requests sent again to another endpoint of an upstream after a connect failure or a reset before any response byte.',
    type: 'counter',
    labels: ['upstream'],
  },
  upstreamEjections: {
    name: 'portcullis_upstream_ejections_total',
    help: 'Times an endpoint was ejected by outlier detection (failures in a row), counted in each worker that ejected it.',
    type: 'counter',
    labels: ['upstream', 'endpoint'],
  },
  healthChecks: {
    name: 'portcullis_upstream_health_checks_total',
    help: 'Active health check probes (one prober per endpoint in the primary), by result: ok or failure.',
    type: 'counter',
    labels: ['upstream', 'endpoint', 'result'],
  },
  certificateExpiry: {
    name: 'portcullis_certificate_expiry_timestamp_seconds',
    help: 'Expiry (notAfter, Unix seconds) of each loaded server certificate and client CA; the soonest when several share the labels.',
    type: 'gauge',
    labels: ['role', 'file', 'subject'],
  },
  connectionErrors: {
    name: 'portcullis_connection_errors_total',
    help: 'Connections ended because serving them raised an unexpected error (logged as connection_error with the stack); the process kept serving.',
    type: 'counter',
    labels: ['listener'],
  },
  reloads: {
    name: 'portcullis_reloads_total',
    help: 'Configuration reloads, by result (success or failure).',
    type: 'counter',
    labels: ['result'],
  },
} as const satisfies Record<string, MetricDef>;
