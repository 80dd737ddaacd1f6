// Certificates and CRLs made by the openssl command line, as an operator would make them
// (not by portcullis' own issuer), for tests of what `portcullis check` says about real
// files: roots, intermediates, server and client leaves, CRLs from `openssl ca -gencrl`.
// Generated at test time into a temp folder; keys are written with mode 0600.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface OsslCert {
  name: string;
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A fresh folder of openssl-made PKI material. */
export class OpensslPki {
  private n = 0;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  private newKey(name: string): string {
    const key = this.file(`${name}.key`);
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], this.dir);
    chmodSync(key, 0o600);
    return key;
  }

  /** A self-signed root CA. */
  root(name: string, days = 3650): OsslCert {
    const slug = `ca-${++this.n}`;
    const key = this.newKey(slug);
    const cert = this.file(`${slug}.crt`);
    openssl(['req', '-x509', '-new', '-key', key, '-subj', `/CN=${name}`, '-days', String(days), '-sha256',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', cert], this.dir);
    return { name, cert, key };
  }

  private sign(slug: string, subject: string, issuer: OsslCert, days: number, ext: string[]): string {
    const key = this.newKey(slug);
    const csr = this.file(`${slug}.csr`);
    const cert = this.file(`${slug}.crt`);
    const extFile = this.file(`${slug}.ext`);
    writeFileSync(extFile, `[v3]\n${[...ext, 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid'].join('\n')}\n`);
    openssl(['req', '-new', '-key', key, '-subj', subject, '-out', csr], this.dir);
    openssl(['x509', '-req', '-in', csr, '-CA', issuer.cert, '-CAkey', issuer.key, '-CAcreateserial', '-days', String(days), '-sha256',
      '-extfile', extFile, '-extensions', 'v3', '-out', cert], this.dir);
    return cert;
  }

  /** An intermediate CA issued by `parent`. */
  intermediate(name: string, parent: OsslCert, days = 1825): OsslCert {
    const slug = `int-${++this.n}`;
    const cert = this.sign(slug, `/CN=${name}`, parent, days, ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign,cRLSign']);
    return { name, cert, key: this.file(`${slug}.key`) };
  }

  /** A server (localhost) or client (SPIFFE ID) certificate issued by `issuer`. */
  leaf(type: 'server' | 'client', name: string, issuer: OsslCert, opts: { days?: number; spiffeId?: string } = {}): OsslCert {
    const slug = `${type}-${++this.n}`;
    const san = type === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1' : `subjectAltName=URI:${opts.spiffeId ?? `spiffe://example.org/ns/prod/sa/${name}`}`;
    const cert = this.sign(slug, `/CN=${name}`, issuer, opts.days ?? 365, [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${type === 'server' ? 'serverAuth' : 'clientAuth'}`,
      san,
    ]);
    return { name, cert, key: this.file(`${slug}.key`) };
  }

  /** A file holding the given certificates' PEM, in order (e.g. leaf then intermediate). */
  bundle(name: string, certs: OsslCert[]): string {
    const file = this.file(name);
    writeFileSync(file, certs.map((c) => readFileSync(c.cert, 'utf8')).join(''));
    return file;
  }

  /** An empty, current CRL signed by `ca` (`openssl ca -gencrl`). */
  crl(ca: OsslCert, days = 30): string {
    const slug = `crl-${++this.n}`;
    const db = this.file(`${slug}.index`);
    const number = this.file(`${slug}.number`);
    const cnf = this.file(`${slug}.cnf`);
    writeFileSync(db, '');
    writeFileSync(number, '01\n');
    writeFileSync(cnf, `[ca]\ndefault_ca = d\n[d]\ndatabase = ${db}\ncrlnumber = ${number}\ndefault_md = sha256\ndefault_crl_days = ${days}\n`);
    const out = this.file(`${slug}.pem`);
    openssl(['ca', '-gencrl', '-config', cnf, '-keyfile', ca.key, '-cert', ca.cert, '-out', out], this.dir);
    return out;
  }
}
