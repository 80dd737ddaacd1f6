// mTLS and authorization for the admin listener (admin.tls, admin.allow). Nothing here
// verifies anything by itself: the TLS runtime is the listeners' own (buildListenerTls,
// startHandshake, checkPeer: the same OpenSSL settings, CRL and chain rules, session
// binding), and the rules are the listeners' rule grammar and authorize(). A connection
// is judged once, when its handshake completes; every request on it gets that verdict.
import type { TLSSocket } from 'node:tls';
import { buildListenerTls, checkPeer, type TlsRuntime } from '../tls/listener-tls.js';
import { reasonMessage } from '../tls/verify-result.js';
import { compileRules, type CompiledRule } from '../policy/rules.js';
import { authorize } from '../policy/authorize.js';
import { adminListenerTls, type AdminConfig } from '../config/schema.js';
import type { Identity } from '../pki/identity-types.js';
import type { HttpErrorCode } from '../errors.js';

export interface AdminTls {
  tls: TlsRuntime;
  allow: CompiledRule[];
}

export type AdminVerdict =
  | { ok: true; identity: Identity; rule: string | undefined }
  | { ok: false; code: Extract<HttpErrorCode, 'client_certificate_required' | 'client_certificate_invalid' | 'forbidden'>; message: string; reason: string };

/**
 * Reads admin.tls's files and builds the TLS runtime; undefined without admin.tls.
 * Throws PortcullisError naming the file (at start-up and at reload, like a listener).
 */
export function buildAdminTls(cfg: AdminConfig): AdminTls | undefined {
  if (!cfg.tls) return undefined;
  const rt = buildListenerTls(adminListenerTls(cfg.tls), 'admin.tls');
  // the handshake never fails for a missing certificate: the request gets a 401 that says
  // so, which a person at a terminal can act on (the listeners' tls.reject: http)
  return { tls: { ...rt, failIfNoCert: false }, allow: compileRules(cfg.allow, 'admin.allow') };
}

/** What a finished admin handshake proved, and whether admin.allow lets it in. */
export async function judgeAdminClient(sock: TLSSocket, a: AdminTls): Promise<AdminVerdict> {
  let peer;
  try {
    peer = await checkPeer(sock, a.tls.default.trust);
  } catch (err) {
    return { ok: false, code: 'client_certificate_invalid', reason: 'error', message: `error: ${reasonMessage('error', (err as Error).message)}` };
  }
  if (peer.verify === 'NONE' || !peer.identity) {
    if (peer.verify !== 'FAILED') {
      return { ok: false, code: 'client_certificate_required', reason: 'no_cert', message: 'the admin listener requires a client certificate and none was sent; present one issued by a CA in admin.tls.client_ca' };
    }
    const reason = peer.reason ?? 'error';
    return { ok: false, code: 'client_certificate_invalid', reason, message: `${reason}: ${peer.message ?? reasonMessage(reason)}` };
  }
  const decision = authorize({ listenerAllow: a.allow, listenerDeny: [], routeAllow: [], routeDeny: [], identity: peer.identity, facts: { method: '', host: '', path: '' } });
  if (!decision.allowed) {
    return { ok: false, code: 'forbidden', reason: decision.reason, message: `this client certificate is not allowed to use the admin API (${decision.reason}); add a rule for it to admin.allow or use an allowed certificate` };
  }
  return { ok: true, identity: peer.identity, rule: decision.rule };
}
