// The parts of the config module that code serving traffic uses at run time, without the
// zod schema: a worker gets its configuration already validated by the primary and never
// loads zod or yaml (about 13 MB of RSS per process). schema.ts re-exports all of it.
import type { ListenerTlsConfig, SniCertConfig } from './schema.js';

export const HTTP_SCHEMES = ['http', 'https', 'h2c'] as const;
export const TCP_SCHEMES = ['tcp', 'tls'] as const;

/** The client-certificate trust settings in force for one certificate of a listener. */
export type TrustConfig = Pick<ListenerTlsConfig, 'client_auth' | 'client_ca' | 'verify_depth' | 'crl' | 'crl_mode' | 'ocsp' | 'pins' | 'cert_policy'>;

/**
 * Trust for a listener's default certificate (no entry) or for one SNI entry: each key the
 * entry sets replaces the listener's as a whole; keys it leaves out are the listener's.
 */
export function trustFor(tls: ListenerTlsConfig, entry?: SniCertConfig): TrustConfig {
  return {
    client_auth: entry?.client_auth ?? tls.client_auth,
    client_ca: entry?.client_ca ?? tls.client_ca,
    verify_depth: tls.verify_depth,
    crl: entry?.crl ?? tls.crl,
    crl_mode: entry?.crl_mode ?? tls.crl_mode,
    ocsp: entry?.ocsp ?? tls.ocsp,
    pins: entry?.pins ?? tls.pins,
    cert_policy: entry?.cert_policy ?? tls.cert_policy,
  };
}
