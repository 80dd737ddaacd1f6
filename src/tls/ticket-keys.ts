// Session ticket key files (listeners[].tls.session_tickets.key_files): read and checked
// once per configuration generation, so a replaced file takes effect with the reload its
// change triggers and a bad one fails that reload (the old keys keep serving).
//
// Format, chosen to take the keys operators already have: 80 or 48 random bytes, as for
// nginx's ssl_session_ticket_key (`openssl rand 80 > current.key`), or the same bytes in
// base64 text, as in HAProxy's tls-ticket-keys files (`openssl rand -base64 80`). The
// bytes are a secret to derive from (listener-tls.ts mixes in each certificate entry's
// trust digest), not used as they are, so tickets are not interchangeable with nginx's.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ErrorCodes, PortcullisError } from '../errors.js';

export const TICKET_KEY_BYTES = [80, 48] as const;
/** What `portcullis ticket-key new` writes. */
export const NEW_TICKET_KEY_BYTES = 80;

const BASE64_TEXT = /^[A-Za-z0-9+/=\s]+$/;

/** The key in a key file's bytes, or why there is none. */
export function parseTicketKey(data: Buffer): { key: Buffer } | { problem: string } {
  let key: Buffer | undefined;
  if ((TICKET_KEY_BYTES as readonly number[]).includes(data.length)) key = data;
  else {
    const text = data.toString('latin1');
    if (BASE64_TEXT.test(text)) {
      const compact = text.replace(/\s+/g, '');
      const decoded = Buffer.from(compact, 'base64');
      // Buffer.from skips what is not base64; a round trip tells a real encoding apart
      if (decoded.toString('base64') === compact && (TICKET_KEY_BYTES as readonly number[]).includes(decoded.length)) key = decoded;
      else return { problem: `holds base64 text of ${decoded.length} bytes, not of 80 or 48` };
    } else {
      return { problem: `holds ${data.length} bytes, not 80 or 48` };
    }
  }
  // a file of zeros (head -c 80 /dev/zero) would make every replica's tickets guessable
  if (key.every((b) => b === key![0])) return { problem: 'holds the same byte repeated, not random bytes' };
  return { key };
}

/**
 * Reads the key files in order (the first seals new tickets). Throws PortcullisError with
 * PCL_ERR_TICKET_KEY_INVALID (or a file error) naming the file and how to make a key.
 */
export function readTicketKeys(files: readonly string[], field: string): Buffer[] {
  return files.map((file, i) => {
    const where = files.length === 1 ? `${field}.session_tickets.key_files` : `${field}.session_tickets.key_files[${i}]`;
    const make = (force: string) => `portcullis ticket-key new ${file}${force} (or openssl rand 80 > ${file})`;
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `${where}: ticket key file not found: ${file}; create it with ${make('')}, or fix the path`, { path: file });
      throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `${where}: cannot read ticket key file ${file} (${code ?? (err as Error).message}); let the proxy user read it (mode 0600, owned by that user)`, { path: file });
    }
    const r = parseTicketKey(data);
    if ('problem' in r) throw new PortcullisError(ErrorCodes.TICKET_KEY_INVALID, `${where}: ${file} ${r.problem}, so it is not a session ticket key; replace it with ${make(' --force')}`, { path: file });
    return r.key;
  });
}

/** A fresh key as `ticket-key new` writes it. */
export function newTicketKey(): Buffer {
  return randomBytes(NEW_TICKET_KEY_BYTES);
}
