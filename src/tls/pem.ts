// Reads certificate, key, CA and CRL files for the TLS layer and turns every way they
// can be wrong (missing, unreadable, empty, not PEM, key not matching) into one
// PortcullisError that names the config field, the file and the fix.
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, PortcullisError } from '../errors.js';

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads a file, failing with a message that says which config field pointed at it. */
export function readConfigFile(file: string, field: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `${field}: file not found: ${file}; check the path (relative paths are resolved against the config file's folder)`, { path: file });
    }
    if (code === 'EISDIR') {
      throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `${field}: ${file} is a directory, not a file; point it at the PEM file inside`, { path: file });
    }
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `${field}: cannot read ${file} (${code ?? (err as Error).message}); check its permissions`, { path: file, cause: err });
  }
  if (data.length === 0 || data.toString('latin1').trim() === '') {
    throw new PortcullisError(ErrorCodes.FILE_EMPTY, `${field}: ${file} is empty; write the PEM content into it`, { path: file });
  }
  return data;
}

export interface CertFile {
  file: string;
  /** the PEM text as read (all blocks) */
  pem: string;
  /** every certificate in the file, in file order */
  certs: X509Certificate[];
}

/** Reads a PEM file holding one or more certificates. */
export function readCertFile(file: string, field: string): CertFile {
  const data = readConfigFile(file, field);
  const pem = data.toString('utf8');
  const blocks = pem.match(PEM_CERT_RE);
  if (!blocks || blocks.length === 0) {
    const hint = /BEGIN [A-Z ]*PRIVATE KEY/.test(pem) ? ' (it holds a private key: did you swap cert and key?)' : '';
    throw new PortcullisError(ErrorCodes.CERT_PARSE, `${field}: ${file} holds no PEM certificate${hint}; give a file with -----BEGIN CERTIFICATE----- blocks`, { path: file });
  }
  const certs = blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new PortcullisError(ErrorCodes.CERT_PARSE, `${field}: certificate #${i + 1} in ${file} cannot be parsed (${(err as Error).message}); re-export it as PEM`, { path: file, cause: err });
    }
  });
  return { file, pem, certs };
}

/** Reads a private key file (PEM, unencrypted). */
export function readKeyFile(file: string, field: string): { pem: string; key: KeyObject } {
  const data = readConfigFile(file, field);
  try {
    return { pem: data.toString('utf8'), key: createPrivateKey(data) };
  } catch (err) {
    const text = data.toString('utf8');
    const hint = text.includes('BEGIN CERTIFICATE')
      ? 'it holds a certificate, not a key: did you swap cert and key?'
      : text.includes('ENCRYPTED') ? 'encrypted keys are not supported; decrypt it with `openssl pkey -in KEY -out KEY.plain`' : 'give an unencrypted PEM private key';
    throw new PortcullisError(ErrorCodes.KEY_PARSE, `${field}: ${file} is not a usable private key; ${hint}`, { path: file, cause: err });
  }
}

/** Loads a certificate chain + key pair and checks that the key belongs to the leaf. */
export function readKeyPair(certFile: string, keyFile: string, field: string): { chain: CertFile; key: { pem: string; key: KeyObject } } {
  const chain = readCertFile(certFile, `${field}.cert`);
  const key = readKeyFile(keyFile, `${field}.key`);
  const leaf = chain.certs[0]!;
  if (!leaf.checkPrivateKey(key.key)) {
    throw new PortcullisError(ErrorCodes.KEY_MISMATCH, `${field}.key: ${keyFile} does not match the certificate in ${certFile} (subject ${oneLine(leaf.subject)}); give the key the certificate was issued for`, { path: keyFile });
  }
  return { chain, key };
}

/** Reads CA bundles and refuses anything that is not a CA certificate. */
export function readCaFiles(files: readonly string[], field: string): CertFile[] {
  if (files.length === 0) {
    throw new PortcullisError(ErrorCodes.FILE_EMPTY, `${field}: no CA file given; list the CA file(s) that sign your clients' certificates`);
  }
  return files.map((file, i) => {
    const f = readCertFile(file, files.length > 1 ? `${field}[${i}]` : field);
    f.certs.forEach((c, j) => {
      if (!c.ca) {
        throw new PortcullisError(ErrorCodes.CA_NOT_CA, `${field}: certificate #${j + 1} in ${file} (${oneLine(c.subject)}) is not a CA certificate (basicConstraints CA:FALSE); give the CA that issued your client certificates instead`, { path: file });
      }
    });
    return f;
  });
}

/** OpenSSL prints names one attribute per line; RFC 4514 order is the reverse, comma-joined. */
export function oneLine(name: string | undefined): string {
  // undefined: an empty Name, which Node does not render
  return (name ?? '').split('\n').reverse().join(',');
}
