import { exportPrivateKeyPem, generateKeyPair, withTrailingNewline } from "./keys.js";
import { assertValidCommonName } from "./identity.js";
import { randomSerialNumber } from "./serial.js";
import type { CertificateAuthority } from "./types.js";
import { validityWindow } from "./validity.js";
import { x509 } from "./x509.js";

export const DEFAULT_CA_NAME = "BSFG Dev CA";
const DEFAULT_CA_DAYS = 365;

export interface CreateCertificateAuthorityOptions {
  /** Subject CN; default "BSFG Dev CA". */
  name?: string;
  /** Default 365. */
  validDays?: number;
}

/** A self-signed root for development and tests. Never for production: the key sits in a PEM string. */
export async function createCertificateAuthority(opts: CreateCertificateAuthorityOptions = {}): Promise<CertificateAuthority> {
  const name = opts.name ?? DEFAULT_CA_NAME;
  assertValidCommonName(name, "CA name");
  const { notBefore, notAfter } = validityWindow({ validDays: opts.validDays }, DEFAULT_CA_DAYS);
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    // JSON form, not "CN=..." text: a name containing "," or "=" must not be parsed as syntax.
    name: [{ CN: [name] }],
    keys,
    notBefore,
    notAfter,
    extensions: [
      // pathLen 0: this CA signs leaves only; an intermediate under it would be a mistake.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // Leaves carry an authorityKeyIdentifier pointing at this, which lets OpenSSL tell
      // apart two dev CAs that share the default name.
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: withTrailingNewline(cert.toString("pem")),
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    name,
  };
}
