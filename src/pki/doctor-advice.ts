// Turns what a failed (or refused) mTLS connection looked like from the client side into a
// cause and a fix in plain language: TLS alerts, silent closes, and the HTTP answers that
// servers which verify in the HTTP layer give (nginx's 400 pages, portcullis' JSON errors).
// Pure: `portcullis doctor` gathers the facts, this file explains them.

export interface Advice {
  /** stable short code, e.g. certificate_required, unknown_ca, closed_without_alert */
  code: string;
  cause: string;
  fix: string;
}

export interface ClientCertFacts {
  /** whether --cert/--key were given */
  sent: boolean;
  /** RFC 4514 issuer and subject of our certificate, when we have one */
  issuer?: string;
  subject?: string;
  notAfter?: string;
  /** problems our own certificate has regardless of the server (expired, wrong EKU, ...) */
  localProblems?: { code: string; message: string; fix?: string }[];
}

/** The TLS alert name inside a Node/OpenSSL error, e.g. ERR_SSL_TLSV1_ALERT_UNKNOWN_CA -> unknown_ca. */
export function alertFromError(err: { code?: string; message?: string } | undefined): string | undefined {
  if (!err) return undefined;
  const m = /ALERT_([A-Z0-9_]+)$/.exec(err.code ?? '');
  if (m) return m[1]!.toLowerCase();
  const n = /alert (?:number )?(\d+)/i.exec(err.message ?? '');
  if (n) return ALERT_NUMBERS[Number(n[1])];
  const t = /(?:sslv3|tlsv1|tlsv13) alert ([a-z ]+)/i.exec(err.message ?? '');
  return t ? t[1]!.trim().replace(/ /g, '_').toLowerCase() : undefined;
}

const ALERT_NUMBERS: Record<number, string> = {
  10: 'unexpected_message',
  20: 'bad_record_mac',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  90: 'user_canceled',
  109: 'missing_extension',
  112: 'unrecognized_name',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

function localHint(c: ClientCertFacts): string {
  const p = c.localProblems ?? [];
  return p.length ? ` Your certificate itself has a problem: ${p.map((x) => x.message).join('; ')}.` : '';
}

/** Explains a TLS alert the server sent us. */
export function adviseAlert(alert: string, c: ClientCertFacts): Advice {
  const issuer = c.issuer ? `"${c.issuer}"` : 'the CA that signed your certificate';
  switch (alert) {
    case 'certificate_required':
      return c.sent
        ? { code: alert, cause: 'the server requires a client certificate but received none.', fix: 'check that --cert holds a certificate (not only a chain of CAs) and --key its key.' }
        : { code: alert, cause: 'the server requires a client certificate.', fix: 'pass --cert and --key with a client certificate from a CA the server trusts.' };
    case 'handshake_failure':
      return c.sent
        ? {
            code: alert,
            cause: `the server aborted the handshake: no TLS version, cipher or signature algorithm in common, or it refused your certificate.${localHint(c)}`,
            fix: 'compare the server\'s TLS settings (versions, ciphers, key type) with the client\'s; check the certificate with portcullis cert verify --ca <the server\'s client CA>.',
          }
        : {
            code: alert,
            cause: 'the server aborted the handshake; with TLS 1.2 this is how a server says it requires a client certificate (or it shares no cipher/version with us).',
            fix: 'pass --cert and --key with a client certificate from a CA the server trusts.',
          };
    case 'unknown_ca':
      return {
        code: alert,
        cause: `the server does not trust the CA that signed your certificate: ${issuer}.`,
        fix: `add ${issuer} (its root) to the server's trusted client CAs, or use a certificate from a CA the server trusts; if ${issuer} is an intermediate, send the chain file (certificate + intermediates) as --cert.`,
      };
    case 'certificate_expired':
      return {
        code: alert,
        cause: `the server says your certificate (or one in its chain) has expired${c.notAfter ? `; yours is valid until ${c.notAfter}` : ''}.${localHint(c)}`,
        fix: 'issue a new certificate (portcullis cert issue); if yours is still valid, check the server\'s clock and the intermediates you send.',
      };
    case 'certificate_revoked':
      return { code: alert, cause: 'the server says your certificate was revoked (it is on the CRL the server uses).', fix: 'issue a new certificate and use that.' };
    case 'bad_certificate':
      return {
        code: alert,
        cause: `the server rejected your certificate as bad: typically a bad signature, a key that does not match it, or a certificate that is not meant for client authentication.${localHint(c)}`,
        fix: 'check it with portcullis cert verify --ca <the server\'s client CA> and re-issue with portcullis cert issue --type client.',
      };
    case 'unsupported_certificate':
      return {
        code: alert,
        cause: `the server cannot use your certificate for client authentication: its key usage or extended key usage excludes clientAuth, or it is a CA certificate.${localHint(c)}`,
        fix: 're-issue it as a client certificate (portcullis cert issue --type client).',
      };
    case 'certificate_unknown':
      return {
        code: alert,
        cause: `the server refused your certificate without a more specific reason.${localHint(c)}`,
        fix: 'check it with portcullis cert verify --ca <the server\'s client CA>; the server\'s log has the detail.',
      };
    case 'access_denied':
      return { code: alert, cause: 'the server verified your certificate but its policy does not let this identity in.', fix: 'ask for this identity (subject/SAN) to be allowed, or use a certificate with an allowed identity.' };
    case 'decrypt_error':
      return { code: alert, cause: 'the handshake signature did not verify: the key given with --key most likely does not belong to --cert.', fix: 'pass the key that matches the certificate.' };
    case 'protocol_version':
      return { code: alert, cause: 'the server and this client share no TLS version.', fix: 'enable TLS 1.2 or 1.3 on both sides (portcullis accepts min_version TLSv1.2 or TLSv1.3).' };
    case 'insufficient_security':
      return { code: alert, cause: 'the server requires stronger ciphers than were offered.', fix: 'enable modern TLS 1.2/1.3 ciphers on the client.' };
    case 'unrecognized_name':
      return { code: alert, cause: 'the server has no certificate for the name sent in SNI.', fix: 'pass --servername with a name the server serves.' };
    case 'no_application_protocol':
      return { code: alert, cause: 'the server accepts none of the offered application protocols (ALPN).', fix: 'check the server\'s ALPN settings (http/1.1, h2).' };
    case 'internal_error':
      return { code: alert, cause: 'the server hit an internal error during the handshake.', fix: 'look at the server\'s log.' };
    default:
      return { code: alert, cause: `the server ended the handshake with the TLS alert "${alert}".`, fix: 'look at the server\'s log for the detail.' };
  }
}

/** The server closed the connection without any alert after (or during) the handshake. */
export function adviseSilentClose(c: ClientCertFacts, tlsVersion: string | undefined): Advice {
  if (!c.sent) {
    return {
      code: 'closed_without_alert',
      cause: 'the server closed the connection without a TLS alert or HTTP answer; servers that require a client certificate and check it after the handshake behave this way.',
      fix: 'pass --cert and --key with a client certificate from a CA the server trusts.',
    };
  }
  const first = c.localProblems?.[0];
  if (first) {
    return {
      code: 'closed_without_alert',
      cause: `the server closed the connection without an alert right after receiving your certificate${tlsVersion ? ` (${tlsVersion})` : ''}, and that certificate has a problem of its own: ${c.localProblems!.map((p) => p.message).join('; ')}.`,
      fix: first.fix ?? 'fix the certificate (portcullis cert issue), then try again.',
    };
  }
  return {
    code: 'closed_without_alert',
    cause: `the server closed the connection without an alert right after receiving your certificate${tlsVersion ? ` (${tlsVersion})` : ''}: it refused it, most likely because it does not trust the CA that signed it${c.issuer ? ` ("${c.issuer}")` : ''}, or because it is revoked.`,
    fix: 'check the certificate against the server\'s client CA and CRL with portcullis cert verify --ca <file> --crl <file>; the server\'s log names the reason.',
  };
}

export interface HttpFacts {
  status: number;
  headers: Record<string, string>;
  /** the start of the body */
  body: string;
}

/**
 * Certificate problems reported at the HTTP layer. nginx completes the handshake and then
 * answers 400 with a fixed page; portcullis (optional mode) answers 401/403 with JSON.
 */
export function adviseHttp(h: HttpFacts, c: ClientCertFacts): Advice | undefined {
  if (h.status === 400 && /No required SSL certificate was sent/i.test(h.body)) {
    return { code: 'certificate_required', cause: 'the server (nginx) requires a client certificate and none was sent.', fix: 'pass --cert and --key with a client certificate from a CA the server trusts.' };
  }
  if (h.status === 400 && /The SSL certificate error/i.test(h.body)) {
    return {
      code: 'certificate_rejected',
      cause: `the server (nginx) received your certificate but its verification failed: untrusted CA${c.issuer ? ` (yours is issued by "${c.issuer}")` : ''}, expired, revoked, missing intermediate or too deep a chain.${localHint(c)}`,
      fix: 'check it with portcullis cert verify --ca <nginx ssl_client_certificate> --crl <ssl_crl>; nginx\'s error log names the exact reason ("client SSL certificate verify error").',
    };
  }
  let json: { error?: string; message?: string } | undefined;
  if ((h.headers['content-type'] ?? '').includes('json')) {
    try {
      json = JSON.parse(h.body) as { error?: string; message?: string };
    } catch {
      json = undefined;
    }
  }
  if (json?.error === 'client_certificate_required' || (h.status === 401 && !c.sent && /certificate/i.test(h.body))) {
    return { code: 'certificate_required', cause: `the server requires a client certificate on this route${json?.message ? `: ${json.message}` : ''}.`, fix: 'pass --cert and --key with a client certificate from a CA the server trusts.' };
  }
  if (json?.error === 'client_certificate_invalid') {
    return { code: 'certificate_rejected', cause: `the server refused your certificate: ${json.message ?? 'no reason given'}.${localHint(c)}`, fix: 'fix what the message names, then check with portcullis cert verify.' };
  }
  if (json?.error === 'forbidden') {
    return { code: 'forbidden', cause: `the server accepted your certificate but its policy does not allow this identity here: ${json.message ?? ''}`.trim(), fix: 'ask for this identity to be allowed on the route, or use an allowed identity.' };
  }
  return undefined;
}
