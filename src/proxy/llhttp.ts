// Node's own llhttp binding, the parser http.Server and http.ClientRequest use, reached
// through the internal `_http_common` module (see the README's note on it). Shared by the
// HTTP/1.1 front end's request path and the upstream client's response path, so both
// parse exactly as strictly as Node does (no lenient flags).
import { createRequire } from 'node:module';

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** bytes consumed, or the parse error (with .code such as HPE_HEADER_OVERFLOW) */
  execute(data: Buffer): number | (Error & { code?: string });
  finish(): undefined | Error;
  close(): void;
  [k: number]: unknown;
}
export interface NativeParserClass {
  new (): NativeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: NativeParserClass; methods: string[] };
export const HTTPParser = common.HTTPParser;
/** llhttp's method numbers → names */
export const methods: readonly string[] = common.methods;
