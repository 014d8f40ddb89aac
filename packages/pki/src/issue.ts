import { X509Certificate as NodeX509Certificate, createPrivateKey, type webcrypto } from "node:crypto";
import { assertValidCommonName } from "./identity.js";
import { exportPrivateKeyPem, generateKeyPair, importSigningKey, withTrailingNewline } from "./keys.js";
import { randomSerialNumber } from "./serial.js";
import { resolveSubjectAltNames } from "./subject-alt-names.js";
import type { CertificateAuthority, CertificateUsage, IssuedCertificate } from "./types.js";
import { extendedKeyUsages } from "./usage.js";
import { validityWindow } from "./validity.js";
import { x509 } from "./x509.js";

const DEFAULT_LEAF_DAYS = 90;

export interface IssueCertificateOptions {
  /** Subject CN: the identity the BSFG authorises on. */
  identity: string;
  /** extendedKeyUsage: serverAuth, clientAuth or both. */
  usage: CertificateUsage;
  /** DNS SANs. Server-capable certificates default to ["localhost"]. */
  dnsNames?: string[];
  /** IP SANs. Server-capable certificates default to ["127.0.0.1", "::1"]. */
  ipAddresses?: string[];
  /** Explicit validity, e.g. an already expired certificate for tests. */
  notBefore?: Date;
  notAfter?: Date;
  /** Default 90. */
  validDays?: number;
}

/** A leaf certificate and fresh key, signed by `ca`. */
export async function issueCertificate(ca: CertificateAuthority, opts: IssueCertificateOptions): Promise<IssuedCertificate> {
  assertValidCommonName(opts.identity);
  const sans = resolveSubjectAltNames(opts.usage, opts.dnsNames, opts.ipAddresses);
  const { notBefore, notAfter } = validityWindow(opts, DEFAULT_LEAF_DAYS);
  const issuer = await loadIssuer(ca);
  const keys = await generateKeyPair();

  const altNames: x509.JsonGeneralName[] = [
    ...sans.dnsNames.map((value) => ({ type: "dns" as const, value })),
    ...sans.ipAddresses.map((value) => ({ type: "ip" as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    // ECDSA in TLS 1.3 only ever signs the handshake; key exchange is ephemeral ECDHE, so
    // keyEncipherment would grant nothing.
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(extendedKeyUsages(opts.usage)),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    issuer.authorityKeyIdentifier,
  ];
  // GeneralNames must hold at least one name, so a client certificate without SANs has no
  // SAN extension at all rather than an empty one.
  if (altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(altNames));

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: [{ CN: [opts.identity] }],
    // The CA certificate's own encoded subject, so issuer/subject match byte for byte.
    issuer: issuer.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: issuer.signingKey,
    extensions,
  });
  return {
    certPem: withTrailingNewline(cert.toString("pem")),
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    identity: opts.identity,
    notAfter: cert.notAfter,
  };
}

interface Issuer {
  subjectName: x509.Name;
  signingKey: webcrypto.CryptoKey;
  authorityKeyIdentifier: x509.AuthorityKeyIdentifierExtension;
}

/**
 * Checks the CA before signing anything with it: a key that does not belong to the
 * certificate, or a certificate that is not a CA, would yield leaves that fail much later
 * inside a TLS handshake with a far less helpful message.
 */
async function loadIssuer(ca: CertificateAuthority): Promise<Issuer> {
  const nodeCert = new NodeX509Certificate(ca.certPem);
  if (!nodeCert.ca) throw new Error(`Certificate ${JSON.stringify(nodeCert.subject)} is not a CA (basicConstraints CA:false)`);
  if (!nodeCert.checkPrivateKey(createPrivateKey(ca.keyPem))) throw new Error("CA private key does not match the CA certificate");
  const cert = new x509.X509Certificate(ca.certPem);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  // Point at the CA's own subjectKeyIdentifier when it has one (it may have been made by
  // another tool that derives key IDs differently); otherwise derive one from its key.
  const authorityKeyIdentifier = ski
    ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
    : await x509.AuthorityKeyIdentifierExtension.create(cert.publicKey);
  return { subjectName: cert.subjectName, signingKey: await importSigningKey(ca.keyPem), authorityKeyIdentifier };
}
