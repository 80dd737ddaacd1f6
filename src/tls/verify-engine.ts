// The proxy's verdict on a client chain, reached without a proxy and without the client's
// private key: `portcullis cert verify` and `portcullis doctor` ask this, and it answers
// with the listener's own code. It builds the listener TLS runtime (buildListenerTls:
// the same TrustRuntime, secure context and post-handshake checks a listener builds from
// the same trust settings), accepts one TCP connection on 127.0.0.1 with startHandshake,
// and plays the client's half of a TLS 1.2 handshake up to its Certificate message. OpenSSL
// verifies the chain while it processes that message; the engine then runs checkPeer, the
// listener's post-handshake checks, on that very socket, and closes it.
//
// Why stop at the Certificate message: the next client message (CertificateVerify) needs
// the client's private key, which `cert verify` does not have. Everything that decides
// acceptance happens before it (OpenSSL's chain verification, then checkPeer); proof of key
// possession is the one step this cannot show. Why TLS 1.2 whatever the listener's
// min_version: its Certificate message travels in clear, so no key exchange is needed;
// OpenSSL verifies a client chain the same way under TLS 1.2 and 1.3.
//
// What it relies on beyond documented Node API: reading the verification result of a
// handshake in progress (tlsVerifyError, in platform/node-internals.ts), and that the peer
// certificate is visible once OpenSSL has processed it. Both are checked on Node 20, 22, 24.
import net, { type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, type X509Certificate } from 'node:crypto';
import pino from 'pino';
import { createCA, issueCert } from '../pki/issue.js';
import { ConfigSchema, type ListenerTlsConfig, type TrustConfig } from '../config/schema.js';
import { buildListenerTls, checkPeer, judgePeer, startHandshake, type PeerResult } from './listener-tls.js';
import { retainVerifyResult } from '../platform/node-internals.js';
import { reasonMessage, type HandshakeResult } from './verify-result.js';
import { setTlsLog, tlsLog } from './tls-log.js';

export interface EngineVerdict {
  accepted: boolean;
  /** the listener's handshake result: 'ok' or the reason it logs (X-Client-Verify FAILED:<reason>) */
  result: HandshakeResult;
  /** the sentence the listener logs for a refusal */
  message?: string;
  /** a cert_policy/pin/OCSP refusal, which HTTP listeners answer with 403 after the handshake */
  afterHandshake?: boolean;
  /** the TLS handshake itself failed before any certificate check (an unusable certificate) */
  handshakeError?: string;
  /** operational warnings the trust settings produced at load (expired or unusable CRLs, weak anchors) */
  warnings: string[];
}

/** Trust settings as a listener takes them; unset keys get the listener defaults. */
export type EngineTrust = Partial<Omit<TrustConfig, 'client_auth'>> & { client_ca: string[] };

// --- the client's half: TLS 1.2 ClientHello and Certificate, written by hand --------------

const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 255, n & 255]);
const vec8 = (b: Buffer) => Buffer.concat([Buffer.from([b.length]), b]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const ext = (type: number, body: Buffer) => Buffer.concat([u16(type), vec16(body)]);

/** Handshake message(s) in TLS 1.2 records of at most 2^14 bytes. */
function records(type: number, body: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += 16384) {
    const f = body.subarray(i, i + 16384);
    out.push(Buffer.concat([Buffer.from([type, 3, 3]), u16(f.length), f]));
  }
  return Buffer.concat(out);
}

function handshake(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), u24(body.length), body]);
}

/** ECDHE suites for both server key types, the usual groups and signature schemes; TLS 1.2 only. */
export function clientHello(): Buffer {
  const suites = [0xc02b, 0xc02c, 0xcca9, 0xc02f, 0xc030, 0xcca8];
  const groups = [0x001d, 0x0017, 0x0018];
  const sigalgs = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807];
  const exts = Buffer.concat([
    ext(0x000a, vec16(Buffer.concat(groups.map(u16)))),
    ext(0x000b, vec8(Buffer.from([0]))),
    ext(0x000d, vec16(Buffer.concat(sigalgs.map(u16)))),
    ext(0xff01, vec8(Buffer.alloc(0))),
    ext(0x0017, Buffer.alloc(0)),
  ]);
  const body = Buffer.concat([u16(0x0303), randomBytes(32), vec8(Buffer.alloc(0)), vec16(Buffer.concat(suites.map(u16))), vec8(Buffer.from([0])), vec16(exts)]);
  return records(22, handshake(1, body));
}

export function certificateMessage(ders: Buffer[]): Buffer {
  const list = Buffer.concat(ders.map((d) => Buffer.concat([u24(d.length), d])));
  return records(22, handshake(11, Buffer.concat([u24(list.length), list])));
}

// --- the server's half: the listener's own code --------------------------------------------

let serverPair: Promise<{ cert: string; key: string }> | undefined;

/** A throwaway server certificate: the engine's server side needs one to answer a ClientHello. */
function ephemeralServer(): Promise<{ cert: string; key: string }> {
  serverPair ??= createCA({ name: 'portcullis verify engine', days: 1 })
    .then((ca) => issueCert(ca, { type: 'server', cn: 'verify-engine', days: 1 }))
    .then((c) => ({ cert: c.certPem, key: c.keyPem }));
  return serverPair;
}

/** The listener TLS config the engine builds, through the config schema so every default applies. */
function listenerConfig(trust: EngineTrust, cert: string, key: string): ListenerTlsConfig {
  const parsed = ConfigSchema.parse({
    listeners: [
      {
        name: 'verify-engine',
        address: '127.0.0.1:0',
        tls: { cert, key, client_auth: 'require', ...trust, min_version: 'TLSv1.2' },
        routes: [{ upstream: 'none' }],
      },
    ],
    upstreams: { none: { endpoints: ['http://127.0.0.1:9'] } },
  });
  return parsed.listeners[0]!.tls!;
}

/**
 * The listener's verdict on `presented` (leaf first, then the certificates the client
 * sends) under `trust`. Throws PortcullisError for trust settings a listener would refuse
 * to start with (unreadable CA or CRL file...), naming the file.
 */
export async function engineVerdict(presented: readonly X509Certificate[], trust: EngineTrust, timeoutMs = 10_000): Promise<EngineVerdict> {
  const warnings: string[] = [];
  const previous = tlsLog();
  // the trust's load-time warnings (expired, unusable CRLs; weak anchors) become part of the answer
  setTlsLog(pino({ level: 'warn', base: undefined }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) }));
  const pair = await ephemeralServer();
  const dir = mkdtempSync(join(tmpdir(), 'pcl-verify-'));
  let rt;
  try {
    writeFileSync(join(dir, 'server.crt'), pair.cert);
    writeFileSync(join(dir, 'server.key'), pair.key, { mode: 0o600 });
    rt = buildListenerTls(listenerConfig(trust, join(dir, 'server.crt'), join(dir, 'server.key')), 'trust');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  try {
    const peer = await handshakeUpToCertificate(presented, rt, timeoutMs);
    if ('handshakeError' in peer) {
      const noCert = peer.handshakeError === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
      const result = noCert ? 'no_cert' : 'error';
      return { accepted: false, result, message: noCert ? reasonMessage('no_cert') : `TLS handshake failed: ${peer.handshakeError}`, handshakeError: peer.handshakeError, warnings };
    }
    if (peer.verify === 'SUCCESS') return { accepted: true, result: 'ok', warnings };
    const result = peer.reason ?? 'no_cert';
    return { accepted: false, result, message: peer.message ?? reasonMessage(result), ...(peer.afterHandshake ? { afterHandshake: true } : {}), warnings };
  } finally {
    setTlsLog(previous);
  }
}

/** The sent certificates above the leaf, linked issuer by issuer as Node links a peer chain, anchor excluded. */
function linkedChain(presented: readonly X509Certificate[]): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cur = presented[0]!;
  for (;;) {
    const next = presented.find((c) => !out.includes(c) && c !== presented[0] && cur.checkIssued(c));
    if (!next || next.checkIssued(next)) return out;
    out.push(next);
    cur = next;
  }
}

function handshakeUpToCertificate(presented: readonly X509Certificate[], rt: ReturnType<typeof buildListenerTls>, timeoutMs: number): Promise<PeerResult | { handshakeError: string }> {
  return new Promise((resolve, reject) => {
    let done = false;
    const client = new net.Socket();
    const finish = (v: PeerResult | { handshakeError: string } | Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client.destroy();
      server.close();
      if (v instanceof Error) reject(v);
      else resolve(v);
    };
    const timer = setTimeout(() => finish(new Error(`the verification handshake did not finish within ${timeoutMs} ms`)), timeoutMs);
    const server = net.createServer((raw) => {
      server.close();
      const sock = startHandshake(raw, rt, [], server);
      const verifyResult = retainVerifyResult(sock);
      sock.on('error', (err: Error & { code?: string }) => {
        // OpenSSL 3 may abort a TLS 1.2 handshake right after verifying the chain, when a
        // failed signature check left an error on its queue; a TLS 1.3 handshake (what the
        // listener mostly sees) goes on, and checkPeer decides on that result. Decide the same.
        const result = verifyResult();
        if (result && presented.length > 0) {
          judgePeer(presented[0]!, linkedChain(presented), result, rt.default.trust).then(finish, (e: unknown) => finish({ verify: 'FAILED', reason: 'error', message: reasonMessage('error', (e as Error).message) }));
          return;
        }
        finish({ handshakeError: err.code ?? err.message });
      });
      // OpenSSL verifies the chain while it processes the Certificate message, in the read
      // callback for the bytes that carry it; poll until that has happened
      const poll = (): void => {
        if (done || sock.destroyed) return;
        // the legacy getter, on purpose: on Node 20 and 22 the first getPeerX509Certificate()
        // hands out the issuer chain and later calls see none, and checkPeer needs it
        if (!sock.getPeerCertificate()?.raw) {
          setTimeout(poll, 1);
          return;
        }
        checkPeer(sock, rt.default.trust).then(
          (peer) => {
            sock.destroy();
            finish(peer);
          },
          (err: unknown) => {
            // as the listener does (listener-server.ts afterHandshake): a check that throws refuses
            sock.destroy();
            finish({ verify: 'FAILED', reason: 'error', message: reasonMessage('error', (err as Error).message) });
          },
        );
      };
      poll();
    });
    server.on('error', (err) => finish(err));
    server.listen(0, '127.0.0.1', () => {
      client.on('error', () => undefined);
      // the server's answer is not needed: its Certificate request is implied by requestCert
      client.on('data', () => undefined);
      client.connect((server.address() as AddressInfo).port, '127.0.0.1', () => {
        client.write(Buffer.concat([clientHello(), certificateMessage(presented.map((c) => c.raw))]));
      });
    });
  });
}
