/** What a certificate may be used for in a TLS handshake (its extendedKeyUsage). */
export type CertificateUsage = "server" | "client" | "both";

/**
 * A throwaway certificate authority. Only PEM strings, so it can be written to disk,
 * handed to node:tls as `ca`, or passed between processes as-is.
 */
export interface CertificateAuthority {
  readonly certPem: string;
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"). */
  readonly keyPem: string;
  /** The CA's subject CN. */
  readonly name: string;
}

export interface IssuedCertificate {
  readonly certPem: string;
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), accepted by node:tls as `key`. */
  readonly keyPem: string;
  /** The subject CN: the caller's identity as the BSFG sees it. */
  readonly identity: string;
  /** As encoded in the certificate (X.509 keeps whole seconds). */
  readonly notAfter: Date;
}
