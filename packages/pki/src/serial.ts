import { webcrypto } from "./x509.js";

/**
 * A random positive serial number as hex (RFC 5280: positive, at most 20 octets; CA/B
 * practice: at least 64 random bits). 16 random bytes with the top bit cleared keep the
 * DER INTEGER positive without a padding byte, and setting the next bit keeps the first
 * octet non-zero so the encoding is always exactly 16 octets (no leading-zero stripping).
 */
export function randomSerialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return Buffer.from(bytes).toString("hex");
}
