// Doctor's explanation of its own client chain. Without the server's trust settings it can
// only name what is wrong whatever the server trusts (dates, EKU, CA as leaf, and the chain
// rules over the certificates it sends: name constraints, critical extensions...). With
// --client-ca (and --crl) it runs the listener's own engine, as `cert verify` does, so the
// prediction is the proxy's verdict under those settings, and says when the server's
// answer differs (then the server's trust settings are not the ones given).
import { resolve } from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { explainVerify } from '../pki/verify.js';
import { reconcile, type ShownReason } from '../pki/verdict.js';
import { parseCrls } from '../pki/crl.js';
import { readCerts, readFileFor } from '../pki/pem.js';
import { engineVerdict } from '../tls/verify-engine.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

/** Reasons that hold whatever CA the server trusts. */
const ANCHOR_FREE = new Set(['expired', 'not_yet_valid', 'bad_eku', 'ca_as_leaf', 'name_constraint', 'invalid_cert']);

export interface ClientChainOptions {
  clientCa?: string[];
  crl?: string[];
  crlMode?: string;
}

export interface ClientChainFacts {
  problems: ShownReason[];
  /** the listener engine's prediction, with --client-ca */
  engine?: { accepted: boolean; result: string; message: string | null };
}

export async function clientChainFacts(leaf: X509Certificate, sent: X509Certificate[], o: ClientChainOptions): Promise<ClientChainFacts> {
  if (!o.clientCa?.length) {
    if (o.crl?.length || o.crlMode) throw new PortcullisError(ErrorCodes.USAGE, '--crl and --crl-mode need --client-ca (the CAs the server trusts for clients)', { exitCode: 2 });
    const r = explainVerify(leaf, { cas: [], intermediates: sent, purpose: 'client' });
    return { problems: r.reasons.filter((x) => ANCHOR_FREE.has(x.code)) };
  }
  const mode = o.crlMode ?? 'chain';
  if (mode !== 'chain' && mode !== 'leaf') throw new PortcullisError(ErrorCodes.USAGE, `--crl-mode must be chain or leaf, got "${mode}"`, { exitCode: 2 });
  const clientCa = o.clientCa.map((p) => resolve(p));
  const crlFiles = (o.crl ?? []).map((p) => resolve(p));
  const explained = explainVerify(leaf, {
    cas: clientCa.flatMap((p) => readCerts(p, 'client CA file')),
    intermediates: sent,
    crls: crlFiles.flatMap((p) => parseCrls(readFileFor(p, 'CRL file'), p)),
    crlMode: mode,
    purpose: 'client',
    policy: { key_types: ['rsa', 'ec', 'ed25519'], min_rsa_bits: 2048, min_ec_bits: 256 },
  });
  const engine = await engineVerdict([leaf, ...sent], { client_ca: clientCa, crl: crlFiles, crl_mode: mode });
  const v = reconcile(explained, engine);
  return { problems: v.reasons, engine: { accepted: engine.accepted, result: engine.result, message: engine.message ?? null } };
}
