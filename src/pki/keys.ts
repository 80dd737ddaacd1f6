// Key types portcullis can generate and sign with: generation, PKCS#8 PEM export, and
// loading a PEM key back into WebCrypto (the CA key for `cert issue`, `crl`, `revoke`).
import { createPrivateKey, KeyObject, webcrypto } from 'node:crypto';
import { ErrorCodes, PortcullisError } from '../errors.js';

export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'];

type CryptoKey = webcrypto.CryptoKey;
type Algo = webcrypto.AlgorithmIdentifier | webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;

export interface KeyPair {
  type: KeyType;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s);
}

export function parseKeyType(s: string): KeyType {
  if (isKeyType(s)) return s;
  throw new PortcullisError(
    ErrorCodes.KEY_TYPE_UNKNOWN,
    `unknown key type "${s}"; use one of ${KEY_TYPES.join(', ')}`,
    { exitCode: 2 },
  );
}

/** WebCrypto parameters for generating/importing a key of this type. */
function keyAlgorithm(type: KeyType): Algo & { modulusLength?: number; publicExponent?: Uint8Array } {
  switch (type) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'ed25519':
      return { name: 'Ed25519' };
    default: {
      const bits = Number(type.slice(4));
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) };
    }
  }
}

/**
 * The signature algorithm a CA key of this type signs with. P-384 pairs with SHA-384 so
 * the hash is not the weak link; everything else uses SHA-256 (Ed25519 hashes internally).
 */
export function signingAlgorithm(type: KeyType): { name: string; hash?: string } {
  switch (type) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ec-p384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'ed25519':
      return { name: 'Ed25519' };
    default:
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

export function isRsa(type: KeyType): boolean {
  return type.startsWith('rsa-');
}

export async function generateKeyPair(type: KeyType): Promise<KeyPair> {
  const pair = (await webcrypto.subtle.generateKey(keyAlgorithm(type) as webcrypto.EcKeyGenParams, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return { type, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/** PKCS#8 PEM (the "PRIVATE KEY" block, no algorithm in the label): what Node's TLS, curl, openssl and nginx all read. */
export function privateKeyToPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Works out which of our key types a Node KeyObject is, or undefined when unsupported. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (d.namedCurve === 'prime256v1') return 'ec-p256';
      if (d.namedCurve === 'secp384r1') return 'ec-p384';
      return undefined;
    case 'ed25519':
      return 'ed25519';
    case 'rsa': {
      const t = `rsa-${d.modulusLength}`;
      return isKeyType(t) ? t : undefined;
    }
    default:
      return undefined;
  }
}

/**
 * Loads a private key PEM (PKCS#8, SEC1 or PKCS#1) as a WebCrypto signing key.
 * `path` only serves the error message.
 */
export async function importPrivateKeyPem(pem: string, path?: string): Promise<{ key: CryptoKey; type: KeyType }> {
  let obj: KeyObject;
  try {
    obj = createPrivateKey(pem);
  } catch (err) {
    throw new PortcullisError(ErrorCodes.KEY_PARSE, `${path ?? 'the key'} is not a readable private key (${(err as Error).message})`, {
      path,
      cause: err,
    });
  }
  const type = keyTypeOf(obj);
  if (!type) {
    throw new PortcullisError(
      ErrorCodes.KEY_TYPE_UNKNOWN,
      `${path ?? 'the key'} is a ${obj.asymmetricKeyType} key portcullis cannot sign with; use one of ${KEY_TYPES.join(', ')}`,
      { path },
    );
  }
  const der = obj.export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm(type) as webcrypto.EcKeyImportParams, true, ['sign']);
  return { key, type };
}
