// What each config key means, for docs/configuration.md and the descriptions in
// `portcullis schema`. Only prose and examples live here: keys, types and defaults come
// from schema.ts. The docs test fails when a key of the schema has no entry here (write
// one, then `npm run docs`) or an entry names a key the schema no longer has.
//
// Paths: `listeners[].tls.client_auth` (`[]` = every item of a list), `upstreams.<name>.tls`
// (`<name>` = every entry of a map). A shape used in several places is documented once:
// SHAPE_ALIASES maps each other place to the documented one.

export interface KeyDoc {
  /** what the key does, its limit behaviour and why its default, in a few sentences */
  text: string;
  /** a value as it would be written in YAML; required for keys without a default */
  example?: unknown;
}

export const SHAPE_ALIASES: Record<string, string> = {
  'listeners[].tls.certificates[].ocsp': 'listeners[].tls.ocsp',
  'listeners[].tls.certificates[].cert_policy': 'listeners[].tls.cert_policy',
  'listeners[].tls.certificates[].allow[]': 'listeners[].allow[]',
  'admin.allow[]': 'listeners[].allow[]',
  'listeners[].tls.certificates[].deny[]': 'listeners[].allow[]',
  'listeners[].deny[]': 'listeners[].allow[]',
  'listeners[].routes[].allow[]': 'listeners[].allow[]',
  'listeners[].routes[].deny[]': 'listeners[].allow[]',
};

/** Headings for sections whose path alone would not say what they are. */
export const SECTION_TITLES: Record<string, string> = {
  'listeners[].allow[]': 'authorization rules, the items of every allow and deny list',
};

const PIN_EXAMPLE = 'sha256:8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4';
const RELOADS = 'A changed file reloads by itself.';

/**
 * Prose for keys announced by SPEC §10 whose code is not merged yet: used as soon as the
 * key appears in schema.ts, ignored (not reported as stale) until then. Move an entry to
 * KEY_DOCS once its key is in the schema, correcting it against what was built.
 */
export const PENDING_DOCS: Record<string, KeyDoc> = {
};

export const KEY_DOCS: Record<string, KeyDoc> = {
  shutdown: { text: 'What happens on SIGTERM before the listeners close.' },
  'shutdown.delay': {
    text: 'On SIGTERM `/readyz` answers 503 at once, and the listeners keep accepting and serving for this long before they close and in-flight requests drain, so load balancers stop sending new connections first. 0 = close at once.',
    example: '10s',
  },
  'listeners[].tls.reject': {
    text: 'How a client refused by a `client_auth: require` certificate learns it. `close`: a missing certificate fails the handshake (`certificate_required` alert, `handshake_failure` under TLS 1.2); a certificate that fails verification completes the TLS 1.3 handshake and the connection is then closed without an answer, so clients report a reset or an empty reply. `http` (HTTP listeners only): the handshake completes and every request on the connection gets `401 client_certificate_required` or `403 client_certificate_invalid` with a JSON message naming the reason (expired, unknown_ca, revoked, ...) and the fix, like nginx\'s 495/496 pages; nothing is routed or forwarded, the refusal is logged and counted as a failed handshake, and the connection closes after the answer. Listener-wide (not per certificate entry); refused on tcp listeners. `close` is the default, as in Envoy and ghostunnel, because a client that cannot authenticate then gets no HTTP surface at all; see docs/rejecting-clients.md.',
  },
  'listeners[].tls.session_tickets': { text: 'TLS session ticket keys shared by several replicas, so a client resumes its session on any of them (nginx `ssl_session_ticket_key`, HAProxy `tls-ticket-keys`). Without it each instance makes its own keys.' },
  'listeners[].tls.session_tickets.key_files': {
    text: 'Key files: the first seals new tickets, all of them open tickets. Rotate by writing a new first file and moving the old one to second place; a changed file reloads by itself. A session never resumes under different trust: the keys are mixed with each certificate entry\'s trust digest.',
    example: ['tickets/current.key', 'tickets/previous.key'],
  },
  'listeners[].tls.cert_policy.strict_rfc5280': {
    text: 'Also refuse chains that break RFC 5280 rules real private CAs often break (missing key identifiers, CA extensions not marked critical). Off by default; see docs/security.md.',
  },
  'listeners[].limits.max_concurrent_streams': {
    text: 'HTTP/2 streams one connection may have open at once, advertised in SETTINGS and enforced: more get `RST_STREAM REFUSED_STREAM`. 128 like nginx\'s `http2_max_concurrent_streams`.',
  },
  'upstreams.<name>.limits': { text: 'How much of this upstream one worker process may use at once; beyond them requests get `503 upstream_overloaded`. Totals are workers × these.' },
  'upstreams.<name>.limits.max_connections': { text: 'Open connections to the upstream (HTTP/1.1, HTTP/2 sessions, WebSocket and TCP connections).' },
  'upstreams.<name>.limits.max_pending': { text: 'Requests waiting for a connection when all are busy (first in, first out; a waiter waits at most `timeouts.connect`); beyond it `503 upstream_overloaded`.' },
  'upstreams.<name>.limits.max_requests': { text: 'Requests in flight to the upstream; beyond it `503 upstream_overloaded`.' },
  workers: {
    text: 'Worker processes that serve the listeners; `auto` starts one per CPU. The primary process only supervises: it validates and provisions the config before forking, replaces a worker that dies and serves the admin listener. A change needs a restart.',
    example: 4,
  },
  admin: { text: 'The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status` and `POST /reload`, and the optional probe listener. The address, `probe_address` and whether `tls` is set need a restart; `tls` files and `allow` rules reload like the listeners\'. See docs/security.md.' },
  'admin.address': {
    text: '`host:port` of the admin listener. Loopback by default because it can reload the proxy and shows its state. Any other address is refused by `check` and `run` unless `admin.tls` and a non-empty `admin.allow` are set (mTLS plus rules naming who may use it). For Kubernetes probes, keep it on loopback and set `probe_address`.',
    example: '127.0.0.1:9901',
  },
  'admin.tls': {
    text: 'Serve the admin API over HTTPS and require a client certificate from `client_ca` (clientAuth EKU, chain rules and CRL checked by the same code as the listeners\'; `client_auth` is always require, the listeners\' default `cert_policy` applies, no pins or OCSP). A connection without a valid certificate gets `401 client_certificate_required` or `403 client_certificate_invalid` naming the reason, one not matched by `allow` gets `403 forbidden`; either way it is logged (`admin_refused`) and closed. Required (with `allow`) when `address` is not loopback; allowed on loopback too. `portcullis reload` then needs `--admin-cert`, `--admin-key` and `--admin-ca`.',
    example: { cert: 'tls/admin.crt', key: 'tls/admin.key', client_ca: 'tls/ops-ca.crt' },
  },
  'admin.tls.cert': { text: 'PEM certificate the admin listener presents (leaf first, then intermediates). ' + RELOADS, example: 'tls/admin.crt' },
  'admin.tls.key': { text: 'PEM private key of `admin.tls.cert`. ' + RELOADS, example: 'tls/admin.key' },
  'admin.tls.client_ca': {
    text: 'CA certificate file(s) that sign the certificates of admin clients (operators, Prometheus). Use a CA of its own, not the listeners\' `client_ca`: any client of the proxy would otherwise be one `allow` rule away from reloading it. ' + RELOADS,
    example: 'tls/ops-ca.crt',
  },
  'admin.tls.crl': { text: 'CRL files for the admin client chain, as `listeners[].tls.crl` (every CA of the chain needs one once any is given). ' + RELOADS },
  'admin.allow': {
    text: 'Which admin clients may use the admin API once their certificate verified: the rule grammar of listener and route `allow` (spiffe_id, uri, dns, email, cn, ou, o, issuer_cn, serial, fingerprint; first match allows). Empty = every certificate from `admin.tls.client_ca`, which is accepted on loopback only; a non-loopback `address` needs at least one rule. Only used with `admin.tls`.',
    example: [{ spiffe_id: 'spiffe://example.org/ns/monitoring/sa/prometheus' }, { cn: 'ops-oncall' }],
  },
  'admin.probe_address': {
    text: '`host:port` of a second, plain-HTTP listener that serves only `GET /healthz` and `GET /readyz` (anything else: 404 JSON naming what it serves), like Istio\'s health port 15021. It exists so Kubernetes probes, which come from the node to the pod IP, work while the admin API stays on loopback; it may bind any address because it can neither change nor reveal anything beyond "up" and "ready". Default: none.',
    example: '0.0.0.0:9902',
  },
  log: { text: 'Operational and access logging. A change needs a restart.' },
  'log.level': { text: 'Level of the operational log (JSON lines on stderr).' },
  'log.access': {
    text: 'Where the access/audit log goes, one JSON line per request, TCP connection and failed handshake: `stdout`, `stderr`, `off`, or a file (relative to the config file\'s folder; the folder must exist).',
    example: '/var/log/portcullis/access.log',
  },

  listeners: { text: 'The addresses portcullis accepts connections on, each with its TLS set-up, rules and routes. At least one.' },
  'listeners[].name': {
    text: 'Name in logs, metric labels and rule names (`listeners[api].allow[0]`); default `listener-<index>`. Unique.',
    example: 'api',
  },
  'listeners[].address': {
    text: '`host:port` to listen on: `0.0.0.0:8443` for every IPv4 interface, `[::]:8443` for IPv6, `127.0.0.1:8443` for this machine only; port 0 takes a free port. Two listeners cannot share an address.',
    example: '0.0.0.0:8443',
  },
  'listeners[].protocol': {
    text: '`http`: HTTP/1.1 and HTTP/2 (chosen by ALPN), gRPC and WebSocket, forwarded through `routes`. `tcp`: whole connections forwarded to `upstream` after the handshake, authorized once per connection with the listener\'s rules.',
  },
  'listeners[].unsafe_plain': {
    text: 'Allow a listener without `tls` on a non-loopback address: plain connections from the network, no client certificates. Off because such a listener defeats the proxy; use it only behind something that terminates mTLS itself.',
  },
  'listeners[].tls': { text: 'TLS and client-certificate verification. Without it the listener is plain, and only allowed on a loopback address (see `unsafe_plain`).' },
  'listeners[].tls.cert': {
    text: `PEM file: the server certificate first, then its intermediates (not the root). \`portcullis check\` warns when an intermediate is missing or the certificate expires within 30 days. ${RELOADS}`,
    example: 'pki/server.crt',
  },
  'listeners[].tls.key': {
    text: `PEM private key of \`cert\`, unencrypted. A key that does not match the certificate stops start-up; \`check\` warns when the file is readable by its group or others. ${RELOADS}`,
    example: 'pki/server.key',
  },
  'listeners[].tls.certificates': {
    text: 'More certificates, chosen by the SNI name the client sends (virtual hosts); no SNI or no match selects the default `cert`. Each entry may bring its own client trust and rules; a request whose Host selects another entry than the handshake did is refused with `421 misdirected_request`.',
  },
  'listeners[].tls.certificates[].server_names': {
    text: 'Names this certificate is chosen for: exact names, or `*.example.com` for exactly one label; case and a trailing dot do not matter. A name may appear in one entry only.',
    example: ['api.example.com', '*.svc.example.com'],
  },
  'listeners[].tls.certificates[].cert': { text: 'PEM file: this entry\'s certificate, then its intermediates.', example: 'pki/api.crt' },
  'listeners[].tls.certificates[].key': { text: 'PEM private key of this entry\'s certificate.', example: 'pki/api.key' },
  'listeners[].tls.certificates[].client_auth': { text: 'This entry\'s `client_auth`; when left out, the listener\'s.', example: 'optional' },
  'listeners[].tls.certificates[].client_ca': { text: 'This entry\'s trusted client CAs, replacing the listener\'s; when left out, the listener\'s.', example: 'pki/partner-ca.crt' },
  'listeners[].tls.certificates[].crl': { text: 'This entry\'s CRLs, replacing the listener\'s; when left out, the listener\'s.', example: 'pki/partner-crl.pem' },
  'listeners[].tls.certificates[].crl_mode': { text: 'This entry\'s `crl_mode`; when left out, the listener\'s.', example: 'leaf' },
  'listeners[].tls.certificates[].ocsp': { text: 'This entry\'s OCSP settings, replacing the listener\'s as a whole; when left out, the listener\'s.' },
  'listeners[].tls.certificates[].pins': { text: 'This entry\'s pins, replacing the listener\'s; when left out, the listener\'s.', example: [PIN_EXAMPLE] },
  'listeners[].tls.certificates[].cert_policy': { text: 'This entry\'s certificate policy, replacing the listener\'s as a whole; when left out, the listener\'s.' },
  'listeners[].tls.certificates[].allow': {
    text: 'Allow rules for connections whose handshake chose this entry, replacing the listener\'s allow list (a route\'s own allow list still replaces both).',
    example: [{ spiffe_id: 'spiffe://partner.example/**' }],
  },
  'listeners[].tls.certificates[].deny': { text: 'Deny rules for connections whose handshake chose this entry, added to the listener\'s.', example: [{ cn: 'revoked-partner' }] },
  'listeners[].tls.min_version': { text: 'Oldest TLS version accepted. TLS 1.0 and 1.1 are never accepted.' },
  'listeners[].tls.client_auth': {
    text: '`require`: a client without a valid certificate is refused at the handshake (no certificate: the `certificate_required` alert under TLS 1.3, `handshake_failure` under TLS 1.2, which has no such alert; one that fails verification: the connection is closed before any request is read, and the reason logged). `optional`: a certificate is asked for but not required, and routes decide (`client_auth: require` on a route, or allow rules); `check` warns when none does. `none`: no certificate is asked for. `require` is the default because a proxy that let clients without a certificate through unless told otherwise would be a trap.',
  },
  'listeners[].tls.client_ca': {
    text: `PEM file(s) of the CAs whose client certificates are accepted: only these, never the system's public roots. A list during CA rotation (old and new). Required unless \`client_auth\` is \`none\`. ${RELOADS}`,
    example: 'pki/ca.crt',
  },
  'listeners[].tls.verify_depth': {
    text: 'Most intermediates between a client certificate and a trusted CA; a deeper chain is refused (`depth_exceeded`). 3 allows root, policy CA, issuing CA and leaf with room to spare; OpenSSL\'s own default is 100.',
  },
  'listeners[].tls.crl': {
    text: `CRL files (PEM bundles or DER), checked after the chain verified, on every connection including resumed ones. An expired CRL still applies (what it lists stays refused) and is logged as \`crl_expired\`. ${RELOADS}`,
    example: 'pki/crl.pem',
  },
  'listeners[].tls.crl_mode': {
    text: '`chain`: the client certificate and every intermediate must be covered by a current CRL from its issuer, and a CA without one refuses the chains under it (`revocation_unknown`), as OpenSSL, nginx and Envoy do. `leaf`: only the client certificate is looked up (Envoy\'s `only_verify_leaf_cert_crl`), for roots that publish no CRL. Trust anchors are never looked up. A CRL RFC 5280 says not to use (a critical cRLNumber or other critical extension it does not process, an issuer without cRLSign, and in `chain` mode no cRLNumber) counts as no CRL; `leaf` mode uses one without cRLNumber. `check` warns when a trusted CA would be locked out and about each such CRL (docs/security.md).',
  },
  'listeners[].tls.ocsp': { text: 'OCSP checking of client certificates (the leaf only), after the handshake.' },
  'listeners[].tls.ocsp.mode': {
    text: '`off`; `soft`: an `unknown` answer or an unreachable or slow responder lets the client in, with an `ocsp_soft_fail` warning; `hard`: they refuse it (`revocation_unknown`). `revoked` refuses in both. `false` means `off`.',
  },
  'listeners[].tls.ocsp.responder': { text: 'Responder URL to ask instead of the one in the certificate\'s AIA extension.', example: 'http://ocsp.example.com' },
  'listeners[].tls.ocsp.cache': { text: 'How long an answer is reused per certificate, per worker; never past its nextUpdate, and failures for at most 10 s.' },
  'listeners[].tls.ocsp.timeout': { text: 'Longest wait for the responder. Only the handshakes waiting for that answer are delayed.' },
  'listeners[].tls.pins': {
    text: '`sha256:<hex>` of the client certificate\'s DER or of its SubjectPublicKeyInfo (an SPKI pin survives re-issuing with the same key). When set, a certificate matching none is refused as `pin_mismatch`: checked after the handshake, so HTTP requests get `403 client_certificate_invalid`.',
    example: [PIN_EXAMPLE],
  },
  'listeners[].tls.cert_policy': {
    text: 'Requirements on the client certificate\'s key and validity, checked after the handshake; a violation is refused as `policy` (HTTP: `403` naming the rule, e.g. `cert_policy.min_rsa_bits`).',
  },
  'listeners[].tls.cert_policy.min_rsa_bits': { text: 'Smallest RSA key accepted. 2048 is NIST\'s floor until 2030.' },
  'listeners[].tls.cert_policy.min_ec_bits': { text: 'Smallest EC key accepted (256 = P-256 and up).' },
  'listeners[].tls.cert_policy.key_types': { text: 'Key types accepted: `rsa`, `ec`, `ed25519`.' },
  'listeners[].tls.cert_policy.max_validity': {
    text: 'Longest validity period (notBefore to notAfter) accepted, for fleets of short-lived certificates; 0 = no limit. One hour of backdating is forgiven.',
    example: '90d',
  },

  'listeners[].identity': { text: 'How the verified identity is passed to the upstream (HTTP listeners).' },
  'listeners[].identity.headers': {
    text: 'Header formats to send: `standard` (`X-Client-Verify`, `X-Client-Subject`, `X-Client-SPIFFE-ID`, `X-Client-SAN`, ...), `xfcc` (Envoy\'s `X-Forwarded-Client-Cert`), `rfc9440` (`Client-Cert`, `Client-Cert-Chain`). Incoming headers of every format are removed first, whatever is enabled.',
    example: ['standard', 'xfcc'],
  },
  'listeners[].identity.forward_cert': {
    text: 'Also send the client certificate itself (`X-Client-Cert`, URL-encoded PEM; `Cert=` in xfcc). Off because certificates are large and most upstreams need only the identity.',
  },
  'listeners[].allow': {
    text: 'Default allow rules for every route; a route with its own allow list uses that instead. A request passes when no deny rule matches and the allow list is empty or one of its rules matches; a client without a verified certificate matches no rule. On tcp listeners they decide each connection.',
    example: [{ spiffe_id: 'spiffe://example.org/ns/prod/**' }],
  },
  'listeners[].deny': {
    text: 'Deny rules for every route; a route\'s deny rules add to them, so no route can let in an identity the listener denies.',
    example: [{ spiffe_id: 'spiffe://example.org/ns/prod/sa/retired' }],
  },
  'listeners[].allow[].spiffe_id': {
    text: 'The `spiffe://` URI SAN. In the path, `*` is exactly one segment and `**` (last segment only) one or more; the trust domain is compared case-insensitively, the path case-sensitively.',
    example: 'spiffe://example.org/ns/prod/**',
  },
  'listeners[].allow[].uri': { text: 'Any URI SAN, with the same wildcards as `spiffe_id`.', example: 'https://id.example.com/svc/*' },
  'listeners[].allow[].dns': { text: 'Any DNS SAN; `*.example.com` matches exactly one label.', example: '*.svc.example.com' },
  'listeners[].allow[].email': { text: 'Any email SAN; the domain is compared case-insensitively, the local part exactly.', example: 'ops@example.com' },
  'listeners[].allow[].cn': { text: 'The subject common name, exactly.', example: 'billing' },
  'listeners[].allow[].ou': { text: 'A subject organizational unit, exactly.', example: 'payments' },
  'listeners[].allow[].o': { text: 'A subject organization, exactly.', example: 'Example Corp' },
  'listeners[].allow[].issuer_cn': { text: 'The common name of the certificate\'s issuer.', example: 'Example Issuing CA' },
  'listeners[].allow[].serial': { text: 'The serial number in hex; colons and leading zeros do not matter.', example: '0A:1B:2C' },
  'listeners[].allow[].fingerprint': { text: '`sha256:` and the SHA-256 of the certificate\'s DER in hex.', example: PIN_EXAMPLE },
  'listeners[].upstream': { text: '`protocol: tcp` only: the upstream (with `tcp://` or `tls://` endpoints) every connection is forwarded to.', example: 'postgres' },
  'listeners[].proxy_protocol': {
    text: '`protocol: tcp` only: send a PROXY protocol header before the client\'s bytes: `v1` (text) or `v2` (binary, with the SSL TLV: verify result, TLS version, client CN, cipher and the client certificate DER). nginx (`listen ... proxy_protocol`) and HAProxy (`accept-proxy`) read it.',
  },
  'listeners[].merge_slashes': {
    text: 'Merge repeated slashes (`//admin` becomes `/admin`) before routing and toward the upstream, as nginx does (Envoy does not by default): most upstreams treat them alike, so a route on `/admin` must too. See docs/request-normalization.md.',
  },
  'listeners[].limits': { text: 'Limits per connection and per request, applied per worker.' },
  'listeners[].limits.max_header_bytes': {
    text: 'Largest request head (request line and headers); a larger one gets `431 headers_too_large` and the connection closes. nginx allows 8 KiB per line (`large_client_header_buffers`), Envoy 60 KiB in all.',
  },
  'listeners[].limits.max_body_bytes': {
    text: 'Largest request body; 0 = unlimited (bodies stream, they are never buffered whole). A declared larger `Content-Length` gets `413 body_too_large` before anything is forwarded; a body that grows past it is cut off.',
    example: 10485760,
  },
  'listeners[].limits.header_timeout': {
    text: 'Time for a request head to arrive, counted from a new connection and from the first byte of each request (against slow-header attacks); checked at least every second.',
  },
  'listeners[].limits.idle_timeout': { text: 'How long a connection without a request in flight stays open (HTTP keep-alive, idle WebSocket and TCP connections; WebSockets get close code 1001).' },
  'listeners[].limits.max_connections': {
    text: 'Open connections per listener per worker process, TLS handshakes in progress included; a connection beyond it is closed right after accept, before any TLS work. 0 = no limit. 1024 like nginx\'s `worker_connections`, well under a typical open-file limit; see docs/connection-limits.md.',
  },
  'listeners[].limits.handshake_timeout': {
    text: 'Time from accept until the TLS handshake has finished; then the connection is closed without an alert. Must be above 0. It decides how long a client that connects and sends nothing holds a `max_connections` slot; see docs/connection-limits.md.',
  },
  'listeners[].limits.send_timeout': {
    text: 'A connection whose client has taken none of the bytes waiting for it for this long is reset (an HTTP/2 stream starved of flow-control window: that stream alone), and its upstream released; a slow reader that keeps reading is never cut. 0 = off. nginx\'s `send_timeout` is 60 s too.',
  },
  'listeners[].limits.max_headers': {
    text: 'Most header fields in one request (HTTP/2: after joining cookie crumbs); more gets `431 headers_too_large`. 100 is Envoy\'s default too.',
  },
  'listeners[].routes': {
    text: 'Routes, tried in order: the first whose `match` holds takes the request; no match answers `404 no_route`. An http listener needs at least one. `portcullis policy test` shows which route and rule a request meets.',
  },
  'listeners[].routes[].name': {
    text: 'Name in logs, metric labels and rule names (`routes[charge].allow[0]`); default `route-<index>`. Unique within its listener.',
    example: 'charge',
  },
  'listeners[].routes[].match': { text: 'Conditions that must all hold; a route without `match` takes every request. Paths are normalized first (docs/request-normalization.md).' },
  'listeners[].routes[].match.host': { text: 'Host (or `:authority`) names: exact, or `*.example.com` for exactly one label; the port is ignored.', example: 'api.example.com' },
  'listeners[].routes[].match.path': {
    text: 'A prefix of the normalized path, compared as a plain string as nginx and Envoy do: `/api` also matches `/apiary`; write `/api/` for the folder.',
    example: '/v1/charge',
  },
  'listeners[].routes[].match.path_exact': { text: 'The whole normalized path.', example: '/healthz' },
  'listeners[].routes[].match.path_regex': { text: 'A regular expression the whole normalized path must match (it is anchored). Give one of `path`, `path_exact`, `path_regex`.', example: '/v[0-9]+/users/[^/]+' },
  'listeners[].routes[].match.methods': { text: 'Methods, exact and case-sensitive; HEAD is not implied by GET.', example: ['POST'] },
  'listeners[].routes[].client_auth': {
    text: 'On an `optional` listener, `require` answers `401 client_certificate_required` without a certificate and `403 client_certificate_invalid` (naming the reason) with one that failed verification. `require` on a listener whose handshake never asks for a certificate is an error.',
    example: 'require',
  },
  'listeners[].routes[].allow': { text: 'This route\'s allow rules, replacing the listener\'s.', example: [{ spiffe_id: 'spiffe://example.org/ns/prod/sa/billing' }] },
  'listeners[].routes[].deny': { text: 'This route\'s deny rules, added to the listener\'s.', example: [{ ou: 'contractors' }] },
  'listeners[].routes[].upstream': { text: 'The upstream (a name under `upstreams`, with http, https or h2c endpoints) this route forwards to.', example: 'app' },
  'listeners[].routes[].timeout': {
    text: 'Longest wait for the upstream\'s response headers on this route, instead of the upstream\'s `timeouts.request`; 0 = none. Also caps gRPC deadlines (`grpc-timeout`).',
    example: '60s',
  },

  upstreams: { text: 'Named groups of endpoints that routes and tcp listeners forward to.' },
  'upstreams.<name>.endpoints': {
    text: 'The servers, `scheme://host:port` only: `http://`, `https://` (TLS; ALPN h2 or http/1.1) and `h2c://` (cleartext HTTP/2, e.g. gRPC) for http routes; `tcp://` and `tls://` for tcp listeners. One upstream does not mix the two kinds.',
    example: ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'],
  },
  'upstreams.<name>.balance': {
    text: 'How an endpoint is chosen among the available ones (health check not failed, not ejected), for every kind of route and tcp listeners: `round_robin`; `least_request` (power of two choices: the one of two random endpoints with fewer requests in flight); `random`; `hash` (consistent hashing on `hash_on`: a client keeps its endpoint, and only ~1/N of clients move when one leaves). See docs/upstreams.md.',
  },
  'upstreams.<name>.hash_on': {
    text: 'The key of `balance: hash`: `identity` (the client certificate\'s SPIFFE ID, else its SHA-256 fingerprint) or `header:<name>` (the first value of that request header; http only). Requests without a key are balanced round robin. Default `identity`.',
    example: 'header:x-user-id',
  },
  'upstreams.<name>.dns_refresh': {
    text: 'How often an endpoint written with a host name is looked up again (getaddrinfo, so /etc/hosts and resolv.conf search domains apply). Every address becomes an endpoint of its own (a Kubernetes headless Service works as it is); a new address takes traffic at once, a removed one gets no new requests and its requests in flight finish. A failed lookup keeps the last good set; a name that never resolved makes requests fail with `503 no_healthy_upstream` naming the DNS error. 5 s like Envoy\'s `dns_refresh_rate` and CoreDNS\'s default TTL. Lookups run once for the whole process tree, in the primary. Refused on an upstream whose endpoints are all IP addresses. See docs/upstreams.md.',
    example: '30s',
  },
  'upstreams.<name>.retries': {
    text: 'Extra attempts on endpoints not tried yet: after a connect failure (refused, timeout, TLS failure: nothing reached the upstream) for any request, and after a reset before any response byte for idempotent requests without a body. Nothing is retried once a response byte has gone. 0 = no failover.',
  },
  'upstreams.<name>.retry_budget': { text: 'Caps re-sent requests (not connect failovers) over the whole upstream, so retries cannot multiply load during an outage (Envoy\'s retry budget).' },
  'upstreams.<name>.retry_budget.percent': { text: 'Retries in flight may be at most this share of the requests in flight.' },
  'upstreams.<name>.retry_budget.min_concurrent': { text: 'Retries in flight always allowed, whatever the share (so a quiet upstream can still retry).' },
  'upstreams.<name>.outlier': { text: 'Passive health (nginx `max_fails`/`fail_timeout`, Envoy outlier detection), per worker process: an endpoint that fails too often in a row gets no traffic for a while.' },
  'upstreams.<name>.outlier.consecutive_failures': { text: 'Failures in a row (connect failure, reset, timeout, and 5xx unless `count_5xx: false`) that eject an endpoint; 0 = off.' },
  'upstreams.<name>.outlier.base_ejection': { text: 'Ejection time the first time; each further ejection of the same endpoint adds this much (Envoy).' },
  'upstreams.<name>.outlier.max_ejection': { text: 'Longest ejection.' },
  'upstreams.<name>.outlier.max_ejected_percent': { text: 'Most endpoints ejected at once, as a share (one may always be); the last available endpoint is never ejected.' },
  'upstreams.<name>.outlier.count_5xx': { text: 'Count 5xx answers as failures (false: only connect failures, resets and timeouts).' },
  'upstreams.<name>.timeouts': { text: 'Timeouts toward the upstream; 0 = no limit.' },
  'upstreams.<name>.timeouts.connect': { text: 'Time to connect to an endpoint (TLS included); exceeded: `504 upstream_timeout`.' },
  'upstreams.<name>.timeouts.request': { text: 'Time from sending a request to the response headers (a route\'s `timeout` replaces it); exceeded: `504 upstream_timeout`.' },
  'upstreams.<name>.timeouts.idle': { text: 'Longest silence in the middle of a body, and how long an idle pooled connection is kept (a shorter `Keep-Alive: timeout` from the upstream wins).' },
  'upstreams.<name>.health_check': {
    text: 'Active health checks, one prober per endpoint for the whole process (in the primary, results sent to every worker): `GET path` for http, https (with `tls`, client certificate included) and h2c endpoints, a connect (and TLS handshake) for tcp and tls endpoints. An endpoint that fails gets no traffic until it passes again; with none left, `503 no_healthy_upstream`. See docs/upstreams.md.',
  },
  'upstreams.<name>.health_check.expect': { text: 'Statuses that count as healthy (default: any 2xx or 3xx). Not for tcp upstreams.', example: [200, 204] },
  'upstreams.<name>.health_check.path': { text: 'Path requested on each endpoint (not for tcp upstreams: they are checked with a connect).' },
  'upstreams.<name>.health_check.interval': { text: 'Time between two checks of an endpoint.' },
  'upstreams.<name>.health_check.timeout': { text: 'Time one check may take.' },
  'upstreams.<name>.health_check.healthy': { text: 'Consecutive successful checks that make an unhealthy endpoint healthy again. The first check of an endpoint decides at once.' },
  'upstreams.<name>.health_check.unhealthy': { text: 'Consecutive failed checks that make a healthy endpoint unhealthy.' },
  'upstreams.<name>.tls': {
    text: 'TLS toward `https://` and `tls://` endpoints, and mTLS when `cert` and `key` are given: plain in, mTLS out, for clients that cannot do mTLS themselves.',
  },
  'upstreams.<name>.tls.ca': { text: 'CA file(s) that sign the upstream\'s certificate; when empty, Node\'s public root store.', example: 'pki/upstream-ca.crt' },
  'upstreams.<name>.tls.cert': { text: 'Client certificate (PEM, then its intermediates) portcullis presents to the upstream; give `key` with it.', example: 'pki/proxy-client.crt' },
  'upstreams.<name>.tls.key': { text: 'Private key of `tls.cert`.', example: 'pki/proxy-client.key' },
  'upstreams.<name>.tls.server_name': { text: 'SNI to send, and the name the upstream\'s certificate must carry (default: the endpoint\'s host).', example: 'payments.internal' },
  'upstreams.<name>.tls.verify_names': {
    text: 'Accept the upstream\'s certificate when it carries one of these names, instead of checking the host name: an entry with a scheme (`spiffe://...`) must equal a URI SAN, any other entry a DNS SAN (case-insensitive); no wildcards. The chain must still verify against `ca`.',
    example: ['spiffe://example.org/ns/prod/sa/payments'],
  },
};

/** The prose for a key path: KEY_DOCS, else an announced key's PENDING_DOCS entry. */
export function docFor(path: string): KeyDoc | undefined {
  return KEY_DOCS[path] ?? PENDING_DOCS[path];
}
