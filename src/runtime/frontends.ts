// Registers the protocol front ends that listener-server.ts does not import itself
// (it must not depend on them). Imported once, for its side effect, by proxy-process.ts.
import { registerFrontend } from './listener-server.js';
import { h2Frontend } from '../proxy/http/h2.js';
import { tcpFrontend } from '../proxy/tcp/tcp-frontend.js';

// registering h2 is also what makes listeners offer ALPN h2
registerFrontend('h2', h2Frontend);
registerFrontend('tcp', tcpFrontend);
