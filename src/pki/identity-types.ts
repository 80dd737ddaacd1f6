// The verified identity of a TLS peer, as the policy, routing and header code see it.
// Built once per connection (see identity.ts); never built per request.

export interface Identity {
  /** RFC 4514 subject, most specific RDN first, e.g. CN=svc,OU=prod,O=Example */
  subject: string;
  /** RFC 4514 issuer */
  issuer: string;
  /** subject attribute values (several values possible) */
  cn: string[];
  ou: string[];
  o: string[];
  /** issuer common name(s) */
  issuerCn: string[];
  /** serial, uppercase hex without separators or leading zero padding beyond what DER has */
  serial: string;
  /** SHA-256 of the leaf DER, lowercase hex without separators */
  fingerprint: string;
  /** SHA-256 of the leaf's SubjectPublicKeyInfo DER, lowercase hex */
  spkiFingerprint: string;
  /** the first URI SAN whose scheme is spiffe, if any */
  spiffeId: string | undefined;
  /** SANs by kind, in certificate order */
  uris: string[];
  dns: string[];
  emails: string[];
  ips: string[];
  notBefore: Date;
  notAfter: Date;
  /** leaf certificate DER */
  der: Buffer;
  /** the chain above the leaf as the peer/verification produced it (DER), trust anchor excluded */
  chainDer: Buffer[];
}

/** Facts about a request that authorization can look at besides the identity. */
export interface RequestFacts {
  method: string;
  host: string;
  path: string;
}
