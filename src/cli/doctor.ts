// `portcullis doctor https://host:port`: connects like an mTLS client would and explains,
// in plain language, what works and what fails: TLS version and cipher, the server's chain
// and whether it verifies, whether the server asks for a client certificate, whether ours
// was accepted (alerts and HTTP-level refusals translated into cause + fix), and one
// HTTP request. Uses only what Node's TLS API reports: no packet parsing, no openssl.
import type { Command } from 'commander';
import tls, { type TLSSocket } from 'node:tls';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { parseCerts, readFileFor } from '../pki/pem.js';
import { explainVerify, notAfterOf, rfc4514, type VerifyReason } from '../pki/verify.js';
import { clientChainFacts, type ClientChainFacts } from './doctor-chain.js';
import { adviseAlert, adviseHttp, adviseSilentClose, alertFromError, type Advice, type ClientCertFacts, type HttpFacts } from '../pki/doctor-advice.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { adviseNoAnswer, adviseStatus, countInsteadOfNames, requiredWithout } from './doctor-verdict.js';

interface Target {
  host: string;
  port: number;
  path: string;
  servername: string | undefined;
}

interface Probe {
  tcpConnected: boolean;
  secure: boolean;
  protocol: string | undefined;
  cipher: string | undefined;
  /** non-empty exactly when the server sent a CertificateRequest (Node computes the shared list from it) */
  clientSigalgs: string[];
  peerChain: X509Certificate[];
  authorizationError: string | undefined;
  error: (Error & { code?: string }) | undefined;
  http: HttpFacts | undefined;
  ms: number;
}

function parseTarget(url: string, servername?: string): Target {
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `https://${url}`);
  } catch {
    throw new PortcullisError(ErrorCodes.USAGE, `"${url}" is not a URL; use https://host:port`, { exitCode: 2 });
  }
  if (u.protocol !== 'https:') throw new PortcullisError(ErrorCodes.USAGE, `doctor speaks TLS: use an https:// URL, not ${u.protocol}//`, { exitCode: 2 });
  const host = u.hostname.replace(/^\[|\]$/g, '');
  // SNI carries names only, never IP addresses (RFC 6066)
  const sni = servername ?? (isIP(host) ? undefined : host);
  return { host, port: Number(u.port || 443), path: `${u.pathname}${u.search}` || '/', servername: sni };
}

function probe(t: Target, o: { ca?: string[]; cert?: Buffer; key?: Buffer; timeoutMs: number }): Promise<Probe> {
  const started = Date.now();
  const r: Probe = { tcpConnected: false, secure: false, protocol: undefined, cipher: undefined, clientSigalgs: [], peerChain: [], authorizationError: undefined, error: undefined, http: undefined, ms: 0 };
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const socket: TLSSocket = tls.connect({
      host: t.host,
      port: t.port,
      ...(t.servername ? { servername: t.servername } : {}),
      ...(o.ca ? { ca: o.ca } : {}),
      ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}),
      // we explain verification failures ourselves instead of refusing to look
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      // a fresh full handshake every time: a resumed session would hide the CertificateRequest
      session: undefined,
    });
    socket.setTimeout(o.timeoutMs, () => socket.destroy(Object.assign(new Error(`no answer within ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    socket.on('connect', () => (r.tcpConnected = true));
    socket.on('secureConnect', () => {
      r.secure = true;
      r.protocol = socket.getProtocol() ?? undefined;
      const c = socket.getCipher();
      r.cipher = c.standardName ?? c.name;
      r.clientSigalgs = socket.getSharedSigalgs?.() ?? [];
      r.authorizationError = socket.authorizationError ? String((socket.authorizationError as Error & { code?: string }).code ?? socket.authorizationError) : undefined;
      r.peerChain = peerChain(socket);
      const host = t.servername ?? t.host;
      socket.write(`GET ${t.path} HTTP/1.1\r\nHost: ${host.includes(':') ? `[${host}]` : host}:${t.port}\r\nUser-Agent: portcullis-doctor\r\nAccept: */*\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (d: Buffer) => {
      if (size < 65536) {
        chunks.push(d);
        size += d.length;
      }
    });
    socket.on('error', (e) => (r.error ??= e));
    socket.on('close', () => {
      r.http = parseHttp(Buffer.concat(chunks));
      r.ms = Date.now() - started;
      resolve(r);
    });
  });
}

/** The chain as Node reports it: what the server sent, plus the issuer found in our CA store. */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cur = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (cur && cur.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    out.push(new X509Certificate(cur.raw));
    cur = cur.issuerCertificate;
  }
  return out;
}

function parseHttp(buf: Buffer): HttpFacts | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [status, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(status ?? '');
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers, body: buf.subarray(end + 4, end + 4 + 4096).toString('utf8') };
}

function unreachable(t: Target, p: Probe): PortcullisError {
  const code = p.error?.code ?? '';
  const why: Record<string, string> = {
    ECONNREFUSED: 'the connection was refused (nothing listens there)',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name could not be resolved (DNS unavailable)',
    ETIMEDOUT: 'there was no answer in time',
    EHOSTUNREACH: 'the host is unreachable',
    ENETUNREACH: 'the network is unreachable',
  };
  return new PortcullisError(ErrorCodes.PEER_UNREACHABLE, `cannot connect to ${t.host}:${t.port}: ${why[code] ?? p.error?.message ?? 'unknown error'}; check the address and that the server is running`);
}

const SIGALG_FAMILY: Record<string, RegExp> = { ec: /^ECDSA\+/, rsa: /^(RSA|RSA-PSS)\+/, ed25519: /^Ed25519/ };

interface Report {
  target: string;
  lines: string[];
  problems: Advice[];
  json: Record<string, unknown>;
}

function mark(ok: boolean | 'warn'): string {
  return ok === 'warn' ? 'warn' : ok ? ' ok ' : 'FAIL';
}

async function doctor(url: string, f: { cert?: string; key?: string; ca?: string; clientCa?: string[]; crl?: string[]; crlMode?: string; servername?: string; timeout: string; json: boolean }): Promise<void> {
  const t = parseTarget(url, f.servername);
  const timeoutMs = Number(f.timeout);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new PortcullisError(ErrorCodes.USAGE, `--timeout must be milliseconds above 0, got "${f.timeout}"`, { exitCode: 2 });
  if (!!f.cert !== !!f.key) throw new PortcullisError(ErrorCodes.USAGE, 'pass --cert and --key together', { exitCode: 2 });
  const caPem = f.ca ? readFileFor(f.ca, 'CA file').toString('utf8') : undefined;
  const cas = caPem ? parseCerts(caPem, f.ca) : tls.rootCertificates.map((p) => new X509Certificate(p));
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  let ours: X509Certificate[] = [];
  const client: ClientCertFacts = { sent: false };
  let predicted: ClientChainFacts['engine'];
  if (f.cert && f.key) {
    cert = readFileFor(f.cert, 'client certificate');
    key = readFileFor(f.key, 'client key');
    ours = parseCerts(cert, f.cert);
    let pk;
    try {
      pk = createPrivateKey(key);
    } catch (err) {
      throw new PortcullisError(ErrorCodes.KEY_PARSE, `${f.key} is not a readable private key (${(err as Error).message})`, { path: f.key });
    }
    if (!ours[0]!.checkPrivateKey(pk)) throw new PortcullisError(ErrorCodes.KEY_MISMATCH, `${f.key} is not the key of ${f.cert}; pass the matching key`, { path: f.key });
    try {
      // OpenSSL's security level can refuse a chain outright (OpenSSL 3.5: "ca key too small")
      tls.createSecureContext({ cert, key });
    } catch (err) {
      throw new PortcullisError(ErrorCodes.CERT_PARSE, `${f.cert} cannot be presented by this TLS library (${(err as Error).message}); a server on the same OpenSSL refuses it too: re-issue the chain with stronger CA keys`, { path: f.cert });
    }
    const leaf = ours[0]!;
    const local = await clientChainFacts(leaf, ours.slice(1).filter((c) => c.fingerprint256 !== leaf.fingerprint256), { clientCa: f.clientCa, crl: f.crl, crlMode: f.crlMode });
    predicted = local.engine;
    Object.assign(client, { sent: true, issuer: rfc4514(leaf.issuer), subject: rfc4514(leaf.subject), notAfter: notAfterOf(leaf).toISOString(), localProblems: local.problems });
  } else if (f.clientCa?.length) {
    throw new PortcullisError(ErrorCodes.USAGE, '--client-ca checks the certificate given with --cert and --key; pass them too', { exitCode: 2 });
  }

  const rep: Report = { target: `${t.host}:${t.port}`, lines: [], problems: [], json: { url, host: t.host, port: t.port, servername: t.servername ?? null } };
  const say = (s: string): void => void rep.lines.push(s);
  const main = await probe(t, { ca: caPem ? [caPem] : undefined, cert, key, timeoutMs });
  if (!main.tcpConnected) throw unreachable(t, main);

  say(`portcullis doctor ${url}`);
  say('');
  say('Connection');
  say(`  ${mark(true)}  TCP ${t.host}:${t.port} reachable${t.servername ? `, SNI ${t.servername}` : ', no SNI (IP address)'}`);
  const alert = alertFromError(main.error);
  if (!main.secure) {
    say(`  ${mark(false)}  TLS handshake failed${alert ? `: the server sent the alert ${alert}` : `: ${main.error?.message ?? 'connection closed'}`}`);
  } else {
    say(`  ${mark(main.protocol === 'TLSv1.3' || main.protocol === 'TLSv1.2' ? true : 'warn')}  ${main.protocol}, cipher ${main.cipher}`);
  }
  rep.json.tls = { handshake: main.secure, version: main.protocol ?? null, cipher: main.cipher ?? null };

  // ---- the server's certificate ----
  if (main.secure) {
    say('');
    // the system store is ~140 CAs the user did not choose: count them, never list them
    const store = f.ca ?? `the system CA store (${cas.length} CAs; pass --ca FILE for a private CA)`;
    say(`Server certificate chain (as Node reports it: what the server sent, plus the matching CA from ${f.ca ?? 'the system store'})`);
    say(`  verified against ${store}`);
    const now = new Date();
    main.peerChain.forEach((c, i) => {
      const days = Math.floor((notAfterOf(c).getTime() - now.getTime()) / 86_400_000);
      say(`  [${i}] ${rfc4514(c.subject)}  (issuer ${rfc4514(c.issuer)}; ${days < 0 ? `EXPIRED ${-days} days ago` : `expires in ${days} days`})`);
    });
    const leaf = main.peerChain[0];
    let reasons: VerifyReason[] = [];
    if (leaf) {
      reasons = explainVerify(leaf, { cas, intermediates: main.peerChain.slice(1), purpose: 'server', verifyDepth: 100 }).reasons;
      if (!f.ca) reasons = countInsteadOfNames(reasons, cas, 'the system store');
      const nameErr = tls.checkServerIdentity(t.servername ?? t.host, socketCertShape(leaf));
      if (nameErr) {
        reasons.push({ code: 'name_mismatch' as VerifyReason['code'], message: `the certificate is not valid for "${t.servername ?? t.host}" (${nameErr.message})`, fix: 'connect with a name it covers (--servername), or re-issue it with that name as a DNS/IP SAN' });
      }
    }
    if (!reasons.length) say(`  ${mark(true)}  verifies, and is valid for ${t.servername ?? t.host}`);
    for (const r of reasons) {
      say(`  ${mark(false)}  [${r.code}] ${r.message}`);
      say(`        fix: ${r.fix}`);
    }
    if (!reasons.length && main.authorizationError) say(`  ${mark('warn')}  Node's own check reported ${main.authorizationError}`);
    rep.json.server = { chain: main.peerChain.map((c) => ({ subject: rfc4514(c.subject), issuer: rfc4514(c.issuer), notAfter: notAfterOf(c).toISOString() })), verified: reasons.length === 0, reasons };
    if (reasons.length) rep.problems.push({ code: `server_${reasons[0]!.code}`, cause: reasons[0]!.message, fix: reasons[0]!.fix });
  }

  // ---- client certificate: asked for? sent? accepted? ----
  say('');
  say('Client certificate');
  const requested = main.clientSigalgs.length > 0;
  const httpAdvice = main.http ? adviseHttp(main.http, client) : undefined;
  const refused: Advice | undefined = alert ? adviseAlert(alert, client) : httpAdvice ?? (main.secure && !main.http && (main.error?.code === 'ECONNRESET' || !main.error) ? adviseSilentClose(client, main.protocol) : undefined);
  let requestState: 'required' | 'requested' | 'not_requested' | 'unknown' = requested ? 'requested' : main.secure ? 'not_requested' : 'unknown';
  // without a certificate, was the connection refused (required) or answered (optional)?
  let without: 'required' | 'optional' | 'unknown' = 'unknown';
  if (!client.sent) {
    if (refused && (refused.code === 'certificate_required' || refused.code === 'handshake_failure' || refused.code === 'closed_without_alert')) without = 'required';
    else if (requested && main.http) without = 'optional';
  } else if (requested) {
    // ours was sent (accepted or not): a second connection without one tells required from optional
    const bare = await probe(t, { ca: caPem ? [caPem] : undefined, timeoutMs });
    const h = bare.http ? adviseHttp(bare.http, { sent: false }) : undefined;
    without = requiredWithout({ secure: bare.secure, alert: alertFromError(bare.error), http: bare.http, certificateRequiredAnswer: h?.code === 'certificate_required' });
  }
  if (without === 'required') requestState = 'required';
  const stateText = {
    required: 'the server requires a client certificate',
    requested:
      without === 'optional'
        ? 'the server asks for a client certificate and also answers without one (it is optional there)'
        : 'the server asks for a client certificate; whether it also accepts connections without one could not be determined',
    not_requested: 'the server does not ask for a client certificate (no CertificateRequest in the handshake)',
    unknown: 'could not tell whether the server asks for a client certificate: the handshake did not get that far',
  }[requestState];
  say(`  ${mark(requestState === 'not_requested' && client.sent ? 'warn' : true)}  ${stateText}`);
  say(`  info  acceptable client CA names: not shown (Node.js does not expose the CA list of the server's CertificateRequest); see the server's client_ca / ssl_client_certificate`);
  if (client.sent) {
    const leaf = ours[0]!;
    const family = leaf.publicKey.asymmetricKeyType === 'ec' ? 'ec' : (leaf.publicKey.asymmetricKeyType ?? '');
    const usable = !requested || main.clientSigalgs.some((s) => SIGALG_FAMILY[family]?.test(s) ?? true);
    const sent = requested && usable;
    say(`  ${mark(sent ? true : 'warn')}  ours: ${client.subject} (issuer ${client.issuer}, valid until ${client.notAfter}) ${sent ? 'was sent' : requested ? `was NOT sent: the server accepts no ${family} signature` : 'was not sent (not asked for)'}`);
    if (predicted) say(`  info  with --client-ca, the listener's own verification ${predicted.accepted ? 'accepts it' : `refuses it: FAILED:${predicted.result}`}`);
    for (const p of client.localProblems ?? []) say(`  ${mark(false)}  [${p.code}] ${p.message}`);
  } else {
    say(`  info  none given (--cert/--key)`);
  }
  if (refused) {
    say(`  ${mark(false)}  refused: ${refused.cause}`);
    say(`        fix: ${refused.fix}`);
    rep.problems.push(refused);
  } else if (client.sent && requested && main.http) {
    say(
      requestState === 'required'
        ? `  ${mark(true)}  accepted: the server requires a certificate and answered`
        : `  ${mark(true)}  not refused: the server answered (a server that only asks for a certificate may still have found it invalid: see the HTTP status below)`,
    );
  }
  const serverAccepted = client.sent && !refused && !!main.http;
  if (predicted && predicted.accepted !== serverAccepted && (refused || main.http)) {
    say(`  warn  the server ${serverAccepted ? 'accepted' : 'refused'} it, but the listener's verification with the --client-ca/--crl given ${predicted.accepted ? 'accepts' : 'refuses'} it: the server's client CAs, CRLs or policy differ from those`);
  }
  rep.json.client = { requestState, sigalgs: main.clientSigalgs, given: client.sent, subject: client.subject ?? null, localProblems: client.localProblems ?? [], refused: refused ?? null, predicted: predicted ?? null };
  rep.json.caNames = null;

  // ---- HTTP ----
  say('');
  say('HTTP');
  if (main.http) {
    const ok = main.http.status >= 200 && main.http.status < 300;
    say(`  ${mark(ok)}  GET ${t.path} -> ${main.http.status}${main.http.headers['server'] ? ` (server: ${main.http.headers['server']})` : ''}`);
    // a 502 or a 404 is not "no problem found", even when the TLS side is all fine
    const status = refused ? undefined : adviseStatus(main.http, 'GET', t.path);
    if (status) {
      say(`        ${status.cause}`);
      rep.problems.push(status);
    }
  } else {
    say(`  ${mark(false)}  no HTTP response${main.error && !alert ? ` (${main.error.code ?? main.error.message})` : ''}`);
    if (main.secure && !refused) rep.problems.push(adviseNoAnswer('GET', t.path, main.error?.code ?? main.error?.message));
  }
  rep.json.http = main.http ? { status: main.http.status, server: main.http.headers['server'] ?? null } : null;

  say('');
  if (rep.problems.length) {
    say(`Diagnosis: ${rep.problems[0]!.cause}`);
    say(`Fix:       ${rep.problems[0]!.fix}`);
  } else {
    say('Diagnosis: no problem found.');
  }
  rep.json.problems = rep.problems;
  rep.json.ok = rep.problems.length === 0;
  process.stdout.write(f.json ? JSON.stringify(rep.json, null, 2) + '\n' : rep.lines.join('\n') + '\n');
  if (rep.problems.length) process.exitCode = 1;
}

/** tls.checkServerIdentity wants the legacy certificate object shape. */
function socketCertShape(x: X509Certificate): tls.PeerCertificate {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1];
  return { subject: cn ? { CN: cn } : {}, subjectaltname: x.subjectAltName ?? '' } as unknown as tls.PeerCertificate;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('connect to an mTLS server and explain what fails in the handshake')
    .argument('<url>', 'https://host:port[/path]')
    .option('--cert <file>', 'client certificate (PEM; may hold the chain)')
    .option('--key <file>', 'client key')
    .option('--ca <file>', 'CA file to verify the server with (default: system CAs)')
    .option('--client-ca <file>', "the server's client CA file(s): predict its verdict on --cert with the listener's own verification (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option('--crl <file>', "with --client-ca: the server's CRL file(s) (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option('--crl-mode <mode>', 'with --client-ca: chain or leaf, as tls.crl_mode (default chain)')
    .option('--servername <name>', 'SNI and the name to check the server certificate against')
    .option('--timeout <ms>', 'connect/answer timeout in milliseconds', '5000')
    .option('--json', 'machine-readable output', false)
    .action(doctor);
}
