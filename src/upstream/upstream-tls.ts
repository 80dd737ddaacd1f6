// TLS options toward an upstream (https endpoints): the CA that signs the upstream's
// certificate, the client certificate portcullis presents (mTLS out), the server name
// and the accepted SANs. Files are read once per generation.
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import { readCaFiles, readKeyPair } from '../tls/pem.js';
import type { UpstreamTlsConfig } from '../config/schema.js';

export function buildUpstreamTls(cfg: UpstreamTlsConfig, field: string): ConnectionOptions {
  const opts: ConnectionOptions = { rejectUnauthorized: true };
  if (cfg.ca.length > 0) opts.ca = readCaFiles(cfg.ca, `${field}.ca`).map((f) => f.pem);
  if (cfg.cert && cfg.key) {
    const pair = readKeyPair(cfg.cert, cfg.key, field);
    opts.cert = pair.chain.pem;
    opts.key = pair.key.pem;
  }
  if (cfg.server_name) opts.servername = cfg.server_name;
  const names = cfg.verify_names;
  if (names.length > 0) {
    // accept the upstream only if one of its DNS or URI SANs is listed (SPIFFE-style)
    opts.checkServerIdentity = (_host: string, cert: PeerCertificate) => {
      const sans = (cert.subjectaltname ?? '').split(', ').map((s) => s.replace(/^(DNS|URI):/, ''));
      if (sans.some((s) => names.includes(s))) return undefined;
      return new Error(`upstream certificate SANs (${cert.subjectaltname ?? 'none'}) match none of verify_names`);
    };
  } else if (cfg.server_name) {
    const sn = cfg.server_name;
    opts.checkServerIdentity = (_host: string, cert: PeerCertificate) => checkServerIdentity(sn, cert);
  }
  return opts;
}
