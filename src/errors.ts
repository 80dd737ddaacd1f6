// The one catalogue of portcullis error codes. Every error a user can see has a stable
// code here and a message that is one sentence naming the cause and the fix.
// Codes are public contract: add new ones, never rename or reuse one.

export const ErrorCodes = {
  // configuration and files (start-up, check, reload)
  CONFIG_INVALID: 'PCL_ERR_CONFIG_INVALID',
  CONFIG_NOT_FOUND: 'PCL_ERR_CONFIG_NOT_FOUND',
  CONFIG_PARSE: 'PCL_ERR_CONFIG_PARSE',
  FILE_NOT_FOUND: 'PCL_ERR_FILE_NOT_FOUND',
  FILE_UNREADABLE: 'PCL_ERR_FILE_UNREADABLE',
  FILE_EMPTY: 'PCL_ERR_FILE_EMPTY',
  CERT_PARSE: 'PCL_ERR_CERT_PARSE',
  KEY_PARSE: 'PCL_ERR_KEY_PARSE',
  KEY_MISMATCH: 'PCL_ERR_KEY_MISMATCH',
  CA_NOT_CA: 'PCL_ERR_CA_NOT_CA',
  CRL_PARSE: 'PCL_ERR_CRL_PARSE',
  LISTEN_FAILED: 'PCL_ERR_LISTEN_FAILED',
  RUNTIME_UNSUPPORTED: 'PCL_ERR_RUNTIME_UNSUPPORTED',
  TICKET_KEY_INVALID: 'PCL_ERR_TICKET_KEY_INVALID',
  // PKI toolkit (ca / cert / crl / doctor)
  CA_DIR_INVALID: 'PCL_ERR_CA_DIR_INVALID',
  CA_EXISTS: 'PCL_ERR_CA_EXISTS',
  KEY_TYPE_UNKNOWN: 'PCL_ERR_KEY_TYPE_UNKNOWN',
  CSR_INVALID: 'PCL_ERR_CSR_INVALID',
  SERIAL_UNKNOWN: 'PCL_ERR_SERIAL_UNKNOWN',
  PEER_UNREACHABLE: 'PCL_ERR_PEER_UNREACHABLE',
  USAGE: 'PCL_ERR_USAGE',
  // admin / reload
  RELOAD_FAILED: 'PCL_ERR_RELOAD_FAILED',
  ADMIN_UNREACHABLE: 'PCL_ERR_ADMIN_UNREACHABLE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** An error a person will read: `message` is one sentence naming the cause and the fix. */
export class PortcullisError extends Error {
  readonly code: ErrorCode;
  /** file or config path the error is about, when there is one */
  readonly path: string | undefined;
  /** process exit code the CLI uses for it (1 = failure, 2 = usage) */
  readonly exitCode: number;
  constructor(code: ErrorCode, message: string, opts: { path?: string; cause?: unknown; exitCode?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PortcullisError';
    this.code = code;
    this.path = opts.path;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** Several errors reported at once (config validation reports every problem, not the first). */
export class PortcullisErrors extends Error {
  readonly errors: PortcullisError[];
  readonly code: ErrorCode;
  /** the config file the errors are about, when there is one */
  readonly file: string | undefined;
  constructor(errors: PortcullisError[], file?: string) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'PortcullisErrors';
    this.errors = errors;
    this.code = errors[0]?.code ?? ErrorCodes.CONFIG_INVALID;
    this.file = file;
  }
}

// ---------------------------------------------------------------------------------------
// HTTP errors that portcullis itself produces (SPEC §5). Body:
// {"error":"<code>","message":"<one sentence>","request_id":"..."}

export const HttpErrors = {
  bad_request: 400,
  client_certificate_required: 401,
  client_certificate_invalid: 403,
  forbidden: 403,
  no_route: 404,
  body_too_large: 413,
  headers_too_large: 431,
  misdirected_request: 421,
  upstream_unavailable: 502,
  no_healthy_upstream: 503,
  /** upstreams.<name>.limits reached: connections, waiting requests or requests in flight */
  upstream_overloaded: 503,
  upstream_timeout: 504,
} as const;

export type HttpErrorCode = keyof typeof HttpErrors;

export function httpErrorBody(error: HttpErrorCode, message: string, requestId: string): string {
  return JSON.stringify({ error, message, request_id: requestId });
}

// ---------------------------------------------------------------------------------------
// Warnings: what `portcullis check` reports about a config that works but will hurt
// (exit 0; `check --strict` makes them errors). Stable like the error codes above.

export const WarningCodes = {
  /** a served certificate's issuer is neither in its file nor a root portcullis knows */
  CHAIN_INCOMPLETE: 'PCL_WARN_CHAIN_INCOMPLETE',
  /** a trusted client CA has no CRL while CRLs are checked: its clients are refused */
  CRL_LOCKOUT: 'PCL_WARN_CRL_LOCKOUT',
  /** a CRL is past its nextUpdate */
  CRL_EXPIRED: 'PCL_WARN_CRL_EXPIRED',
  /** a CRL RFC 5280 says not to use (no cRLNumber in crl_mode chain, a critical extension, an issuer without cRLSign) */
  CRL_UNUSABLE: 'PCL_WARN_CRL_UNUSABLE',
  /** a certificate expires within 30 days, has expired, or is not valid yet */
  CERT_EXPIRING: 'PCL_WARN_CERT_EXPIRING',
  /** a private key file is readable by its group or by others */
  KEY_PERMISSIONS: 'PCL_WARN_KEY_PERMISSIONS',
  /** client_auth: optional, but nothing requires a certificate */
  CLIENT_AUTH_UNENFORCED: 'PCL_WARN_CLIENT_AUTH_UNENFORCED',
  /** a key the schema accepts but the proxy does not act on yet */
  NOT_IMPLEMENTED: 'PCL_WARN_NOT_IMPLEMENTED',
} as const;

export type WarningCode = (typeof WarningCodes)[keyof typeof WarningCodes];
