// Maps OpenSSL's certificate verification codes (as Node reports them) to portcullis'
// stable handshake results (the `result` label of portcullis_tls_handshakes_total, the
// reason in X-Client-Verify: FAILED:<reason>, and the 403 message).

/**
 * SPEC §8 result values, plus ca_as_leaf, depth_exceeded and revocation_unknown (added,
 * never renamed). revocation_unknown: the revocation status could not be established
 * (no CRL for a CA of the chain, OCSP responder unreachable or answering "unknown" in
 * hard mode); `revoked` is kept for a CRL or OCSP response that says so.
 */
export type VerifyReason =
  | 'no_cert'
  | 'unknown_ca'
  | 'expired'
  | 'not_yet_valid'
  | 'revoked'
  | 'revocation_unknown'
  | 'bad_eku'
  | 'ca_as_leaf'
  | 'depth_exceeded'
  | 'pin_mismatch'
  | 'policy'
  /** a name in the chain is outside what a CA's name constraints permit (or they are malformed) */
  | 'name_constraint'
  /** a certificate of the chain breaks RFC 5280 (unprocessed critical extension, v1 or unmarked CA, ...) */
  | 'invalid_cert'
  | 'error';

export type HandshakeResult = 'ok' | VerifyReason;

export const HANDSHAKE_RESULTS: readonly HandshakeResult[] = [
  'ok', 'no_cert', 'unknown_ca', 'expired', 'not_yet_valid', 'revoked', 'revocation_unknown',
  'bad_eku', 'ca_as_leaf', 'depth_exceeded', 'pin_mismatch', 'policy', 'name_constraint', 'invalid_cert', 'error',
];

const OPENSSL_TO_REASON: Record<string, VerifyReason> = {
  UNABLE_TO_GET_ISSUER_CERT: 'unknown_ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown_ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown_ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown_ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown_ca',
  CERT_UNTRUSTED: 'unknown_ca',
  CERT_SIGNATURE_FAILURE: 'unknown_ca',
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: 'unknown_ca',
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 'unknown_ca',
  INVALID_CA: 'unknown_ca',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  CERT_REVOKED: 'revoked',
  // only reachable if CRLs are ever handed to OpenSSL again (revocation.ts checks them now)
  UNABLE_TO_GET_CRL: 'revocation_unknown',
  UNABLE_TO_GET_CRL_ISSUER: 'revocation_unknown',
  CRL_HAS_EXPIRED: 'revocation_unknown',
  CRL_NOT_YET_VALID: 'revocation_unknown',
  CRL_SIGNATURE_FAILURE: 'revocation_unknown',
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 'revocation_unknown',
  INVALID_PURPOSE: 'bad_eku',
  CERT_REJECTED: 'bad_eku',
  CERT_CHAIN_TOO_LONG: 'depth_exceeded',
  PATH_LENGTH_EXCEEDED: 'depth_exceeded',
  // Node names only some X509_V_ERR_* codes; for the others its `code` is OpenSSL's text
  // (X509_verify_cert_error_string), matched here in lower case
  'permitted subtree violation': 'name_constraint',
  'excluded subtree violation': 'name_constraint',
  'name constraints minimum and maximum not supported': 'name_constraint',
  'unsupported name constraint type': 'name_constraint',
  'unsupported or invalid name constraint syntax': 'name_constraint',
  'unsupported or invalid name syntax': 'name_constraint',
  'issuer has name constraints but leaf has no sans': 'name_constraint',
  'unhandled critical extension': 'invalid_cert',
  'invalid or inconsistent certificate extension': 'invalid_cert',
  'invalid or inconsistent certificate policy extension': 'invalid_cert',
  'no explicit policy': 'invalid_cert',
  'invalid non-ca certificate (has ca markings)': 'invalid_cert',
  'format error in certificate\'s notbefore field': 'invalid_cert',
  'format error in certificate\'s notafter field': 'invalid_cert',
  'certificate public key has explicit ecc parameters': 'invalid_cert',
  'authority key identifier marked critical': 'invalid_cert',
  'subject key identifier marked critical': 'invalid_cert',
  'missing authority key identifier': 'invalid_cert',
  'missing subject key identifier': 'invalid_cert',
  'basic constraints of ca cert not marked critical': 'invalid_cert',
  'key usage does not include certificate signing': 'unknown_ca',
  'ee certificate key too weak': 'policy',
  'ca certificate key too weak': 'policy',
  'ca signature digest algorithm too weak': 'policy',
};

export function reasonFromOpenSsl(code: string): VerifyReason {
  return OPENSSL_TO_REASON[code] ?? OPENSSL_TO_REASON[code.toLowerCase()] ?? 'error';
}

/** One sentence a person can act on, for a verification failure. */
export function reasonMessage(reason: VerifyReason, detail?: string): string {
  const d = detail ? ` (${detail})` : '';
  switch (reason) {
    case 'no_cert':
      return 'no client certificate was sent; present a certificate issued by a CA this listener trusts';
    case 'unknown_ca':
      return `the client certificate is not signed by a CA this listener trusts${d}; use a certificate from a trusted CA or add its CA (and send any intermediates)`;
    case 'expired':
      return `the client certificate has expired${d}; issue a new certificate`;
    case 'not_yet_valid':
      return `the client certificate is not valid yet${d}; check the clocks or wait until its notBefore date`;
    case 'revoked':
      return `the client certificate has been revoked${d}; issue a new certificate`;
    case 'revocation_unknown':
      return `the revocation status of the client certificate could not be established${d}; check the CRL files and the OCSP responder`;
    case 'bad_eku':
      return `the client certificate is not allowed for client authentication${d}; issue it with the clientAuth extended key usage`;
    case 'ca_as_leaf':
      return `a CA certificate was presented as a client certificate${d}; present a leaf certificate issued by the CA`;
    case 'depth_exceeded':
      return `the client certificate chain has more intermediates than verify_depth allows${d}; shorten the chain or raise verify_depth`;
    case 'pin_mismatch':
      return `the client certificate does not match any pinned fingerprint${d}; use a pinned certificate or update the pins`;
    case 'policy':
      return `the client certificate violates the certificate policy${d}; issue one that meets the policy`;
    case 'name_constraint':
      return `the client certificate chain breaks a CA's name constraints${d}; issue names the CA is allowed to issue, or use a CA whose constraints cover them`;
    case 'invalid_cert':
      return `a certificate of the client chain breaks RFC 5280${d}; have the CA re-issue it (portcullis cert verify names the certificate and the rule)`;
    case 'error':
      return `the client certificate could not be verified${d}; run \`portcullis cert verify\` on it for details`;
  }
}
