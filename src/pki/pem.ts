// Reading certificate files the way users have them: PEM bundles (leaf, then
// intermediates), single PEM or DER certificates. Errors name the file and the problem.
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { ErrorCodes, PortcullisError } from '../errors.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads a file, turning fs errors into one sentence that names the file. */
export function readFileFor(path: string, what: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `${what} ${path} does not exist`, { path, cause: err });
    if (code === 'EISDIR') throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `${what} ${path} is a folder, not a file`, { path, cause: err });
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `cannot read ${what} ${path} (${code ?? (err as Error).message}); check its permissions`, { path, cause: err });
  }
  if (data.length === 0) throw new PortcullisError(ErrorCodes.FILE_EMPTY, `${what} ${path} is empty`, { path });
  return data;
}

/** Every certificate in PEM text or one DER certificate, in file order. */
export function parseCerts(data: Buffer | string, source = 'the input'): X509Certificate[] {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const blocks = text.match(PEM_CERT);
  try {
    if (blocks) return blocks.map((b) => new X509Certificate(b));
    if (text.includes('-----BEGIN')) {
      throw new Error(`no CERTIFICATE block (found ${/-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1] ?? 'another PEM type'})`);
    }
    return [new X509Certificate(typeof data === 'string' ? Buffer.from(data, 'latin1') : data)];
  } catch (err) {
    throw new PortcullisError(ErrorCodes.CERT_PARSE, `${source} is not a certificate in PEM or DER (${(err as Error).message})`, { path: source, cause: err });
  }
}

export function readCerts(path: string, what = 'certificate file'): X509Certificate[] {
  return parseCerts(readFileFor(path, what), path);
}

export function certToPem(x: X509Certificate): string {
  return x.toString().trim() + '\n';
}
