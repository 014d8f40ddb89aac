// @bsfg/pki: a throwaway developer PKI (CA + mTLS certificates) for the local estate and tests.
export type { CertificateAuthority, CertificateUsage, IssuedCertificate } from "./types.js";
export { createCertificateAuthority, DEFAULT_CA_NAME, type CreateCertificateAuthorityOptions } from "./ca.js";
export { issueCertificate, type IssueCertificateOptions } from "./issue.js";
export {
  ensureDevPki,
  MIN_REMAINING_DAYS,
  type CertificateOutcome,
  type DevIdentity,
  type DevPki,
  type EnsureDevPkiOptions,
} from "./dev-pki.js";
export { describeCertificate, type CertificateDescription } from "./describe.js";
