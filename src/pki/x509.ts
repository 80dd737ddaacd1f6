// The one place that loads @peculiar/x509. It resolves its internal services through
// tsyringe, which refuses to load without a Reflect metadata polyfill, and it must be told
// to use Node's WebCrypto; importing it from here guarantees both happen first, in order.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
